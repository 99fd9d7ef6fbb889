"""Issue 25, points 4 and 5: the Compare table is of the ground truth on screen, and the
layer names in it can be read in a docked widget at 1366 x 768."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import QRect, Qt  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_denoise._qt._compare_widget import CompareWidget  # noqa: E402

PLUGIN = "napari-denoise"
WAIT = 60_000


def _compute(qtbot, widget):
    assert widget.compute()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT)


def _pair(viewer, shape, suffix):
    rng = np.random.default_rng(len(shape) + shape[-1])
    gt = (rng.random(shape) * 200).astype(np.float32)
    viewer.add_image(gt, name=f"ground truth {suffix}")
    noisy = gt + rng.normal(0, 20, shape).astype(np.float32)
    viewer.add_image(noisy, name=f"noisy {suffix}")


def test_another_ground_truth_clears_the_table_and_says_so(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _pair(viewer, (64, 64), "A")
    _pair(viewer, (32, 32), "B")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["ground truth A"])
    widget.results.refresh()
    _compute(qtbot, widget)
    assert widget.rows and widget.table.rowCount() > 0
    widget.gt.set_layer(viewer.layers["ground truth B"])
    assert widget.rows == [] and widget.table.rowCount() == 0
    assert widget.data_range.box.specialValueText() == "from the ground truth"
    note = widget.note.text()
    assert "'ground truth B'" in note and "'ground truth A'" in note and "Compute" in note
    assert not widget.export_button.isEnabled() and not widget.diff_button.isEnabled()
    _compute(qtbot, widget)  # and scores against the new one
    assert widget.rows[0]["layer"].startswith("noisy B")


def test_scores_that_arrive_after_the_ground_truth_changed_are_dropped(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _pair(viewer, (64, 64), "A")
    _pair(viewer, (64, 64), "B")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["ground truth A"])
    assert widget.compute()
    widget.gt.set_layer(viewer.layers["ground truth B"])  # while scoring against A
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT)
    assert widget.rows == [] and widget.table.rowCount() == 0
    assert "changed while scoring" in widget.note.text()


def _text_fits(table, row) -> bool:
    """Whether the name in ``row`` is shown whole: in one line or wrapped in its row."""
    item = table.item(row, 0) or table.item(row, 1)
    rect = table.visualRect(table.indexFromItem(item))
    metrics = table.fontMetrics()
    room = QRect(0, 0, rect.width() - 8, 10_000)  # the cell's margins
    need = metrics.boundingRect(room, int(Qt.TextFlag.TextWordWrap), item.text())
    return need.width() <= room.width() and need.height() <= rect.height()


def test_long_real_names_are_readable_per_plane_in_the_docked_widget_at_1366x768(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    viewer.open_sample(PLUGIN, "fmd_pair")
    gt = np.asarray(viewer.layers["ground truth (FMD)"].data)
    noisy = np.asarray(viewer.layers["noisy (FMD)"].data)
    # stacks of 3 planes, named as the Denoise widget names its results
    names = {
        "fmd_confocal_mice_ground_truth": gt,
        "fmd_confocal_mice_noisy": noisy,
        "fmd_confocal_mice_noisy [gaussian, Blur width 1.5 px]": (noisy * 0.9 + gt * 0.1),
        "fmd_confocal_mice_noisy [unet-fluo, Flip-and-turn averaging 8 passes]": gt * 1.01,
    }
    for name, data in names.items():
        viewer.add_image(np.stack([data] * 3).astype(np.float32), name=name)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    widget.gt.set_layer(viewer.layers["fmd_confocal_mice_ground_truth"])
    widget.baseline.set_layer(viewer.layers["fmd_confocal_mice_noisy"])
    for layer in viewer.layers:  # tick the results (not the FMD sample pair)
        widget.results.set_checked(layer, layer.name.startswith("fmd_confocal_mice_noisy ["))
    widget.per_slice.setChecked(True)
    _compute(qtbot, widget)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    assert window.width() <= 1366
    table = widget.table
    assert len(widget.rows) == 3 * 3
    shown = {r: table.item(r, 0).text() for r in range(table.rowCount()) if r not in widget.row_of}
    assert sorted(n.removesuffix(" (baseline)") for n in shown.values()) == sorted(
        n for n in names if n != "fmd_confocal_mice_ground_truth"
    )
    for r in shown:
        assert _text_fits(table, r), f"'{shown[r]}' is cut in a {table.width()} px table"
    # the scores stay whole too
    for r in widget.row_of:
        for c in range(2, table.columnCount()):
            item = table.item(r, c)
            width = table.fontMetrics().horizontalAdvance(item.text())
            assert width <= table.columnWidth(c), item.text()

"""The Compare widget: its numbers are the engine's, per plane for stacks, with CSV export."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402

from napari_denoise import denoise  # noqa: E402
from napari_denoise._qt import CompareWidget  # noqa: E402
from napari_denoise._qt._scores import BASELINE, COLUMNS  # noqa: E402
from napari_denoise.engine.metrics import compare  # noqa: E402

PLUGIN = "napari-denoise"
WAIT = 30_000
KEYS = [key for key, _ in COLUMNS[2:]]


def computed(qtbot, widget):
    assert widget.compute()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT)
    return widget


def cell(widget, row, key):
    """The value of ``key`` in the ``row``-th row of numbers (each name is a row above them)."""
    column = [k for k, _ in COLUMNS].index(key)
    return widget.table.item(widget.row_of[row], column).data(Qt.ItemDataRole.UserRole)


def test_table_equals_the_engine_on_the_real_pair(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    gt, noisy = viewer.layers["ground truth (FMD)"].data, viewer.layers["noisy (FMD)"].data
    smooth = denoise(noisy, "gaussian", sigma=1.0)
    viewer.add_image(smooth, name="smoothed")
    widget = computed(qtbot, CompareWidget(viewer))
    assert widget.gt.layer().name == "ground truth (FMD)"  # chosen by name
    assert widget.baseline.layer().name == "noisy (FMD)"

    assert len(widget.rows) == 2 and widget.table.rowCount() == 4  # a name row above each
    assert widget.table.item(0, 0).text() == f"noisy (FMD) ({BASELINE})"  # baseline first
    for row, image in ((0, noisy), (1, smooth)):
        expected = compare(gt, image)
        for key in KEYS:
            assert cell(widget, row, key) == expected[key]
    assert cell(widget, 1, "psnr") > cell(widget, 0, "psnr")
    span = float(gt.max()) - float(gt.min())  # the ground truth's own range, not uint8's
    assert f"data range {span:g} (max - min" in widget.note.text()
    assert "RI, range-invariant" in widget.note.text()
    assert widget.data_range.box.value() == span

    out = tmp_path / "scores.csv"
    widget.export_csv(out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# ground truth: ground truth (FMD)")
    rows = list(csv.DictReader(lines[1:]))
    assert [r["layer"] for r in rows] == [f"noisy (FMD) ({BASELINE})", "smoothed"]
    assert float(rows[1]["ssim_ri"]) == compare(gt, smooth)["ssim_ri"]  # full precision

    widget.table.selectRow(widget.row_of[1])
    widget.add_difference()
    diff = viewer.layers["smoothed − ground truth (FMD)"]
    np.testing.assert_array_equal(
        np.asarray(diff.data), smooth.astype(np.float32) - gt.astype(np.float32)
    )


def test_per_plane_rows_for_a_stack_and_a_float_range(make_napari_viewer, qtbot):
    rng = np.random.default_rng(0)
    truth = rng.random((3, 48, 48)).astype(np.float32)
    noisy = truth + 0.1 * rng.standard_normal(truth.shape).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(truth, name="gt")
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(0.5 * truth + 3, name="rescaled")  # perfect up to gain and offset
    widget = CompareWidget(viewer)
    widget.per_slice.setChecked(True)
    computed(qtbot, widget)
    span = float(truth.max()) - float(truth.min())
    assert len(widget.rows) == 2 * 3 and widget.table.rowCount() == 2 * (1 + 3)
    expected = compare(truth, 0.5 * truth + 3, data_range=span, slice_axes=1)
    for k in range(3):
        row = 3 + k
        assert cell(widget, row, "slice") == k
        for key in KEYS:
            assert cell(widget, row, key) == expected["per_slice"][k][key]
    # range-invariant scores forgive a change of gain and offset; plain ones do not
    assert cell(widget, 3, "psnr_ri") > 100 > cell(widget, 3, "psnr")
    widget.per_slice.setChecked(False)
    assert (
        widget.table.rowCount() == 2 * 2 and widget.table.item(widget.row_of[1], 1).text() == "mean"
    )
    assert cell(widget, 1, "psnr") == expected["psnr"]


def test_layers_of_another_shape_are_not_offered(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="gt")
    viewer.add_image(np.zeros((32, 32), np.uint8), name="same")
    viewer.add_image(np.zeros((16, 16), np.uint8), name="other")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["gt"])
    assert [ly.name for ly in widget.results.checked()] == ["same"]


def test_the_results_list_follows_renames_and_keeps_what_was_unticked(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="gt")
    viewer.add_image(np.zeros((32, 32), np.uint8), name="a")
    viewer.add_image(np.zeros((32, 32), np.uint8), name="b")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["gt"])
    items = {widget.results.item(i).text(): widget.results.item(i) for i in range(2)}
    items["b"].setCheckState(Qt.CheckState.Unchecked)
    viewer.layers["b"].name = "b (gaussian)"
    viewer.layers["a"].name = "a (unet)"
    texts = [widget.results.item(i).text() for i in range(widget.results.count())]
    assert sorted(texts) == ["a (unet)", "b (gaussian)"]
    assert [ly.name for ly in widget.results.checked()] == ["a (unet)"]
    widget.results.refresh()  # a later rebuild still remembers the untick, under the new name
    assert [ly.name for ly in widget.results.checked()] == ["a (unet)"]


def test_a_new_layer_with_an_unticked_layers_name_starts_ticked(make_napari_viewer):
    # The list remembers ticks by layer, not by name: a result deleted after being
    # unticked, then made again under the same name, is a new layer in the starting state.
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="gt")
    viewer.add_image(np.zeros((32, 32), np.uint8), name="a")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["gt"])
    widget.results.item(0).setCheckState(Qt.CheckState.Unchecked)
    assert widget.results.checked() == []
    viewer.layers.remove(viewer.layers["a"])
    viewer.add_image(np.ones((32, 32), np.uint8), name="a")
    assert [ly.name for ly in widget.results.checked()] == ["a"]

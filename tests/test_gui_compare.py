"""Issue 14, findings 3, 4 and 5: the Compare widget's ground truth, table and data range."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402

from napari_denoise._napari import PROVENANCE_KEY  # noqa: E402
from napari_denoise._qt._compare_widget import CompareWidget  # noqa: E402
from napari_denoise._qt._scores import COLUMNS, data_range_for  # noqa: E402

WAIT = 30_000


def _fmd_like(viewer, gt_path=None):
    """Noisy and GT sharing a file name (napari names the second 'name [1]'), plus a result."""
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 200, (64, 64)).astype(np.uint8)
    noisy = viewer.add_image(gt + rng.integers(0, 40, gt.shape).astype(np.uint8), name="Cells_1")
    meta = {"source_path": gt_path} if gt_path else {}
    viewer.add_image(gt, name="Cells_1 [1]", metadata=meta)
    viewer.add_image(
        gt.copy(), name="Cells_1 [wavelet]", metadata={PROVENANCE_KEY: {"method": "wavelet"}}
    )
    return noisy


def test_a_result_of_ours_is_never_the_default_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    _fmd_like(viewer)
    widget = CompareWidget(viewer)
    assert widget.gt.layer() is None  # nothing is clearly the ground truth: ask
    assert "ground truth" in widget.gt_hint.text().lower()
    assert widget.gt_hint.isVisibleTo(widget)
    assert not widget.compute()


def test_the_ground_truth_is_recognised_by_its_folder(make_napari_viewer):
    viewer = make_napari_viewer()
    _fmd_like(viewer, gt_path="/data/FMD/gt/Cells_1.png")
    widget = CompareWidget(viewer)
    assert widget.gt.layer().name == "Cells_1 [1]"
    assert not widget.gt_hint.isVisibleTo(widget)


def test_layers_left_out_are_named_with_the_reason(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint8), name="gt")
    viewer.add_image(np.zeros((16, 16), np.uint8), name="small crop")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["gt"])
    text = widget.left_out.text()
    assert "small crop" in text and "16 × 16" in text and "32 × 32" in text


def test_default_range_is_the_ground_truths_own_and_says_so():
    gt = np.array([[331, 3012], [100, 4000]], np.uint16)
    value, note = data_range_for(gt, None)
    assert value == 3900
    assert "max - min of the ground truth, 100 to 4000" in note
    assert data_range_for(gt, 4095) == (4095.0, "data range 4095 (given)")


def test_every_row_is_visible_and_the_best_per_column_is_marked(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    gt = (rng.random((48, 48)) * 200).astype(np.float32)
    viewer.add_image(gt, name="ground truth")
    viewer.add_image(gt + rng.normal(0, 30, gt.shape).astype(np.float32), name="noisy")
    for k, noise in enumerate((5, 10, 15, 20, 25)):
        viewer.add_image(gt + rng.normal(0, noise, gt.shape).astype(np.float32), name=f"r{k}")
    widget = CompareWidget(viewer)
    widget.gt.set_layer(viewer.layers["ground truth"])
    assert widget.compute()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT)
    table = widget.table
    assert table.rowCount() == 2 * 6  # each name a row above its numbers
    assert table.verticalScrollBar().maximum() == 0  # no row hidden behind a scroll bar
    need = table.horizontalHeader().height() + sum(table.rowHeight(r) for r in range(12))
    assert table.viewport().height() + table.horizontalHeader().height() >= need
    psnr = [key for key, _ in COLUMNS].index("psnr")
    numbers = widget.row_of
    best = [r for r in numbers if table.item(r, psnr).font().bold()]
    assert [table.item(r, 0).text() for r in best] == ["r0"]
    assert table.item(best[0], psnr).data(Qt.ItemDataRole.UserRole) == max(
        table.item(r, psnr).data(Qt.ItemDataRole.UserRole) for r in numbers
    )

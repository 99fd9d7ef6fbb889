"""Issue 25, point 2: after a training with long names, the Train widget still fits its
dock at 1366 x 768: the "Denoise '<layer>' with <model>" button is elided (the whole text
in its tooltip), status lines wrap (file paths too), and Stop keeps a usable width."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import QRect, Qt  # noqa: E402
from qtpy.QtWidgets import QApplication, QLabel  # noqa: E402

import test_napari_train_widget as trainer  # noqa: E402
from napari_denoise._qt import TrainWidget  # noqa: E402
from napari_denoise._qt._compact import MAX_WIDTH  # noqa: E402
from napari_denoise.engine.models import registry  # noqa: E402

notes, pair = trainer.notes, trainer.pair  # fixtures
wait_idle = trainer.wait_idle

# A layer name as napari makes them from a long file name, and a model name a user types.
LAYER = "Confocal_BPAE_B_train_capture_03_of_50_noisy_short_exposure_2026-12-07 [bleach corrected]"
MODEL = "unet-confocal-bpae-blue-channel-short-exposure-finetuned-2026-12-07"


@pytest.fixture
def deep_model_dir(tmp_path, monkeypatch):
    """A user model folder with a long path (a path has no spaces to wrap at)."""
    folder = tmp_path / "Users_Lab_Microscopy_Facility" / "napari-denoise-models_for_my_project"
    monkeypatch.setenv("NAPARI_DENOISE_MODEL_DIR", str(folder))
    registry.register_models()
    yield folder
    monkeypatch.delenv("NAPARI_DENOISE_MODEL_DIR")
    registry.register_models()


def _settle(qtbot, rounds: int = 5) -> None:
    for _ in range(rounds):
        QApplication.processEvents()
        qtbot.wait(50)


def _fits(label) -> bool:
    """Whether the label's text, wrapped as it shows it, is no wider than the label."""
    shown = QLabel.text(label)  # what it draws (WrappingLabel.text() gives the plain text)
    box = label.fontMetrics().boundingRect(
        QRect(0, 0, label.width(), 100_000), int(Qt.TextFlag.TextWordWrap), shown
    )
    return box.width() <= label.width()


def test_after_a_training_with_long_names_nothing_widens_the_dock(
    make_napari_viewer, qtbot, deep_model_dir, notes, pair
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    noisy, gt = pair
    viewer.add_image(gt, name="clean")
    viewer.add_image(noisy, name=LAYER)
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    widget.extra_spec = dict(trainer.TINY)
    widget.start_model.setCurrentIndex(widget.start_model.findData("new:unet"))
    widget.budget_unit.setCurrentText("steps")
    widget.budget.setValue(2)
    widget.name.setText(MODEL)
    _settle(qtbot)
    dock_width = widget.width()
    assert widget.start()
    wait_idle(qtbot, widget)
    window.resize(1366, 768)
    _settle(qtbot)
    assert notes["error"] == []
    assert str(deep_model_dir) in widget.status.toolTip() or str(deep_model_dir) in (
        widget.status.text().replace("\u200b", "")
    )

    # Nothing asks for more width than before, or than the dock gives.
    assert widget.minimumSizeHint().width() <= MAX_WIDTH
    assert widget.width() <= dock_width
    body = widget.scroll_area.widget()
    bar = widget.scroll_area.verticalScrollBar().sizeHint().width()
    assert body.minimumSizeHint().width() + bar <= MAX_WIDTH
    assert body.width() <= widget.scroll_area.viewport().width()
    # Stop keeps room for its word; the long button is elided, its whole text in the tooltip.
    stop = widget.stop_button
    assert stop.width() >= stop.sizeHint().width() and stop.width() >= body.width() / 3
    button = widget.denoise_button
    assert button.isVisible() and button.width() <= body.width()
    assert LAYER in button.toolTip() and MODEL in button.toolTip()
    assert button.fontMetrics().horizontalAdvance(button.text()) <= button.width()
    # Status lines wrap, file paths included.
    for label in (widget.status, widget.eta):
        assert label.width() <= body.width() and _fits(label), label.text()

"""Issue 14, finding 11 in the Train widget: deleting the noisy layer stops training, and
the time left stops counting once Stop is pressed."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import test_napari_train_widget as trainer  # noqa: E402

counting_stops, tiny_widget, wait_idle = (
    trainer.counting_stops,
    trainer.tiny_widget,
    trainer.wait_idle,
)
model_dir, notes, pair = trainer.model_dir, trainer.notes, trainer.pair  # fixtures

WAIT = 120_000


def test_deleting_the_noisy_layer_stops_training(
    make_napari_viewer,
    qtbot,
    model_dir,
    notes,
    pair,
    monkeypatch,
):
    started = counting_stops(monkeypatch)
    viewer = make_napari_viewer()
    widget = tiny_widget(viewer, pair, steps=100_000, name="tiny-deleted")
    widget.apply.setChecked(False)
    assert widget.start()
    qtbot.waitUntil(lambda: len(started) >= 3, timeout=WAIT)
    viewer.layers.remove("noisy")
    before = len(started)
    wait_idle(qtbot, widget)
    assert len(started) <= before + 1
    assert "deleted" in widget.status.text()


def test_the_time_left_stops_counting_after_stop(
    make_napari_viewer,
    qtbot,
    model_dir,
    notes,
    pair,
    monkeypatch,
):
    started = counting_stops(monkeypatch)
    viewer = make_napari_viewer()
    widget = tiny_widget(viewer, pair, steps=100_000, name="tiny-eta")
    widget.apply.setChecked(False)
    assert widget.start()
    qtbot.waitUntil(lambda: len(started) >= 3, timeout=WAIT)
    qtbot.waitUntil(lambda: "left" in widget.eta.text(), timeout=WAIT)
    widget.stop_button.click()
    tick = widget.runner.last
    widget._on_progress(tick)  # a tick that arrives between Stop and the end
    assert "left" not in widget.eta.text() and "stopping" in widget.eta.text()
    wait_idle(qtbot, widget)
    assert "left" not in widget.eta.text()

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


def test_preparing_says_what_it_does_and_how_far_it_is(
    make_napari_viewer, qtbot, model_dir, notes, pair, monkeypatch
):
    """Issue 25, point 3: before the first step, the widget shows each phase (counted)."""
    from napari_denoise._qt import _train_widget as widget_module
    from napari_denoise.engine.training import finetune

    shown = []  # (eta text, bar value, bar maximum) for each phase, before any step
    real = widget_module.TrainWidget._on_phase

    def on_phase(self, phase):
        real(self, phase)
        if self.runner.last is None:
            shown.append((self.eta.text(), self.progress.value(), self.progress.maximum()))

    monkeypatch.setattr(widget_module.TrainWidget, "_on_phase", on_phase)
    viewer = make_napari_viewer()
    widget = tiny_widget(viewer, pair, steps=3, name="tiny-phases")
    widget.budget_unit.setCurrentText("minutes")
    widget.extra_spec["minutes"] = 0.02  # a time budget: timed first, then trained
    widget.apply.setChecked(False)
    assert widget.start()
    wait_idle(qtbot, widget)
    assert notes["error"] == []
    preparing = [text for text, *_ in shown if text.startswith("Preparing: ")]
    timing = [(text, value, top) for text, value, top in shown if text.startswith("Timing")]
    assert len(preparing) == 4 and "4 of 4" in preparing[-1]  # supervised: no blind spot
    assert len(timing) == finetune.PROBE_STEPS + 2
    assert all("not counted in your time" in text for text, *_ in timing)
    assert [value for _, value, _ in timing] == list(range(finetune.PROBE_STEPS + 2))
    assert widget.runner.phases >= len(shown) and widget.runner.ticks >= 1

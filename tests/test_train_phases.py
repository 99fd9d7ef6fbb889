"""Issue 25, point 3 (training): no silent waits, and the time budget is the training's.

Every part of a run before its first step (and after its last) is reported as a
:class:`~napari_denoise.engine.training.options.Phase` saying what it does and how far it
is; timing the computer to turn minutes into steps is a one-time cost, said as such, and
the time budget the user asked for starts with the first training step.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_denoise.engine.denoise.pipeline import drain
from napari_denoise.engine.training import finetune
from napari_denoise.engine.training.finetune import (
    FinetuneSpec,
    Phase,
    finetune_iter,
    prepare_iter,
    steps_for_budget,
)

TINY = {"start": "new:unet", "config": {"base": 8}, "patch": 32, "batch_size": 2}


@pytest.fixture
def image(fmd_pair):
    return fmd_pair[0][200:296, 200:296].astype(np.float32)


def _events(gen):
    events = []
    result = drain(gen, events.append)
    return result, events


def test_preparing_reports_each_phase_with_its_count(image, user_dir):
    prepared, events = _events(prepare_iter(FinetuneSpec(mode="n2v", steps=2, **TINY), image))
    assert prepared.name and all(isinstance(e, Phase) for e in events)
    assert [e.done for e in events] == [1, 2, 3, 4, 5] and {e.total for e in events} == {5}
    assert all(
        e.message.startswith("Preparing: ") and "5 of 5" in events[-1].message for e in events
    )


def test_timing_is_reported_step_by_step_as_a_one_time_cost(image, user_dir):
    prepared, _ = _events(prepare_iter(FinetuneSpec(mode="n2v", minutes=0.01, **TINY), image))
    result, events = _events(finetune_iter(prepared))
    first_step = next(i for i, e in enumerate(events) if not isinstance(e, Phase))
    timing = [e for e in events[:first_step] if e.one_time]
    assert "first of" in events[first_step - 1].what  # the slow first step is said too
    total = finetune.PROBE_STEPS + 1  # the steps timed, then one validation
    assert [e.done for e in timing] == list(range(total + 1))  # announced, then each part
    assert all(e.one_time and e.total == total for e in timing)
    assert "not counted in your time" in timing[0].message
    after = [e for e in events[first_step:] if isinstance(e, Phase)]
    assert after and "Saving" in after[-1].what  # the end is said too
    assert result.card["training"]["timing_seconds"] >= 0


def test_the_time_budget_starts_with_the_first_step(image, user_dir, monkeypatch):
    slow = 1.5  # seconds of one-time timing (a slow first run, a busy machine)

    def slow_probe(prepared, stop):
        yield Phase(finetune.PROBE_WHAT, 0, 1, one_time=True)
        time.sleep(slow)
        return 0.01, 0.0  # seconds per step and per validation

    monkeypatch.setattr(finetune, "_probe", slow_probe)
    minutes = 0.03  # a 1.8 s budget
    prepared, _ = _events(prepare_iter(FinetuneSpec(mode="n2v", minutes=minutes, **TINY), image))
    result, _ = _events(finetune_iter(prepared))
    training = result.card["training"]
    # All of the budget is for steps: the timing took nothing from it.
    assert training["steps_planned"] == steps_for_budget(60 * minutes, 0.01, 0.0)
    assert 0.95 * 60 * minutes / 0.01 - 2 <= training["steps_planned"] <= 0.95 * 60 * minutes / 0.01
    assert training["timing_seconds"] >= slow

"""A time budget turned into steps: timing a few steps and a validation first.

:func:`probe` trains a throw-away copy of the start network for :data:`PROBE_STEPS`
steps and runs one validation, yielding a one-time :class:`~.options.Phase` per step (a
cost the budget does not pay for); :func:`steps_for_budget` turns the seconds measured
into the steps (with :data:`VALIDATIONS` validations) that fill the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from .finetune_start import start_network
from .options import FRAME_MODES, Phase

if TYPE_CHECKING:
    from .finetune_data import Prepared

__all__ = [
    "DEFAULT_MINUTES",
    "PROBE_STEPS",
    "PROBE_WHAT",
    "VALIDATIONS",
    "probe",
    "steps_for_budget",
]

DEFAULT_MINUTES = 2.0
VALIDATIONS = 10  # per run
PROBE_STEPS = 8  # timed steps that turn a time budget into steps

PROBE_WHAT = "Timing a few steps to fit your time budget"


def probe(
    prepared: Prepared, stop: Callable[[], bool]
) -> Generator[Phase, None, tuple[float, float]]:
    """Seconds per training step and per validation, measured on a throw-away copy;
    yields a one-time :class:`~.options.Phase` per step timed."""
    from .blindspot import masked_validation_loss, masked_validation_set
    from .loop import train_iter, validate

    total = PROBE_STEPS + 1  # the steps, then one validation
    yield Phase(PROBE_WHAT, 0, total, one_time=True)
    model = start_network(prepared.model, prepared.spec)
    times = []
    # No patience, and the loop's own cadences: the steps are timed, not validated.
    config = prepared.run_config(PROBE_STEPS, patience=None, val_every=None, checkpoint_every=None)
    for tick in train_iter(model, prepared.sampler, config, stop=stop):
        times.append(tick.seconds)
        yield Phase(PROBE_WHAT, tick.step, total, one_time=True)
    if len(times) < 3:
        return float("nan"), 0.0
    per_step = (times[-1] - times[1]) / (len(times) - 2)  # the first steps set up kernels
    start = time.perf_counter()
    if prepared.val_pairs:
        validate(model, prepared.val_pairs)
    elif prepared.val_images and prepared.spec.mode in FRAME_MODES:
        from .frame_pairs import frame_validation_loss

        frame_validation_loss(model, prepared.val_images)
    elif prepared.val_images:
        # Built once per run, not per validation: not part of a validation's time.
        triples = masked_validation_set(
            prepared.val_images, multiple=int(model.multiple), radius=prepared.blind_radius
        )
        start = time.perf_counter()
        masked_validation_loss(model, triples, loss=prepared.spec.loss)
    per_val = time.perf_counter() - start
    yield Phase(PROBE_WHAT, total, total, one_time=True)
    return per_step, per_val


def steps_for_budget(budget_s: float, per_step: float, per_val: float) -> int:
    """How many steps (with :data:`VALIDATIONS` validations) fill ``budget_s`` seconds of
    training. The budget is the training's own: preparing and timing are not taken out
    of it (they are reported as they happen)."""
    if not math.isfinite(per_step) or per_step <= 0:
        return PROBE_STEPS
    return max(1, int(0.95 * (budget_s - VALIDATIONS * per_val) / per_step))

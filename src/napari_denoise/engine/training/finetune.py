"""Fine-tune or train a model on the user's own data: the API behind the Train widget and CLI.

Two calls::

    prepared = prepare(FinetuneSpec(mode="n2v", minutes=2), noisy)      # checks, splits
    for tick in finetune_iter(prepared, stop=should_stop):               # trains, saves
        print(tick.message)

The :class:`FinetuneSpec` checks its settings when it is made (:mod:`.config`);
:func:`prepare` checks everything else that can be wrong before any training starts
(shapes, regions, the start model, the patch against the network) and raises
:class:`~napari_denoise.errors.InputError` or :class:`~napari_denoise.errors.ParameterError`
with a sentence saying what to change.
It cuts the data into training rectangles and *spatially disjoint* validation stripes,
normalised as the zoo normalises at inference, a clean image aligned to the noisy one
(:mod:`.split`).

:func:`prepare_iter` is the same with a :class:`~.options.Phase` yielded before each part
(so an interface never waits in silence). :func:`finetune_iter` is a generator: it runs
:func:`~.loop.train_iter` (the one training loop), yields its
:class:`~.loop.TrainProgress` ticks (and phases before and after them), and returns a
:class:`FinetuneResult` after saving the best weights and a model card in the user's
model folder (:mod:`.card`) and re-registering the models, so the new model is
a method at once. It is what a napari ``thread_worker`` runs: no thread or queue of its
own, and ``stop`` ends it within one step (the model is still saved, marked as stopped
early).

Modes (see :mod:`.blindspot`): ``"supervised"`` (noisy/clean pairs), ``"n2v"``
(Noise2Void, Krull et al. 2019), ``"n2v2"`` (Höck et al. 2022) and ``"n2v-psf"`` (blind
spot with a Gaussian PSF and a positivity penalty, Goncharova et al. 2020; saved as a
:mod:`..models.psf_wrap` network that returns the denoised image, plus a second card
``<name>-deconvolved`` that returns the deconvolved estimate).

The parts live beside this module, one concern each: the settings record
(:mod:`.config`), the start model (:mod:`.finetune_start`), the new model's name
(:mod:`.finetune_names`), checks and data preparation (:mod:`.finetune_data`), the time
budget (:mod:`.finetune_budget`) and the no-ground-truth comparison
(:mod:`.finetune_check`). This module runs and saves, and keeps the public names
importable from here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import Cancelled, ParameterError
from .card import training_card
from .config import MIN_PATCH, FinetuneSpec, TrainConfig
from .finetune_budget import (
    DEFAULT_MINUTES,
    PROBE_STEPS,
    PROBE_WHAT,
    VALIDATIONS,
    steps_for_budget,
)
from .finetune_budget import probe as _probe  # a module global: tests replace it
from .finetune_check import SELFCHECK_MIN_SIDE, SELFCHECK_MODES, compare_with_start
from .finetune_data import Prepared, prepare, prepare_iter, threads_for
from .finetune_names import NAME_SUFFIX, claim_name
from .finetune_start import start_network
from .options import Phase

if TYPE_CHECKING:
    from .loop import TrainProgress

__all__ = [
    "DEFAULT_MINUTES",
    "MIN_PATCH",
    "NAME_SUFFIX",
    "PROBE_STEPS",
    "PROBE_WHAT",
    "SELFCHECK_MIN_SIDE",
    "SELFCHECK_MODES",
    "VALIDATIONS",
    "FinetuneResult",
    "FinetuneSpec",
    "Phase",
    "Prepared",
    "TrainConfig",
    "compare_with_start",
    "finetune_iter",
    "prepare",
    "prepare_iter",
    "steps_for_budget",
]


@dataclass
class FinetuneResult:
    """A trained and saved model.

    recommendation : after self-supervised fine-tuning of a trained model, a sentence
    saying which of the new and the start model the no-ground-truth check
    (:func:`compare_with_start`) found better on the held-out stripes (None if not run).
    name : its method name; card : the saved card; path : the card file (``.json``);
    model : the network (eval mode); stopped : True when it ended before its steps
    (Stop, time budget or early stopping; the card says which); registered : whether it
    is now a method (it is when saved in the user model folder); deconvolved_path : for
    "n2v-psf", the card of the ``<name>-deconvolved`` twin.
    """

    name: str
    card: dict[str, Any]
    path: Path
    model: Any
    stopped: bool = False
    registered: bool = False
    deconvolved_path: Path | None = None
    recommendation: str | None = None  # the no-ground-truth check's advice, if any


def finetune_iter(
    prepared: Prepared,
    *,
    stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    out_dir: str | os.PathLike | None = None,
) -> Generator[TrainProgress | Phase, None, FinetuneResult]:
    """Train as :func:`prepare` set up; yield progress; save and register the model.

    Parameters
    ----------
    prepared : Prepared
        From :func:`prepare`; may be trained more than once (the start network is copied).
    stop : callable, optional
        Checked before every step; True ends training within one step. The best weights
        so far are saved (the card records ``"stopped_early": true``) and the checkpoint
        is kept, so ``resume=True`` can continue. Stopped before the first step, it
        raises :class:`~napari_denoise.errors.Cancelled` and saves nothing.
    checkpoint : path, optional
        Stem of the checkpoint files; default ``<out_dir>/.checkpoints/<name>`` (removed
        after a run that completes).
    resume : bool
        Continue from the checkpoint (its step count replaces ``steps``/``minutes``).
    out_dir : path, optional
        Where the model is saved; default :func:`~..models.store.user_model_dir`, whose models are
        registered as methods at once.

    Yields
    ------
    TrainProgress or Phase
        After every step (:class:`~.loop.TrainProgress`: step, loss, validation, ETA);
        before the first step and after the last, a :class:`~.options.Phase` saying what
        is being done (timing the computer for a time budget, a one-time cost that the
        budget does not pay for: its clock starts with the first step; checking; saving).

    Returns
    -------
    FinetuneResult

    Raises
    ------
    WriteError
        Before any training: the model folder cannot be written, or the name (a name
        given in ``prepared``) is being trained or saved by another run right now. The
        name is held by this run from then until the model is saved
        (:func:`~..models.store.claim_model_name`), so two runs never save under one name.
    """
    from ..models import store

    folder = Path(out_dir) if out_dir is not None else store.user_model_dir()
    with contextlib.ExitStack() as held:
        name = claim_name(prepared, folder, checkpoint, resume, held)
        return (
            yield from _finetune_named(
                prepared, name, folder, stop=stop, checkpoint=checkpoint, resume=resume
            )
        )


def _finetune_named(
    prepared: Prepared,
    name: str,
    folder: Path,
    *,
    stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
) -> Generator[TrainProgress, None, FinetuneResult]:
    """Train and save as :func:`finetune_iter`, under the held ``name`` in ``folder``."""
    import torch

    from ..models import registry, store
    from .loop import train_iter

    spec = prepared.spec
    ckpt = Path(checkpoint) if checkpoint is not None else folder / ".checkpoints" / name
    default_ckpt = checkpoint is None
    user_stop = stop or (lambda: False)
    t_start = time.perf_counter()

    steps = spec.steps
    budget = None
    if resume and not ckpt.with_suffix(".json").exists():
        raise ParameterError(
            f"Nothing to resume: there is no checkpoint {ckpt.with_suffix('.json')}; start "
            "without resuming, or name the checkpoint of the run to continue."
        )
    probe_seconds = 0.0
    if resume:
        steps = int(json.loads(ckpt.with_suffix(".json").read_text(encoding="utf-8"))["steps"])
    elif steps is None:
        budget = 60.0 * (spec.minutes if spec.minutes is not None else DEFAULT_MINUTES)
        per_step, per_val = yield from _probe(prepared, user_stop)
        probe_seconds = time.perf_counter() - t_start
        steps = steps_for_budget(budget, per_step, per_val)

    timed_out = False
    first_step: float | None = None  # the time budget is counted from the first step

    def should_stop() -> bool:
        nonlocal timed_out, first_step
        if user_stop():
            return True
        now = time.perf_counter()
        first_step = now if first_step is None else first_step
        if budget is not None and now - first_step > 1.1 * budget + 2.0:
            timed_out = True
            return True
        return False

    # The first step also sets the network up: on a busy computer it can take seconds.
    yield Phase(f"Training: running the first of {steps} steps")
    model = start_network(prepared.model, spec)
    config = prepared.run_config(
        steps,
        val_every=spec.val_every or max(1, steps // VALIDATIONS),
        checkpoint_every=spec.checkpoint_every or max(1, min(500, steps // 4)),
    )
    outcome = yield from train_iter(
        model,
        prepared.sampler,
        config,
        val_pairs=prepared.val_pairs or None,
        val_images=prepared.val_images or None,
        stop=should_stop,
        checkpoint=ckpt,
        resume=resume,
    )
    seconds = time.perf_counter() - t_start
    model = outcome.model
    if outcome.steps_done == 0:
        raise Cancelled("Training was stopped before its first step; no model was saved.")

    reason = outcome.stop_reason
    if reason == "stopped" and timed_out:
        reason = "time budget"
    stopped = outcome.steps_done < steps
    card = training_card(
        prepared,
        outcome,
        name=name,
        steps=steps,
        seconds=seconds,
        reason=reason,
        stopped=stopped,
        checkpoint=ckpt,
        threads=threads_for(spec) or torch.get_num_threads(),
    )
    if probe_seconds:  # spent before the budget's clock started
        card["training"]["timing_seconds"] = round(probe_seconds, 1)
    if spec.mode in SELFCHECK_MODES and prepared.start_card is not None:
        begun = prepared.started_from.get("name")
        yield Phase(f"Checking without ground truth whether '{name}' is better than '{begun}'")
    check = compare_with_start(prepared, model, name=name)
    if check is not None:
        card["training"]["selfcheck"] = check
    yield Phase(f"Saving '{name}' in your model folder")
    path = folder / f"{name}.json"
    saved = store.save_model(model, card, path, overwrite=resume)  # (the name is held)
    deconvolved_path = None
    if spec.mode == "n2v-psf":
        twin = f"{name}-deconvolved"
        twin_model = copy.deepcopy(model)  # the same weights, returning the estimate before the PSF
        twin_model.config.output = "deconvolved"
        twin_card = dict(card, name=twin, title=card["title"] + ", deconvolved estimate")
        twin_card["psf"] = dict(card["psf"], output="deconvolved", denoised_model=name)
        twin_card["description"] = (
            "The deconvolved estimate (network output before the PSF) of " + card["description"]
        )
        store.save_model(twin_model, twin_card, folder / f"{twin}.json", overwrite=resume)
        deconvolved_path = folder / f"{twin}.json"
    if default_ckpt and not stopped:  # nothing left to resume
        for suffix in (".json", ".safetensors"):
            ckpt.with_suffix(suffix).unlink(missing_ok=True)
        try:
            ckpt.parent.rmdir()
        except OSError:  # other runs' checkpoints are still there
            pass
    registered = False
    if folder.resolve() == store.user_model_dir().resolve():
        registry.register_models()
        from ..methods import is_registered

        registered = is_registered(name)
    return FinetuneResult(
        name=name,
        card=saved,
        path=path,
        model=model,
        stopped=stopped,
        registered=registered,
        deconvolved_path=deconvolved_path,
        recommendation=None if check is None else check["message"],
    )

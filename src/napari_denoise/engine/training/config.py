"""The training settings as one record, checked once, shared by every way of training.

:class:`TrainConfig` holds how a training run goes (mode, loss, length, patches, learning
rate, seed, blind spots, PSF, validation and checkpoint cadence); :func:`~.loop.train_iter`
takes it. :class:`FinetuneSpec` is the same record with what a fine-tuning request adds
(the start model, the new name, a time budget, the validation share, a new network's
options); the CLI's ``train`` command and the Train widget build it from their controls,
by field name, and :func:`~.finetune.prepare` / :func:`~.finetune.finetune_iter` take it.

Both records are frozen and check their values when they are made: a bad value raises
:class:`~napari_denoise.errors.ParameterError` with one sentence naming the setting, the
range and the value given, before any data is read or any training starts. Values that
are chosen later (the learning rate, the blind-spot radius, the number of steps of a
time budget) are filled in with :func:`dataclasses.replace`, which checks them again.

No torch here: the Train widget builds the record on the GUI thread.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ParameterError
from .options import (
    BLIND_MODES,
    DEFAULT_MASK_FRACTION,
    FRAME_MODES,
    LOSS_NAMES,
    MAX_BLIND_RADIUS,
    MAX_FRACTION,
    MIN_FRACTION,
    MODE_LABELS,
    MODES,
    SELF_SUPERVISED_LOSSES,
)

__all__ = ["LOOP_SETTINGS", "MIN_PATCH", "FinetuneSpec", "TrainConfig"]

MIN_PATCH = 16  # the smallest patch a fine-tuning request may ask for
# Settings of the loop itself, chosen from the length of the run unless given.
LOOP_SETTINGS = ("val_every", "checkpoint_every", "warmup", "grad_clip", "bf16")


def _whole(value, low: int) -> bool:
    return isinstance(value, numbers.Integral) and value >= low


def _within(value, low: float, high: float, closed_low: bool = True) -> bool:
    try:
        return (low <= value if closed_low else low < value) and value <= high
    except TypeError:  # None or a string where a number belongs
        return False


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train: the settings of :func:`~.loop.train_iter`, checked when made.

    mode : "supervised", "n2v", "n2v2", "n2v-psf" or "n2n-frames" (Noise2Noise between
        neighbouring planes of a noisy stack, :mod:`.frame_pairs`).
    loss : "l1", "l2" or "l1+ssim" (supervised only: the blind-spot loss sees single pixels;
        "n2n-frames" only "l2": a noisy target teaches its mean under the squared error
        alone); None: "l2" for "n2n-frames", else "l1".
    steps : optimisation steps (needed by :func:`~.loop.train_iter`; a
        :class:`FinetuneSpec` may leave it None for a time budget).
    batch_size, patch : patches per step and patch side in pixels.
    lr : peak learning rate (linear warm-up, then cosine decay to 1%); None: 1e-3 (a
        :class:`FinetuneSpec` chooses from the start model).
    seed : seeds the patch sampler, the augmentation and the blind-spot masks.
    threads : torch threads while training; None: the process's count (a
        :class:`FinetuneSpec`: ``NAPARI_DENOISE_THREADS`` or all cores).
    patience : stop once this many validations in a row did not improve on the best.
    mask_fraction : share of blind-spot pixels per patch (blind-spot modes).
    blind_radius : 0 hides one pixel, ``r`` (1-3) the ``(2r+1)``-square around it; None:
        0 for :func:`~.loop.train_iter`, chosen from the noise by a :class:`FinetuneSpec`.
    psf_sigma, positivity : the Gaussian PSF width in pixels and the weight of the penalty
        on negative values ("n2v-psf").
    val_every : steps between validations; None: every ``max(50, steps // 20)`` steps
        (fine-tuning: 10 validations per run).
    checkpoint_every : steps between checkpoints; None: 500 (fine-tuning: a quarter of
        the run, at most 500).
    warmup : steps of linear warm-up; None: ``min(200, max(1, steps // 20))``.
    grad_clip : gradient-norm clip; None or 0: no clipping.
    bf16 : bf16 autocast (on the CPU only worth it where it measures faster).
    """

    mode: str = "supervised"
    loss: str | None = None  # filled in from the mode when made
    steps: int | None = None
    batch_size: int = 16
    patch: int = 64
    lr: float | None = None
    seed: int = 0
    threads: int | None = None
    patience: int | None = None
    mask_fraction: float = DEFAULT_MASK_FRACTION
    blind_radius: int | None = None
    psf_sigma: float = 1.0
    positivity: float = 1.0
    val_every: int | None = None
    checkpoint_every: int | None = None
    warmup: int | None = None
    grad_clip: float | None = 1.0
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.loss is None:  # the mode's own loss (a frozen record: set once, here)
            object.__setattr__(self, "loss", "l2" if self.mode in FRAME_MODES else "l1")
        self._check_choices()
        for key, (ok, wanted) in self._rules().items():
            if not ok:
                raise ParameterError(
                    f"Invalid training setting: {key} must be {wanted}, not {getattr(self, key)!r}."
                )

    @property
    def blind(self) -> bool:
        """Whether this is blind-spot (self-supervised) training."""
        return self.mode in BLIND_MODES

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings this record holds, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]):
        """The record from a mapping of setting names (a form's values, a JSON object);
        a name the record does not hold is refused in one sentence, not a TypeError."""
        unknown = sorted(set(settings) - set(cls.field_names()))
        if unknown:
            raise ParameterError(
                f"Unknown training setting {unknown[0]!r}; the settings are "
                f"{', '.join(cls.field_names())}."
            )
        return cls(**settings)

    def loop_changes(self) -> dict[str, Any]:
        """The loop's own settings (cadences, warm-up, clipping, bf16: no CLI option
        sets them) that differ from their defaults."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(TrainConfig)
            if f.name in LOOP_SETTINGS and getattr(self, f.name) != f.default
        }

    def filled(self):
        """The record with the loop's defaults filled in, as :func:`~.loop.train_iter`
        runs it: the learning rate (1e-3), blind-spot radius (0), validation, checkpoint
        and warm-up cadences (from ``steps``, which must be given)."""
        if self.steps is None:
            raise ParameterError(
                "Invalid training setting: steps must be a whole number of at least 1 to "
                "train, not None."
            )
        steps = self.steps
        return dataclasses.replace(
            self,
            lr=1e-3 if self.lr is None else self.lr,
            blind_radius=self.blind_radius or 0,
            val_every=self.val_every or max(50, steps // 20),
            checkpoint_every=self.checkpoint_every or 500,
            warmup=min(200, max(1, steps // 20)) if self.warmup is None else max(1, self.warmup),
        )

    def _check_choices(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(
                f"Unknown training mode '{self.mode}'; choose one of {', '.join(MODES)}."
            )
        if self.loss not in LOSS_NAMES:
            raise ParameterError(
                f"Unknown loss '{self.loss}'; choose one of {', '.join(LOSS_NAMES)}."
            )
        if self.blind and self.loss not in SELF_SUPERVISED_LOSSES:
            raise ParameterError(
                f"Loss '{self.loss}' needs clean images; {MODE_LABELS[self.mode]} (blind-spot "
                "training) compares single masked pixels, so use 'l1' or 'l2'."
            )
        if self.mode in FRAME_MODES and self.loss != "l2":
            raise ParameterError(
                f"Loss '{self.loss}' does not fit {MODE_LABELS[self.mode]}: a noisy neighbour "
                "teaches the clean image only as the mean of the squared error, so use 'l2'."
            )

    def _rules(self) -> dict[str, tuple[bool, str]]:
        """Setting -> (whether its value is allowed, what is allowed in words)."""
        whole = "a whole number of at least 1"
        return {
            "steps": (self.steps is None or _whole(self.steps, 1), whole),
            "batch_size": (_whole(self.batch_size, 1), whole),
            "patch": (_whole(self.patch, 1), whole),
            # 0 is allowed here: the weights then stay as they are (a test of validation).
            "lr": (self.lr is None or _within(self.lr, 0, math.inf), "zero or positive"),
            "seed": (_whole(self.seed, 0), "a whole number of at least 0"),
            "threads": (self.threads is None or _whole(self.threads, 1), "at least 1"),
            "patience": (self.patience is None or _whole(self.patience, 1), "at least 1"),
            "mask_fraction": (
                _within(self.mask_fraction, MIN_FRACTION, MAX_FRACTION),
                f"between {MIN_FRACTION} and {MAX_FRACTION}",
            ),
            "blind_radius": (
                self.blind_radius is None
                or (_whole(self.blind_radius, 0) and self.blind_radius <= MAX_BLIND_RADIUS),
                f"a whole number from 0 to {MAX_BLIND_RADIUS}",
            ),
            "psf_sigma": (_within(self.psf_sigma, 0, 10, False), "in (0, 10] pixels"),
            "positivity": (_within(self.positivity, 0, math.inf), "zero or positive"),
            "val_every": (self.val_every is None or _whole(self.val_every, 1), whole),
            "checkpoint_every": (
                self.checkpoint_every is None or _whole(self.checkpoint_every, 1),
                whole,
            ),
            "warmup": (self.warmup is None or _whole(self.warmup, 0), "zero or more steps"),
            "grad_clip": (
                self.grad_clip is None or _within(self.grad_clip, 0, math.inf),
                "zero or positive",
            ),
            "bf16": (isinstance(self.bf16, bool), "true or false"),
        }


@dataclass(frozen=True, kw_only=True)
class FinetuneSpec(TrainConfig):
    """What to train and how: a :class:`TrainConfig` with what a fine-tuning request adds.

    start : a zoo model name or card path to start from, or ``"new:<architecture>"``
        (e.g. ``"new:unet"``) for a freshly initialised network (``config`` sets its size).
    name : name of the new model; derived from ``start`` and ``mode`` when None.
    steps, minutes : length of training; ``minutes`` is a time budget turned into steps
        after timing a few; both None means 2 minutes.
    lr : peak learning rate; None means 3e-4 for supervised fine-tuning of a trained
        model, 1e-3 from scratch and for the blind-spot modes.
    val_fraction : share of each region held out for validation (0 for none).
    blind_radius : None chooses from the noisy data
        (:func:`~.blindspot.blind_radius_for`: 0 unless the noise is correlated).
    config : architecture options for ``"new:..."`` (e.g. ``{"base": 16, "depth": 3}``).
    threads : CPU threads (default: ``NAPARI_DENOISE_THREADS`` or all cores).

    The other fields are :class:`TrainConfig`'s. A request asks more than the loop: a
    patch of at least 16 pixels and a positive learning rate.
    """

    start: str = "unet-fluo"
    name: str | None = None
    minutes: float | None = None
    val_fraction: float = 0.1
    config: dict[str, Any] | None = None

    def _rules(self) -> dict[str, tuple[bool, str]]:
        return {
            **super()._rules(),
            "minutes": (
                self.minutes is None or _within(self.minutes, 0, math.inf, False),
                "positive",
            ),
            "patch": (_whole(self.patch, MIN_PATCH), f"a whole number of at least {MIN_PATCH}"),
            "lr": (self.lr is None or _within(self.lr, 0, math.inf, False), "positive"),
            "val_fraction": (_within(self.val_fraction, 0, 0.5), "between 0 and 0.5"),
            "config": (self.config is None or isinstance(self.config, dict), "a dict"),
            "start": (isinstance(self.start, str), "a model name or new:ARCHITECTURE"),
        }

"""Fine-tune or train a model on the user's own data: the API behind the Train widget and CLI.

Two calls::

    prepared = prepare(FinetuneSpec(mode="n2v", minutes=2), noisy)      # checks, splits
    for tick in finetune_iter(prepared, stop=should_stop):               # trains, saves
        print(tick.message)

:func:`prepare` checks everything that can be wrong before any training starts (shapes,
regions, the start model, parameters) and raises :class:`~napari_denoise.errors.InputError`
or :class:`~napari_denoise.errors.ParameterError` with a sentence saying what to change.
It cuts the data into training rectangles and *spatially disjoint* validation stripes,
normalised as the zoo normalises at inference, a clean image aligned to the noisy one
(:mod:`.split`).

:func:`finetune_iter` is a generator: it runs :func:`~.loop.train_iter` (the one
training loop), yields its :class:`~.loop.TrainProgress` ticks, and returns a
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
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import re
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import Cancelled, InputError, ParameterError, UnknownMethodError
from .card import MODE_LABELS, training_card
from .split import CropSampler, as_slices, split_images

if TYPE_CHECKING:
    from .loop import TrainProgress

__all__ = ["FinetuneResult", "FinetuneSpec", "Prepared", "finetune_iter", "prepare"]

NAME_SUFFIX = {"supervised": "ft", "n2v": "n2v", "n2v2": "n2v2", "n2v-psf": "n2v-psf"}
DEFAULT_MINUTES = 2.0
VALIDATIONS = 10  # per run
PROBE_STEPS = 8  # timed steps that turn a time budget into steps
MIN_PATCH = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")


@dataclass
class FinetuneSpec:
    """What to train and how.

    mode : "supervised", "n2v", "n2v2" or "n2v-psf".
    start : a zoo model name or card path to start from, or ``"new:<architecture>"``
        (e.g. ``"new:unet"``) for a freshly initialised network (``config`` sets its size).
    name : name of the new model; derived from ``start`` and ``mode`` when None.
    steps, minutes : length of training; ``minutes`` is a time budget turned into steps
        after timing a few; both None means 2 minutes.
    lr : peak learning rate; None means 3e-4 for supervised fine-tuning of a trained
        model, 1e-3 from scratch and for the blind-spot modes.
    loss : "l1", "l2" or "l1+ssim" (supervised only).
    val_fraction : share of each region held out for validation (0 for none).
    patience : stop after this many validations without improvement.
    psf_sigma, positivity : the PSF width in pixels and the weight of the penalty on
        negative values ("n2v-psf").
    mask_fraction : share of blind-spot pixels per patch (blind-spot modes).
    blind_radius : blind-spot modes: 0 hides one pixel, ``r`` (1-3) the ``(2r+1)``-square
        around it, for spatially correlated noise; None chooses from the noisy data
        (:func:`~.blindspot.blind_radius_for`: 0 unless the noise is correlated).
    config : architecture options for ``"new:..."`` (e.g. ``{"base": 16, "depth": 3}``).
    threads : CPU threads (default: ``NAPARI_DENOISE_THREADS`` or all cores).
    """

    mode: str = "supervised"
    start: str = "unet-fluo"
    name: str | None = None
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 16
    patch: int = 64
    lr: float | None = None
    loss: str = "l1"
    seed: int = 0
    val_fraction: float = 0.1
    patience: int | None = None
    psf_sigma: float = 1.0
    positivity: float = 1.0
    threads: int | None = None
    mask_fraction: float = 1 / 64
    blind_radius: int | None = None
    config: dict[str, Any] | None = None


@dataclass
class Prepared:
    """Checked training and validation data and the start model (from :func:`prepare`)."""

    spec: FinetuneSpec
    name: str
    name_given: bool
    model: Any  # the start network (copied before training)
    start_card: dict[str, Any] | None
    started_from: dict[str, Any]
    lr: float
    sampler: Any
    val_pairs: list[tuple[np.ndarray, np.ndarray]]
    val_images: list[np.ndarray]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    blind_radius: int = 0


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


# --- checking the request -------------------------------------------------------------------


def _check_spec(spec: FinetuneSpec) -> None:
    from .options import (
        BLIND_MODES,
        MAX_BLIND_RADIUS,
        MAX_FRACTION,
        MIN_FRACTION,
        MODES,
    )
    from .options import LOSS_NAMES as LOSSES

    if spec.mode not in MODES:
        raise ParameterError(
            f"Unknown training mode '{spec.mode}'; choose one of {', '.join(MODES)}."
        )
    if spec.loss not in LOSSES:
        raise ParameterError(f"Unknown loss '{spec.loss}'; choose one of {', '.join(LOSSES)}.")
    if spec.mode in BLIND_MODES and spec.loss not in ("l1", "l2"):
        raise ParameterError(
            f"Loss '{spec.loss}' needs clean images; {MODE_LABELS[spec.mode]} compares single "
            "masked pixels, so use 'l1' or 'l2'."
        )
    rules = [
        ("steps", spec.steps is None or _whole(spec.steps, 1), "a whole number of at least 1"),
        ("minutes", spec.minutes is None or _within(spec.minutes, 0, math.inf, False), "positive"),
        ("batch_size", _whole(spec.batch_size, 1), "a whole number of at least 1"),
        ("patch", _whole(spec.patch, MIN_PATCH), f"a whole number of at least {MIN_PATCH}"),
        ("lr", spec.lr is None or _within(spec.lr, 0, math.inf, False), "positive"),
        ("val_fraction", _within(spec.val_fraction, 0, 0.5), "between 0 and 0.5"),
        ("patience", spec.patience is None or _whole(spec.patience, 1), "at least 1"),
        ("psf_sigma", _within(spec.psf_sigma, 0, 10, False), "in (0, 10] pixels"),
        ("positivity", _within(spec.positivity, 0, math.inf), "zero or positive"),
        ("threads", spec.threads is None or _whole(spec.threads, 1), "at least 1"),
        (
            "mask_fraction",
            _within(spec.mask_fraction, MIN_FRACTION, MAX_FRACTION),
            f"between {MIN_FRACTION} and {MAX_FRACTION}",
        ),
        (
            "blind_radius",
            spec.blind_radius is None
            or (_whole(spec.blind_radius, 0) and spec.blind_radius <= MAX_BLIND_RADIUS),
            f"a whole number from 0 to {MAX_BLIND_RADIUS}",
        ),
        ("seed", _whole(spec.seed, 0), "a whole number of at least 0"),
    ]
    for key, ok, wanted in rules:
        if not ok:
            raise ParameterError(
                f"Invalid training setting: {key} must be {wanted}, not {getattr(spec, key)!r}."
            )
    if spec.config is not None and not isinstance(spec.config, dict):
        raise ParameterError(
            f"Invalid training setting: config must be a dict, not {spec.config!r}."
        )


def _whole(value, low: int) -> bool:
    return isinstance(value, numbers.Integral) and value >= low


def _within(value, low: float, high: float, closed_low: bool = True) -> bool:
    try:
        return (low <= value if closed_low else low < value) and value <= high
    except TypeError:  # None or a string where a number belongs
        return False


# --- the start model ------------------------------------------------------------------------


MAX_CONFIG_INT = 4096  # channels, blocks, depth: anything larger cannot be meant


def _checked_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` for a new ``arch`` network, each value checked against the type of its
    field's default (whole numbers 1 to 4096 (0 allowed where the default is 0 or a
    depth), true/false, positive finite numbers, lists of whole numbers); lists become
    tuples. Unknown keys are left to :func:`~..models.build`, which names the fields."""
    import dataclasses

    from ..models import get_model_class

    fields = {f.name: f for f in dataclasses.fields(get_model_class(arch).config_class)}
    out: dict[str, Any] = {}
    for key, value in config.items():
        field = fields.get(key)
        default = field.default if field is not None else dataclasses.MISSING
        where = f"Invalid config for a new '{arch}' network: '{key}'"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParameterError(f"{where} must be true or false, not {value!r}.")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ParameterError(f"{where} must be a whole number, not {value!r}.")
            value = int(value)
            if not (0 if key == "depth" else 1) <= value <= MAX_CONFIG_INT:
                raise ParameterError(
                    f"{where} must be between 1 and {MAX_CONFIG_INT}, not {value}."
                )
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f"{where} must be a number, not {value!r}.")
            if not (math.isfinite(value) and 0 < value <= MAX_CONFIG_INT):
                raise ParameterError(f"{where} must be a positive finite number, not {value!r}.")
            value = float(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not value:
                raise ParameterError(f"{where} must be a list of whole numbers, not {value!r}.")
            for v in value:
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CONFIG_INT:
                    raise ParameterError(
                        f"{where} must hold whole numbers from 1 to {MAX_CONFIG_INT}, not {v!r}."
                    )
            value = tuple(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ParameterError(f"{where} must be a text, not {value!r}.")
        out[key] = value
    return out


def _check_not_constant(slices: np.ndarray, which: str) -> None:
    """A constant image teaches nothing, and its PSNR (over a zero data range) would be
    a meaningless large number: refuse it."""
    arr = np.asarray(slices)
    if arr.size and np.nanmax(arr) == np.nanmin(arr):
        raise InputError(
            f"The {which} image is constant (every pixel is {arr.flat[0]!r}): there is "
            "nothing to learn from it and no meaningful validation score; choose an image "
            "with structure and noise."
        )


def _load_start(spec: FinetuneSpec):
    """(model, card or None, started_from record, notes) for ``spec.start``."""
    import torch

    from ..models import build, config_dict, list_architectures, store
    from .blindspot import BLIND_MODES, blind_config, passes_input_through

    notes: list[str] = []
    if spec.start.startswith("new:"):
        arch = spec.start[4:]
        if arch not in list_architectures() or arch == "psf-wrap":
            choices = ", ".join("new:" + a for a in list_architectures() if a != "psf-wrap")
            raise UnknownMethodError(
                f"Unknown architecture '{arch}' for a new network; choose one of {choices}."
            )
        config = _checked_config(arch, dict(spec.config or {}))
        if spec.mode in BLIND_MODES:
            config, missing = blind_config(spec.mode, arch, config)
            if missing:
                notes.append(
                    f"network options {missing} wanted by {spec.mode} are not available for '{arch}'"
                )
        if spec.mode == "n2v2" and passes_input_through(config):
            raise ParameterError(_N2V2_PASS_THROUGH.format(what=f"a new '{arch}' network"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.seed))
            try:
                model = build(arch, config)
            except Exception as err:  # torch says it its own way (negative sizes, ...)
                raise ParameterError(f"Invalid config for a new '{arch}' network: {err}") from None
        return model, None, {"name": spec.start, "architecture": arch, "sha256": None}, notes

    model, card = store.load_model(spec.start)  # ModelFileError naming the installed models
    started = {
        "name": card["name"],
        "architecture": card["architecture"],
        "sha256": card["weights"]["sha256"],
    }
    if spec.mode == "n2v2":
        if passes_input_through(config_dict(model)):
            raise ParameterError(_N2V2_PASS_THROUGH.format(what=f"model '{card['name']}'"))
        # Options that change no weights (blur-pool) can be switched on for trained weights.
        config, missing = blind_config("n2v2", model.architecture, config_dict(model))
        if config != config_dict(model):
            try:
                adapted = build(model.architecture, config)
                adapted.load_state_dict(model.state_dict())
                model = adapted
            except (RuntimeError, TypeError, ValueError):
                notes.append(
                    f"N2V2 network options not applied: the weights of '{card['name']}' do not fit {config}"
                )
        if missing:
            notes.append(
                f"N2V2 network options {missing} are not available for '{model.architecture}'"
            )
    return model, card, started, notes


_N2V2_PASS_THROUGH = (
    "N2V2 cannot train {what}: it adds its input to its output, and with N2V2's median "
    "replacement such a network learns to pass the noisy pixel through (no denoising). "
    "N2V2 needs a network built with residual=False: start from 'new:unet'."
)


def _check_model_fits(model, card: dict | None, label: str) -> None:
    """InputError unless the network works on 2-D planes (all of ours do)."""
    ndim = int((card or {}).get("ndim", getattr(model, "ndim", 2)))
    if ndim != 2:
        raise InputError(
            f"The model '{label}' is a {ndim}-D network; training here works on 2-D (Y, X) "
            "planes (a stack is trained slice by slice). Start from a 2-D model or a new network."
        )


# --- names ----------------------------------------------------------------------------------


def _taken(name: str, folder: Path) -> bool:
    from ..methods import is_registered, list_methods

    list_methods()  # loads filters and models
    return is_registered(name) or (folder / f"{name}.json").exists()


def _owner(name: str, folder: Path) -> str | None:
    """What else holds ``name``: None (free, or a model of ``folder``), "model" or "method"."""
    from ..methods import list_methods

    for method in list_methods():
        if method.name == name:
            card = method.model.card if method.model is not None else None
            if card and Path(card).parent.resolve() == folder.resolve():
                return None
            return "model" if card else "method"
    return None


def _resolve_name(spec: FinetuneSpec, started: dict, folder: Path) -> tuple[str, bool]:
    """(name, given): the requested name, checked, or a new one derived from the start."""
    if spec.name is not None:
        name = str(spec.name).strip()
        if not _NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
            raise ParameterError(
                f"The model name {spec.name!r} cannot be used: use letters, digits, '.', '_', "
                "'-' or '+' (at most 80), starting with a letter or digit."
            )
        owner = _owner(name, folder)
        if owner is not None:
            raise ParameterError(
                f"A {owner} named '{name}' already exists and is not one of your models; "
                "choose another name."
            )
        return name, True
    base = started["name"].split(":", 1)[-1]
    stem = f"{Path(base).stem}-{NAME_SUFFIX[spec.mode]}"
    name, k = stem, 2
    while _taken(name, folder) or (
        spec.mode == "n2v-psf" and _taken(f"{name}-deconvolved", folder)
    ):
        name, k = f"{stem}-{k}", k + 1
    return name, False


# --- prepare --------------------------------------------------------------------------------


def prepare(
    spec: FinetuneSpec,
    noisy: np.ndarray,
    clean: np.ndarray | None = None,
    regions: Sequence[tuple[int, int, int, int]] | None = None,
    *,
    axes: str | None = None,
    data_names: tuple[str, str | None] | None = None,
) -> Prepared:
    """Check a training request and build its training and validation data.

    Parameters
    ----------
    spec : FinetuneSpec
    noisy : array
        2-D ``(Y, X)`` image or a stack (``axes`` other than Y and X are slices; one
        channel only).
    clean : array, optional
        Ground truth of the same shape (supervised mode: needed; self-supervised modes:
        used only to validate by PSNR).
    regions : list of (y0, x0, y1, x1), optional
        Rectangles in pixel coordinates of the YX plane (every slice); training and
        validation use only them. Partly outside rectangles are clipped.
    axes : str, optional
        Axes of ``noisy`` (and ``clean``), e.g. ``"TYX"``; inferred when omitted.
    data_names : (noisy, clean or None), optional
        File paths or layer names, recorded in the model card (file paths also give the
        command that reproduces the model).

    Raises
    ------
    InputError
        Shapes differ, clean missing in supervised mode, several channels, NaN, a region
        empty / outside / smaller than a patch / overlapping another, too little data
        for the validation split, a start model that does not take 2-D single-channel data.
    ParameterError
        A setting out of range, or a name taken by a method that is not the user's model.
    ModelFileError, UnknownMethodError
        Unknown start model (the installed ones are listed) or architecture.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.poisson(50, (96, 96)).astype(np.float32)
    >>> spec = FinetuneSpec(mode="n2v", start="new:unet", config={"base": 8}, patch=32, steps=2)
    >>> p = prepare(spec, img)
    >>> p.data["validation"]["stripes"], p.data["train_pixels"]
    (1, 7680)
    """
    from ..models import inference, store

    _check_spec(spec)
    if spec.mode == "supervised" and clean is None:
        raise InputError(
            "Supervised training needs a clean (ground-truth) image of the same shape as the "
            "noisy one; choose mode 'n2v' to train on the noisy image alone."
        )
    noisy_s, axes_n = as_slices(noisy, axes, "noisy")
    _check_not_constant(noisy_s, "noisy")
    clean_s = None
    if clean is not None:
        shape_n = np.shape(noisy)
        shape_c = np.shape(clean)
        if tuple(shape_n) != tuple(shape_c):
            raise InputError(
                f"The noisy and clean images have different shapes: {tuple(shape_n)} and "
                f"{tuple(shape_c)}; a pair must show the same field of view at the same size "
                "(for stacks, slice by slice)."
            )
        clean_s, _ = as_slices(clean, axes, "clean")
        _check_not_constant(clean_s, "clean")

    model, card, started, notes = _load_start(spec)
    label = started["name"]
    _check_model_fits(model, card, label)
    multiple = int(getattr(model, "multiple", 1))
    if spec.patch % multiple:
        good = spec.patch + (-spec.patch) % multiple
        raise ParameterError(
            f"The patch size {spec.patch} is not a multiple of {multiple}, which the network of "
            f"'{label}' needs; use {good}."
        )

    parts = split_images(
        noisy_s,
        clean_s,
        regions,
        patch=spec.patch,
        val_fraction=spec.val_fraction,
        clean_patches=spec.mode == "supervised",
    )
    noise = None
    if getattr(model, "noise_input", None) == "poisson-gaussian":  # as the zoo estimates it
        found = [
            inference.noise_for(model, parts.normalised(noisy_s[k])) for k in parts.sample_slices
        ]
        noise = tuple(float(v) for v in np.median(np.asarray(found), axis=0))

    folder = store.user_model_dir()
    name, given = _resolve_name(spec, started, folder)
    if spec.lr is not None:
        lr = float(spec.lr)
    else:
        lr = 3e-4 if (spec.mode == "supervised" and card is not None) else 1e-3
    data = {
        "names": list(data_names) if data_names else None,
        "shape": list(np.shape(noisy)),
        "axes": axes_n,
        "dtype": str(noisy_s.dtype),
        "clean": clean is not None,
        **parts.info,
        "pairs": len(parts.crops) if spec.mode == "supervised" else 0,
    }
    from .blindspot import BLIND_MODES, blind_radius_for, grid_spacing

    radius = 0
    if spec.mode in BLIND_MODES:
        if spec.blind_radius is not None:
            radius = int(spec.blind_radius)
        else:
            radius = blind_radius_for([noisy_s[k] for k in parts.sample_slices[:4]])
            if radius:
                side = 2 * radius + 1
                notes.append(
                    f"The noise is spatially correlated (neighbouring pixels share it), so "
                    f"each blind spot hides a {side}x{side} block, not one pixel."
                )
        cell = grid_spacing(spec.mask_fraction, radius)  # one blind spot per cell
        if spec.patch < cell:
            raise ParameterError(
                f"Blind spots of radius {radius} with a masked fraction of "
                f"{spec.mask_fraction:g} need patches of at least {cell} pixels, not {spec.patch}."
            )
    return Prepared(
        spec=spec,
        name=name,
        name_given=given,
        model=model,
        start_card=card,
        started_from=started,
        lr=lr,
        sampler=CropSampler(parts.crops, noise),
        val_pairs=parts.val_pairs,
        val_images=parts.val_images,
        data=data,
        notes=notes,
        blind_radius=radius,
    )


# --- training -------------------------------------------------------------------------------


def _threads(spec: FinetuneSpec) -> int | None:
    if spec.threads:
        return int(spec.threads)
    from ..device import env_threads

    return env_threads()  # a bad value: one sentence (ParameterError), not ignored


def _train_kwargs(prepared: Prepared) -> dict[str, Any]:
    spec = prepared.spec
    return dict(
        batch_size=spec.batch_size,
        patch=spec.patch,
        lr=prepared.lr,
        loss=spec.loss,
        seed=spec.seed,
        mode=spec.mode,
        mask_fraction=spec.mask_fraction,
        blind_radius=prepared.blind_radius,
        psf_sigma=spec.psf_sigma,
        positivity=spec.positivity,
        threads=_threads(spec),
    )


def _start_network(prepared: Prepared):
    """A fresh copy of the start network, wrapped with the PSF for "n2v-psf"."""
    model = copy.deepcopy(prepared.model)
    if prepared.spec.mode == "n2v-psf":
        from ..models.psf_wrap import PsfWrap, PsfWrapConfig, wrap

        if getattr(model, "architecture", None) == "psf-wrap":  # re-trained: new sigma, denoised
            cfg = PsfWrapConfig(
                model.config.architecture, model.config.config, prepared.spec.psf_sigma
            )
            model = PsfWrap(cfg, net=model.net)
        else:
            model = wrap(model, prepared.spec.psf_sigma)
    return model


def _probe_seconds(prepared: Prepared, stop: Callable[[], bool]) -> tuple[float, float]:
    """Seconds per training step and per validation, measured on a throw-away copy."""
    from .blindspot import masked_validation_loss, masked_validation_set
    from .loop import train_iter, validate

    model = _start_network(prepared)
    times = []
    for tick in train_iter(
        model, prepared.sampler, steps=PROBE_STEPS, stop=stop, **_train_kwargs(prepared)
    ):
        times.append(tick.seconds)
    if len(times) < 3:
        return float("nan"), 0.0
    per_step = (times[-1] - times[1]) / (len(times) - 2)  # the first steps set up kernels
    start = time.perf_counter()
    if prepared.val_pairs:
        validate(model, prepared.val_pairs)
    elif prepared.val_images:
        triples = masked_validation_set(
            prepared.val_images, multiple=int(model.multiple), radius=prepared.blind_radius
        )
        masked_validation_loss(model, triples, loss=prepared.spec.loss)
    return per_step, time.perf_counter() - start


def finetune_iter(
    prepared: Prepared,
    *,
    stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    out_dir: str | os.PathLike | None = None,
) -> Generator[TrainProgress, None, FinetuneResult]:
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
    TrainProgress
        After every step (:class:`~.loop.TrainProgress`: step, loss, validation, ETA).

    Returns
    -------
    FinetuneResult
    """
    import torch

    from ..models import registry, store
    from .loop import train_iter

    spec = prepared.spec
    folder = Path(out_dir) if out_dir is not None else store.user_model_dir()
    name = _free_name(prepared, folder, checkpoint, resume)
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
    if resume:
        steps = int(json.loads(ckpt.with_suffix(".json").read_text(encoding="utf-8"))["steps"])
    elif steps is None:
        budget = 60.0 * (spec.minutes if spec.minutes is not None else DEFAULT_MINUTES)
        per_step, per_val = _probe_seconds(prepared, user_stop)
        if not math.isfinite(per_step) or per_step <= 0:
            steps = PROBE_STEPS
        else:
            left = budget - (time.perf_counter() - t_start) - VALIDATIONS * per_val
            steps = max(1, int(0.95 * left / per_step))

    timed_out = False

    def should_stop() -> bool:
        nonlocal timed_out
        if user_stop():
            return True
        if budget is not None and time.perf_counter() - t_start > 1.1 * budget + 2.0:
            timed_out = True
            return True
        return False

    model = _start_network(prepared)
    kwargs = _train_kwargs(prepared)
    outcome = yield from train_iter(
        model,
        prepared.sampler,
        steps=steps,
        val_pairs=prepared.val_pairs or None,
        val_images=prepared.val_images or None,
        val_every=max(1, steps // VALIDATIONS),
        stop=should_stop,
        checkpoint=ckpt,
        checkpoint_every=max(1, min(500, steps // 4)),
        resume=resume,
        patience=spec.patience,
        **kwargs,
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
        threads=_threads(spec) or torch.get_num_threads(),
    )
    check = compare_with_start(prepared, model, name=name)
    if check is not None:
        card["training"]["selfcheck"] = check
    path = folder / f"{name}.json"
    saved = store.save_model(model, card, path)
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
        store.save_model(twin_model, twin_card, folder / f"{twin}.json")
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


SELFCHECK_MODES = ("n2v", "n2v2")  # trained without ground truth, from a trained model
SELFCHECK_MIN_SIDE = 16  # the noise model needs tiles of at least this size


def compare_with_start(prepared: Prepared, model, *, name: str = "the new model") -> dict | None:
    """Is the fine-tuned network better than the one it started from? Checked without
    ground truth: Stein's unbiased risk estimate (:mod:`..denoise.selfcheck`) of both on
    the held-out validation stripes (pixels neither trained on).

    Returns None when not applicable (supervised training, which has its ground truth;
    a fresh network; no validation stripes), else a record for the card: both
    estimated mean squared errors (normalised units), the verdict (``"new"`` or
    ``"start"``) and a message naming both models.
    """
    if (
        prepared.spec.mode not in SELFCHECK_MODES
        or prepared.start_card is None
        or not prepared.val_images
    ):
        return None
    from ..denoise.selfcheck import estimate_noise_covariance, risk
    from ..models.inference import noise_for, run_model

    start = copy.deepcopy(prepared.model).eval()
    model.eval()
    totals = {"start": 0.0, "new": 0.0}
    pixels = 0
    for image in prepared.val_images:
        image = np.asarray(image, np.float32)
        if min(image.shape[-2:]) < SELFCHECK_MIN_SIDE or image.ndim != 2:
            continue
        noise = estimate_noise_covariance(image)
        for label, net in (("start", start), ("new", model)):
            level = noise_for(net, image)  # fixed: the perturbed copy must not move it

            def run(im, net=net, level=level):
                return run_model(net, im, low=0.0, high=1.0, noise_level=level)

            totals[label] += risk(image, run, noise=noise) * image.size
        pixels += image.size
    if not pixels:
        return None
    start_mse, new_mse = totals["start"] / pixels, totals["new"] / pixels
    verdict = "new" if new_mse < start_mse else "start"
    begun = prepared.started_from.get("name", "the start model")
    if verdict == "new":
        message = (
            f"Check without ground truth (SURE on the held-out stripes): '{name}' is better "
            f"than '{begun}' (estimated error {new_mse:.3g} vs {start_mse:.3g})."
        )
    else:
        message = (
            f"Check without ground truth (SURE on the held-out stripes): '{name}' is NOT "
            f"better than '{begun}' it started from (estimated error {new_mse:.3g} vs "
            f"{start_mse:.3g}); keep using '{begun}'."
        )
    return {
        "method": "SURE (Monte-Carlo divergence) on the held-out validation stripes",
        "start_model": begun,
        "start_mse": start_mse,
        "new_mse": new_mse,
        "better": verdict,
        "message": message,
    }


def _free_name(prepared: Prepared, folder: Path, checkpoint, resume: bool) -> str:
    """The model name, checked against the files already in ``folder``.

    An existing model is never overwritten, except by the resumed run that saved it
    (stopped early, with the same checkpoint). A derived name moves on to ``-2``, ``-3``
    ...; a name the user gave is refused.
    """

    def checkpoint_of(n: str) -> str:
        return str(Path(checkpoint) if checkpoint is not None else folder / ".checkpoints" / n)

    def clash(n: str) -> str | None:
        twins = [n, f"{n}-deconvolved"] if prepared.spec.mode == "n2v-psf" else [n]
        for m in twins:
            path = folder / f"{m}.json"
            if not path.exists():
                continue
            if resume:
                try:
                    old = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    return m
                if old.get("training", {}).get("checkpoint") == checkpoint_of(n):
                    continue
            return m
        return None

    name = prepared.name
    taken = clash(name)
    if taken is None:
        return name
    if prepared.name_given:
        raise ParameterError(
            f"A model named '{taken}' already exists in {folder}; choose another name or delete "
            f"its files ({taken}.json and {taken}.safetensors)."
        )
    stem, k = name, 2
    while clash(name) is not None:
        name, k = f"{stem}-{k}", k + 1
    return name

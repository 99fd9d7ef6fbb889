"""Preparing a fine-tuning run: checks, the start model, the data cut into patches.

:func:`prepare_iter` (and :func:`prepare`, the same without progress) checks what the
:class:`~.config.FinetuneSpec` cannot check alone (the images, the regions, the start
model, the patch against the network, the blind spot against the noise), loads the start
model (:mod:`.finetune_start`), resolves the new model's name (:mod:`.finetune_names`)
and cuts the data into training rectangles and spatially disjoint validation stripes
(:mod:`.split`). The :class:`Prepared` run it returns gives the record that
:func:`~.loop.train_iter` runs (:meth:`Prepared.run_config`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InputError, ParameterError
from .config import FinetuneSpec
from .finetune_names import resolve_name
from .finetune_start import check_model_fits, load_start
from .options import FRAME_MODES, Phase
from .split import CropSampler, as_slices, clip_regions, split_images, split_region

__all__ = ["Prepared", "prepare", "prepare_iter", "threads_for"]


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

    def run_config(self, steps: int, **loop) -> FinetuneSpec:
        """The record :func:`~.loop.train_iter` runs: the spec with ``steps`` and what
        preparing chose (learning rate, blind-spot radius) and the threads filled in;
        ``loop`` sets more of its fields (validation and checkpoint cadence, patience)."""
        return dataclasses.replace(
            self.spec,
            steps=steps,
            lr=self.lr,
            blind_radius=self.blind_radius,
            threads=threads_for(self.spec),
            **loop,
        )


def check_not_constant(slices: np.ndarray, which: str) -> None:
    """A constant image teaches nothing, and its PSNR (over a zero data range) would be
    a meaningless large number: refuse it."""
    arr = np.asarray(slices)
    if arr.size and np.nanmax(arr) == np.nanmin(arr):
        raise InputError(
            f"The {which} image is constant (every pixel is {arr.flat[0]!r}): there is "
            "nothing to learn from it and no meaningful validation score; choose an image "
            "with structure and noise."
        )


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

    :func:`prepare_iter` without its progress (the arguments and errors are the same).
    """
    gen = prepare_iter(spec, noisy, clean, regions, axes=axes, data_names=data_names)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def prepare_iter(
    spec: FinetuneSpec,
    noisy: np.ndarray,
    clean: np.ndarray | None = None,
    regions: Sequence[tuple[int, int, int, int]] | None = None,
    *,
    axes: str | None = None,
    data_names: tuple[str, str | None] | None = None,
) -> Generator[Phase, None, Prepared]:
    """Check a training request and build its training and validation data, yielding a
    :class:`~.options.Phase` before each part that can take a while; returns the
    :class:`Prepared` run.

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
        A setting that does not fit the data or the network (the patch against the
        network's multiple, blind spots against the patch; settings out of range are
        refused when the :class:`~.config.FinetuneSpec` is made), a ``spec`` that is not a
        FinetuneSpec, or a name taken by a method that is not the user's model.
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

    if not isinstance(spec, FinetuneSpec):  # its settings were checked when it was made
        raise ParameterError(
            f"Training needs a FinetuneSpec (what to train and how), not {type(spec).__name__}."
        )
    steps = 4 if spec.mode == "supervised" else 5  # the phases below (blind spot, frames: 5)
    yield Phase("Preparing: checking the images", 1, steps)
    if spec.mode == "supervised" and clean is None:
        raise InputError(
            "Supervised training needs a clean (ground-truth) image of the same shape as the "
            "noisy one; choose mode 'n2v' to train on the noisy image alone."
        )
    noisy_s, axes_n = as_slices(noisy, axes, "noisy")
    check_not_constant(noisy_s, "noisy")
    if spec.mode in FRAME_MODES:  # refused now, before the start model is loaded
        from .frame_pairs import neighbour_pairs

        neighbour_pairs(_plane_sizes(noisy, axes), axes_n)
    clean_s = None
    if clean is not None:
        clean = _one_clean_per_stack(clean, noisy, axes_n)
        shape_n = np.shape(noisy)
        shape_c = np.shape(clean)
        if tuple(shape_n) != tuple(shape_c):
            raise InputError(
                f"The noisy and clean images have different shapes: {tuple(shape_n)} and "
                f"{tuple(shape_c)}; a pair must show the same field of view at the same size "
                "(for stacks, slice by slice, or one clean plane for a stack of a still sample)."
            )
        clean_s, _ = as_slices(clean, axes, "clean")
        check_not_constant(clean_s, "clean")

    if spec.start.startswith("new:"):
        yield Phase("Preparing: building a new network", 2, steps)
    else:
        yield Phase(f"Preparing: loading the start model '{spec.start}'", 2, steps)
    model, card, started, notes = load_start(spec)
    label = started["name"]
    check_model_fits(model, card, label)
    multiple = int(getattr(model, "multiple", 1))
    if spec.patch % multiple:
        good = spec.patch + (-spec.patch) % multiple
        raise ParameterError(
            f"The patch size {spec.patch} is not a multiple of {multiple}, which the network of "
            f"'{label}' needs; use {good}."
        )

    fused_along = None
    if spec.mode == "supervised" and (card or {}).get("fuse_neighbours"):
        # the model fuses a stack's neighbours into each plane before the network: it
        # learns from the planes it will see
        fused_along, fused = _fused_planes(noisy_s, _plane_sizes(noisy, axes), axes_n)
        if fused_along is not None:
            noisy_s = fused
            notes.append(
                f"Inputs: each plane fused with its matching neighbours along {fused_along}, "
                "as the model denoises a stack."
            )
    yield Phase("Preparing: cutting training patches and held-out strips", 3, steps)
    parts = split_images(
        noisy_s,
        clean_s,
        regions,
        patch=spec.patch,
        val_fraction=spec.val_fraction,
        clean_patches=spec.mode == "supervised",
    )
    yield Phase("Preparing: measuring the noise", 4, steps)
    noise = None
    if getattr(model, "noise_input", None) == "poisson-gaussian":  # as the zoo estimates it
        found = [
            inference.noise_for(model, parts.normalised(noisy_s[k])) for k in parts.sample_slices
        ]
        noise = tuple(float(v) for v in np.median(np.asarray(found), axis=0))

    folder = store.user_model_dir()
    name, given = resolve_name(spec, started, folder)
    if spec.lr is not None:
        lr = float(spec.lr)
    else:
        # a trained model tuned on targets (clean or a noisy neighbour): a gentler rate
        tuned = spec.mode in ("supervised", *FRAME_MODES) and card is not None
        lr = 3e-4 if tuned else 1e-3
    data = {
        "names": list(data_names) if data_names else None,
        "shape": list(np.shape(noisy)),
        "axes": axes_n,
        "dtype": str(noisy_s.dtype),
        "clean": clean is not None,
        **parts.info,
        "pairs": len(parts.crops) if spec.mode == "supervised" else 0,
        **(
            {"input": f"planes fused with their neighbours along {fused_along}"}
            if fused_along
            else {}
        ),
    }
    from .blindspot import BLIND_MODES, blind_radius_for, grid_spacing

    sampler = CropSampler(parts.crops, noise)
    val_images = parts.val_images
    if spec.mode in FRAME_MODES:
        yield Phase("Preparing: aligning neighbouring planes into training pairs", 5, steps)
        fused = bool((card or {}).get("fuse_neighbours"))  # trained as it will be used
        sampler, val_images, info = _frame_pairs(
            spec, _plane_sizes(noisy, axes), noisy_s, axes_n, regions, parts, noise, fused
        )
        data["frame_pairs"] = info
        data["validation"] = dict(data["validation"], kind="neighbour loss" if val_images else None)
        data["pairs"] = info["pairs"]
        notes.append(
            f"Training pairs: each plane and its aligned neighbour along {info['neighbour_axis']} "
            f"(largest shift {info['largest_shift_px']} px); "
            f"{100 * info['consistency']['kept_share']:.0f}% of patches look alike "
            "(the rest, differing by more than noise, are down-weighted or skipped)."
        )
    radius = 0
    if spec.mode in BLIND_MODES:
        yield Phase("Preparing: choosing the blind-spot size from the noise", 5, steps)
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
        sampler=sampler,
        val_pairs=[] if spec.mode in FRAME_MODES else parts.val_pairs,
        val_images=val_images,
        data=data,
        notes=notes,
        blind_radius=radius,
    )


def _one_clean_per_stack(clean, noisy, axes: str):
    """A clean plane given for a whole stack (the average of a still sample's frames)
    repeated for each of the stack's planes; anything else unchanged."""
    shape_c, shape_n = tuple(np.shape(clean)), tuple(np.shape(noisy))
    if len(shape_c) == 2 and len(shape_n) > 2 and axes.endswith("YX") and shape_n[-2:] == shape_c:
        return np.broadcast_to(np.asarray(clean), shape_n)
    return clean


def _fused_planes(noisy_s: np.ndarray, sizes, axes: str):
    """``(axis, planes)``: every plane of ``noisy_s`` fused with its neighbours along the
    stack's T (else Z) axis exactly as the denoising driver does (the same window,
    reflected at the ends, the same :func:`~..denoise.fusion.combine`); ``(None, None)``
    for an image without such an axis."""
    from ..denoise.fusion import FUSION_REACH, combine, window_neighbours
    from ..denoise.tiling import reflect
    from .frame_pairs import neighbour_lines

    try:
        axis, lines = neighbour_lines(sizes, axes)
    except InputError:  # a single plane, or no stack axis: nothing to fuse
        return None, None
    out = np.empty(noisy_s.shape, np.float32)
    for line in lines:
        n = len(line)
        for p, k in enumerate(line):
            at = [reflect(j, n) for j in range(p - FUSION_REACH, p + FUSION_REACH + 1)]
            window = np.stack([np.asarray(noisy_s[line[q]], np.float32) for q in at])
            out[k] = combine(window, window_neighbours([(q,) for q in at]))
    return axis, out


def _plane_sizes(image, axes: str | None) -> list[int]:
    """Sizes of the axes of ``image`` other than Y, X and C (the order :func:`as_slices`
    flattens them in); ``axes`` as given to :func:`prepare` (None: inferred)."""
    from ..denoise.checks import check_layout

    shape = np.shape(image)
    full = check_layout(shape, getattr(image, "dtype", np.float32), axes)
    return [n for a, n in zip(full, shape, strict=True) if a not in "YXC"]


def _frame_pairs(spec, sizes, noisy_s, axes, regions, parts, noise, fused):
    """The Noise2Noise pairs of neighbouring planes (:mod:`.frame_pairs`) inside the
    training rectangles of ``parts``, and held-out pairs inside its validation stripes."""
    from .frame_pairs import frame_pair_data

    ny, nx = noisy_s.shape[-2:]
    whole = regions is None or len(regions) == 0
    rects = [(0, 0, ny, nx)] if whole else clip_regions(regions, (ny, nx), spec.patch)
    train_rects = [
        split_region(r, spec.val_fraction, spec.patch, None if whole else i)[0]
        for i, r in enumerate(rects, 1)
    ]
    val_rects = [tuple(r) for r in parts.info["validation"]["rectangles"]]
    return frame_pair_data(
        noisy_s,
        axes,
        sizes,
        parts.normalised,
        train_rects,
        val_rects,
        patch=spec.patch,
        seed=spec.seed,
        noise=noise,
        fused=fused,
    )


def threads_for(spec: FinetuneSpec) -> int | None:
    """The CPU threads a run of ``spec`` uses: its own, else ``NAPARI_DENOISE_THREADS``."""
    if spec.threads:
        return int(spec.threads)
    from ..device import env_threads

    return env_threads()  # a bad value: one sentence (ParameterError), not ignored

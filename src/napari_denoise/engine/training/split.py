"""The user's images cut into training rectangles and spatially disjoint validation stripes.

What :func:`~.finetune.prepare` trains on: every region (the whole YX plane without
regions) loses its last ``val_fraction`` along its longer side, at least
:data:`MIN_VAL_STRIPE` pixels, to validation, the same stripe in every slice of a stack;
training patches come only from the rest (:class:`CropSampler`), so no training patch
ever overlaps a validation pixel. Images are normalised as the zoo normalises them at
inference (the 0.1/99.9 percentiles of a few evenly spaced slices of the whole image),
and a clean image is first mapped onto its noisy image's intensity scale by a
least-squares affine fit per slice (real pairs such as W2S are stretched independently).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InputError

__all__ = [
    "CropSampler",
    "Split",
    "affine_fit",
    "as_slices",
    "clip_regions",
    "split_images",
    "split_region",
]

MIN_VAL_STRIPE = 16  # pixels: thinner stripes say little
MAX_VAL_SLICES = 8  # validation cost stays bounded on long stacks
MAX_TRAIN_PIXELS = 64 * 2**20  # per array (256 MB of float32)


def as_slices(image: Any, axes: str | None, what: str) -> tuple[np.ndarray, str]:
    """``image`` as ``(slices, Y, X)`` (a view where possible) and its checked axes."""
    from ...axes import infer_axes
    from ..denoise.pipeline import check_image

    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    if axes is None and arr.ndim >= 2:
        axes = infer_axes(arr.shape)
    try:
        arr, axes = check_image(arr, axes)
    except InputError as err:
        raise InputError(f"The {what} image cannot be used: {err}") from None
    if "C" in axes:
        n = arr.shape[axes.index("C")]
        if n > 1:
            raise InputError(
                f"The {what} image has {n} channels (shape {arr.shape}, axes {axes}); the "
                "networks take one channel: pick one channel (in napari, split the layer's "
                "channels) and train on it."
            )
        arr = arr.take(0, axis=axes.index("C"))
        axes = axes.replace("C", "")
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    arr = np.transpose(arr, order)
    return arr.reshape((-1, *arr.shape[-2:])), axes


def clip_regions(regions, shape: tuple[int, int], patch: int) -> list[tuple[int, int, int, int]]:
    ny, nx = shape
    out = []
    for i, region in enumerate(regions, 1):
        try:
            y0, x0, y1, x1 = (round(float(v)) for v in region)
        except (TypeError, ValueError):
            raise InputError(
                f"Region {i} is {region!r}; a region is four numbers (y0, x0, y1, x1)."
            ) from None
        if y1 <= y0 or x1 <= x0:
            raise InputError(
                f"Region {i} ({y0}, {x0}, {y1}, {x1}) is empty: it needs y1 > y0 and x1 > x0."
            )
        cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, ny), min(x1, nx)
        if cy1 <= cy0 or cx1 <= cx0:
            raise InputError(
                f"Region {i} ({y0}, {x0}, {y1}, {x1}) lies outside the {ny} x {nx} image."
            )
        h, w = cy1 - cy0, cx1 - cx0
        if min(h, w) < patch:
            raise InputError(
                f"Region {i} is {h} x {w} pixels inside the image, smaller than one {patch}-pixel "
                "training patch; draw a larger rectangle or choose a smaller patch."
            )
        out.append((cy0, cx0, cy1, cx1))
    for i, a in enumerate(out):
        for j, b in enumerate(out[i + 1 :], i + 2):
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                raise InputError(
                    f"Regions {i + 1} and {j} overlap; draw separate rectangles, so that no "
                    "validation pixel is also trained on."
                )
    return out


def split_region(region, val_fraction: float, patch: int, index: int | None):
    """(train rectangle, validation stripe or None) of one region, along its longer side."""
    y0, x0, y1, x1 = region
    h, w = y1 - y0, x1 - x0
    if val_fraction <= 0:
        return region, None
    along_y = h >= w
    length = h if along_y else w
    stripe = max(MIN_VAL_STRIPE, math.ceil(val_fraction * length))
    if length - stripe < patch:
        where = f"Region {index}" if index is not None else "The image"
        raise InputError(
            f"Too little data for a validation split: {where} is {h} x {w} pixels; holding out "
            f"a {stripe}-pixel validation stripe leaves {length - stripe} pixels, less than one "
            f"{patch}-pixel training patch. Use a larger region or image, a smaller patch, or "
            "val_fraction=0 (no validation)."
        )
    if along_y:
        return (y0, x0, y1 - stripe, x1), (y1 - stripe, x0, y1, x1)
    return (y0, x0, y1, x1 - stripe), (y0, x1 - stripe, y1, x1)


def affine_fit(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit ``noisy ~ a * clean + b``.

    The fit of :func:`.datasets.align_affine`, but returned rather than applied: it is
    fitted on the pixels used (the regions) and applied to the whole slice.
    """
    c = np.asarray(clean, np.float64)
    z = np.asarray(noisy, np.float64)
    cc = c - c.mean()
    a = float(np.dot(cc, z - z.mean()) / max(np.dot(cc, cc), 1e-12))
    return a, float(z.mean() - a * c.mean())


class CropSampler:
    """Random patches from fixed rectangles of normalised images, never outside them.

    ``crops`` are ``(noisy, clean or None)`` arrays in normalised units; a crop is drawn
    with probability proportional to its number of patch positions, so every allowed
    patch position is equally likely. Without a clean crop the noisy patch is returned
    twice (the self-supervised modes need only it). ``noise`` is the image's ``(a, b)``
    Poisson-Gaussian coefficients, as the zoo estimates them at inference, for networks
    told the noise (``batch(..., with_noise=True)``). Follows the sampler protocol of
    :mod:`.datasets`.
    """

    def __init__(
        self,
        crops: Sequence[tuple[np.ndarray, np.ndarray | None]],
        noise: tuple[float, float] | None = None,
    ):
        self.crops = list(crops)
        self.noise = noise

    def batch(self, n: int, patch: int, generator, *, with_noise: bool = False):
        import torch

        sizes = torch.tensor(
            [max(0, (a.shape[0] - patch + 1) * (a.shape[1] - patch + 1)) for a, _ in self.crops],
            dtype=torch.float64,
        )
        picks = torch.multinomial(sizes, n, replacement=True, generator=generator).tolist()
        noisy = np.empty((n, 1, patch, patch), np.float32)
        clean = np.empty_like(noisy)
        for i, k in enumerate(picks):
            a, c = self.crops[k]
            y = int(torch.randint(a.shape[0] - patch + 1, (1,), generator=generator))
            x = int(torch.randint(a.shape[1] - patch + 1, (1,), generator=generator))
            noisy[i, 0] = a[y : y + patch, x : x + patch]
            clean[i, 0] = (c if c is not None else a)[y : y + patch, x : x + patch]
        if not with_noise:
            return torch.from_numpy(noisy), torch.from_numpy(clean)
        if self.noise is None:
            raise ValueError("this sampler was built without the image's noise coefficients")
        coeffs = torch.tensor([self.noise] * n, dtype=torch.float32)
        return torch.from_numpy(noisy), torch.from_numpy(clean), coeffs


@dataclass
class Split:
    """Training crops and validation data of one image (see :func:`split_images`).

    crops : ``(noisy, clean or None)`` training rectangles in normalised units.
    val_pairs : ``(noisy, aligned clean)`` validation stripes in image units (with a
        clean image), else empty. val_images : noisy validation stripes in normalised
        units (without one). low, high : the normalisation. sample_slices : the slices
        it was measured on. info : a JSON-able description for the model card.
    """

    crops: list[tuple[np.ndarray, np.ndarray | None]]
    val_pairs: list[tuple[np.ndarray, np.ndarray]]
    val_images: list[np.ndarray]
    low: float
    high: float
    sample_slices: list[int] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def normalised(self, image: np.ndarray) -> np.ndarray:
        """``image`` in the units the network sees."""
        return (np.asarray(image, np.float32) - np.float32(self.low)) / np.float32(
            self.high - self.low
        )


def split_images(
    noisy_s: np.ndarray,
    clean_s: np.ndarray | None,
    regions: Sequence[Sequence[float]] | None,
    *,
    patch: int,
    val_fraction: float,
    clean_patches: bool,
) -> Split:
    """Cut ``(slices, Y, X)`` stacks into training crops and validation stripes.

    ``clean_s`` (same shape) is aligned to ``noisy_s`` per slice; with ``clean_patches``
    the training crops carry it (supervised training), otherwise it serves validation
    only. Raises :class:`~napari_denoise.errors.InputError` for regions that are empty,
    outside, smaller than ``patch`` or overlapping, and when a validation stripe would
    leave less than one patch to train on.
    """
    from ..denoise.pipeline import SAMPLES_FOR_AUTO
    from .datasets import percentile_range

    n_slices, ny, nx = noisy_s.shape
    whole = regions is None or len(regions) == 0
    if whole:
        if min(ny, nx) < patch:
            raise InputError(
                f"The image is {ny} x {nx} pixels, smaller than one {patch}-pixel training "
                "patch; choose a smaller patch."
            )
        rects = [(0, 0, ny, nx)]
    else:
        rects = clip_regions(regions, (ny, nx), patch)
    splits = [
        split_region(r, val_fraction, patch, None if whole else i) for i, r in enumerate(rects, 1)
    ]

    # The zoo's normalisation: percentiles of a few evenly spaced slices of the whole image.
    pick = np.unique(np.linspace(0, n_slices - 1, SAMPLES_FOR_AUTO).round().astype(int))
    sample = np.concatenate([np.asarray(noisy_s[k], np.float32).ravel() for k in pick])
    lo, hi = percentile_range(sample)
    scale = np.float32(1.0 / (hi - lo))
    val_slices = set(
        np.unique(
            np.linspace(0, n_slices - 1, min(n_slices, MAX_VAL_SLICES)).round().astype(int)
        ).tolist()
    )

    # Long stacks: evenly spaced slices up to a bounded number of training pixels (minutes
    # of training on a CPU see far fewer), so memory stays bounded too.
    area = sum((t[2] - t[0]) * (t[3] - t[1]) for t, _ in splits)
    keep = min(n_slices, max(1, MAX_TRAIN_PIXELS // area))
    train_slices = set(np.unique(np.linspace(0, n_slices - 1, keep).round().astype(int)).tolist())

    def cut(a, r):
        return a[r[0] : r[2], r[1] : r[3]]

    crops, val_pairs, val_images = [], [], []
    for k in sorted(train_slices | val_slices):
        z = np.asarray(noisy_s[k], np.float32)
        c = None
        if clean_s is not None:
            # Fit the affine map on the pixels used (regions), apply it to the whole slice.
            cs = np.asarray(clean_s[k], np.float32)
            used_c = np.concatenate([cut(cs, r).ravel() for r in rects])
            used_z = np.concatenate([cut(z, r).ravel() for r in rects])
            a, b = affine_fit(used_c, used_z)
            c = (a * cs.astype(np.float64) + b).astype(np.float32)
        zn = (z - np.float32(lo)) * scale
        cn = (c - np.float32(lo)) * scale if c is not None else None
        for train_rect, val_rect in splits:
            if k in train_slices:
                tz = cut(zn, train_rect)
                tc = cut(cn, train_rect) if cn is not None and clean_patches else None
                if not whole:  # a view would keep the whole slice alive
                    tz = np.ascontiguousarray(tz)
                    tc = np.ascontiguousarray(tc) if tc is not None else None
                crops.append((tz, tc))
            if val_rect is not None and k in val_slices:
                if c is not None:
                    val_pairs.append(
                        (
                            np.ascontiguousarray(cut(z, val_rect)),
                            np.ascontiguousarray(cut(c, val_rect)),
                        )
                    )
                else:
                    val_images.append(np.ascontiguousarray(cut(zn, val_rect)))

    stripes = [v for _, v in splits if v is not None]
    info = {
        "slices": int(n_slices),
        "slices_trained": len(train_slices),
        "regions": None if whole else [list(r) for r in rects],
        "training_crops": len(crops),
        "train_pixels": int(sum(a.size for a, _ in crops)),
        # 9 significant digits, not 6 decimals: an image in small units (a black level of
        # 3e-7) must not be recorded as 0 (as the denoising run's parameters are).
        "normalisation": {"low": float(f"{lo:.9g}"), "high": float(f"{hi:.9g}")},
        "validation": {
            "stripes": len(stripes),
            "rectangles": [list(v) for v in stripes],
            "slices": len(val_slices) if stripes else 0,
            "kind": "psnr" if val_pairs else ("masked loss" if val_images else None),
            "pixels": int(sum(a.size for a, _ in val_pairs) + sum(a.size for a in val_images)),
        },
    }
    return Split(crops, val_pairs, val_images, lo, hi, [int(k) for k in pick], info)

"""Choosing a filter's strength from the noisy image alone (self-supervised, no ground truth).

A denoiser ``f`` is *J-invariant* when its output at a pixel does not use that pixel's
input. For noise that is independent from pixel to pixel and has zero mean, the
self-supervised loss ``mean((f(x) - x)**2)`` of such a denoiser equals its true error
against the clean image plus the noise variance, a constant: so minimising it over a
parameter picks the parameter that minimises the true error (Batson & Royer 2019,
"Noise2Self"; scikit-image's ``calibrate_denoiser``).

Two ways to make a filter J-invariant:

* linear filters (Gaussian, box): remove the centre taps from the kernel and renormalise,
  an exact closed form that costs one filtering per candidate (:func:`separable_jinv_loss`);
* any filter: run it on copies of the image in which a grid of pixels is replaced by
  the mean of their neighbours, and score only those pixels (:func:`masked_jinv_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "best_candidate",
    "center_crop",
    "masked_jinv_loss",
    "noise_correlation_radius",
    "separable_jinv_loss",
]


def center_crop(block: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` pixels along each of the last two axes (all of them if smaller)."""
    out = block
    for axis in (-2, -1):
        n = block.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
    return out


def _separable(block: np.ndarray, kernels: Sequence[np.ndarray]) -> np.ndarray:
    out = block
    for axis, k in enumerate(kernels):
        if len(k) > 1:
            out = ndi.correlate1d(out, k, axis=axis, mode="mirror")
        else:
            out = out * k[0]
    return out


def separable_jinv_loss(
    block: np.ndarray, kernels: Sequence[np.ndarray], blind: Sequence[int]
) -> float:
    """Self-supervised loss of a separable linear filter with its centre taps removed.

    Parameters
    ----------
    block : ndarray
        Noisy float image.
    kernels : sequence of 1D arrays
        One odd-length, normalised kernel per axis of ``block``.
    blind : sequence of int
        Half-width of the blind spot per axis: the kernel taps within it are removed and
        the rest renormalised. 0 is the classic single-pixel blind spot; a wider one keeps
        the loss honest when the noise itself is correlated between neighbouring pixels
        (binned or interpolated cameras), which a one-pixel blind spot would exploit.

    Returns
    -------
    float
        ``mean((f_J(x) - x)**2)``, or ``inf`` when the blind spot holds nearly the whole
        kernel (the renormalisation would then only amplify rounding errors).
    """
    centres = [
        k[len(k) // 2 - min(b, len(k) // 2) : len(k) // 2 + min(b, len(k) // 2) + 1]
        for k, b in zip(kernels, blind, strict=True)
    ]
    centre_weight = float(np.prod([c.sum() for c in centres]))
    if centre_weight > 0.9:
        return float("inf")
    jinv = (_separable(block, kernels) - _separable(block, centres)) / (1.0 - centre_weight)
    return float(np.mean((jinv - block) ** 2, dtype=np.float64))


def noise_correlation_radius(
    block: np.ndarray,
    kernels_for: Callable[[float], Sequence[np.ndarray]],
    candidates: Sequence[float],
) -> int:
    """Half-width of blind spot the image's noise needs: 1 normally, 3 for correlated noise.

    The best single-pixel blind-spot loss and the best 3x3 blind-spot loss differ by a few
    tens of percent when the noise is independent (the predictor just loses its nearest
    neighbours). When neighbouring pixels share noise, the single-pixel predictor
    "predicts" the noise and its loss collapses: a jump of more than a factor 2 is that
    signature, and the blind spot then widens to 7x7.
    """
    best = [
        min(separable_jinv_loss(block, kernels_for(c), (r,) * block.ndim) for c in candidates)
        for r in (0, 1)
    ]
    return 3 if best[1] > 2.0 * best[0] else 1


def _neighbour_mean(block: np.ndarray) -> np.ndarray:
    """Mean of each pixel's neighbours in its 3x3 (3x3x3 in 3D) window, excluding itself."""
    k = np.ones((3,) * block.ndim, np.float32)
    k[(1,) * block.ndim] = 0
    k /= k.sum()
    return ndi.convolve(block, k, mode="mirror")


def masked_jinv_loss(
    block: np.ndarray, denoise: Callable[[np.ndarray], np.ndarray], *, stride: int = 4
) -> float:
    """Self-supervised loss of any denoiser, made J-invariant by masking a grid of pixels.

    For each of the ``stride**ndim`` grid offsets, the masked pixels are replaced by the
    mean of their neighbours, the denoiser runs, and only the masked pixels are scored.
    Costs ``stride**ndim`` runs of the denoiser.
    """
    block = np.asarray(block, np.float32)
    interp = _neighbour_mean(block)
    total = 0.0
    count = 0
    for offset in np.ndindex(*(stride,) * block.ndim):
        index = tuple(slice(o, None, stride) for o in offset)
        masked = block.copy()
        masked[index] = interp[index]
        out = denoise(masked)
        total += float(np.sum((out[index] - block[index]) ** 2, dtype=np.float64))
        count += block[index].size
    return total / max(count, 1)


def best_candidate(
    candidates: Sequence, loss: Callable[[object], float]
) -> tuple[object, list[float]]:
    """The candidate with the smallest loss, and all losses (in the candidates' order)."""
    losses = [loss(c) for c in candidates]
    return candidates[int(np.argmin(losses))], losses

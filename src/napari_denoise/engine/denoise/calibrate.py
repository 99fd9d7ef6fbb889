"""Choosing a filter's strength from the noisy image alone (no ground truth).

* Linear filters (Gaussian, box): Stein's unbiased risk estimate (SURE) of the filter's
  mean squared error, ``mean((f(x) - x)**2) - var + 2 var K(0)``, with the average noise
  variance from the image's Poisson-Gaussian noise model (:func:`sure_linear`). When the
  noise is spatially correlated (binned or interpolated cameras; detected by
  :func:`noise_correlation_ratio`), the centre tap becomes the sum of the kernel against
  the noise autocovariance measured in the image's flat parts (:func:`sure_correlated`).
* Any other filter: the self-supervised loss of a J-invariant version, made by masking
  a grid of pixels (Batson & Royer 2019, "Noise2Self"; scikit-image's
  ``calibrate_denoiser``): for independent zero-mean noise, minimising it minimises the
  true error (:func:`masked_jinv_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "best_candidate",
    "center_crop",
    "fine_share",
    "masked_jinv_loss",
    "mean_noise_variance",
    "noise_coefficients",
    "noise_correlation_ratio",
    "noise_covariance",
    "noise_is_correlated",
    "sure_correlated",
    "sure_linear",
]


# Above this noise_correlation_ratio, neighbouring pixels share noise.
CORRELATED_RATIO = 2.0


def center_crop(block: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` pixels along each of the last two axes (all of them if smaller)."""
    out = block
    for axis in (-2, -1):
        n = block.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
    return out


def diagonal_detail(a):
    """The finest diagonal Haar detail of the last two axes (cropped to even sizes), a
    quarter the size: mostly noise, little signal. Any array that slices (numpy, torch)."""
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    t = a[..., :h, :w]
    return (t[..., 0::2, 0::2] - t[..., 0::2, 1::2] - t[..., 1::2, 0::2] + t[..., 1::2, 1::2]) / 2


def fine_share(rho: np.ndarray) -> float:
    """The share of each pixel's noise energy that its finest diagonal Haar detail
    (:func:`diagonal_detail`) holds, for noise of correlation ``rho`` (its autocovariance
    :func:`noise_covariance` over its variance, ``rho[dy + r, dx + r]``):
    ``1 - r01 - r10 + (r11 + r1-1) / 2``; 1 for independent noise, less where
    neighbouring pixels share it."""
    r = rho.shape[0] // 2
    return float(1 - rho[r, r + 1] - rho[r + 1, r] + (rho[r + 1, r + 1] + rho[r + 1, r - 1]) / 2)


def noise_correlation_ratio(image: np.ndarray, *, block: int = 16) -> float:
    """How much more noise energy the flat parts of ``image`` hold than its finest scale shows.

    In the flattest 10% of ``block`` x ``block`` tiles (after removing a fitted plane),
    the variance of the pixels is compared with the energy of the finest diagonal Haar
    detail. Independent noise puts the same energy in both: the ratio is about 1 (0.96 to
    1.4 on the real stacks and FMD confocal and two-photon captures). Noise shared between
    neighbouring pixels (binned, interpolated or smoothed camera images) has little
    energy at the finest scale: the ratio is 3 or more (about 5.5 on FMD's widefield
    captures, 3.6 to 26 for simulated smoothed or upsampled noise).
    """
    b = block - block % 2
    if (image.shape[-2] // b) * (image.shape[-1] // b) < 8:
        return 1.0  # too small to tell: assume independent noise
    tiles, residual = _plane_residuals(image, b)
    variance = residual.var(axis=1)
    t = tiles.reshape(-1, b, b)
    fine = (diagonal_detail(t) ** 2).reshape(len(t), -1).mean(axis=1)
    flat = np.argsort(variance)[: max(8, len(variance) // 10)]
    # A floor relative to the image's own detail energy: the ratio has no unit.
    floor = 1e-12 * float(np.mean(fine)) or np.finfo(np.float64).tiny
    return float(np.median(variance[flat] / np.maximum(fine[flat], floor)))


def noise_coefficients(image: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``Var = a * x + b`` for one image, counting correlated noise in full.

    The Poisson-Gaussian fit (:func:`~napari_denoise.engine.denoise.noise.estimate_noise_model`)
    measures the variance at the finest scale; when the noise is spatially correlated
    (:func:`noise_is_correlated`) each pixel holds more noise than that, by the ratio
    :func:`noise_correlation_ratio` measures (capped at 9), and both coefficients are
    scaled by it. The zoo hands these to networks that take the noise as an input, both
    at inference and, for real training pairs, during training.
    """
    from .noise import estimate_noise_model

    plane = center_crop(np.asarray(image, np.float32), 1024)
    model = estimate_noise_model(plane)
    a = float(model.gain)
    b = float(model.sigma**2 - model.gain * model.offset)
    ratio = noise_correlation_ratio(plane)
    if ratio > CORRELATED_RATIO:
        a, b = a * min(ratio, 9.0), b * min(ratio, 9.0)
    return a, b


def _plane_residuals(image: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The image cut into ``block`` x ``block`` tiles (one row each), and each tile minus
    its least-squares plane: where the signal is flat, what is left is noise."""
    x = np.asarray(image, np.float64)
    ny, nx = x.shape[-2] // block, x.shape[-1] // block
    tiles = x[..., : ny * block, : nx * block].reshape(ny, block, nx, block)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(-1, block * block)
    yy, xx = np.mgrid[:block, :block]
    design = np.stack([np.ones(block * block), yy.ravel(), xx.ravel()], 1)
    residual = tiles - (design @ np.linalg.lstsq(design, tiles.T, rcond=None)[0]).T
    return tiles, residual


def _flat_residuals(image: np.ndarray, block: int, fraction: float) -> np.ndarray:
    """Plane-detrended residuals of the flattest ``fraction`` of ``block``-sized tiles."""
    _, residual = _plane_residuals(image, block)
    keep = np.argsort(residual.var(axis=1))[: max(4, int(len(residual) * fraction))]
    return residual[keep].reshape(-1, block, block)


def noise_covariance(
    image: np.ndarray, *, radius: int = 8, block: int = 32, fraction: float = 0.25
) -> np.ndarray:
    """Noise autocovariance ``C[dy + radius, dx + radius]`` measured in the flattest tiles.

    Where the signal is flat (after removing a fitted plane), what is left is noise, so
    its autocovariance up to ``radius`` pixels is the noise's. Tiles of 32 pixels keep
    the plane fit from eating the noise's low frequencies; the flattest quarter of them
    was the best trade-off between signal leaking in and too few samples on simulated
    correlated noise on W2S ground truths (not on any test set).
    """
    res = _flat_residuals(image, block, fraction)
    b = res.shape[-1]
    cov = np.zeros((2 * radius + 1,) * 2)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            a = res[:, max(dy, 0) : b + min(dy, 0), max(dx, 0) : b + min(dx, 0)]
            c = res[:, max(-dy, 0) : b + min(-dy, 0), max(-dx, 0) : b + min(-dx, 0)]
            cov[dy + radius, dx + radius] = float(np.mean(a * c))
    return cov


def sure_correlated(
    filtered: np.ndarray, block: np.ndarray, kernel: np.ndarray, cov: np.ndarray
) -> float:
    """Stein's unbiased risk estimate of a linear filter for spatially correlated noise.

    ``mean((f(x) - x)**2) - C(0) + 2 * sum_d K(d) C(d)``, with ``K`` the filter's 2-D
    kernel (centred, odd size) and ``C`` the noise autocovariance from
    :func:`noise_covariance`; taps beyond the measured radius count as uncorrelated.
    """
    r = cov.shape[0] // 2
    kr = kernel.shape[0] // 2
    m = min(r, kr)
    overlap = np.sum(
        kernel[kr - m : kr + m + 1, kr - m : kr + m + 1] * cov[r - m : r + m + 1, r - m : r + m + 1]
    )
    diff = np.asarray(filtered, np.float64) - block
    return float(np.mean(diff * diff) - cov[r, r] + 2.0 * overlap)


def noise_is_correlated(image: np.ndarray) -> bool:
    """Whether neighbouring pixels share noise (:func:`noise_correlation_ratio` above 2).

    Plain SURE and one-pixel blind spots both assume independent noise and would then
    choose far too little smoothing.
    """
    return noise_correlation_ratio(image) > CORRELATED_RATIO


def mean_noise_variance(block: np.ndarray) -> float:
    """Average noise variance over ``block`` from its Poisson-Gaussian noise model."""
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    from ...errors import InputError
    from .noise import estimate_noise_model, estimate_sigma

    block = np.asarray(block, np.float32)
    try:
        model = estimate_noise_model(block)
    except InputError:  # too few usable pixels for a signal-dependent model
        return float(estimate_sigma(block) ** 2)
    return float(np.mean(model.variance(ndi.gaussian_filter(block, 2.0))))


def sure_linear(
    filtered: np.ndarray, block: np.ndarray, centre_weight: float, variance: float
) -> float:
    """Stein's unbiased risk estimate of a linear filter's mean squared error per pixel.

    For independent noise of average variance ``variance``:
    ``mean((f(x) - x)**2) - variance + 2 * variance * centre_weight``. Unlike a blind-spot
    loss it scores the filter itself, centre tap included, so it stays accurate for the
    small widths that clean images need; it needs the noise level, hence the noise model.
    """
    diff = np.asarray(filtered, np.float64) - block
    return float(np.mean(diff * diff) - variance + 2.0 * variance * centre_weight)


def _neighbour_mean(block: np.ndarray) -> np.ndarray:
    """Mean of each pixel's neighbours in its 3x3 (3x3x3 in 3D) window, excluding itself."""
    from scipy import ndimage as ndi  # here: listing the methods must stay light

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
    candidates: Sequence, loss: Callable[[object], float], *, coarse: int = 1
) -> tuple[object, dict[int, float]]:
    """The candidate with the smallest loss, and the losses computed (index -> loss).

    With ``coarse > 1`` the candidates must be ordered along one parameter and the loss
    smooth along it: every ``coarse``-th one is scored first, then the candidates between
    the best one's neighbours, which finds the same minimum at about a third of the cost.
    """
    losses: dict[int, float] = {}

    def score(i: int) -> float:
        if i not in losses:
            losses[i] = loss(candidates[i])
        return losses[i]

    n = len(candidates)
    if coarse <= 1 or n < 3 * coarse:
        best = min(range(n), key=score)
    else:
        grid = sorted(set(range(0, n, coarse)) | {n - 1})
        first = min(grid, key=score)
        best = min(range(max(first - coarse + 1, 0), min(first + coarse, n)), key=score)
    return candidates[best], losses

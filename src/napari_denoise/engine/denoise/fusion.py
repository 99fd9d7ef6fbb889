"""A stack's neighbouring planes fused into each plane before a single-frame network sees it.

A neighbouring frame of a time-lapse (or plane of a z-stack) shows nearly the same
structure under independent noise; averaging it in lowers the noise the network has to
remove, often by more than any network can. But a plain mean smears whatever moved. The
fusion here keeps the gain and drops the smear, plane by plane and pixel by pixel:

1. **Alignment.** Each neighbour's shift against the centre plane is measured by the
   cross-correlation of the whole planes (its peak, found by FFT) and the neighbour moved by that whole number of pixels (the ends reflected): a drift of the
   sample or the stage costs nothing. Shifts are whole pixels on purpose: interpolating a
   noisy plane would smooth and correlate its noise, which the network would mistake for
   structure.
2. **Noise-aware weights.** The neighbour's brightness above the black level is matched
   to the centre's (a lamp's flicker, bleaching), and both planes are put on a scale of
   unit noise variance by the plane's Poisson-Gaussian noise model (:func:`~.noise.anscombe`);
   their difference is then pure noise where they show the same thing. The noise level
   the tests expect is read pixel by pixel on those differences themselves, from their
   finest diagonal detail (:func:`_noise_level`: the fitted model was 10-40% low on some
   validation images, and the thresholds are a few percent of the noise variance), never
   below the model's level as checked by :func:`_temporal_scale` (a model fitted wrongly
   on a sparse plane overstated the noise 34 times). Noise that neighbouring pixels share (a
   binned or smoothed camera image; FMD's widefield captures) is recognised on the plane
   (:func:`shared_noise`), or a little of it on the plane and the differences together
   (:func:`_shared_in_differences`); its correlation is measured on the plane and its
   level on the differences (:func:`_shared_level`), and the tests expect what such noise
   gives: tested as independent noise, every neighbour looked different and none was kept.
   Over a ``PATCH`` x ``PATCH`` window the
   difference's mean and energy, and over ``WIDE_PATCHES`` its mean (a blob-sized change
   too faint for a small window), are tested against what noise alone gives (z-scores, the
   largest kept): a neighbour counts fully where the difference looks like noise (z <= ``ACCEPT``),
   not at all where it does not (z >= ``REJECT``: a cell that moved on its own, a cut to
   another field), linearly in between. A small window cannot see a difference that is
   small but everywhere (a z-plane a little out of focus: each pixel off by a fraction of
   the noise, yet averaging six such planes blurs the result), so the difference's energy
   beyond the noise is also measured over a ``REGION`` x ``REGION`` window, as a share of
   the noise variance: the neighbour counts fully up to ``EXCESS_ACCEPT``, not at all from
   ``EXCESS_REJECT``. Measured on validation z-stacks (defocus 1.2 px per plane), this took
   the fusion from -2.1 dB against frame by frame to +1.0 dB, at 0.0 dB cost on still
   time series. Last, the kept neighbours' mean difference is tested for a change of
   focus (:func:`_defocus_keep`: projected on the fused plane's Laplacian), which adds up
   where the neighbours are all sharper, or all blurrier, than the plane.
3. **Fusion.** ``(centre + sum(w_j * neighbour_j)) / (1 + sum(w_j))``: the centre plane
   always counts fully, so where no neighbour agrees the plane is exactly the single frame.

The fused plane goes to the network as a single frame would (its noise is lower, and
varies where neighbours were dropped; the blind networks take both). It is computed on
whole planes, before the plane is cut into tiles, so the result does not depend on the
tile size, and each plane's window is read by the driver (:mod:`.driver`), streaming.

The thresholds and steps were chosen on validation data only (held-out FMD
Confocal_BPAE_B training fields 5, 10, 15, 20 with synthetic drift, a moving region, a
cut and flicker; W2S FOVs 009-010 as z-stacks, with sub-pixel jitter and with cells moving
on their own at low light, under spatially correlated noise, and as still 4-frame stacks
under independent and slightly correlated noise; a made-up bead z-stack):
``benchmarks/stack_fusion.py --parts val``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InputError

__all__ = [
    "ACCEPT",
    "FUSION_REACH",
    "PATCH",
    "REJECT",
    "fuse",
    "fusion_noise",
    "shift_between",
]

FUSION_REACH = 3  # planes on each side: a window of 7 (a 4-frame stack uses all 4)
PATCH = 5  # side of the window over which a neighbour's difference is tested
ACCEPT = 2.0  # z-score up to which a neighbour counts fully
REJECT = 8.0  # z-score from which it does not count at all
WIDE_PATCHES: tuple[int, ...] = (15,)  # wider windows over which the mean is also tested
REGION = 61  # side of the region over which a small, systematic difference is measured
EXCESS_ACCEPT = 0.05  # excess (share of the noise variance) up to which it counts fully
EXCESS_REJECT = 0.2  # ... from which it does not count
FINE_REGION = 31  # side (in 2 x 2 blocks: about REGION pixels) over which the noise is read
LOOSEN_MAX = 4.0  # the most the noise read on the differences may exceed the model's
DEFOCUS_SIGMA = 2.5  # width (pixels) of the Laplacian a change of focus is matched with
DEFOCUS_ACCEPT = 0.02  # defocus bias (share of the fused plane's noise variance) kept fully
DEFOCUS_REJECT = 0.08  # ... from which the neighbours do not count there


def fusion_noise(planes: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """The stack's noise model as ``(gain, sigma, offset)`` (see
    :class:`~.noise.NoiseModel`), estimated from a few of its planes."""
    from .noise import estimate_noise_model

    stack = np.stack([np.asarray(p, np.float32) for p in planes])
    model = estimate_noise_model(stack)
    return (float(model.gain), float(model.sigma), float(model.offset))


def _spectrum(plane: np.ndarray) -> np.ndarray:
    from scipy import fft

    plane = np.asarray(plane, np.float32)
    return fft.rfft2(plane - np.float32(plane.mean()), workers=1)


def shift_between(
    reference: np.ndarray, moving: np.ndarray, *, reference_spectrum: np.ndarray | None = None
) -> tuple[int, int]:
    """The whole-pixel shift ``(dy, dx)`` that moves ``moving`` onto ``reference``: the
    peak of their cross-correlation (by FFT, in single precision). Not phase correlation:
    whitening the spectrum whitens the noise too, and on noisy planes its peak lands on a
    wrong pixel (measured: 4 of 30 synthetic shifts found, against 30 of 30 here).
    ``reference_spectrum`` saves recomputing the reference's transform when several
    planes are matched against one."""
    from scipy import fft

    a = _spectrum(reference) if reference_spectrum is None else reference_spectrum
    cross = a * np.conj(_spectrum(moving))
    surface = fft.irfft2(cross, s=np.shape(reference), workers=1)
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    ny, nx = surface.shape
    dy, dx = int(peak[0]), int(peak[1])
    return (dy - ny if dy > ny // 2 else dy), (dx - nx if dx > nx // 2 else dx)


def _moved(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``plane`` moved by ``(dy, dx)`` whole pixels, the uncovered edge reflected."""
    if dy == 0 and dx == 0:
        return plane
    ny, nx = plane.shape
    py, px = min(abs(dy), ny - 1), min(abs(dx), nx - 1)
    padded = np.pad(plane, ((py, py), (px, px)), mode="reflect")
    return padded[py - np.clip(dy, -py, py) :][:ny, px - np.clip(dx, -px, px) :][:, :nx]


def _temporal_scale(diffs: list[np.ndarray], unit: np.ndarray, pool=None) -> float:
    """How far the noise model overstates the noise, measured on the differences
    themselves: where two planes agree (most pixels of the best-matching neighbour) the
    difference of their stabilised values is pure noise of variance 2, so its median
    square is ``2 * 0.4549`` (the median of a chi-square of one degree). The spread is
    taken from the best-matching neighbour, and never above 1 (measured: a model with 34
    times too much shot noise, fitted on a sparse defocused bead plane, let every
    neighbour in). Its square is the floor of :func:`_noise_level`. (Loosening it where
    the plane's own finest detail, rather than the differences', read more noise than the
    model let differently blurred z-planes in: -0.24 dB on a validation z-stack.)
    Noise that neighbouring pixels share is measured apart (:func:`shared_noise`)."""
    if not diffs:
        return 1.0
    bright = unit > np.median(unit)  # a dark background of few counts has quantised noise
    if np.count_nonzero(bright) < 1024:
        return 1.0
    where = np.flatnonzero(bright)

    def median_square(d):
        v = np.take(d.ravel(), where)
        np.multiply(v, v, out=v)
        return float(np.median(v, overwrite_input=True))

    best = min(_each(median_square, diffs, pool))
    return float(np.clip(np.sqrt(best / (2.0 * 0.4549)), 1e-3, 1.0))


def _block_energies(diff: np.ndarray, size: int = FINE_REGION) -> tuple[np.ndarray, np.ndarray]:
    """Over each 2 x 2 block of ``diff``, the mean square of its finest diagonal Haar
    detail ``(a - b - c + d) / 2`` and of its pixels, each averaged over ``size`` x
    ``size`` blocks (half the plane's sides). Independent noise puts its whole variance in
    both; what two planes differ by (a drift, a moved cell, a change of focus) is smooth at
    the finest scale and adds little to the first; noise shared between neighbouring
    pixels has less energy at the finest scale than in its pixels."""
    from scipy.ndimage import uniform_filter

    from .calibrate import diagonal_detail

    h = diagonal_detail(diff)
    ny, nx = h.shape
    sq = diff[: 2 * ny, : 2 * nx] ** 2
    pixels = (sq[0::2, 0::2] + sq[0::2, 1::2] + sq[1::2, 0::2] + sq[1::2, 1::2]) * np.float32(0.25)
    return (
        uniform_filter(h * h, size, mode="reflect"),
        uniform_filter(pixels, size, mode="reflect"),
    )


def _full(blocks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map over 2 x 2 blocks back on the plane's pixels (an odd side's last row or
    column repeated)."""
    full = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    ny, nx = shape
    if full.shape != (ny, nx):
        full = np.pad(full, ((0, ny - full.shape[0]), (0, nx - full.shape[1])), mode="edge")
    return full


def _robust_low(maps: list[np.ndarray]) -> np.ndarray:
    """Pixel by pixel, the second-smallest of ``maps`` (the smallest where there are fewer
    than 3): a neighbour that differs reads high, the smallest of several noisy readings
    reads low."""
    low = second = None
    for m in maps:
        if low is None:
            low = m
            continue
        high = np.maximum(low, m)
        second = high if second is None else np.minimum(second, high)
        low = np.minimum(low, m)
    return second if len(maps) >= 3 else low


def _noise_level(
    diffs: list[np.ndarray], unit: np.ndarray, energies: list, pool=None
) -> np.ndarray:
    """Each pixel's noise variance on the stabilised scale (1 where the model is right),
    for independent noise: half the differences' fine energy (:func:`_block_energies`,
    ``energies`` of ``diffs``; a difference holds two planes' noise), the second-smallest
    over the neighbours (:func:`_robust_low`). Never below the model's level as checked by
    :func:`_temporal_scale` (dim, few-count parts whose stabilised noise is lower than 1,
    quantised and heavy-tailed: the tests stay as lenient there as the model makes them)
    and at most ``LOOSEN_MAX`` times it.

    Why: the tests' thresholds are a few percent of the noise variance, and a plane's
    fitted model is not that exact. Measured on W2S clean images as still 4-frame stacks
    under synthetic Poisson-Gaussian noise (allowed data), the model understated the
    noise by 10-40% on some images (up to 4x where the fit fell back to Gaussian noise):
    every neighbour counted partly or not at all, 0.5-1.2 dB below the plain mean of the
    frames before the network (-0.03 to -0.06 dB with the noise read on the differences)."""
    reading = _full(_robust_low([fine for fine, _ in energies]), unit.shape)
    floor = np.float32(_temporal_scale(diffs, unit, pool) ** 2)
    return np.clip(reading * np.float32(0.5), floor, np.float32(LOOSEN_MAX) * floor)


def _shared_level(cov: np.ndarray, unit: np.ndarray, energies: list) -> np.ndarray:
    """Each pixel's noise variance on the stabilised scale for noise shared between
    neighbouring pixels: the differences' fine energy (:func:`_block_energies`, as for
    independent noise) divided by the share of a pixel's noise that the finest diagonal
    detail holds under the measured correlation (:func:`~.calibrate.fine_share`; at least
    1/30: noise smoothed by a Gaussian of 1 px has about 1/19); never below the covariance's own level, measured in the plane's
    flattest tiles, and at most ``LOOSEN_MAX`` times it. Measured on the validation
    stacks under correlated noise: the flat tiles' level alone was too strict (still
    +3.41, drift 2 px +2.84 (worst +1.43), z0.6 +4.04 dB; read on the differences +3.73,
    +3.70 (worst +3.02), +4.75)."""
    from .calibrate import fine_share

    r = cov.shape[0] // 2
    c0 = max(float(cov[r, r]), 1e-12)
    fine = max(fine_share(cov / c0), 1 / 30)
    reading = _full(_robust_low([e for e, _ in energies]), unit.shape) * np.float32(0.5 / fine)
    return np.clip(reading, np.float32(c0), np.float32(LOOSEN_MAX * c0))


MILD_CORRELATION = 1.3  # pixel to finest-scale energy of still differences: shared noise


def _shared_in_differences(energies: list, centre: np.ndarray) -> bool:
    """Whether noise is shared a little between neighbouring pixels, below what
    :func:`~.calibrate.noise_is_correlated` calls correlated: read on the plane
    (:func:`~.calibrate.noise_correlation_ratio`) above the no-ground-truth check's
    ``CORRELATED_RATIO`` (real independent captures read up to 1.4 there), and confirmed
    on the differences: their energy per pixel over their finest-scale energy
    (:func:`_block_energies`), the second-smallest over the neighbours, its median over
    the plane, above ``MILD_CORRELATION`` (1.03-1.06 on the confocal validation captures,
    0.97-1.03 on W2S still and z-stacks under independent noise, 1.75 under noise smoothed
    by a Gaussian of 0.5 px, which read 1.8 on the plane and, tested as independent, let
    no neighbour in: +0.00 dB). Both, because each alone misreads: on the plane, signal
    in the flattest tiles; on the differences, a time-lapse whose nuclei all move (the
    differences read high, and the independent noise tested as shared let moved nuclei
    in: -2.1 dB on the cancer-cell check)."""
    from .calibrate import center_crop, noise_correlation_ratio
    from .selfcheck import CORRELATED_RATIO

    ratios = [total / np.maximum(fine, np.float32(1e-12)) for fine, total in energies]
    if float(np.median(_robust_low(ratios))) <= MILD_CORRELATION:
        return False
    return noise_correlation_ratio(center_crop(centre, 1024)) > CORRELATED_RATIO


def _defocus_keep(unit, diffs, weights, sd) -> np.ndarray:
    """The share (0-1, per pixel) of the neighbours' weights kept once their combined
    difference is tested for a change of focus.

    A plane out of focus by a little differs from the centre by about its Laplacian times
    a constant: too little per pixel for the other tests (a few percent of the noise
    variance), yet it blurs the fused plane, and the network cannot take a blur back. The
    weighted mean of the kept neighbours' differences is projected, over ``REGION`` x
    ``REGION`` windows, on the Laplacian (of a Gaussian of ``DEFOCUS_SIGMA``) of the
    fused plane: the fitted part is the bias the neighbours bring, and its energy, times
    the neighbours' share of the fused plane squared, is compared with the fused plane's
    own noise variance. Neighbours on both sides of a plane in focus (blurred alike)
    add up; one-sided at a stack's ends (all sharper than the last plane) as well; the
    noise of the differences is independent of the fused plane's (equal variances), so
    the projection reads zero on still planes. Measured on validation z-stacks (W2S,
    defocus 0.6 and 1.2 px per plane; made-up beads): their end planes lost 1-2 dB
    against frame by frame without it."""
    from scipy.ndimage import gaussian_laplace, uniform_filter

    wsum = np.add.reduce(weights)
    shift = np.add.reduce([w * d for w, d in zip(weights, diffs, strict=True)])
    fused = (unit * (1 + wsum) + shift) / (1 + wsum)
    mean = shift / np.maximum(wsum, np.float32(1e-6)) / sd
    lap = gaussian_laplace(fused, DEFOCUS_SIGMA, mode="reflect") / sd
    along = uniform_filter(mean * lap, REGION, mode="reflect")
    power = uniform_filter(lap * lap, REGION, mode="reflect")
    share = wsum / (1 + wsum)
    bias = along * along / np.maximum(power, np.float32(1e-12)) * share * share * (1 + wsum)
    keep = (DEFOCUS_REJECT - bias) / (DEFOCUS_REJECT - DEFOCUS_ACCEPT)
    return np.clip(keep, 0.0, 1.0).astype(np.float32)


def _matched(plane: np.ndarray, centre: np.ndarray, offset: float) -> np.ndarray:
    """``plane``'s brightness above the black level scaled to the centre's (a lamp's
    flicker, bleaching from frame to frame), so that the test sees structure, not a
    global change of intensity."""
    above, want = float(plane.mean()) - offset, float(centre.mean()) - offset
    if not (above > 0 and want > 0):
        return plane
    gain = np.float32(want / above)
    return (plane - np.float32(offset)) * gain + np.float32(offset)


def _pool(n: int):
    """A thread pool for ``n`` neighbours' independent work (the filters and transforms
    used release Python's lock), as many threads as this machine's cores or
    ``NAPARI_DENOISE_THREADS``; a context whose pool is None where one thread would do."""
    import os
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    from ..device import env_threads

    threads = min(n, env_threads() or os.cpu_count() or 1)
    if threads <= 1:
        return nullcontext()  # ``as pool`` gives None: one thread
    return ThreadPoolExecutor(threads, thread_name_prefix="fusion")


def _each(fn, items, pool) -> list:
    """``[fn(x) for x in items]``, on ``pool``'s threads when there is one."""
    return [fn(x) for x in items] if pool is None else list(pool.map(fn, items))


class _Null:
    """What the tests expect of the difference of two planes' noise (each of
    autocovariance ``C``; the difference has ``2C``): the spread of its box means, the
    mean of its energy and the spread of that energy's box means (Gaussian noise:
    ``cov(x^2, y^2) = 2 cov(x, y)^2``). For independent noise of unit variance these are
    ``sqrt(2) / k``, 2 and ``sqrt(2) / k``."""

    def __init__(self, energy: float, mean_var: dict, energy_var: dict):
        self.energy = float(energy)
        self._mean_var, self._energy_var = mean_var, energy_var

    @classmethod
    def white(cls) -> _Null:
        return cls(2.0, {}, {})

    @classmethod
    def of(cls, cov: np.ndarray, sizes) -> _Null:
        r = cov.shape[0] // 2
        c0 = max(float(cov[r, r]), 1e-12)
        rho = cov / c0
        lag = np.abs(np.arange(-r, r + 1))
        mean_var, energy_var = {}, {}
        for k in sizes:
            side = np.clip(k - lag, 0, None)
            overlap = np.outer(side, side) / float(k) ** 4  # pairs of a k x k box at each lag
            mean_var[k] = max(2.0 * float(np.sum(cov * overlap)), 2.0 * c0 / k**2)
            energy_var[k] = max(2.0 * float(np.sum(rho * rho * overlap)), 2.0 / k**2)
        return cls(2.0 * c0, mean_var, energy_var)

    def mean_sd(self, k: int) -> float:
        return float(np.sqrt(self._mean_var.get(k, 2.0 / k**2)))

    def energy_sd(self, k: int) -> float:
        return float(np.sqrt(self._energy_var.get(k, 2.0 / k**2)))


def fuse(
    window: np.ndarray,
    neighbours: Sequence[int],
    *,
    noise: tuple[float, float, float],
    patch: int = PATCH,
    accept: float = ACCEPT,
    reject: float = REJECT,
    weights: bool = False,
    covariance: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The middle plane of ``window`` (planes, Y, X) fused with the planes at the slots
    ``neighbours`` (each a distinct plane other than the middle one), as described above.

    ``covariance``: the noise's autocovariance on the stabilised scale,
    ``C[dy + r, dx + r]`` (:func:`~.calibrate.noise_covariance`), for noise that
    neighbouring pixels share; the tests then expect what such noise gives (a box mean
    of correlated noise varies far more than one of independent noise) instead of
    independent noise of unit variance.

    Returns the fused plane (float32); with ``weights=True`` also the summed weight per
    pixel (1 + the neighbours' weights: how many planes were averaged there).
    """
    from scipy.ndimage import uniform_filter

    from .noise import NoiseModel, anscombe

    window = np.asarray(window)
    centre = np.asarray(window[len(window) // 2], np.float32)
    total = centre.astype(np.float32).copy()
    count = np.ones(centre.shape, np.float32)
    if neighbours:
        model = NoiseModel(*noise)
        unit = np.asarray(anscombe(centre, model), np.float32)
        spectrum = _spectrum(centre)
        with _pool(len(neighbours)) as pool:

            def aligned(j):
                plane = np.asarray(window[j], np.float32)
                dy, dx = shift_between(centre, plane, reference_spectrum=spectrum)
                plane = _matched(_moved(plane, dy, dx), centre, model.offset)
                # noise of variance 2 where the planes agree (once the scale is right)
                return plane, np.asarray(anscombe(plane, model), np.float32) - unit

            planes, diffs = zip(*_each(aligned, neighbours, pool), strict=True)
            diffs = list(diffs)
            energies = _each(_block_energies, diffs, pool)
            if covariance is None and _shared_in_differences(energies, centre):
                covariance = _covariance(centre, noise)
            if covariance is None:  # independent noise, its level read on the differences
                scale = np.sqrt(_noise_level(diffs, unit, energies, pool))
                null = _Null.white()
            else:  # noise shared between neighbouring pixels: its measured correlation
                cov = np.asarray(covariance, np.float64)
                scale = np.sqrt(_shared_level(cov, unit, energies))
                r = cov.shape[0] // 2
                null = _Null.of(cov / max(float(cov[r, r]), 1e-12), (patch, *WIDE_PATCHES))

            def weight(diff):
                # (in place where it can be: the same arithmetic, fewer planes allocated)
                diff = diff / scale
                z = uniform_filter(diff, patch, mode="reflect")
                np.abs(z, out=z)
                z /= null.mean_sd(patch)  # N(0, 1) where they agree
                for wide in WIDE_PATCHES:  # a blob-sized change, too faint for a small window
                    wide_z = uniform_filter(diff, wide, mode="reflect")
                    np.abs(wide_z, out=wide_z)
                    wide_z /= null.mean_sd(wide)
                    np.maximum(z, wide_z, out=z)
                square = diff * diff
                energy = uniform_filter(square, patch, mode="reflect")
                energy /= null.energy
                energy -= 1.0
                energy /= null.energy_sd(patch)
                np.maximum(z, energy, out=z)
                w = np.subtract(reject, z, out=z)
                w /= reject - accept
                np.clip(w, 0.0, 1.0, out=w)
                # what the planes differ by beyond noise, as a share of the noise variance,
                # over a region wide enough to see a small, systematic difference
                excess = uniform_filter(square, REGION, mode="reflect")
                excess /= null.energy
                excess -= 1.0
                keep = np.subtract(EXCESS_REJECT, excess, out=excess)
                keep /= EXCESS_REJECT - EXCESS_ACCEPT
                w *= np.clip(keep, 0.0, 1.0, out=keep)
                return w

            shares = _each(weight, diffs, pool)  # each neighbour's on its own (threads)
            if covariance is None:
                keep = _defocus_keep(unit, diffs, shares, scale)
                shares = [w * keep for w in shares]
            for plane, w in zip(planes, shares, strict=True):  # summed in order
                total += w * plane
                count += w
    fused = total / count
    return (fused, count) if weights else fused


NEIGHBOURS_CHOICES = ("on", "off")


def fusion_reach(params) -> int:
    """The plane reach of a method that fuses neighbours: none when they are turned off."""
    return 0 if params.get("neighbours", "on") == "off" else FUSION_REACH


def combine(window: np.ndarray, slots: Sequence[int], *, neighbours="on") -> np.ndarray:
    """The driver's ``combine`` step (see :class:`~..method_base.Method`): the middle plane
    of ``window`` fused with the planes at ``slots``, under the noise model estimated on
    the middle plane; with ``neighbours="off"`` (or no slots: a stack of one plane), the
    plane itself."""
    centre = np.asarray(window[len(window) // 2], np.float32)
    if neighbours == "off" or not slots:
        return centre
    noise = plane_noise(centre)
    if noise is None:  # no noise seen: nothing to average away
        return centre
    return fuse(window, slots, noise=noise, covariance=shared_noise(centre, noise))


def plane_noise(plane: np.ndarray) -> tuple[float, float, float] | None:
    """The noise model :func:`combine` fuses ``plane`` under: fitted on it
    (:func:`fusion_noise`), else a Gaussian level (a dark plane of few photons, mostly
    zeros, has nothing to fit); None when no noise is seen, or the plane is too small for
    any estimate (then it stands alone, as frame by frame)."""
    try:
        return fusion_noise([plane])
    except InputError:
        from .noise import estimate_sigma

        try:
            sigma = float(estimate_sigma(plane))
        except InputError:  # fewer than 8 pixels a side: nothing to test a neighbour with
            return None
        return (0.0, sigma, 0.0) if sigma > 0 else None


CORRELATION_REACH = 4  # pixels: how far the covariance of shared noise is measured


def shared_noise(plane: np.ndarray, noise: tuple[float, float, float]) -> np.ndarray | None:
    """The autocovariance of ``plane``'s noise on the stabilised scale when neighbouring
    pixels share it (:func:`~.calibrate.noise_is_correlated`: a binned, interpolated or
    smoothed camera image; FMD's widefield captures), measured in its flattest tiles
    (:func:`~.calibrate.noise_covariance`); None for independent noise."""
    from .calibrate import center_crop, noise_is_correlated

    crop = center_crop(np.asarray(plane, np.float32), 1024)
    if min(crop.shape) < 64 or not noise_is_correlated(crop):
        return None
    return _covariance(crop, noise)


def _covariance(plane: np.ndarray, noise: tuple[float, float, float]) -> np.ndarray | None:
    """The autocovariance of ``plane``'s noise on the stabilised scale, measured in the
    flattest tiles of its central 1024 x 1024 (:func:`~.calibrate.noise_covariance`);
    None where the plane is too small or no noise is seen."""
    from .calibrate import center_crop, noise_covariance
    from .noise import NoiseModel, anscombe

    crop = center_crop(np.asarray(plane, np.float32), 1024)
    if min(crop.shape) < 64:
        return None
    unit = np.asarray(anscombe(crop, NoiseModel(*noise)), np.float32)
    cov = noise_covariance(unit, radius=CORRELATION_REACH)
    return cov if cov[CORRELATION_REACH, CORRELATION_REACH] > 0 else None


def window_neighbours(positions: Sequence) -> list[int]:
    """The slots of a window (its planes' positions, the middle one the plane denoised)
    that hold a distinct plane other than the middle one: a reflected end repeats planes,
    and a repeated plane would be counted twice."""
    middle = positions[len(positions) // 2]
    return [j for j, p in enumerate(positions) if p != middle and positions.index(p) == j]


__all__ += ["NEIGHBOURS_CHOICES", "combine", "fusion_reach", "plane_noise", "window_neighbours"]

"""Which of two results on the user's own image is better, without ground truth.

Stein's unbiased risk estimate (SURE; Stein 1981, as used by SURE-LET, Luisier et al.
2007) tells how far a denoiser's output lies from the noise-free image, from the noisy
image alone, given the noise's covariance ``C``::

    E ||h(y) - x||^2 = E ||h(y) - y||^2 - tr(C) + 2 tr(C J_h)

``J_h`` is the denoiser's Jacobian; ``tr(C J_h)`` is estimated by Monte Carlo with one
more run of the denoiser on the image plus a small noise-like perturbation ``eps * z``
(``z`` drawn with covariance ``C``): ``z . (h(y + eps z) - h(y)) / eps``. Any denoiser is
a black box here (a filter, a network, a fine-tuned network), so two results are ranked
by their estimated error, and the share ``alpha`` of the smoothed residual put back,
``h(y) + alpha G_s(y - h(y))``, has its best value in closed form (SURE is quadratic in
``alpha``; :func:`detail_choice`): what an over-smoothing
denoiser removed of the image's structure, with the residual's noise averaged down by a
Gaussian ``G_s`` (``s = 0``: the residual itself, i.e. the blend with ``w = 1 - alpha``).

The noise model is the image's own: Poisson-Gaussian variance ``a x + b`` estimated
from the image (``x`` a lightly smoothed copy) and, where the noise is spatially
correlated, its autocovariance measured in the image's flattest tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..notes import say

__all__ = [
    "GaussianChoice",
    "NoiseCovariance",
    "Probe",
    "better",
    "detail_choice",
    "detail_from_probes",
    "estimate_noise_covariance",
    "gaussian_choice",
    "probe",
    "probe_planes",
    "put_back",
    "risk",
    "smooth",
    "trace_of_smoothing",
]

Denoiser = Callable[[np.ndarray], np.ndarray]
EPSILON = 0.3  # perturbation, in units of the noise: large against bf16 rounding, small for h
CORRELATED_RATIO = 1.5  # below: treat the noise as independent (1.0-1.4 measured on such)
CORRELATION_RADIUS = 4  # pixels: the measured autocovariance beyond is mostly noise


@dataclass(frozen=True)
class NoiseCovariance:
    """Noise of one image: per-pixel variance and, for spatially correlated noise, the
    correlation between pixels ``d`` apart (``correlation[r + dy, r + dx]``, 1 at the centre)."""

    variance: np.ndarray
    correlation: np.ndarray | None = None

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Noise with this covariance (zero mean)."""
        u = rng.standard_normal(self.variance.shape)
        if self.correlation is not None:
            u = _stationary(u, self.correlation)
        return np.sqrt(self.variance) * u


def _stationary(u: np.ndarray, correlation: np.ndarray) -> np.ndarray:
    """White noise ``u`` filtered to the given correlation (Fourier: the square root of its
    power spectrum), with unit variance."""
    r = correlation.shape[0] // 2
    ny, nx = u.shape
    acf = np.zeros((ny, nx))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            acf[dy % ny, dx % nx] += correlation[dy + r, dx + r]
    power = np.maximum(np.fft.rfft2(acf).real, 0.0)
    out = np.fft.irfft2(np.fft.rfft2(u) * np.sqrt(power), s=u.shape)
    return out / max(float(out.std()), 1e-12)


def estimate_noise_covariance(image: np.ndarray) -> NoiseCovariance:
    """The noise model of one 2-D image, estimated from the image alone.

    The variance ``a x + b`` is fitted at the finest scale (:mod:`.noise`); where the noise
    is spatially correlated, the autocovariance measured in the image's flattest tiles
    (:func:`~.calibrate.noise_covariance`) gives both the correlation and how much more
    energy each pixel holds than the finest scale shows.
    """
    from scipy.ndimage import gaussian_filter

    from ...errors import InputError
    from .calibrate import center_crop, fine_share, noise_covariance
    from .noise import estimate_noise_model, estimate_sigma

    image = np.asarray(image, np.float32)
    plane = center_crop(image, 1024)
    try:
        model = estimate_noise_model(plane)
        a = max(float(model.gain), 0.0)
        b = float(model.sigma**2 - model.gain * model.offset)
    except InputError:  # a thin stripe: too few pixels for a signal-dependent model
        a, b = 0.0, float(estimate_sigma(plane)) ** 2
    variance = a * gaussian_filter(image, 1.0).astype(np.float64) + b
    # Floors relative to the image's range, never absolute: an image in tiny units (a
    # noise variance of 1e-13) is the same image as in grey levels.
    unit = float(np.ptp(image)) ** 2 or 1e-6  # a flat image: the floors as they were
    floor = 1e-6 * unit
    block = min(32, min(plane.shape) // 2 * 2)  # a thin stripe: tiles as tall as it
    cov = noise_covariance(plane, radius=CORRELATION_RADIUS, block=block)
    r = CORRELATION_RADIUS
    rho = cov / max(cov[r, r], 1e-12 * unit)
    # Energy of the finest diagonal Haar detail relative to the pixel variance (1 for
    # independent noise): what the finest-scale fit saw of each pixel's noise.
    ratio = 1 / max(fine_share(rho), 1 / 9)
    # The mean energy of the finest diagonal detail of the image itself (noise, and little
    # signal at that scale; 0.99-1.02 times the true noise variance on the 30 real W2S
    # frames) is a floor for the fit: a noise read low makes SURE take noise for detail.
    # The fit reads correlated noise low (by 15% on the hela proxy's widefield regime), and
    # on small, dim frames with a black level it sometimes read a third of the truth.
    scale = max(_finest_detail_energy(image) / max(float(np.mean(variance)), 1e-12 * unit), 1.0)
    if ratio < CORRELATED_RATIO:
        return NoiseCovariance(np.maximum(variance * scale, floor))
    return NoiseCovariance(np.maximum(variance * scale * ratio, floor), rho)


CHI2_1_Q75 = 1.323304  # upper quartile of a chi-square with one degree of freedom
DETAIL_OUTLIER = 100.0  # times the local noise energy: structure, far beyond any noise
DETAIL_CELL = 8  # blocks per side of the cells the local noise energy is read in
UPPER_QUARTILE = (47, 48)  # ranks around the upper quartile of DETAIL_CELL**2 = 64 values


def _finest_detail_energy(image: np.ndarray) -> float:
    """Mean energy of the finest diagonal Haar detail of ``image``, its structure left out.

    A few blocks on sharp structure (bright sub-resolution spots, a diagonal edge) hold
    far more energy than noise could, and the mean is not robust: 60 beads on a W2S crop
    read the noise 8 times too high. Such a block counts with the local noise energy
    instead: the upper quartile of the 8 x 8 cell of blocks it lies in (a median is 0
    where most blocks see no photon; cells, not a sliding window: a few ms instead of 40
    on a 512 x 512 crop), so noise alone gives the plain mean.
    """
    from .calibrate import diagonal_detail

    energy = diagonal_detail(np.asarray(image, np.float64)) ** 2
    ny, nx = energy.shape
    c = DETAIL_CELL
    padded = np.pad(
        energy, ((0, -ny % c), (0, -nx % c)), mode="reflect" if min(ny, nx) > c else "edge"
    )
    cells = padded.reshape(padded.shape[0] // c, c, padded.shape[1] // c, c).swapaxes(1, 2)
    ranked = np.partition(cells.reshape(*cells.shape[:2], c * c), UPPER_QUARTILE, axis=-1)
    low, high = (ranked[..., k] for k in UPPER_QUARTILE)  # np.percentile's interpolation
    q75 = (low + (0.75 * (c * c - 1) - UPPER_QUARTILE[0]) * (high - low)) / CHI2_1_Q75
    local = np.repeat(np.repeat(q75, c, axis=0), c, axis=1)[:ny, :nx]
    local = np.where(local > 0, local, float(np.mean(energy)))
    return float(np.mean(np.where(energy > DETAIL_OUTLIER * local, local, energy)))


def _divergence(
    image: np.ndarray, denoise: Denoiser, result: np.ndarray, z: np.ndarray, eps: float
) -> float:
    """Monte-Carlo ``tr(C J_h)``: ``z . (h(y + eps z) - h(y)) / eps``."""
    moved = np.asarray(denoise((image + eps * z).astype(np.float32)), np.float64)
    return float(np.sum(z * (moved - result)) / eps)


def risk(
    image: np.ndarray,
    denoise: Denoiser,
    *,
    result: np.ndarray | None = None,
    noise: NoiseCovariance | None = None,
    seed: int = 0,
) -> float:
    """Estimated mean squared error of ``denoise(image)`` against the noise-free image.

    Parameters
    ----------
    image : 2-D array
        The noisy image.
    denoise : callable
        Maps an image to its denoised version (run once more on a perturbed copy).
    result : array, optional
        ``denoise(image)`` if already computed.
    noise : NoiseCovariance, optional
        The noise model (estimated from ``image`` if not given).
    seed : int
        Seed of the perturbation: the same seed gives every denoiser the same one.

    Returns
    -------
    float
        Mean squared error per pixel, in the image's units squared (lower is better).
    """
    y = np.asarray(image, np.float64)
    noise = estimate_noise_covariance(image) if noise is None else noise
    result = np.asarray(denoise(image) if result is None else result, np.float64)
    z = noise.sample(np.random.default_rng(seed))
    div = _divergence(image, denoise, result, z, EPSILON)
    total = float(np.sum((result - y) ** 2) - np.sum(noise.variance) + 2 * div)
    return total / y.size


def better(
    image: np.ndarray, denoisers: Mapping[str, Denoiser], *, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """The name of the denoiser with the lowest estimated error, and every estimate."""
    noise = estimate_noise_covariance(image)
    scores = {name: risk(image, fn, noise=noise, seed=seed) for name, fn in denoisers.items()}
    return min(scores, key=scores.get), scores


DETAIL_WIDTHS = (0.0, 0.9, 1.3, 2.0, 3.0)  # pixels; 0: the residual itself (a blend)
DETAIL_MAX_WIDTH = 4.0  # pixels: reach 16 px (truncated at SMOOTH_TRUNCATE widths)
SMOOTH_TRUNCATE = 4.0  # the Gaussian's radius in widths (3 px wide: 12 px, in any halo)


def smooth(image: np.ndarray, width: float) -> np.ndarray:
    """``image`` blurred by a Gaussian ``width`` pixels wide in its last two axes (each
    plane on its own); ``width`` 0: ``image`` itself."""
    from scipy.ndimage import gaussian_filter

    if width <= 0:
        return image
    sigma = (0.0,) * (image.ndim - 2) + (float(width),) * 2
    return gaussian_filter(image, sigma, truncate=SMOOTH_TRUNCATE, mode="reflect")


def put_back(result: np.ndarray, image: np.ndarray, amount: float, width: float) -> np.ndarray:
    """``result + amount * G_width(image - result)`` in float32 (``amount`` 0: ``result``)."""
    out = np.asarray(result, np.float32)
    if amount <= 0:
        return out
    residual = np.asarray(image, np.float32) - out
    return out + np.float32(amount) * smooth(residual, width).astype(np.float32, copy=False)


def _trace_of_smoothing(noise: NoiseCovariance, width: float) -> float:
    """``tr(C G_width)`` (exact for stationary correlation; the variance varies slowly)."""
    total = float(np.sum(noise.variance))
    r = CORRELATION_RADIUS if noise.correlation is None else noise.correlation.shape[0] // 2
    n = r + int(np.ceil(SMOOTH_TRUNCATE * width)) + 1  # no reflection reaches the centre
    delta = np.zeros((2 * n + 1, 2 * n + 1))
    delta[n, n] = 1.0
    kernel = smooth(delta, width)[n - r : n + r + 1, n - r : n + r + 1]
    if noise.correlation is None:
        return total * float(kernel[r, r])
    return total * float(np.sum(noise.correlation * kernel))


@dataclass(frozen=True)
class Probe:
    """One plane's SURE probe of a denoiser ``h``: the noisy image ``y``, ``h(y)``, the
    noise model, a perturbation ``z`` drawn from it and ``J_h z``, the response to it
    (from one more run of ``h`` on ``y + eps z``). Every estimate below that concerns
    ``h`` on this plane (its risk, the detail put back, the blend with a Gaussian) is
    read from these, with no further run of ``h``."""

    image: np.ndarray
    result: np.ndarray
    noise: NoiseCovariance
    z: np.ndarray
    response: np.ndarray


def probe(
    image: np.ndarray,
    denoise: Denoiser,
    *,
    result: np.ndarray | None = None,
    noise: NoiseCovariance | None = None,
    seed: int = 0,
) -> Probe:
    """Run ``denoise`` on ``image`` (unless ``result`` is given) and on a perturbed copy."""
    y = np.asarray(image, np.float64)
    noise = estimate_noise_covariance(image) if noise is None else noise
    result = np.asarray(denoise(image) if result is None else result, np.float64)
    z = noise.sample(np.random.default_rng(seed))
    moved = np.asarray(denoise((image + EPSILON * z).astype(np.float32)), np.float64)
    return Probe(y, result, noise, z, (moved - result) / EPSILON)


def probe_planes(images: Sequence[np.ndarray], denoise: Denoiser, *, seed: int = 0) -> list:
    """:func:`probe` of each sample plane (each with its own noise model), saying how far."""
    probes = []
    for i, im in enumerate(images):
        where = f": sample plane {i + 1} of {len(images)}" if len(images) > 1 else ""
        say(
            f"Choosing how much fine detail to keep{where}…",
            i,
            len(images),
            short="Choosing detail",
        )
        probes.append(probe(im, denoise, seed=seed))
    return probes


def detail_choice(
    image: np.ndarray | Sequence[np.ndarray],
    denoise: Denoiser,
    *,
    result: np.ndarray | None = None,
    noise: NoiseCovariance | None = None,
    widths: tuple[float, ...] = DETAIL_WIDTHS,
    margin: float = 0.0,
    seed: int = 0,
    amount: float | None = None,
) -> tuple[float, float]:
    """How much of the smoothed residual to put back into ``h(y)``, and how smoothed:
    the ``(alpha, s)`` with the lowest estimated error of ``h + alpha G_s(y - h)``,
    ``alpha`` in [0, 1], ``s`` among ``widths``. With ``amount`` given, ``alpha`` is that
    and only ``s`` is chosen (the width of lowest estimated error for that ``alpha``).

    For one ``s``, with ``r = G_s(y - h)``, SURE is quadratic in ``alpha``::

        SURE(alpha) = SURE(h) + alpha^2 |r|^2 - 2 alpha (r . (y - h) - T),
        T = tr(C G_s) - tr(C G_s J_h)

    (``tr(C G_s J_h)`` from the same Monte-Carlo run as ``tr(C J_h)``), lowest at
    ``alpha = (r . (y - h) - T) / |r|^2``. ``margin`` judges the residual against a
    noise ``1 + margin`` times the estimated variance: a noise level read a few percent
    low makes pure noise look like lost detail (measured on real W2S pairs: estimates
    0.88-1.02 times the true variance), and the margin keeps such noise out.

    ``image`` may be a list of planes that share one setting (a stack's sample planes,
    each with its own noise model; ``result`` and ``noise`` are then not given): for
    each ``s``, ``alpha`` is the smallest of the planes' own, so that no plane's SURE
    finds it harmful (a clean plane's choice would put noise back into a noisy one),
    and ``s`` is the width of the lowest total.
    """
    if isinstance(image, np.ndarray):
        probes = [probe(image, denoise, result=result, noise=noise, seed=seed)]
    else:
        probes = probe_planes(image, denoise, seed=seed)
    return detail_from_probes(probes, widths=widths, margin=margin, amount=amount)


def detail_from_probes(
    probes: Sequence[Probe],
    *,
    widths: tuple[float, ...] = DETAIL_WIDTHS,
    margin: float = 0.0,
    amount: float | None = None,
) -> tuple[float, float]:
    """:func:`detail_choice` from the planes' probes (no run of the denoiser)."""
    planes = [_probe_terms(p, widths, margin) for p in probes]
    return combine_detail_terms(planes, widths, amount)


def combine_detail_terms(
    planes: Sequence[Sequence[tuple[float, float]]],
    widths: Sequence[float],
    amount: float | None = None,
) -> tuple[float, float]:
    """The ``(amount, width)`` of lowest summed SURE change over a stack's planes, from
    each plane's ``(gain, |r|^2)`` per width (the amount the smallest any plane allows,
    so that none finds it harmful; a given ``amount`` takes the best width)."""
    fixed = None if amount is None else float(np.clip(amount, 0.0, 1.0))
    # (SURE change against h alone, alpha, width); a fixed alpha takes the best width
    # even where h alone would be better.
    best = (0.0, 0.0, 0.0) if fixed is None else (np.inf, fixed, float(widths[0]))
    for k, width in enumerate(widths):
        terms = [plane[k] for plane in planes if plane[k][1] > 0]  # (gain, |r|^2)
        if not terms:
            continue
        alpha = fixed
        if alpha is None:
            alpha = min(float(np.clip(gain / rr, 0.0, 1.0)) for gain, rr in terms)
        change = sum(alpha * alpha * rr - 2 * alpha * gain for gain, rr in terms)
        if change < best[0]:
            best = (change, alpha, float(width))
    return best[1], best[2]


def _detail_terms(image, denoise, result, noise, widths, margin, seed):
    """``(gain, |r|^2)`` per width of :func:`detail_choice` for one plane."""
    return _probe_terms(
        probe(image, denoise, result=result, noise=noise, seed=seed), widths, margin
    )


def _probe_terms(p: Probe, widths, margin):
    """``(gain, |r|^2)`` per width of :func:`detail_choice` for one probed plane."""
    y, result, noise = p.image, p.result, p.noise
    scale = 1.0 + float(margin)
    terms = []
    for width in widths:
        r = smooth(y - result, width)
        rr = float(np.sum(r * r))
        t = _trace_of_smoothing(noise, width) - float(np.sum(smooth(p.z, width) * p.response))
        terms.append((float(np.sum(r * (y - result))) - scale * t, rr))
    return terms


trace_of_smoothing = _trace_of_smoothing


@dataclass(frozen=True)
class GaussianChoice:
    """The share of a Gaussian blur mixed into a denoiser's result, and why.

    ``share``: the Gaussian's weight ``1 - a`` in ``a * f + (1 - a) * G_sigma(y)`` (0: the
    denoiser's result alone). ``gain``: how much lower SURE of the best blend is than
    SURE of ``f``, in units of the mean noise variance (the smallest over the planes);
    ``best``: the blend's share of the Gaussian by SURE alone, before the margin
    (the largest over the planes, to show how close the choice was)."""

    share: float
    gain: float
    best: float


def gaussian_choice(
    probes: Sequence[Probe],
    *,
    sigma: float,
    detail: float = 0.0,
    width: float = 0.0,
    margin: float,
) -> GaussianChoice:
    """Whether a Gaussian blur of width ``sigma`` is estimated better than the probed
    denoiser's result with its detail put back, ``f = h + detail * G_width(y - h)``, and
    by how much to mix it in: ``a * f + (1 - a) * G_sigma(y)``.

    SURE of the blend is quadratic in ``a`` with ``d = f - g``, ``g = G_sigma(y)``::

        SURE(a) = SURE(g) + a^2 |d|^2 + 2 a (d . (g - y) + tr(C J_f) - tr(C G_sigma))

    where ``tr(C J_f) = tr(C J_h) + detail * (tr(C G_width) - tr(C G_width J_h))`` comes
    from the probe's one perturbation (as :func:`detail_choice`'s terms) and the
    Gaussian's ``tr(C G_sigma)`` is exact (a linear filter). The blend is used only where
    its SURE is lower than ``f``'s by more than ``margin`` times the mean noise variance
    on every plane (scale-free; SURE of a network is biased on some noise, e.g. few
    photons per pixel, by up to a few percent of the noise variance): otherwise the share
    is 0. Several planes share one setting: the smallest share any plane chooses.
    """
    shares, gains, bests = [], [], []
    for p in probes:
        y, h, noise = p.image, p.result, p.noise
        div_f = float(np.sum(p.z * p.response))
        f = h
        if detail > 0:
            f = h + detail * smooth(y - h, width)
            div_f += detail * (
                _trace_of_smoothing(noise, width) - float(np.sum(smooth(p.z, width) * p.response))
            )
        g = smooth(y, float(sigma))
        div_g = _trace_of_smoothing(noise, float(sigma))
        d = f - g
        dd = float(np.sum(d * d))
        lin = float(np.sum(d * (g - y))) + div_f - div_g
        a = 1.0 if dd <= 0 else float(np.clip(-lin / dd, 0.0, 1.0))
        # SURE(f) - SURE(blend a), per pixel, in units of the mean noise variance
        unit = max(float(np.mean(noise.variance)), 1e-30)
        gain = ((dd + 2 * lin) - (a * a * dd + 2 * a * lin)) / y.size / unit
        shares.append(1.0 - a)
        gains.append(gain)
        bests.append(1.0 - a)
    if not shares:
        return GaussianChoice(0.0, 0.0, 0.0)
    gain = min(gains)
    share = min(shares) if gain > margin else 0.0
    return GaussianChoice(float(share), float(gain), float(max(bests)))

"""Poisson-Gaussian noise: simulation, estimation and variance stabilisation.

The noise model used throughout is the (unclipped) Poisson-Gaussian model of
Foi et al. (2008) for an observation ``z`` of a noise-free intensity ``mu``::

    z = offset + gain * p + n,   p ~ Poisson((mu - offset) / gain),   n ~ N(0, sigma**2)

so that ``E[z] = mu`` and ``Var[z] = gain * (mu - offset) + sigma**2``.  ``gain`` is the
number of grey levels per detected photon, ``offset`` the black level and ``sigma`` the
standard deviation of the Gaussian (read) noise, all in the image's grey-level units.

References
----------
A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data", IEEE TIP 17(10), 2008.
M. Mäkitalo, A. Foi, "Optimal inversion of the generalized Anscombe transformation for
Poisson-Gaussian noise", IEEE TIP 22(1), 2013.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pywt
from scipy import ndimage, stats
from scipy.interpolate import PchipInterpolator

from ...errors import InputError

__all__ = [
    "NoiseModel",
    "add_poisson_gaussian",
    "anscombe",
    "estimate_noise_model",
    "estimate_sigma",
    "inverse_anscombe",
]


@dataclass(frozen=True)
class NoiseModel:
    """Poisson-Gaussian noise model ``Var[z | mu] = gain * (mu - offset) + sigma**2``.

    Parameters
    ----------
    gain : float
        Grey levels per photon (``a >= 0``); 0 means pure Gaussian noise.
    sigma : float
        Standard deviation of the Gaussian (read) noise, ``>= 0``.
    offset : float, optional
        Black level ``mu0``: the intensity of zero photons.

    Examples
    --------
    >>> NoiseModel(gain=2.0, sigma=3.0).variance(10.0)
    29.0
    """

    gain: float
    sigma: float
    offset: float = 0.0

    def __post_init__(self) -> None:
        for name in ("gain", "sigma", "offset"):
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise InputError(f"NoiseModel {name} must be a finite number, got {value}.")
            object.__setattr__(self, name, value)
        if self.gain < 0 or self.sigma < 0:
            raise InputError(
                f"NoiseModel gain and sigma must be >= 0, got gain={self.gain}, sigma={self.sigma}."
            )

    def variance(self, mu):
        """Noise variance at ``mu``; the Poisson part is 0 below the black level.

        Examples
        --------
        >>> NoiseModel(gain=1.0, sigma=0.0, offset=5.0).variance([3.0, 9.0]).tolist()
        [0.0, 4.0]
        """
        var = np.maximum(self.gain * (np.asarray(mu, dtype=np.float64) - self.offset), 0.0)
        var = var + self.sigma**2
        return float(var) if var.ndim == 0 else var


def _as_float(image, name: str = "image", min_ndim: int = 1) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}.")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}).")
    if arr.ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} axes, got shape {arr.shape}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values; remove or replace them.")
    return arr


def add_poisson_gaussian(clean, *, gain, sigma, offset=0.0, rng=None) -> np.ndarray:
    """Simulate Poisson-Gaussian noise on a noise-free image.

    Returns ``gain * Poisson((clean - offset) / gain) + offset + N(0, sigma**2)`` as
    float32 (negative photon rates are clipped to 0).  With ``gain=0`` only the
    Gaussian noise is added.

    Parameters
    ----------
    clean : array_like
        Noise-free intensities (any shape).
    gain, sigma, offset : float
        Parameters of the :class:`NoiseModel`.
    rng : None, int or numpy.random.Generator
        Random source (a seed gives reproducible noise).

    Examples
    --------
    >>> z = add_poisson_gaussian(np.full((64, 64), 50.0), gain=2.0, sigma=1.0, rng=0)
    >>> z.dtype, bool(abs(z.mean() - 50) < 1)
    (dtype('float32'), True)
    """
    model = NoiseModel(gain, sigma, offset)
    x = _as_float(clean, "clean")
    rng = np.random.default_rng(rng)
    if model.gain > 0:
        photons = rng.poisson(np.maximum((x - model.offset) / model.gain, 0.0))
        z = model.gain * photons + model.offset
    else:
        z = x.copy()
    if model.sigma > 0:
        z = z + rng.normal(0.0, model.sigma, size=x.shape)
    return np.asarray(z, dtype=np.float32)


def _yx_slices(arr: np.ndarray, max_slices: int | None = None) -> list[np.ndarray]:
    planes = arr.reshape((-1, *arr.shape[-2:]))
    if max_slices is not None and planes.shape[0] > max_slices:
        planes = planes[np.linspace(0, planes.shape[0] - 1, max_slices).round().astype(int)]
    return list(planes)


def estimate_sigma(image) -> float:
    """Robust estimate of the standard deviation of additive Gaussian noise.

    Uses the median absolute value of the finest diagonal wavelet (Daubechies-2)
    coefficients divided by 0.6745 (Donoho & Johnstone 1994), via
    :func:`skimage.restoration.estimate_sigma`.  For ND input the last two axes are
    the image plane and the median over the YX slices (at most 32, evenly spaced) is
    returned.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> bool(abs(estimate_sigma(rng.normal(100, 5, (256, 256))) - 5) < 0.25)
    True
    """
    from skimage.restoration import estimate_sigma as _sk_estimate_sigma

    arr = _as_float(image, min_ndim=2)
    if min(arr.shape[-2:]) < 8:
        raise InputError(f"image is too small to estimate noise: shape {arr.shape}.")
    sigmas = [_plane_sigma(p, _sk_estimate_sigma) for p in _yx_slices(arr, max_slices=32)]
    return float(np.median(sigmas))


def _plane_sigma(plane: np.ndarray, sk_estimate_sigma) -> float:
    """scikit-image's estimate on one plane; 0 where it has no non-zero finest detail
    (a black or constant frame: scikit-image reads only non-zero coefficients, so NaN)."""
    import warnings

    if not np.any(plane != plane.flat[0]):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice"
        sigma = float(sk_estimate_sigma(plane))
    return sigma if np.isfinite(sigma) else 0.0


_WAVELET = "db3"  # orthonormal; its details vanish on quadratic trends (little leakage)
_TRIM = 0.95  # keep the smallest 95% of |detail| in a level set (robust to edges)
_TRIM_Q = stats.norm.ppf(0.5 + _TRIM / 2)
_TRIM_MEAN = 2 * (stats.norm.pdf(0) - stats.norm.pdf(_TRIM_Q)) / _TRIM  # E|X| | kept, X~N(0,1)


def _plane_stats(z: np.ndarray) -> dict[str, np.ndarray]:
    """Finest-scale wavelet statistics of one plane, flattened over usable positions.

    ``mu_ring`` (mean of the 8 neighbouring approximations) sorts positions into level
    sets; ``mu`` (the approximation at the position) and ``detail`` (the diagonal
    detail) are uncorrelated with it and with each other for white noise, so level-set
    means are free of selection bias.  ``curv`` measures the local signal curvature.
    """
    filt_len = pywt.Wavelet(_WAVELET).dec_len
    approx, (_, _, detail) = pywt.dwt2(z, _WAVELET, mode="symmetric")
    mu = approx / 2.0  # the 2D low-pass has gain 2: back to grey levels
    ring = np.ones((3, 3)) / 8.0
    ring[1, 1] = 0.0
    mu_ring = ndimage.convolve(mu, ring, mode="reflect")
    curv = np.abs(ndimage.laplace(ndimage.uniform_filter(mu, 3, mode="reflect")))
    keep = np.zeros(mu.shape, dtype=bool)
    c = filt_len // 2  # coefficients influenced by the boundary extension
    keep[c:-c, c:-c] = True
    # Pixels at the image's extreme values, if frequent, are probably clipped: drop every
    # coefficient whose support (pixels 2k-L+2 .. 2k+1) touches one, and its neighbours.
    lo, hi = z.min(), z.max()
    if np.mean(z == lo) > 1e-3 or np.mean(z == hi) > 1e-3:
        clip = np.pad((z == lo) | (z == hi), ((filt_len - 2, filt_len),) * 2)
        hit = np.zeros_like(keep)
        for dy in range(filt_len):
            for dx in range(filt_len):
                hit |= clip[dy::2, dx::2][: mu.shape[0], : mu.shape[1]]
        keep &= ~ndimage.binary_dilation(hit)
    return {
        k: v[keep]
        for k, v in (("mu_ring", mu_ring), ("mu", mu), ("detail", detail), ("curv", curv))
    }


def _fit_variance_line(mu_ring, mu, detail, order=None) -> tuple[float, float]:
    """Robust weighted fit of ``var = a * mu + b`` over equal-count level sets.
    ``order``: ``np.argsort(mu_ring, kind="stable")`` when the caller has it."""
    n_bins = int(np.clip(mu.size // 1500, 4, 48))
    m_list, v_list, n_list = [], [], []
    if order is None:
        order = np.argsort(mu_ring, kind="stable")
    for idx in np.array_split(order, n_bins):
        small = np.sort(np.abs(detail[idx]))[: max(1, int(_TRIM * idx.size))]
        m_list.append(mu[idx].mean())
        v_list.append((small.mean() / _TRIM_MEAN) ** 2)
        n_list.append(idx.size)
    m, v, n = np.array(m_list), np.array(v_list), np.array(n_list, dtype=np.float64)
    fitted = np.full_like(v, max(np.median(v), 1e-12))
    a = b = 0.0
    for _ in range(30):  # IRLS: Var(v_i) ~ 2 v_i^2 / n_i, Tukey biweight for outliers
        r = (v - fitted) / (fitted * np.sqrt(2.0 / n))
        w = n / fitted**2 * np.where(np.abs(r) < 9.37, (1 - (r / 9.37) ** 2) ** 2, 0.0)
        if np.count_nonzero(w) < 2:
            break
        design = np.stack([m, np.ones_like(m)], axis=1) * np.sqrt(w)[:, None]
        a, b = np.linalg.lstsq(design, v * np.sqrt(w), rcond=None)[0]
        if a < 0:  # physically impossible: refit as pure Gaussian noise
            a, b = 0.0, float(np.sum(w * v) / np.sum(w))
        new = np.maximum(a * m + b, 1e-12)
        if np.allclose(new, fitted, rtol=1e-7):
            break
        fitted = new
    return float(a), float(b)


def estimate_noise_model(image, *, offset=None) -> NoiseModel:
    """Estimate Poisson-Gaussian noise parameters from a single image.

    Follows the idea of Foi et al. (2008).  A one-level orthonormal wavelet transform
    (Daubechies-3) gives local means (approximation / 2) and a high-pass residual (the
    diagonal detail, whose variance is the local noise variance).  Positions are
    sorted into equal-count level sets by the mean of their 8 neighbours; each level
    set gives a mean intensity and a robust variance (95%-trimmed mean of ``|detail|``,
    Gaussian-consistent); ``var = a * mu + b`` is fitted by iteratively reweighted
    least squares with a biweight against outlying sets (``a >= 0``).  A second pass
    keeps only smooth positions (curvature of the local mean below half the noise
    std predicted by the first fit) and refits.  Coefficients touching frequent
    extreme values (clipping) are ignored.

    The fit only identifies ``a`` and ``b = sigma**2 - gain * offset``.  The returned
    model has ``gain = a`` and, unless ``offset`` is given, ``offset`` is the darkest
    local mean (1st percentile) but at least ``-b / a`` (where the fitted variance
    vanishes), and ``sigma = sqrt(b + a * offset)``.  With ``offset`` given, ``sigma =
    sqrt(max(b + a * offset, 0))``.  So ``model.variance(mu) == a * mu + b`` for
    ``mu >= offset``.  The fit runs on the image normalised by its median and standard
    deviation, so the model of ``k * image + c`` is the model of ``image`` with gain and
    sigma times ``k`` and offset ``k * offset + c``: nothing assumes that zero is black.

    Parameters
    ----------
    image : array_like
        2D image, or a stack whose last two axes are YX (up to 8 evenly spaced slices
        are pooled).
    offset : float, optional
        Known black level of the camera.

    Returns
    -------
    NoiseModel

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(10, 200, 512), (512, 1))
    >>> m = estimate_noise_model(add_poisson_gaussian(clean, gain=2, sigma=3, rng=rng))
    >>> bool(abs(m.gain - 2) < 0.3 and abs(m.sigma - 3) < 0.6)
    True
    """
    arr = _as_float(image, min_ndim=2)
    if min(arr.shape[-2:]) < 32:
        raise InputError(
            f"image is too small to estimate a noise model: shape {arr.shape} "
            "(need at least 32x32 pixels in the last two axes)."
        )
    # Fit in normalised units, (z - ref) / unit, so that no step (floors, convergence
    # tests) depends on where zero is or on the unit of intensity: the model of
    # k * z + c is exactly the model of z, scaled by k and moved by c.
    ref = float(np.median(arr))
    unit = float(np.std(arr)) or 1.0
    planes = [_plane_stats((p - ref) / unit) for p in _yx_slices(arr, max_slices=8)]
    st = {k: np.concatenate([p[k] for p in planes]) for k in planes[0]}
    if st["mu"].size < 64:
        raise InputError("image has too few unclipped pixels to estimate a noise model.")
    order = np.argsort(st["mu_ring"], kind="stable")
    a, b = _fit_variance_line(st["mu_ring"], st["mu"], st["detail"], order)
    smooth = st["curv"] < 0.5 * np.sqrt(np.maximum(a * st["mu_ring"] + b, 1e-12))
    if np.count_nonzero(smooth) >= max(3000, st["mu"].size // 10):
        # the smooth positions in the same stable order (a sort of the subset, done once)
        where = np.cumsum(smooth) - 1
        kept = where[order[smooth[order]]]
        a, b = _fit_variance_line(
            st["mu_ring"][smooth], st["mu"][smooth], st["detail"][smooth], kept
        )
    if a <= 0 and b <= 0:
        # A degenerate fit (e.g. strongly textured or partly saturated 12-bit data) would
        # claim there is no noise at all; fall back to signal-independent Gaussian noise of
        # the robust wavelet estimate rather than report a noiseless image.
        return NoiseModel(0.0, estimate_sigma(arr), 0.0 if offset is None else float(offset))
    # Back to grey levels: var = a (mu - ref) / unit * unit**2 + b * unit**2.
    a, b = a * unit, b * unit**2 - a * unit * ref
    if a <= 0:
        return NoiseModel(0.0, float(np.sqrt(max(b, 0.0))), 0.0 if offset is None else offset)
    if offset is not None:
        off = float(offset)
        return NoiseModel(a, float(np.sqrt(max(b + a * off, 0.0))), off)
    # The black level: the darkest local mean (1st percentile), but never below the level
    # where the fitted variance vanishes. Measured from the data, never assumed to be
    # zero, so it moves with an offset; with an assumed zero, an image stored below zero
    # (signed, or mean-subtracted) got the read noise of its brightest pixels everywhere.
    off = max(ref + unit * float(np.percentile(st["mu"], 1)), -b / a)
    return NoiseModel(a, float(np.sqrt(max(b + a * off, 0.0))), off)


def _check_gaussian(model: NoiseModel) -> None:
    if model.gain == 0 and model.sigma == 0:
        raise InputError("The noise model has gain=0 and sigma=0: there is no noise to stabilise.")


def anscombe(image, model: NoiseModel) -> np.ndarray:
    """Generalised Anscombe transform: Poisson-Gaussian noise -> unit-variance noise.

    ``f(z) = 2 / a * sqrt(max(a * z + 3/8 * a**2 + sigma**2 - a * offset, 0))``, and for
    ``gain == 0`` simply ``(z - offset) / sigma``.  The output is float32 for float32 or
    integer input of at most 16 bits, float64 otherwise.

    Examples
    --------
    >>> m = NoiseModel(gain=1.0, sigma=0.0)
    >>> z = np.random.default_rng(0).poisson(30.0, 100_000)
    >>> round(float(anscombe(z, m).std()), 1)
    1.0
    """
    _check_gaussian(model)
    arr = np.asarray(image)
    out_dtype = np.float32 if arr.dtype.kind in "biu" and arr.itemsize <= 2 else None
    out_dtype = out_dtype or (np.float32 if arr.dtype == np.float32 else np.float64)
    z = _as_float(arr, "image")
    a, s, off = model.gain, model.sigma, model.offset
    if a == 0:
        y = (z - off) / s
    else:
        y = 2.0 / a * np.sqrt(np.maximum(a * z + 0.375 * a * a + s * s - a * off, 0.0))
    return y.astype(out_dtype, copy=False)


@functools.lru_cache(maxsize=32)
def _inverse_table(s: float) -> tuple[PchipInterpolator, float, float, float]:
    """Map E[f] -> lambda for unit gain, normalised read-noise std ``s`` (cached)."""
    lam_max = 400.0
    lam = np.concatenate([[0.0], np.geomspace(1e-4, lam_max, 700)])
    k = np.arange(0, int(lam_max + 12 * np.sqrt(lam_max) + 40), dtype=np.float64)
    if s > 0:  # E over the Gaussian read noise by quadrature on a fine grid
        t = np.linspace(-9.0, 9.0, 1441)
        w = np.exp(-0.5 * t * t)
        w /= w.sum()
        g = 2.0 * np.sqrt(np.maximum(k[:, None] + 0.375 + s * s + s * t[None, :], 0.0)) @ w
    else:
        g = 2.0 * np.sqrt(k + 0.375)
    pmf = stats.poisson.pmf(k[None, :], lam[:, None])
    d = pmf @ g  # exact E[f(z) | lambda]
    keep = np.concatenate([[True], np.diff(d) > 0])  # strictly increasing for the inverse
    d_blend = float(np.interp(0.75 * lam_max, lam, d))  # closed form fades in from here
    return PchipInterpolator(d[keep], lam[keep], extrapolate=False), float(d[0]), d_blend, d[-1]


def _asymptotic_inverse(d: np.ndarray, s: float) -> np.ndarray:
    c = np.sqrt(1.5)
    return 0.25 * d**2 + 0.25 * c / d - 1.375 / d**2 + 0.625 * c / d**3 - 0.125 - s * s


def inverse_anscombe(transformed, model: NoiseModel) -> np.ndarray:
    """Exact unbiased inverse of :func:`anscombe` (Mäkitalo & Foi 2011, 2013).

    A denoised value ``D`` estimates ``E[f(z) | y]``, not ``f(y)``; inverting the
    algebraic formula is therefore biased at low counts.  This function inverts the
    map ``y -> E[f(z) | y]`` instead: it is computed numerically (Poisson pmf times a
    Gaussian quadrature) for the normalised read noise ``sigma / gain`` on a grid of
    photon rates up to 400 (cached per ``sigma / gain``), interpolated monotonically
    (PCHIP), and continued by the closed-form asymptotic expansion above the table
    (blended in linearly over the table's last quarter of photon rates, where the two
    agree to about 1e-5 relative).
    Values below ``E[f(z) | 0]`` map to 0 photons.  The result is scaled back to
    grey levels (``offset + gain * y``).  For ``gain == 0`` it is ``offset + sigma * D``.

    Examples
    --------
    >>> m = NoiseModel(gain=1.0, sigma=0.0)
    >>> z = np.random.default_rng(0).poisson(1.0, 400_000)
    >>> round(float(inverse_anscombe(anscombe(z, m).mean(), m)), 2)
    1.0
    """
    _check_gaussian(model)
    arr = np.asarray(transformed)
    d = _as_float(arr, "transformed", min_ndim=0)
    a, s, off = model.gain, model.sigma, model.offset
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64
    if a == 0:
        return np.asarray(off + s * d, dtype=out_dtype)
    s_norm = round(s / a, 9)
    interp, d_min, d_blend, d_max = _inverse_table(s_norm)
    lam = np.zeros_like(d)
    mid = (d > d_min) & (d <= d_max)
    lam[mid] = interp(d[mid])
    high = d > d_blend
    weight = np.clip((d[high] - d_blend) / (d_max - d_blend), 0.0, 1.0)
    lam[high] = (1 - weight) * lam[high] + weight * _asymptotic_inverse(d[high], s_norm)
    return np.asarray(off + a * np.maximum(lam, 0.0), dtype=out_dtype)

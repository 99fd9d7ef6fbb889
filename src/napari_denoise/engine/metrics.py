"""Image-quality metrics for denoising: PSNR, SSIM, NRMSE, SNR and range-invariant variants.

All functions take ``(image_true, image_test)`` in scikit-image's order, compute in
float64 and return Python floats.  ``data_range`` follows one rule everywhere (this module,
:func:`napari_denoise.compare`, ``napari-denoise compare`` and the Compare widget): if
given it is used; otherwise it is the ground truth's own range, ``image_true.max() -
image_true.min()``, whatever its dtype (:func:`data_range_of`).  The dtype's range is
never used: 12-bit data in uint16 (values 331-2602) would score 59.6 dB against 65535
instead of 31.7 dB against its own range, and a Python list (int64) 370 dB.  What cannot
be scored is refused with an :class:`~napari_denoise.errors.InputError`: a constant
ground truth without ``data_range`` (it has no range), empty or non-finite images, shapes
that differ, and two images of different dtypes, one of them an integer type, whose value ranges differ
more than :data:`UNIT_MISMATCH`-fold (a uint8 ground truth against a 0-1 float result: different
units, which no score of the pair as it is can describe).

The range-invariant metrics follow CARE (Weigert et al., Nature Methods 2018): the test
image is first mapped by the least-squares affine fit ``alpha * test + beta`` to the
true image, so that a global change of brightness or contrast is not penalised.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from ..errors import InputError

__all__ = [
    "UNIT_MISMATCH",
    "affine_fit",
    "compare",
    "data_range_of",
    "nrmse",
    "psnr",
    "psnr_range_invariant",
    "snr",
    "ssim",
    "ssim_range_invariant",
]

_SSIM_WIN = 7  # scikit-image's default window side
# Two images of different dtypes whose value spans differ by more than this factor are in
# different units (0-255 against 0-1 differ 255-fold); a denoiser's result in the input's
# units spans about what the ground truth spans.
UNIT_MISMATCH = 10.0


def _pair(image_true, image_test) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair and return both as float64 arrays."""
    out = []
    for name, img in (("image_true", image_true), ("image_test", image_test)):
        arr = np.asarray(img)
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}.")
        if arr.size == 0:
            raise InputError(f"{name} is empty (shape {arr.shape}); nothing to compare.")
        out.append(arr)
    true, test = out
    if true.shape != test.shape:
        raise InputError(
            f"image_true and image_test must have the same shape, got {true.shape} and "
            f"{test.shape}."
        )
    true64, test64 = true.astype(np.float64), test.astype(np.float64)
    for name, arr in (("image_true", true64), ("image_test", test64)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name} contains NaN or infinite values; remove or replace them.")
    _check_units(true, test, true64, test64)
    return true64, test64


def _check_units(true, test, true64: np.ndarray, test64: np.ndarray) -> None:
    """Refuse two images of different dtypes whose values lie on different scales."""
    a, b = true.dtype.newbyteorder("="), test.dtype.newbyteorder("=")
    if a == b or (a.kind == "f" and b.kind == "f"):
        return  # float32 against float64 says nothing about units; an integer type does
    spans = []
    for arr in (true64, test64):
        lo, hi = float(arr.min()), float(arr.max())
        spans.append((lo, hi, hi - lo if hi > lo else max(abs(lo), abs(hi))))
    (tlo, thi, tspan), (xlo, xhi, xspan) = spans
    if tspan == 0 or xspan == 0:
        return  # a constant image: its span says nothing about its units
    ratio = max(tspan / xspan, xspan / tspan)
    if ratio > UNIT_MISMATCH:
        raise InputError(
            f"The ground truth (image_true) is {true.dtype} with values {tlo:g} to {thi:g} but "
            f"the result (image_test) is {test.dtype} with values {xlo:g} to {xhi:g}: ranges "
            f"{ratio:.0f}-fold apart in "
            "different dtypes are different units (such as 0-255 against 0-1), so they "
            "are not compared as they are; put both on the same scale first (for example "
            "multiply a 0-1 result by the ground truth's maximum)."
        )


def data_range_of(image_true, data_range=None) -> tuple[float, str]:
    """The data range the metrics use and a sentence saying where it comes from.

    ``data_range`` when given (a finite number > 0), else the ground truth's own range
    ``max - min`` (in float64, whatever the dtype).

    Raises
    ------
    InputError
        If ``data_range`` is not a finite number > 0, or it is not given and
        ``image_true`` is constant, empty or not finite.

    Examples
    --------
    >>> data_range_of(np.array([[331, 2602]], np.uint16))
    (2271.0, 'data range 2271 (max - min of the ground truth, 331 to 2602)')
    """
    if data_range is not None:
        if isinstance(data_range, bool):
            raise InputError(f"data_range must be a number, got {data_range!r}.")
        try:
            value = float(data_range)
        except (TypeError, ValueError):
            raise InputError(f"data_range must be a number, got {data_range!r}.") from None
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"data_range must be a finite number > 0, got {data_range!r}.")
        return value, f"data range {value:g} (given)"
    true = np.asarray(image_true)
    if true.dtype.kind not in "biuf" or true.size == 0:
        raise InputError("image_true must be a non-empty numeric array to take its range.")
    true = true.astype(np.float64)
    if not np.all(np.isfinite(true)):
        raise InputError("image_true contains NaN or infinite values; remove or replace them.")
    lo, hi = float(true.min()), float(true.max())
    if hi <= lo:
        raise InputError(
            f"The ground truth is constant (every value is {lo:g}), so it has no range to "
            "score against: pass data_range (the span of possible intensities)."
        )
    return hi - lo, f"data range {hi - lo:g} (max - min of the ground truth, {lo:g} to {hi:g})"


def _data_range(image_true, data_range) -> float:
    return data_range_of(image_true, data_range)[0]


def _psnr(true: np.ndarray, test: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((true - test) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def _ssim(true: np.ndarray, test: np.ndarray, data_range: float) -> float:
    if true.ndim < 2 or min(true.shape[-2:]) < _SSIM_WIN:
        raise InputError(
            f"SSIM needs images of at least {_SSIM_WIN}x{_SSIM_WIN} pixels in the last two "
            f"axes, got shape {true.shape}."
        )
    planes_true = true.reshape((-1, *true.shape[-2:]))
    planes_test = test.reshape((-1, *test.shape[-2:]))
    values = [
        structural_similarity(t, x, data_range=data_range)
        for t, x in zip(planes_true, planes_test, strict=True)
    ]
    return float(np.mean(values))


def _fit(true: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    x = test.ravel() - test.mean()
    denom = float(np.dot(x, x))
    alpha = float(np.dot(x, true.ravel() - true.mean()) / denom) if denom > 0 else 0.0
    return alpha, float(true.mean() - alpha * test.mean())


def psnr(image_true, image_test, *, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 * log10(data_range**2 / MSE)``.

    Identical images give ``inf``.  Agrees with
    :func:`skimage.metrics.peak_signal_noise_ratio`.

    Parameters
    ----------
    image_true, image_test : array_like
        Reference and test image of the same shape (any number of axes).
    data_range : float, optional
        Span of possible values; default: ``image_true.max() - image_true.min()``
        (:func:`data_range_of`; refused for a constant ``image_true``).

    Examples
    --------
    >>> psnr(np.array([0, 0, 0, 255], np.uint8), np.array([0, 0, 0, 253], np.uint8))
    48.1308036086791
    """
    true, test = _pair(image_true, image_test)
    return _psnr(true, test, _data_range(image_true, data_range))


def ssim(image_true, image_test, *, data_range=None) -> float:
    """Structural similarity (Wang et al. 2004) with scikit-image's defaults.

    A 7x7 uniform window, K1=0.01, K2=0.03, as in
    :func:`skimage.metrics.structural_similarity`.  For input with more than two axes
    the last two are YX and the result is the mean of the SSIM of each 2D slice (no 3D
    window).

    Examples
    --------
    >>> img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> ssim(img, img)
    1.0
    """
    true, test = _pair(image_true, image_test)
    return _ssim(true, test, _data_range(image_true, data_range))


def nrmse(image_true, image_test, *, normalization="euclidean") -> float:
    """Normalised root mean squared error, as :func:`skimage.metrics.normalized_root_mse`.

    ``normalization`` is ``"euclidean"`` (RMSE / RMS of ``image_true``), ``"min-max"``
    (RMSE / range of ``image_true``) or ``"mean"`` (RMSE / mean of ``image_true``).

    Examples
    --------
    >>> nrmse(np.array([3.0, 4.0]), np.array([3.0, 4.0]))
    0.0
    """
    true, test = _pair(image_true, image_test)
    rmse = float(np.sqrt(np.mean((true - test) ** 2)))
    norm = str(normalization).lower()
    if norm == "euclidean":
        denom = float(np.sqrt(np.mean(true**2)))
    elif norm == "min-max":
        denom = float(true.max() - true.min())
    elif norm == "mean":
        denom = float(true.mean())
    else:
        raise InputError(
            f"Unknown normalization {normalization!r}: use 'euclidean', 'min-max' or 'mean'."
        )
    if denom == 0:
        raise InputError(
            f"nrmse with normalization={norm!r} is undefined: image_true gives a "
            "normaliser of 0 (it is constant or zero); choose another normalization."
        )
    return rmse / denom


def snr(image_true, image_test) -> float:
    """Signal-to-noise ratio in dB: ``10 * log10(sum(true**2) / sum((true - test)**2))``.

    Identical images give ``inf``; an all-zero ``image_true`` gives ``-inf``.

    Examples
    --------
    >>> snr(np.array([10.0, 10.0]), np.array([11.0, 9.0]))
    20.0
    """
    true, test = _pair(image_true, image_test)
    err = float(np.sum((true - test) ** 2))
    sig = float(np.sum(true**2))
    if err == 0.0:
        return float("inf")
    return float("-inf") if sig == 0.0 else float(10.0 * np.log10(sig / err))


def affine_fit(image_true, image_test) -> tuple[float, float]:
    """Least-squares ``alpha, beta`` such that ``alpha * image_test + beta ≈ image_true``.

    A constant ``image_test`` gives ``alpha = 0`` and ``beta = mean(image_true)``.

    Examples
    --------
    >>> x = np.array([0.0, 1.0, 2.0, 3.0])
    >>> affine_fit(2 * x + 1, x)
    (2.0, 1.0)
    """
    return _fit(*_pair(image_true, image_test))


def _fit_defined(true: np.ndarray) -> None:
    if float(true.max()) == float(true.min()):
        raise InputError(
            "Range-invariant scores are undefined for a constant ground truth: any image "
            "fits it exactly after the affine fit."
        )


def psnr_range_invariant(image_true, image_test, *, data_range=None) -> float:
    """PSNR after the affine fit of ``image_test`` to ``image_true`` (CARE's idea).

    One ``alpha, beta`` is fitted to the whole array (:func:`compare` fits each slice).
    Refused for a constant ``image_true`` (every image fits it exactly).

    Examples
    --------
    >>> t = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> psnr_range_invariant(t, 0.5 * t + 30) > 100  # exact up to rounding
    True
    """
    true, test = _pair(image_true, image_test)
    rng = _data_range(image_true, data_range)
    _fit_defined(true)
    alpha, beta = _fit(true, test)
    return _psnr(true, alpha * test + beta, rng)


def ssim_range_invariant(image_true, image_test, *, data_range=None) -> float:
    """SSIM after the affine fit of ``image_test`` to ``image_true`` (whole-array fit).

    Examples
    --------
    >>> t = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> round(ssim_range_invariant(t, 0.5 * t + 30), 6)
    1.0
    """
    true, test = _pair(image_true, image_test)
    rng = _data_range(image_true, data_range)
    _fit_defined(true)
    alpha, beta = _fit(true, test)
    return _ssim(true, alpha * test + beta, rng)


def _all_metrics(true: np.ndarray, test: np.ndarray, data_range: float) -> dict:
    alpha, beta = _fit(true, test)
    fitted = alpha * test + beta
    err = float(np.sum((true - test) ** 2))
    rms_true = float(np.sqrt(np.mean(true**2)))
    # A constant slice (possible with a given data_range) fits any image exactly: its
    # range-invariant scores are undefined (nan), not a perfect inf.
    constant = float(true.max()) == float(true.min())
    return {
        "psnr": _psnr(true, test, data_range),
        "ssim": _ssim(true, test, data_range),
        "psnr_ri": float("nan") if constant else _psnr(true, fitted, data_range),
        "ssim_ri": float("nan") if constant else _ssim(true, fitted, data_range),
        "nrmse": float(np.sqrt(err / true.size)) / rms_true if rms_true > 0 else float("nan"),
        "snr": float("inf") if err == 0 else float(10 * np.log10(np.sum(true**2) / err)),
        "data_range": data_range,
    }


def compare(image_true, image_test, *, data_range=None, slice_axes: int = 0) -> dict:
    """All metrics at once, per slice and averaged.

    Parameters
    ----------
    image_true, image_test : array_like
        Reference and test image of the same shape.
    data_range : float, optional
        Default: the ground truth's own range, ``max - min`` over all of it
        (:func:`data_range_of`); a constant ground truth needs it.
    slice_axes : int
        Number of leading axes to iterate over: 0 for a single 2D image, 1 for a TYX or
        ZYX stack, 2 for TZYX, and so on.  At least two axes must remain.

    Returns
    -------
    dict
        Keys ``psnr``, ``ssim``, ``psnr_ri``, ``ssim_ri``, ``nrmse`` (euclidean),
        ``snr``, ``data_range`` and ``data_range_note`` (a sentence saying where the
        range comes from), plus ``per_slice``: a list with one dict of the same
        keys per slice, in C order of the leading axes (a single entry when
        ``slice_axes=0``).  The top-level values are the means of the per-slice values
        (an ``inf`` slice makes the mean ``inf``).  The range-invariant values use a
        separate affine fit per slice; they are ``nan`` for a constant slice (any image fits
        it exactly) and their means leave such slices out.  ``nrmse`` of an all-zero
        slice is ``nan``.

    Examples
    --------
    >>> t = np.random.default_rng(0).integers(0, 200, (3, 16, 16), dtype=np.uint8)
    >>> res = compare(t, 0.5 * t + 20, slice_axes=1)
    >>> len(res["per_slice"]), res["data_range"], res["psnr"] < 20 < 100 < res["psnr_ri"]
    (3, 199.0, True)
    """
    true, test = _pair(image_true, image_test)
    rng, note = data_range_of(image_true, data_range)
    if isinstance(slice_axes, bool) or not isinstance(slice_axes, (int, np.integer)):
        raise InputError(f"slice_axes must be an integer, got {slice_axes!r}.")
    if not 0 <= slice_axes <= true.ndim - 2:
        raise InputError(
            f"slice_axes={slice_axes} does not fit an image of shape {true.shape}: it must "
            f"be between 0 and {max(true.ndim - 2, 0)} so that at least two axes remain."
        )
    rest = true.shape[slice_axes:]
    per_slice = [
        _all_metrics(t, x, rng)
        for t, x in zip(true.reshape((-1, *rest)), test.reshape((-1, *rest)), strict=True)
    ]
    result = {
        key: _mean([entry[key] for entry in per_slice], skip_nan=key.endswith("_ri"))
        for key in ("psnr", "ssim", "psnr_ri", "ssim_ri", "nrmse", "snr")
    }
    result["data_range"] = rng
    result["data_range_note"] = note
    result["per_slice"] = per_slice
    return result


def _mean(values: list[float], *, skip_nan: bool) -> float:
    arr = np.asarray(values, np.float64)
    if skip_nan:
        arr = arr[~np.isnan(arr)]
    return float(np.mean(arr)) if arr.size else float("nan")

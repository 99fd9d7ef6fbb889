"""Image-quality metrics for denoising: PSNR, SSIM, NRMSE, SNR and range-invariant variants.

All functions take ``(image_true, image_test)`` in scikit-image's order, compute in
float64 and return Python floats.  ``data_range`` follows one rule everywhere: if given it
is used; otherwise an integer ``image_true`` uses the full range of its dtype (255 for
uint8, 65535 for uint16, like scikit-image) and a float ``image_true`` is refused, since
its range cannot be guessed reliably.

The range-invariant metrics follow CARE (Weigert et al., Nature Methods 2018): the test
image is first mapped by the least-squares affine fit ``alpha * test + beta`` to the
true image, so that a global change of brightness or contrast is not penalised.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from ..errors import InputError

__all__ = [
    "affine_fit",
    "compare",
    "nrmse",
    "psnr",
    "psnr_range_invariant",
    "snr",
    "ssim",
    "ssim_range_invariant",
]

_SSIM_WIN = 7  # scikit-image's default window side


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
    return true64, test64


def _data_range(image_true, data_range) -> float:
    """The data range: given, else the full range of an integer dtype of ``image_true``."""
    if data_range is not None:
        try:
            value = float(data_range)
        except (TypeError, ValueError):
            raise InputError(f"data_range must be a number, got {data_range!r}.") from None
        if not np.isfinite(value) or value <= 0:
            raise InputError(f"data_range must be a finite number > 0, got {data_range!r}.")
        return value
    dtype = np.asarray(image_true).dtype
    if dtype.kind == "b":
        return 1.0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    raise InputError(
        f"image_true is {dtype}: pass data_range (for example 255 for 8-bit data or "
        "image_true.max() - image_true.min())."
    )


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
        Span of possible values; default: the full range of an integer dtype of
        ``image_true``; required for float images.

    Examples
    --------
    >>> psnr(np.array([0, 0, 0, 0], np.uint8), np.array([0, 0, 0, 2], np.uint8))
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


def psnr_range_invariant(image_true, image_test, *, data_range=None) -> float:
    """PSNR after the affine fit of ``image_test`` to ``image_true`` (CARE's idea).

    One ``alpha, beta`` is fitted to the whole array (:func:`compare` fits each slice).

    Examples
    --------
    >>> t = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> psnr_range_invariant(t, 0.5 * t + 30) > 100  # exact up to rounding
    True
    """
    true, test = _pair(image_true, image_test)
    alpha, beta = _fit(true, test)
    return _psnr(true, alpha * test + beta, _data_range(image_true, data_range))


def ssim_range_invariant(image_true, image_test, *, data_range=None) -> float:
    """SSIM after the affine fit of ``image_test`` to ``image_true`` (whole-array fit).

    Examples
    --------
    >>> t = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> round(ssim_range_invariant(t, 0.5 * t + 30), 6)
    1.0
    """
    true, test = _pair(image_true, image_test)
    alpha, beta = _fit(true, test)
    return _ssim(true, alpha * test + beta, _data_range(image_true, data_range))


def _all_metrics(true: np.ndarray, test: np.ndarray, data_range: float) -> dict:
    alpha, beta = _fit(true, test)
    fitted = alpha * test + beta
    err = float(np.sum((true - test) ** 2))
    rms_true = float(np.sqrt(np.mean(true**2)))
    return {
        "psnr": _psnr(true, test, data_range),
        "ssim": _ssim(true, test, data_range),
        "psnr_ri": _psnr(true, fitted, data_range),
        "ssim_ri": _ssim(true, fitted, data_range),
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
        See :func:`psnr`.
    slice_axes : int
        Number of leading axes to iterate over: 0 for a single 2D image, 1 for a TYX or
        ZYX stack, 2 for TZYX, and so on.  At least two axes must remain.

    Returns
    -------
    dict
        Keys ``psnr``, ``ssim``, ``psnr_ri``, ``ssim_ri``, ``nrmse`` (euclidean),
        ``snr`` and ``data_range``, plus ``per_slice``: a list with one dict of the same
        keys per slice, in C order of the leading axes (a single entry when
        ``slice_axes=0``).  The top-level values are the means of the per-slice values
        (an ``inf`` slice makes the mean ``inf``).  The range-invariant values use a
        separate affine fit per slice.  ``nrmse`` of an all-zero slice is ``nan``.

    Examples
    --------
    >>> t = np.random.default_rng(0).integers(0, 200, (3, 16, 16), dtype=np.uint8)
    >>> res = compare(t, 0.5 * t + 20, slice_axes=1)
    >>> len(res["per_slice"]), res["data_range"], res["psnr"] < 20 < 100 < res["psnr_ri"]
    (3, 255.0, True)
    """
    true, test = _pair(image_true, image_test)
    rng = _data_range(image_true, data_range)
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
        key: float(np.mean([entry[key] for entry in per_slice]))
        for key in ("psnr", "ssim", "psnr_ri", "ssim_ri", "nrmse", "snr")
    }
    result["data_range"] = rng
    result["per_slice"] = per_slice
    return result

"""Axes letters and dtype rules, shared by file I/O and the engine (which never imports I/O).

An image's axes are letters from :data:`AXES_LETTERS`, one per dimension: ``T`` (time),
``Z``, ``C`` (channel), ``Y`` and ``X``. A result goes back to the input's dtype with
:func:`cast_to_dtype`: rounded and clipped, never wrapped around.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["AXES_LETTERS", "cast_to_dtype", "infer_axes", "normalize_axes"]

AXES_LETTERS = "TZCYX"


def infer_axes(shape: tuple[int, ...]) -> str:
    """Guess axes from a shape alone.

    Parameters
    ----------
    shape : tuple of int
        Shape of the array.

    Returns
    -------
    str
        ``YX`` for 2D, ``TYX`` for 3D, ``TZYX`` for 4D, ``TZCYX`` for 5D; but a 3D/4D array
        whose last axis has 3 or 4 entries behind planes larger than 8x8 is colour:
        ``YXC`` / ``TYXC``.

    Raises
    ------
    InputError
        If the shape has fewer than 2 or more than 5 dimensions.
    """
    shape = tuple(int(n) for n in shape)
    if not 2 <= len(shape) <= 5:
        raise InputError(f"An image needs 2 to 5 dimensions, but this one has shape {shape}.")
    if len(shape) in (3, 4) and shape[-1] in (3, 4) and min(shape[-3:-1]) > 8:
        return "YXC" if len(shape) == 3 else "TYXC"
    return ("YX", "TYX", "TZYX", "TZCYX")[len(shape) - 2]


def normalize_axes(axes: str, ndim: int, *, shape: tuple[int, ...] | None = None) -> str:
    """Check an axes string against an image and return it in canonical form.

    Parameters
    ----------
    axes : str
        Letters such as ``"zyx"``; case is ignored and ``S`` (samples) means ``C``.
    ndim : int
        Number of dimensions of the image.
    shape : tuple of int, optional
        The image's shape, quoted in the error message.

    Returns
    -------
    str
        Upper-case letters from :data:`AXES_LETTERS`.

    Raises
    ------
    InputError
        If a letter is unknown or repeated, the length is not ``ndim``, or Y or X is missing.
    """
    if not isinstance(axes, str):
        raise InputError(f"axes must be a string of letters such as 'ZYX', not {axes!r}.")
    norm = axes.strip().upper().replace("S", "C")
    unknown = ", ".join(repr(c) for c in sorted(set(norm) - set(AXES_LETTERS)))
    if unknown:
        raise InputError(f"axes {axes!r} contains {unknown}; use only T, Z, C, Y and X.")
    repeated = ", ".join(sorted({c for c in norm if norm.count(c) > 1}))
    if repeated:
        raise InputError(f"axes {axes!r} repeats {repeated}; each letter may appear once.")
    if len(norm) != ndim:
        where = f" (shape {tuple(shape)})" if shape is not None else ""
        raise InputError(
            f"axes {axes!r} has {len(norm)} letters but the image has {ndim} dimensions{where}."
        )
    if "Y" not in norm or "X" not in norm:
        raise InputError(f"axes {axes!r} must contain both Y and X (the image plane).")
    return norm


def cast_to_dtype(result: np.ndarray, dtype) -> np.ndarray:
    """Convert a (float) result to ``dtype`` without wrap-around.

    Parameters
    ----------
    result : numpy.ndarray
        The values to convert.
    dtype : dtype-like
        Target dtype, usually the input image's.

    Returns
    -------
    numpy.ndarray
        For integer targets: rounded half to even (``np.rint``), NaN as 0, clipped to the
        dtype's range.  For other targets: a plain ``astype``.
    """
    dtype = np.dtype(dtype)
    result = np.asarray(result)
    if dtype.kind not in "iu" or result.dtype.kind not in "iuf":
        return result.astype(dtype)
    info = np.iinfo(dtype)
    if result.dtype.kind == "f":
        if result.dtype.itemsize < 4:  # float16 cannot even hold 65535
            result = result.astype(np.float32)
        values = np.rint(result, out=np.empty_like(result))  # an array even for 0-d input
        values[np.isnan(values)] = 0
        lo, hi = result.dtype.type(info.min), result.dtype.type(info.max)
        if int(hi) > info.max:  # e.g. 2**32-1 rounds up in float32: step back below it
            hi = np.nextafter(hi, result.dtype.type(0))
        return np.clip(values, lo, hi, out=values).astype(dtype)
    src = np.iinfo(result.dtype)  # clip within bounds that both integer types can hold
    lo, hi = max(info.min, src.min), min(info.max, src.max)
    return np.clip(result, result.dtype.type(lo), result.dtype.type(hi)).astype(dtype)

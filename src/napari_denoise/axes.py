"""Axes letters and dtype rules, shared by file I/O and the engine (which never imports I/O).

An image's axes are letters from :data:`AXES_LETTERS`, one per dimension: ``T`` (time),
``Z``, ``C`` (channel), ``Y`` and ``X``. A result goes back to the input's dtype with
:func:`cast_to_dtype`: rounded and clipped, never wrapped around.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "AXES_LETTERS",
    "as_image_array",
    "cast_to_dtype",
    "check_computable",
    "colour_picture_problem",
    "infer_axes",
    "normalize_axes",
    "resolve_dtype",
    "unwrap_array",
]

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
        ``YXC`` / ``TYXC``; and a last axis of 1 behind such planes is one channel
        (``YXC``, ``TYXC``, ``TZYXC``: an ``(H, W, 1)`` array is one image, not H frames
        one pixel wide).

    Raises
    ------
    InputError
        If the shape has fewer than 2 or more than 5 dimensions.
    """
    shape = tuple(int(n) for n in shape)
    if not 2 <= len(shape) <= 5:
        raise InputError(f"An image needs 2 to 5 dimensions, but this one has shape {shape}.")
    if len(shape) >= 3 and shape[-1] == 1 and min(shape[-3:-1]) > 8:
        return ("YXC", "TYXC", "TZYXC")[len(shape) - 3]
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


def as_image_array(image) -> np.ndarray:
    """``image`` as an array (arrays, memory maps and dask arrays pass unchanged).

    Raises
    ------
    InputError
        For nested lists of unequal lengths, or values that are not numbers.
    """
    if hasattr(image, "shape") and hasattr(image, "dtype"):
        return image
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError) as exc:
        raise InputError(
            "The image is a nested list whose rows have different lengths (or holds "
            f"non-numbers); every row and plane must have the same size ({exc})."
        ) from None
    if arr.dtype.kind not in "biuf":
        raise InputError(
            f"The image holds {arr.dtype} values; an image needs numbers of one shape."
        )
    return arr


def unwrap_array(image, axes: str | None):
    """A torch tensor or an xarray ``DataArray`` as a NumPy array, its axes, and a function
    that turns a result back into the input's type; other images pass unchanged.

    * A ``DataArray`` whose dims are axis letters (``t``, ``z``, ``c``, ``y``, ``x``, any
      case) gives those axes; ``axes`` given as well must agree. Unnamed dims (xarray's
      ``dim_0`` ...) are inferred as for an array. Other names are refused: guessing
      which is time and which is a channel is how a stack gets misread. The result is a
      ``DataArray`` with the input's dims, coordinates and attributes.
    * A torch tensor is copied to the CPU (detached from any graph) and the result is a
      tensor on the input's device, of the result's dtype (the input's by default; a
      bfloat16 or float16 tensor is computed in float32 and given back in its own).

    Raises
    ------
    InputError
        For dims that are not axis letters, or ``axes`` that contradict them.
    """
    kind = type(image).__module__.split(".")[0]
    if kind == "xarray" and hasattr(image, "dims") and hasattr(image, "values"):
        return _unwrap_xarray(image, axes)
    if kind == "torch" and hasattr(image, "detach"):
        return _unwrap_tensor(image), axes, lambda out: _as_tensor(out, image)
    return image, axes, lambda out: out


def _unwrap_xarray(image, axes: str | None):
    dims = [str(d) for d in image.dims]
    unnamed = all(d == f"dim_{i}" for i, d in enumerate(dims))
    if not unnamed:
        letters = "".join(d.upper() for d in dims)
        if not all(len(d) == 1 for d in dims) or set(letters) - set(AXES_LETTERS):
            if axes is None:
                raise InputError(
                    f"The DataArray's dims {tuple(dims)} are not axis letters (t, z, c, y, x); "
                    "rename them (da.rename(...)) or pass axes, e.g. axes='ZYX', so that "
                    "no axis is guessed."
                )
        else:
            found = normalize_axes(letters, len(dims), shape=image.shape)
            if axes is not None and normalize_axes(axes, len(dims), shape=image.shape) != found:
                raise InputError(
                    f"axes={axes!r} contradicts the DataArray's dims {tuple(dims)}; leave "
                    "axes out to use the dims, or rename them."
                )
            axes = found

    def rewrap(out):
        return image.copy(data=out) if tuple(np.shape(out)) == tuple(image.shape) else out

    return image.data, axes, rewrap  # numpy or dask: a lazy DataArray stays lazy


def _unwrap_tensor(tensor) -> np.ndarray:
    import torch

    t = tensor.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()  # numpy has no bfloat16; the result goes back to the tensor's dtype
    if t.is_complex():
        raise InputError(f"A {t.dtype} tensor holds no intensities; give a real-valued image.")
    return t.numpy()


def _as_tensor(out, like):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(out))
    if like.dtype in (torch.bfloat16, torch.float16) and t.dtype == torch.float32:
        t = t.to(like.dtype)  # computed in float32 (numpy has no bfloat16): back to its own
    return t.to(device=like.device)


def resolve_dtype(dtype):
    """``dtype`` as a NumPy dtype for a result (None stays None: the input's).

    Raises
    ------
    InputError
        If it is not a data type, or not a real numeric one.
    """
    if dtype is None:
        return None
    try:
        out = np.dtype(dtype)
    except TypeError:
        raise InputError(
            f"output_dtype {dtype!r} is not a data type; use e.g. 'float32' or 'uint16', or "
            "leave it unset for the input's."
        ) from None
    if out.kind not in "iuf":
        raise InputError(
            f"output_dtype {out} cannot hold intensities; use an integer or float type."
        )
    return out


def colour_picture_problem(
    shape, dtype, axes: str | None, *, how: str = "axes='YXC'"
) -> str | None:
    """The one RGB policy of the API, the command line and the GUI.

    An 8-bit image of 3 or 4 samples per pixel (``YXC``) is an RGB(A) colour picture,
    whose channels are colours, not the intensities fluorescence denoising models.
    Without axes stated by the user it is refused (this says why); with ``YXC`` given
    each colour channel is denoised on its own (an alpha channel, where a file marks
    one, is kept as it is).
    """
    shape = tuple(shape)
    if axes is None and len(shape) == 3 and shape[-1] in (3, 4) and np.dtype(dtype) == np.uint8:
        return (
            f"the image looks like an RGB colour picture (shape {shape}, uint8); "
            "fluorescence denoising works on grayscale channels. Convert it to grayscale, "
            f"or pass {how} to denoise each colour channel separately"
        )
    return None


_F32 = np.finfo(np.float32)


def check_computable(data, where: str = "The image") -> None:
    """Refuse values that float32, in which every method computes, cannot hold.

    Magnitudes beyond float32's range (about 3.4e38) would become infinite, magnitudes
    all below about 1e-31 lose their precision, and values whose spread is tiny next to
    their size (``2**62 + small``) cannot be told apart. NaN and infinite values are
    left to the finiteness check, which says so in its own words.

    Raises
    ------
    InputError
        Saying which of these it is and what to do.
    """
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "iuf" or (dtype.kind in "iu" and dtype.itemsize <= 2):
        return  # other dtypes get their own message where the image is checked
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return
    lo, hi = _finite_range(data)
    if lo is None:
        return
    big = max(abs(lo), abs(hi))
    if big > float(_F32.max):
        raise InputError(
            f"{where} has values up to {big:.3g}, beyond the range of float32 (about "
            f"{float(_F32.max):.2g}) in which denoising computes; scale it down first (for "
            "example divide by a power of ten) and scale the result back."
        )
    if 0 < big < float(_F32.tiny / _F32.eps):
        raise InputError(
            f"{where} has values no larger than {big:.3g}, too small for float32 (whose "
            f"normal numbers start at {float(_F32.tiny):.2g}) in which denoising computes; "
            "scale it up first (for example multiply by a power of ten)."
        )
    spread = float(int(hi) - int(lo)) if dtype.kind in "iu" else hi - lo
    step = float(np.spacing(np.float32(big)))
    if spread > 0 and step > spread / 1024:
        raise InputError(
            f"{where} has values around {big:.3g} that vary by only {spread:.3g}; float32, "
            f"in which denoising computes, has steps of {step:.3g} there, so the image would "
            f"be lost. Subtract its offset first (for example its minimum, {lo:.6g})."
        )


def _finite_range(data) -> tuple:
    """(min, max) of the finite values, as Python numbers; (None, None) if there are none.
    Read plane by plane for a large (memory-mapped) stack."""
    arr = data
    chunks = arr if arr.ndim > 2 and arr.nbytes > 256 * 2**20 else [arr]
    lo = hi = None
    for chunk in chunks:
        a = np.asarray(chunk)
        if a.dtype.kind == "f":
            a = a[np.isfinite(a)]
        if a.size == 0:
            continue
        cmin, cmax = a.min().item(), a.max().item()
        lo = cmin if lo is None else min(lo, cmin)
        hi = cmax if hi is None else max(hi, cmax)
    return lo, hi

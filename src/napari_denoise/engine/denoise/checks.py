"""Every check of an input image, in one place: the Python API, the command line, the GUI
and the dask graph all come through :func:`check_image` (or :func:`check_layout` and
:func:`check_finite` for values read lazily, block by block).

The rules it applies live in :mod:`napari_denoise.axes` (axes letters, the one RGB policy,
values float32 can hold); this module calls them in one pass, top to bottom.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...axes import (
    as_image_array,
    check_computable,
    colour_picture_problem,
    infer_axes,
    normalize_axes,
)
from ...errors import InputError
from .mapped import release_mapped
from .plan import Plan

__all__ = ["MIN_SIZE", "CheckedBlocks", "check_finite", "check_image", "check_layout", "is_lazy"]

MIN_SIZE = 3


def check_image(image: Any, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Validate an image and its axes; return it as an array with a checked axes string.

    Raises :class:`~napari_denoise.errors.InputError` with a sentence saying what is wrong
    (empty, 1-D, non-numeric, NaN or infinite values, RGB colour data, axes mismatch).
    """
    arr = as_image_array(image)  # a ragged list: a sentence, not numpy's traceback
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    axes = check_layout(arr.shape, arr.dtype, axes)
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr)
    check_computable(arr)  # values float32 cannot hold: refused, never NaN or constant
    return arr, axes


def check_layout(shape: tuple[int, ...], dtype: Any, axes: str | None = None) -> str:
    """What :func:`check_image` checks without reading a pixel; returns the axes.

    For lazy (dask) arrays: the values are checked block by block as they are computed.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if dtype.kind not in "biufc":  # bool, integers, floats, complex
        raise InputError(f"The image has data type {dtype}; a numeric image is needed.")
    if dtype.kind in "bc":
        raise InputError(f"The image has data type {dtype}; denoising needs real intensities.")
    if int(np.prod(shape)) == 0:
        raise InputError(f"The image is empty (shape {shape}).")
    if len(shape) < 2:
        raise InputError(
            f"The image is {len(shape)}-D (shape {shape}); denoising needs at least a 2-D (Y, X) image."
        )
    if axes is None:
        problem = colour_picture_problem(shape, dtype, axes)  # the one RGB policy
        if problem:
            raise InputError(f"{problem[0].upper()}{problem[1:]}.")
        axes = infer_axes(shape)
    else:
        axes = normalize_axes(axes, len(shape))
    ny, nx = shape[axes.index("Y")], shape[axes.index("X")]
    if min(ny, nx) < MIN_SIZE:
        raise InputError(
            f"The image is only {ny}x{nx} pixels in Y and X; at least {MIN_SIZE}x{MIN_SIZE} is needed."
        )
    return axes


def check_finite(arr: np.ndarray, where: str = "The image") -> None:
    """InputError if a float array holds NaN or infinite values."""
    bad = _count_nonfinite(arr)
    if bad:
        raise InputError(
            f"{where} contains {bad} NaN or infinite values; replace them (for example "
            "with 0 or the background level) before denoising."
        )


def _count_nonfinite(arr: np.ndarray) -> int:
    # Chunked over the first axis so a large memory-mapped stack is not loaded at once.
    if arr.ndim > 2 and arr.nbytes > 256 * 2**20:
        bad = 0
        for a in arr:
            bad += int(np.count_nonzero(~np.isfinite(a)))
            release_mapped(arr)  # a long mapped stack must not stay resident once read
        return bad
    return int(np.count_nonzero(~np.isfinite(arr)))


def is_lazy(arr: Any) -> bool:
    """Whether ``arr`` is a dask array (its values are read, and checked, when computed)."""
    return hasattr(arr, "dask") and hasattr(arr, "chunks") and not isinstance(arr, np.ndarray)


class CheckedBlocks:
    """A lazy (dask) image transposed by ``plan.order``, read a block at a time: each block
    is computed once (not once per tile) and its values checked as it is read, since they
    could not be checked before."""

    def __init__(self, view: Any, plan: Plan):
        self.view, self.plan = view, plan

    def __getitem__(self, index: tuple[int, ...]) -> np.ndarray:
        block = np.asarray(self.view[index])
        if np.issubdtype(block.dtype, np.floating):
            label = self.plan.where(index).removeprefix(self.plan.method.name).strip()
            check_finite(block, where=f"The plane at {label}" if label else "The image")
        return block

"""From a whole image (any supported axes) to blocks, tiles and back: the one denoising loop.

:func:`denoise_iter` is a generator: it yields :class:`~.tiling.Progress` after every tile
and returns a :class:`DenoiseResult`. The GUI runs it in a worker thread (each ``yield``
is a point where Cancel takes effect), the CLI and :func:`napari_denoise.denoise` simply
drain it. Nothing here imports napari or Qt.

It is made of two steps that a caller can also drive itself: :func:`plan_iter` checks
the image and fixes the :class:`~.plan.Plan` (layout, tile, per-channel parameters), and
:func:`block_iter` denoises the blocks one after the other, handing each over as a
:class:`Block` as soon as it is done. :func:`denoise_iter` gathers them into an array;
:func:`napari_denoise.files.denoise_file` writes each to its file instead, so memory
holds one block at a time whatever the number of planes.
"""

from __future__ import annotations

import contextlib
import mmap
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InputError, ParameterError
from ..methods import Method, default_method, get_method
from .plan import (
    DEFAULT_TILE,
    DEPTH_TILE,
    SAMPLES_FOR_AUTO,
    Plan,
    choose_params,
    make_plan,
    position_text,
    sample_planes,
)
from .tiling import Progress, plan_tiles, run_tiled

__all__ = [
    "Block",
    "DenoiseResult",
    "block_iter",
    "check_image",
    "denoise_iter",
    "drain",
    "plan_iter",
]

# Names whose home is now plan.py, still importable from here.
__all__ += ["DEFAULT_TILE", "DEPTH_TILE", "SAMPLES_FOR_AUTO", "choose_params", "sample_planes"]
# Tiles overlap by twice the method's halo (discarded) plus this ramp, over which neighbours
# blend; the halo already makes the result exact, so the ramp only hides rounding.
RAMP = 8
MIN_SIZE = 3
CAST_SLAB = 2**18  # values converted to the output dtype at a time (see cast_into)


@dataclass
class DenoiseResult:
    """The denoised array and what produced it."""

    data: np.ndarray
    axes: str
    method: str
    params: dict[str, Any]
    channel_params: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def provenance(self) -> dict[str, Any]:
        """Method, resolved parameters (per channel where they differ) and timing."""
        info: dict[str, Any] = {
            "method": self.method,
            "params": self.params,
            "axes": self.axes,
            "seconds": round(self.seconds, 3),
        }
        if len(self.channel_params) > 1:
            info["channel_params"] = self.channel_params
        method = get_method(self.method)
        if method.model is not None:
            info["model"] = method.model.as_dict()
        return info


def check_image(image: Any, axes: str | None = None) -> tuple[np.ndarray, str]:
    """Validate an image and its axes; return it as an array with a checked axes string.

    Raises :class:`~napari_denoise.errors.InputError` with a sentence saying what is wrong
    (empty, 1-D, non-numeric, NaN or infinite values, RGB colour data, axes mismatch).
    """
    from ...axes import as_image_array, check_computable

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
    from ...axes import infer_axes, normalize_axes

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
        if len(shape) == 3 and shape[-1] in (3, 4) and dtype == np.uint8:
            raise InputError(
                f"The image looks like an RGB colour picture (shape {shape}, uint8); "
                "fluorescence denoising works on grayscale channels. Convert it to grayscale, "
                "or pass axes='YXC' to denoise each colour channel separately."
            )
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


@dataclass(frozen=True)
class Block:
    """A denoised block (plane, or volume for 3-D methods): its loop position in the
    plan's transposed view and its float result, before the cast to the output dtype."""

    index: tuple[int, ...]
    data: np.ndarray


def denoise_iter(
    image: Any,
    method: str | Method | None = None,
    *,
    axes: str | None = None,
    tile: int | None = None,
    output_dtype: Any = None,
    params: Mapping[str, Any] | None = None,
    out: np.ndarray | None = None,
) -> Generator[Progress, None, DenoiseResult]:
    """Denoise ``image`` tile by tile, yielding progress; returns a :class:`DenoiseResult`.

    Parameters
    ----------
    image : array_like
        2-D to 5-D image; axes from ``axes`` or inferred (``YX``, ``ZYX``, ``YXC`` ...).
        A memory-mapped image or a dask array is read block by block, never held whole
        (a dask array's values are checked block by block as they are read).
    method : str or Method, optional
        Registered method name; the default method when omitted.
    axes : str, optional
        Axis letters from ``TZCYX``, one per dimension.
    tile : int, optional
        Tile size in Y and X (pixels). Tiles overlap by what the method's reach needs.
    output_dtype : dtype, optional
        Output data type; the input's by default (rounded and clipped for integers).
    params : mapping, optional
        Method parameters; unset automatic ones are chosen from the image per channel.
    out : numpy.ndarray, optional
        Where to write the result (the input's shape, the output dtype), for example a
        file-backed ``np.memmap`` for a result larger than memory; a new array otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> gen = denoise_iter(np.random.rand(64, 64).astype("float32"), "gaussian")
    >>> try:
    ...     while True:
    ...         progress = next(gen)
    ... except StopIteration as stop:
    ...     result = stop.value
    >>> result.data.shape
    (64, 64)
    """
    start = time.perf_counter()
    plan, view = yield from plan_iter(
        image, method, axes=axes, tile=tile, output_dtype=output_dtype, params=params
    )
    if out is None:
        out = np.empty(plan.shape, dtype=plan.out_dtype)
    elif tuple(out.shape) != plan.shape or np.dtype(out.dtype) != plan.out_dtype:
        raise ParameterError(
            f"The output array is {out.dtype} of shape {tuple(out.shape)}; this result needs "
            f"{plan.out_dtype} of shape {plan.shape}."
        )
    target = np.transpose(out, plan.order)  # a view: each block is written where it lies
    for item in block_iter(plan, view):
        if isinstance(item, Block):
            cast_into(target[item.index], item.data)
        else:
            yield item
    return make_result(out, plan.axes, plan.method, plan.base, plan.params, start)


def plan_iter(
    image: Any,
    method: str | Method | None = None,
    *,
    axes: str | None = None,
    tile: int | None = None,
    output_dtype: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Generator[Progress, None, tuple[Plan, np.ndarray]]:
    """Check ``image``, plan its denoising and choose each channel's parameters (yielding
    a tick per channel); returns the :class:`~.plan.Plan` and the image transposed by it.

    The arguments are those of :func:`denoise_iter`.
    """
    m = default_method() if method is None else get_method(method)
    check = None
    if _is_dask(image):  # a lazy array: read (and its values checked) a block at a time
        arr, axes = image, check_layout(image.shape, image.dtype, axes)
        check = check_finite
    else:
        arr, axes = check_image(image, axes)
    plan = make_plan(
        m, axes, arr.shape, arr.dtype, tile=tile, output_dtype=output_dtype, params=params
    )
    view = np.transpose(arr, plan.order)  # a view: memory-mapped data is read block by block
    n = plan.n_channels
    title = m.title or m.name
    for c in plan.choose(view, check=check):
        channel = (("C", c, n),) if n > 1 else ()
        where = f" ({position_text(channel)})" if channel else ""
        message = f"{title}: choosing its settings from the image{where}"
        yield Progress(0, 1, message, position=channel, choosing=True)
    return plan, view


def block_iter(plan: Plan, view: np.ndarray) -> Generator[Progress | Block, None, None]:
    """Denoise the blocks of ``view`` (the image transposed by ``plan``) in loop order.

    Yields a :class:`~.tiling.Progress` after every tile and a :class:`Block` when a block
    is done; only one block's result is held at a time. Pages of a memory-mapped input
    are handed back to the system after each block, so reading a long stack does not
    make the process grow with it.
    """
    m = plan.method
    tiles_per_block = [
        len(plan_tiles(plan.block_shape, plan.tile, **_geometry(m, p, plan.block_shape)))
        for p in plan.params
    ]
    indices = plan.indices()
    total = sum(tiles_per_block[plan.channel(i)] for i in indices)
    done = 0
    title = m.title or m.name
    for index in indices:
        c = plan.channel(index)
        where, position = plan.where(index), plan.position(index)
        message = ", ".join(w for w in (title, position_text(position)) if w)
        block = view[index]
        if _is_dask(block):  # computed once per block, not once per tile
            block = np.asarray(block)
            if np.issubdtype(block.dtype, np.floating):
                label = where.removeprefix(m.name).strip()
                check_finite(block, where=f"The plane at {label}" if label else "The image")
        gen = denoise_block(m, block, plan.params[c], plan.stabilisers[c], plan.tile)
        del block
        try:
            while True:
                tick = next(gen)
                yield Progress(done + tick.done, total, message, position=position)
        except StopIteration as stop:
            result = stop.value
        done += tiles_per_block[c]
        release_mapped(view)
        yield Block(index, result)
        del result  # before the next block's result is made


def _is_dask(arr: Any) -> bool:
    return hasattr(arr, "dask") and hasattr(arr, "chunks") and not isinstance(arr, np.ndarray)


def cast_into(dst: np.ndarray, result: np.ndarray) -> None:
    """``dst[...] = cast_to_dtype(result, dst.dtype)``, a slab at a time so that the
    conversion's temporaries stay small whatever the block's size."""
    from ...axes import cast_to_dtype

    if result.ndim == 0 or result.size <= CAST_SLAB:
        dst[...] = cast_to_dtype(result, dst.dtype)
        return
    step = max(1, CAST_SLAB // max(1, result[0].size))
    for i in range(0, len(result), step):
        dst[i : i + step] = cast_to_dtype(result[i : i + step], dst.dtype)


def release_mapped(arr: Any) -> None:
    """Tell the system that the pages of the file mapping under ``arr`` (if any) are not
    needed now: they stay in the page cache, but no longer count in this process's
    resident memory, and are read again from the file if touched.

    Only for a shared mapping (``np.memmap`` modes ``r``, ``r+``, ``w+``), whose pages are
    the file's: a copy-on-write map (mode ``c``) holds private changes that must stay.
    """
    base, shared = arr, False
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap) and getattr(base, "mode", None) is not None:
            shared = base.mode in ("r", "r+", "w+")
        base = base.base
    if shared and isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # closed, or not supported here
            base.madvise(mmap.MADV_DONTNEED)


def make_result(data, axes: str, m: Method, base: dict, resolved: list[dict], start: float):
    """The :class:`DenoiseResult` of a run that began at ``start`` (perf_counter):
    ``params`` are the channels' resolved ones when they all agree, else the given ones."""
    summary = resolved[0] if len({repr(sorted(p.items())) for p in resolved}) == 1 else base
    return DenoiseResult(
        data=data,
        axes=axes,
        method=m.name,
        params=_jsonable(summary),
        channel_params=[_jsonable(p) for p in resolved],
        seconds=time.perf_counter() - start,
    )


def _geometry(m: Method, params: dict[str, Any], block_shape: tuple[int, ...]) -> dict:
    """How the tiles of a block overlap for ``m`` with ``params``: twice the halo (dropped)
    plus the blending ramp, starts on the network's downsampling multiple."""
    halo = int(m.halo(params))
    return {
        "overlap": _spatial(2 * halo + RAMP, block_shape),
        "halo": _spatial(halo, block_shape),
        "multiple": int(m.multiple),
    }


def denoise_block(
    m: Method, block, params: dict[str, Any], stabiliser, tile_shape: tuple[int, ...]
) -> Generator[Progress, None, np.ndarray]:
    """One block (a plane, or a volume for 3-D methods) tile by tile with fixed, resolved
    ``params``: yields the tiles' progress, returns the float result."""
    from .noise import anscombe, inverse_anscombe

    fn_params = {k: v for k, v in params.items() if k != "vst"}

    def run_tile(tile_data):
        # Each tile is read (from a memory map, possibly) and converted on its own.
        x = np.asarray(tile_data, np.float32)
        return m.fn(anscombe(x, stabiliser) if stabiliser is not None else x, **fn_params)

    # Networks on a GPU take several tiles per pass (never with a VST: models have none).
    batch_fn = m.batch_fn
    batch = int(m.tile_batch(fn_params)) if batch_fn is not None and m.tile_batch else 1

    def run_batch(tiles):
        return batch_fn([np.asarray(t, np.float32) for t in tiles], **fn_params)

    result = yield from run_tiled(
        block,
        run_tile,
        tile=tile_shape,
        **_geometry(m, params, tuple(block.shape)),
        batch=batch if stabiliser is None else 1,
        fn_batch=run_batch if batch_fn is not None else None,
    )
    if stabiliser is not None:  # elementwise, so in place a slab at a time
        step = max(1, CAST_SLAB // max(1, result[0].size))
        for i in range(0, len(result), step):
            result[i : i + step] = inverse_anscombe(result[i : i + step], stabiliser)
    return result


def _spatial(value: int, block_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (value,) * len(block_shape)


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values; floats to 9 significant digits (enough to give a float32 value
    back exactly), not to a number of decimals: an image in small units (a black level of
    4e-8) must not be reported as 0, so that the reported parameters reproduce the run."""
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and np.isfinite(v):
            v = float(f"{v:.9g}")
        out[k] = v
    return out


def drain(gen: Generator[Progress, None, Any], on_progress=None) -> Any:
    """Run a progress generator to the end and return its value."""
    try:
        while True:
            tick = next(gen)
            if on_progress is not None:
                on_progress(tick)
    except StopIteration as stop:
        return stop.value

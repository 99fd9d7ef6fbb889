"""From a whole image (any supported axes) to blocks, tiles and back: the one denoising loop.

:func:`denoise_iter` is a generator: it yields :class:`~.tiling.Progress` after every tile
and returns a :class:`DenoiseResult`. The GUI runs it in a worker thread (each ``yield``
is a point where Cancel takes effect), the CLI and :func:`napari_denoise.denoise` simply
drain it. Nothing here imports napari or Qt.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InputError, ParameterError
from ..methods import Method, default_method, get_method
from .tiling import Progress, plan_tiles, run_tiled

__all__ = ["DenoiseResult", "check_image", "denoise_iter", "drain"]

DEFAULT_TILE = 1024
DEPTH_TILE = 32  # planes per tile for 3-D methods, so long stacks are read piece by piece
# Tiles overlap by twice the method's halo (discarded) plus this ramp, over which neighbours
# blend; the halo already makes the result exact, so the ramp only hides rounding.
RAMP = 8
MIN_SIZE = 3
SAMPLES_FOR_AUTO = 4


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
    arr = image if isinstance(image, np.ndarray) else np.asarray(image)
    axes = check_layout(arr.shape, arr.dtype, axes)
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr)
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
        return sum(int(np.count_nonzero(~np.isfinite(a))) for a in arr)
    return int(np.count_nonzero(~np.isfinite(arr)))


def _layout(axes: str, method: Method) -> tuple[str, str]:
    """Split axes into (loop axes, block axes) for the method."""
    if method.ndim == 3:
        depth = "Z" if "Z" in axes else ("T" if "T" in axes else None)
        if depth is None:
            raise InputError(
                f"Method '{method.name}' works on 3-D volumes and needs a Z or T axis; "
                f"this image has axes '{axes}'. Choose a 2-D method or give the stack axis."
            )
        block = depth + "YX"
    else:
        block = "YX"
    loop = "".join(a for a in axes if a not in block)
    return loop, block


def _resolve_tile(tile: Any, method: Method, block_shape: tuple[int, ...]) -> tuple[int, ...]:
    default = int(method.tile or DEFAULT_TILE)
    if tile is None:
        size = default
    else:
        try:
            size = int(tile)
        except (TypeError, ValueError):
            raise ParameterError(
                f"Tile size must be a whole number of pixels, got {tile!r}."
            ) from None
        if size < 16:
            raise ParameterError(f"Tile size {size} is too small; use at least 16 pixels.")
    if len(block_shape) == 3:
        return (DEPTH_TILE, size, size)
    return (size, size)


def denoise_iter(
    image: Any,
    method: str | Method | None = None,
    *,
    axes: str | None = None,
    tile: int | None = None,
    output_dtype: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Generator[Progress, None, DenoiseResult]:
    """Denoise ``image`` tile by tile, yielding progress; returns a :class:`DenoiseResult`.

    Parameters
    ----------
    image : array_like
        2-D to 5-D image; axes from ``axes`` or inferred (``YX``, ``ZYX``, ``YXC`` ...).
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
    from ...axes import cast_to_dtype

    start = time.perf_counter()
    m = default_method() if method is None else get_method(method)
    arr, axes = check_image(image, axes)
    given = dict(params or {})
    base = m.resolve_params(given)
    out_dtype = np.dtype(output_dtype) if output_dtype is not None else arr.dtype

    loop_axes, block_axes = _layout(axes, m)
    order = [axes.index(a) for a in loop_axes + block_axes]
    view = np.transpose(arr, order)  # a view: memory-mapped data is read block by block
    loop_shape = view.shape[: len(loop_axes)]
    block_shape = view.shape[len(loop_axes) :]
    out = np.empty(view.shape, dtype=out_dtype)

    channel_axis = loop_axes.index("C") if "C" in loop_axes else None
    n_channels = loop_shape[channel_axis] if channel_axis is not None else 1
    tile_shape = _resolve_tile(tile, m, block_shape)
    indices = list(itertools.product(*[range(n) for n in loop_shape]))

    resolved: list[dict[str, Any]] = []
    stabilisers = []
    for c in range(n_channels):
        p, model = choose_params(m, base, sample_planes(view, indices, channel_axis, c))
        resolved.append(p)
        stabilisers.append(model)
        yield Progress(
            0, 1, f"{m.name}: choosing parameters from the image (channel {c + 1} of {n_channels})"
        )

    tiles_per_block = [
        len(plan_tiles(block_shape, tile_shape, **_geometry(m, p, block_shape))) for p in resolved
    ]
    total = sum(
        tiles_per_block[(i[channel_axis] if channel_axis is not None else 0)] for i in indices
    )
    done = 0
    for index in indices:
        c = index[channel_axis] if channel_axis is not None else 0
        gen = denoise_block(m, view[index], resolved[c], stabilisers[c], tile_shape)
        try:
            while True:
                tick = next(gen)
                yield Progress(done + tick.done, total, _where(loop_axes, index, m.name))
        except StopIteration as stop:
            result = stop.value
        done += tiles_per_block[c]
        out[index] = cast_to_dtype(result, out_dtype)

    data = np.transpose(out, np.argsort(order))
    return make_result(data, axes, m, base, resolved, start)


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


def sample_planes(view, indices: list, channel_axis: int | None, channel: int) -> list[np.ndarray]:
    """Up to :data:`SAMPLES_FOR_AUTO` planes (blocks) of one channel, spread evenly, as float32.

    ``view`` has the loop axes first; ``indices`` are all its loop positions.
    """
    in_channel = [i for i in indices if channel_axis is None or i[channel_axis] == channel]
    pick = np.unique(np.linspace(0, len(in_channel) - 1, SAMPLES_FOR_AUTO).round().astype(int))
    return [np.asarray(view[in_channel[k]], np.float32) for k in pick]


def choose_params(m: Method, base: dict[str, Any], samples: list[np.ndarray]):
    """The parameters of one channel, automatic ones chosen from its sample planes, and
    the noise model of its variance-stabilising transform (None without ``vst``)."""
    from .noise import anscombe, estimate_noise_model

    p = dict(base)
    model = None
    if p.get("vst"):
        model = estimate_noise_model(np.stack(samples))
        samples = [anscombe(s, model) for s in samples]
    if m.auto is not None:
        p = m.auto(samples, p)
    return p, model


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
    if stabiliser is not None:
        result = inverse_anscombe(result, stabiliser)
    return result


def _spatial(value: int, block_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (value,) * len(block_shape)


def _where(loop_axes: str, index: tuple[int, ...], name: str) -> str:
    if not loop_axes:
        return name
    return name + " " + " ".join(f"{a}={i}" for a, i in zip(loop_axes, index, strict=True))


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float):
            v = round(v, 6)
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

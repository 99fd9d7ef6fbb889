"""The one driver: a plan's blocks, streamed from a reader through the method to a writer.

Every path runs an image through :func:`drive` (a generator: the GUI's worker and the
TIFF writer pull it) or :func:`run` (the same, pushed to the end with ``progress`` and
``stop`` callbacks):

* the Python API and the GUI through :func:`~.pipeline.denoise_iter` (an array, a memory
  map, a napari layer's data, a dask array read block by block),
* the GUI's filling result layer (``_qt/_fill.py``) and the command line's TIFF, Zarr and
  scratch outputs (``files.py``),
* each task of the dask graph (:mod:`.lazy`), one block per task.

The contract:

``reader(index) -> block``
    The input block (a plane, or a volume for 3-D methods) at a loop position of the
    plan (:meth:`~.plan.Plan.indices`), in the plan's axis order. :func:`view_reader`
    makes one from any array (numpy, memory map, dask, zarr); its values are checked as
    they are read where they could not be checked before (a lazy array).
``writer(index, result)``
    Receives the float32 result of that block (:func:`array_writer` casts it into an
    output array, the TIFF writer into its page buffer).
Blocks and their reach
    A block is denoised tile by tile; tiles overlap by the method's ``halo`` (the reach
    in Y and X). Along the stack, a block reaches :attr:`~.plan.Plan.plane_reach` planes
    before and after: the driver then reads the window ``i - k .. i + k``
    (:meth:`~.plan.Plan.window`, reflected at the ends) and hands the method a
    ``(2k + 1, Y, X)`` stack per tile, of which it returns the middle plane. Windows
    stream: only ``2k + 1`` planes (per position of the loop axes after the stack
    axis) are held, each read once.
Progress and stop
    :func:`drive` yields a :class:`~.tiling.Progress` after every tile and
    :class:`Written` after every block handed to the writer; closing it stops the work
    (nothing runs past the current tile). :func:`run` calls ``progress(tick)`` and
    raises :class:`~napari_denoise.errors.Cancelled` when ``stop()`` is true.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import Cancelled
from ..method_base import Method
from .checks import check_finite
from .mapped import release_mapped
from .plan import Plan, position_text
from .tiling import Progress, plan_tiles, run_tiled

__all__ = [
    "Block",
    "Reader",
    "Writer",
    "Written",
    "array_writer",
    "cast_into",
    "denoise_block",
    "drive",
    "run",
    "view_reader",
    "windows",
]

# Tiles overlap by twice the method's halo (discarded) plus this ramp, over which neighbours
# blend; the halo already makes the result exact, so the ramp only hides rounding.
RAMP = 8
CAST_SLAB = 2**18  # values converted to the output dtype at a time (see cast_into)

Reader = Callable[[tuple[int, ...]], Any]
Writer = Callable[[tuple[int, ...], np.ndarray], None]


@dataclass(frozen=True)
class Block:
    """A denoised block (plane, or volume for 3-D methods): its loop position in the
    plan's transposed view and its float result, before the cast to the output dtype."""

    index: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True)
class Written:
    """The block at loop position ``index`` is in the writer."""

    index: tuple[int, ...]


def view_reader(plan: Plan, view: Any) -> Reader:
    """A reader of ``view`` (the image transposed by ``plan.order``: an array, a memory
    map, a dask or zarr array). A memory-mapped block is read tile by tile where it lies;
    a lazy (dask) block is computed once and its values checked here."""
    m = plan.method

    def read(index: tuple[int, ...]):
        block = view[index]
        if is_lazy(block):  # computed once per block, not once per tile
            block = np.asarray(block)
            if np.issubdtype(block.dtype, np.floating):
                label = plan.where(index).removeprefix(m.name).strip()
                check_finite(block, where=f"The plane at {label}" if label else "The image")
        return block

    return read


def array_writer(plan: Plan, out: np.ndarray) -> Writer:
    """A writer into ``out`` (the image's shape and the output dtype; in memory or a
    file-backed ``np.memmap``, whose written pages go to the file, not this process)."""
    target = np.transpose(out, plan.order)  # a view: each block is written where it lies

    def write(index: tuple[int, ...], result: np.ndarray) -> None:
        cast_into(target[index], result)
        release_mapped(out)

    return write


def windows(
    plan: Plan, reader: Reader, indices: Iterable[tuple[int, ...]] | None = None
) -> Iterator[tuple[tuple[int, ...], Any]]:
    """``(index, block)`` in loop order: the block as read, or with a plane reach ``k``,
    its window of ``2k + 1`` planes stacked on a new first axis (the block in the middle).

    Streaming: a plane is read once and held while a window still needs it; at most
    ``(2k + 1)`` times the number of loop positions after the stack axis are held.
    """
    indices = plan.indices() if indices is None else list(indices)
    if not plan.plane_reach or plan.plane_axis is None:
        for index in indices:
            yield index, reader(index)
        return
    axis = plan.plane_axis
    after = int(np.prod(plan.loop_shape[axis + 1 :], dtype=np.int64))
    held: OrderedDict[tuple[int, ...], Any] = OrderedDict()
    capacity = (2 * plan.plane_reach + 1) * after
    for index in indices:
        planes = []
        for j in plan.window(index):
            if j in held:
                held.move_to_end(j)  # the least recently used goes first
            else:
                held[j] = np.asarray(reader(j))
            planes.append(held[j])
        while len(held) > capacity:  # no later window needs those any more
            held.popitem(last=False)
        yield index, np.stack(planes)
        del planes


def drive(
    plan: Plan, reader: Reader, writer: Writer, *, indices: Iterable[tuple[int, ...]] | None = None
) -> Generator[Progress | Written, None, None]:
    """Denoise the plan's blocks (all, or those at ``indices``) from ``reader`` into
    ``writer``, yielding progress after every tile and :class:`Written` after each block.

    Only one block's result (and one window of input planes) is held at a time.
    """
    m = plan.method
    indices = plan.indices() if indices is None else list(indices)
    lead = 1 if plan.plane_reach and plan.plane_axis is not None else 0
    tiles_per_block = [
        len(plan_tiles(plan.block_shape, plan.tile, **_geometry(m, p, plan.block_shape)))
        for p in plan.params
    ]
    total = sum(tiles_per_block[plan.channel(i)] for i in indices)
    done = 0
    title = m.title or m.name
    for index, block in windows(plan, reader, indices):
        c = plan.channel(index)
        position = plan.position(index)
        message = ", ".join(w for w in (title, position_text(position)) if w)
        steps = denoise_block(m, block, plan.params[c], plan.stabilisers[c], plan.tile, lead=lead)
        result = yield from _ticks(steps, done, total, message, position)
        done += tiles_per_block[c]
        release_mapped(block)  # a memory-mapped input's pages read for it can go
        del block
        writer(index, result)
        del result  # before the next block's result is made
        yield Written(index)


def run(
    plan: Plan,
    reader: Reader,
    writer: Writer,
    *,
    progress: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> None:
    """:func:`drive` to the end: ``progress(tick)`` after every tile; ``stop()`` asked
    after every tile, and when it is true :class:`~napari_denoise.errors.Cancelled` is
    raised (the writer has then received the finished blocks only)."""
    for item in drive(plan, reader, writer, indices=indices):
        if progress is not None and isinstance(item, Progress):
            progress(item)
        if stop is not None and stop():
            raise Cancelled("Stopped before the end; the result is incomplete.")


def _ticks(gen: Generator[Progress, None, Any], done: int, total: int, message, position):
    """Yield a block's tile ticks as the run's (``done`` tiles before it); return its value."""
    while True:
        try:
            tick = next(gen)
        except StopIteration as stop:
            return stop.value
        yield Progress(done + tick.done, total, message, position=position)


def is_lazy(arr: Any) -> bool:
    """Whether ``arr`` is a dask array (read, and checked, when computed)."""
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
    m: Method,
    block,
    params: dict[str, Any],
    stabiliser,
    tile_shape: tuple[int, ...],
    *,
    lead: int = 0,
) -> Generator[Progress, None, np.ndarray]:
    """One block (a plane, or a volume for 3-D methods) tile by tile with fixed, resolved
    ``params``: yields the tiles' progress, returns the float result.

    ``lead=1``: ``block`` is a window of planes (first axis) around the block; every tile
    takes all of them and the method returns the middle plane's tile.
    """
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

    shape = tuple(block.shape[lead:])
    result = yield from run_tiled(
        block,
        run_tile,
        tile=tile_shape,
        **_geometry(m, params, shape),
        batch=batch if stabiliser is None else 1,
        fn_batch=run_batch if batch_fn is not None else None,
        lead=lead,
    )
    if stabiliser is not None:  # elementwise, so in place a slab at a time
        step = max(1, CAST_SLAB // max(1, result[0].size))
        for i in range(0, len(result), step):
            result[i : i + step] = inverse_anscombe(result[i : i + step], stabiliser)
    return result


def _spatial(value: int, block_shape: tuple[int, ...]) -> tuple[int, ...]:
    return (value,) * len(block_shape)

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

``reader[index] -> block``
    The input block (a plane, or a volume for 3-D methods) at a loop position of the
    plan (:meth:`~.plan.Plan.indices`), in the plan's axis order: the image transposed
    by ``plan.order`` is one (a numpy array, a memory map read tile by tile where it
    lies), and so is a dict of blocks (a dask task's); a dask array comes wrapped in
    :class:`~.checks.CheckedBlocks` (each block computed once, its values checked).
``writer``
    An array of the image's shape and the output dtype (in memory, or a file-backed
    ``np.memmap`` whose written pages go to the file, not this process): each block is
    cast into it where it lies. Or a callable ``writer(index, result)`` given the
    float32 result (the TIFF writer casts it into its page buffer).
Blocks and their reach
    A block is denoised tile by tile; tiles overlap by the method's ``halo`` (the reach
    in Y and X). Along the stack, a block reaches :attr:`~.plan.Plan.plane_reach` planes
    before and after: the driver then reads the window ``i - k .. i + k``
    (:meth:`~.plan.Plan.window`, reflected at the ends) and hands the method a
    ``(2k + 1, Y, X)`` stack per tile, of which it returns the middle plane; or, for a
    method with a ``combine`` step, that step first turns the window of whole planes into
    one plane (e.g. neighbours fused into it), which is then tiled as any plane. Windows
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
from .mapped import release_mapped
from .plan import POSITION_WORDS, Plan, position_text
from .tiling import Progress, plan_tiles, run_tiled

__all__ = [
    "Block",
    "Reader",
    "Writer",
    "Written",
    "cast_into",
    "denoise_block",
    "drive",
    "run",
    "windows",
]

# Tiles overlap by twice the method's halo (discarded) plus this ramp, over which neighbours
# blend; the halo already makes the result exact, so the ramp only hides rounding.
RAMP = 8
CAST_SLAB = 2**18  # values converted to the output dtype at a time (see cast_into)

Reader = Any  # anything indexed by a loop position: reader[index] -> block
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
            yield index, reader[index]
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
                held[j] = np.asarray(reader[j])
            planes.append(held[j])
        while len(held) > capacity:  # no later window needs those any more
            held.popitem(last=False)
        window = np.stack(planes)  # a copy: a memory-mapped input's pages read can go
        release_mapped(planes[-1])
        del planes
        yield index, window
        del window


def drive(
    plan: Plan,
    reader: Reader,
    writer: Writer | np.ndarray,
    *,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> Generator[Progress | Written, None, None]:
    """Denoise the plan's blocks (all, or those at ``indices``) from ``reader`` into
    ``writer``, yielding progress after every tile and :class:`Written` after each block.

    Only one block's result (and one window of input planes) is held at a time.
    """
    m = plan.method
    indices = plan.indices() if indices is None else list(indices)
    lead = 1 if plan.plane_reach and plan.plane_axis is not None else 0
    combine = m.combine if lead else None  # the window becomes one plane, before tiling
    if combine is not None:
        lead = 0
    target = None if callable(writer) else np.transpose(writer, plan.order)  # a view
    tiles_per_block = [
        len(plan_tiles(plan.block_shape, plan.tile, **_geometry(m, p, plan.block_shape)))
        for p in plan.params
    ]
    total = sum(tiles_per_block[plan.channel(i)] for i in indices)
    done = 0
    title = m.title or m.name
    with_neighbours = ""
    if plan.neighbour_planes():  # said on every tick: the planes are not denoised alone
        n, word = plan.neighbour_planes(), POSITION_WORDS[plan.loop_axes[plan.plane_axis]]
        with_neighbours = f"with {n} neighbouring {word}{'' if n == 1 else 's'}"
    for index, block in windows(plan, reader, indices):
        c = plan.channel(index)
        position = plan.position(index)
        message = ", ".join(w for w in (title, position_text(position), with_neighbours) if w)
        if combine is not None:
            fused = plan.fused_samples.pop(index, None)  # a sample plane, fused already
            block = plan.fused(index, block, plan.params[c]) if fused is None else fused
        result = yield from denoise_block(
            m,
            block,
            plan.params[c],
            plan.stabilisers[c],
            plan.tile,
            lead=lead,
            progress=(done, total, message, position),
        )
        done += tiles_per_block[c]
        release_mapped(block)  # a memory-mapped input's pages read for it can go
        del block
        if target is None:
            writer(index, result)
        else:
            cast_into(target[index], result)
            release_mapped(writer)  # written pages go to the file, not this process
        del result  # before the next block's result is made
        yield Written(index)


def run(
    plan: Plan,
    reader: Reader,
    writer: Writer | np.ndarray,
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
    halo, n = int(m.halo(params)), len(block_shape)
    return {"overlap": (2 * halo + RAMP,) * n, "halo": (halo,) * n, "multiple": int(m.multiple)}


def denoise_block(
    m: Method,
    block,
    params: dict[str, Any],
    stabiliser,
    tile_shape: tuple[int, ...],
    *,
    lead: int = 0,
    progress: tuple = (0, None, "", ()),
) -> Generator[Progress, None, np.ndarray]:
    """One block (a plane, or a volume for 3-D methods) tile by tile with fixed, resolved
    ``params``: yields the tiles' progress, returns the float result.

    ``lead=1``: ``block`` is a window of planes (first axis) around the block; every tile
    takes all of them and the method returns the middle plane's tile. ``progress`` is
    ``(tiles done before, total tiles, message, position)`` of the run it is part of.
    """
    from .noise import anscombe, inverse_anscombe

    fn_params = {k: v for k, v in params.items() if k != "vst" and k not in m.combine_keys}

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
        start=progress[0],
        total=progress[1],
        message=progress[2],
        position=progress[3],
    )
    if stabiliser is not None:  # elementwise, so in place a slab at a time
        step = max(1, CAST_SLAB // max(1, result[0].size))
        for i in range(0, len(result), step):
            result[i : i + step] = inverse_anscombe(result[i : i + step], stabiliser)
    return result

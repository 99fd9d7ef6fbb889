"""Overlapping tiles with smooth blending, as a generator that can be stopped between tiles.

Each spatial axis (``Y``, ``X`` and, for 3D methods, ``Z``) is cut into tiles of at most
``tile`` pixels that overlap by ``overlap`` pixels. A tile's output is weighted by a window
that is zero on its outermost ``halo`` pixels where it meets a neighbour (so those pixels,
whose receptive field would leave the tile, are never used), then ramps linearly up to one
across the rest of the overlap. Outputs are accumulated with their weights and normalised,
so there are no seams; and for a filter whose output at a pixel depends only on inputs
within ``halo`` pixels, the tiled result equals the untiled one to float precision.

A tile is never smaller than :data:`MIN_TILE_PER_MARGIN` times the margin it discards
(twice the halo; it grows to that, rounded up to the ``multiple``): with a long-reaching
network (a halo of 50+ pixels) a small tile would compute most pixels several times
over, so a larger tile is cheaper and has fewer seams. A method whose output depends on
the whole image (a ``halo`` larger than any image) therefore always gets the whole plane
in one tile.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import ParameterError

__all__ = [
    "MIN_TILE_PER_MARGIN",
    "Progress",
    "Tile",
    "effective_tile",
    "plan_tiles",
    "reflect",
    "run_tiled",
    "tile_iter",
]

# A split axis has tiles of at least this many times the margin they discard (2 * halo):
# at 4, at most a quarter of a tile is thrown away (2D: under 1.8 times the pixels).
MIN_TILE_PER_MARGIN = 4

NORM_BAND = 2**17  # values of the weight sum held at a time (see _normalise)


@dataclass(frozen=True)
class Progress:
    """A progress tick: ``done`` of ``total`` units of work, and what is happening.

    ``message`` says it in words (the CLI prints it); ``position`` says it as data, for
    callers that word it their own way: the block being worked on as ``(axis letter,
    index, size)`` per loop axis, e.g. ``(("T", 3, 10),)`` for the fourth of ten frames
    (empty for a single plane); ``choosing`` is true while parameters are being chosen
    from the image, before any tile.
    """

    done: int
    total: int
    message: str = ""
    position: tuple[tuple[str, int, int], ...] = ()
    choosing: bool = False

    @property
    def fraction(self) -> float:
        """Completed fraction in [0, 1]."""
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class Tile:
    """One tile: the region to read and, per axis, the window its output is weighted by.

    The weight of an output pixel is the product of the windows' values (:attr:`weight`);
    keeping the factors only, a plan for a huge image costs a few short vectors per tile.
    """

    region: tuple[slice, ...]
    factors: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(f) for f in self.factors)

    @property
    def weight(self) -> np.ndarray:
        """The weight of each of the tile's output pixels (float32, the tile's shape)."""
        return self.weight_rows(0, self.shape[0])

    def weight_rows(self, start: int, stop: int) -> np.ndarray:
        """``weight[start:stop]``, computed for those rows only."""
        weight = self.factors[0][start:stop]
        for w in self.factors[1:]:
            weight = np.multiply.outer(weight, w)
        return weight.astype(np.float32)


def _spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, size)`` of the tiles along one axis: as few as fit, no bigger than needed.

    With ``n`` tiles of at most ``tile`` pixels overlapping by ``overlap``, the tiles are
    made just long enough to cover ``length`` with exactly that overlap (rather than
    full-size tiles whose last one overlaps its neighbour by far more): every pixel
    computed twice is one the blending needs. Starts are multiples of ``multiple``:
    networks that downsample by it (a U-Net: 2**depth) give the same output for an input
    shifted by a multiple of it only, so aligned tiles match the untiled result. The last
    tile runs to the end.
    """
    if length <= tile:
        return [(0, length)]
    n = -(-(length - overlap) // (tile - overlap))  # ceil: tiles of ``tile`` that cover it
    while True:
        step = -(-(length - overlap) // n)
        step = -(-step // multiple) * multiple  # rounded up to a multiple
        if step + overlap <= tile or step <= multiple:
            break
        n += 1
    starts = [i * step for i in range(n) if i * step + overlap < length or i == 0]
    return [
        (s, step + overlap if i < len(starts) - 1 else length - s) for i, s in enumerate(starts)
    ]


def effective_tile(length: int, tile: int, overlap: int, halo: int, multiple: int = 1) -> int:
    """The tile size used along an axis of ``length`` asked to be cut in ``tile`` pixels.

    When the axis is split, ``tile`` grows to :data:`MIN_TILE_PER_MARGIN` times the
    discarded margin ``2 * halo`` (and past the overlap by a ``multiple``), rounded up to a multiple of
    ``multiple``; it becomes ``length`` when that is larger than the axis (one tile).
    """
    if length <= tile:
        return tile
    least = max(MIN_TILE_PER_MARGIN * 2 * halo, overlap + multiple)
    least = -(-int(np.ceil(least)) // multiple) * multiple
    return min(max(tile, least), max(length, tile))


def _rising_edge(shared: int, halo: int) -> np.ndarray:
    """Weights over a region shared with the previous tile: ``halo`` zeros, a ramp, ``halo`` ones.

    The next tile's window is this one reversed, and the two sum to one pixel by pixel.
    """
    ramp_len = shared - 2 * halo
    ramp = (np.arange(ramp_len, dtype=np.float32) + 0.5) / ramp_len
    return np.concatenate([np.zeros(halo, np.float32), ramp, np.ones(halo, np.float32)])


def plan_tiles(
    shape: Sequence[int],
    tile: Sequence[int],
    overlap: Sequence[int],
    halo: Sequence[int],
    *,
    multiple: int = 1,
    grow: bool = True,
) -> list[Tile]:
    """Tiles covering an array of ``shape`` (spatial axes only).

    Parameters
    ----------
    shape, tile, overlap, halo : sequence of int
        Per axis: image size, tile size, overlap between neighbouring tiles, and the
        margin discarded at a tile's inner edges. Needs ``overlap > 2 * halo`` wherever an
        axis is split; a tile smaller than :data:`MIN_TILE_PER_MARGIN` times ``2 * halo``
        grows to that size (:func:`effective_tile`).
    multiple : int
        Tile starts are multiples of this (a network's downsampling factor).
    grow : bool
        Let small tiles grow as said above; ``False`` keeps ``tile`` (past the overlap by
        a ``multiple`` at least), for measurements that want many seams on a small image.

    Examples
    --------
    >>> tiles = plan_tiles((150, 150), (64, 64), (16, 16), (4, 4))
    >>> len(tiles)
    9
    """
    per_axis: list[list[tuple[slice, np.ndarray]]] = []
    for n, t, o, h in zip(shape, tile, overlap, halo, strict=True):
        t = effective_tile(n, t, o, h, multiple) if grow else max(t, o + multiple)
        if n > t and o <= 2 * h:
            raise ParameterError(
                f"An overlap of {o} pixels is too small for a reach of {h} pixels: "
                f"it must be more than {2 * h}."
            )
        spans = _spans(n, t, o, multiple)
        axis_tiles = []
        for i, (s, size) in enumerate(spans):
            w = np.ones(size, np.float32)
            if i > 0:  # a neighbour before: ramp up over the shared region
                prev_start, prev_size = spans[i - 1]
                shared = prev_start + prev_size - s
                w[:shared] = np.minimum(w[:shared], _rising_edge(shared, h))
            if i < len(spans) - 1:  # a neighbour after: ramp down
                shared = s + size - spans[i + 1][0]
                w[size - shared :] = np.minimum(w[size - shared :], _rising_edge(shared, h)[::-1])
            axis_tiles.append((slice(s, s + size), w))
        per_axis.append(axis_tiles)

    tiles = []
    for combo in np.ndindex(*[len(a) for a in per_axis]):
        parts = [per_axis[ax][k] for ax, k in enumerate(combo)]
        tiles.append(Tile(tuple(p[0] for p in parts), tuple(p[1] for p in parts)))
    return tiles


def tile_iter(
    shape: Sequence[int],
    tile: Sequence[int],
    overlap: Sequence[int],
    halo: Sequence[int],
    *,
    multiple: int = 1,
) -> Iterator[Tile]:
    """Iterate over :func:`plan_tiles` lazily (same arguments)."""
    yield from plan_tiles(shape, tile, overlap, halo, multiple=multiple)


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    """Runs of up to ``size`` consecutive tiles of the same shape."""
    run: list[Tile] = []
    for t in tiles:
        if run and (len(run) == size or t.shape != run[0].shape):
            yield run
            run = []
        run.append(t)
    if run:
        yield run


def run_tiled(
    block: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    tile: Sequence[int],
    overlap: Sequence[int],
    halo: Sequence[int],
    multiple: int = 1,
    message: str = "",
    batch: int = 1,
    fn_batch: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
    grow: bool = True,
    lead: int = 0,
    start: int = 0,
    total: int | None = None,
    position: tuple[tuple[str, int, int], ...] = (),
) -> Generator[Progress, None, np.ndarray]:
    """Apply ``fn`` to ``block`` tile by tile; yields a :class:`Progress` after each tile.

    ``lead`` leading axes of ``block`` are not tiled: every tile takes them whole and
    ``fn`` returns the tile without them (a window of planes in, the middle plane out).
    Progress counts ``start`` tiles done before this block, of ``total`` in the run (this
    block's tiles by default), at ``position`` (see :class:`Progress`).

    With ``batch > 1`` and ``fn_batch`` (a list of same-shaped tiles in, their results
    out), up to ``batch`` tiles of the same shape go through one call (a GPU runs them
    in one pass) and progress comes after each such call.

    Returns (as the generator's return value) the blended float32 result. A consumer
    that stops iterating stops the work: nothing runs past the current tile (or batch).
    """
    shape = block.shape[lead:]
    tiles = plan_tiles(shape, tile, overlap, halo, multiple=multiple, grow=grow)
    if len(tiles) == 1:
        out = np.asarray(fn(block), dtype=np.float32)
        yield Progress(start + 1, total or 1, message, position=position)
        return out
    # One image-sized array: the weighted sum, normalised in place at the end.
    acc = np.zeros(shape, np.float32)
    done = 0
    whole = (slice(None),) * lead
    for group in _batches(tiles, batch if fn_batch is not None else 1):
        inputs = [np.ascontiguousarray(block[(*whole, *t.region)]) for t in group]
        results = fn_batch(inputs) if len(group) > 1 else [fn(inputs[0])]
        del inputs
        for t, result in zip(group, results, strict=True):
            acc[t.region] += np.asarray(result, dtype=np.float32) * t.weight
        del results
        done += len(group)
        yield Progress(start + done, total or len(tiles), message, position=position)
    _normalise(acc, tiles)
    return acc


def _normalise(acc: np.ndarray, tiles: list[Tile]) -> None:
    """Divide ``acc`` by the sum of the tiles' weights, a band of rows at a time.

    Each band's sum adds the same weights in the same order as one image-sized sum
    would, so the result is the same to the bit, without a second image-sized array.
    """
    rows = max(1, NORM_BAND // max(1, acc[0].size))
    for r0 in range(0, acc.shape[0], rows):
        r1 = min(r0 + rows, acc.shape[0])
        norm = np.zeros((r1 - r0, *acc.shape[1:]), np.float32)
        for t in tiles:
            first = t.region[0]
            lo, hi = max(first.start, r0), min(first.stop, r1)
            if lo < hi:
                where = (slice(lo - r0, hi - r0), *t.region[1:])
                norm[where] += t.weight_rows(lo - first.start, hi - first.start)
        acc[r0:r1] /= norm


def drain(gen: Generator[Progress, None, object], on_progress=None) -> object:
    """Run a progress generator to the end and return its value."""
    try:
        while True:
            tick = next(gen)
            if on_progress is not None:
                on_progress(tick)
    except StopIteration as stop:
        return stop.value


def reflect(j: int, n: int) -> int:
    """``j`` mirrored into ``0 .. n - 1`` about the end planes (not repeating them), as
    numpy's ``"reflect"`` padding: ``-1 -> 1``, ``n -> n - 2``."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j %= period
    return period - j if j >= n else j

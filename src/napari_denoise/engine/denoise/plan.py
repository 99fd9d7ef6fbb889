"""The planning step shared by the in-memory loop and the dask graph.

:func:`make_plan` decides, before any pixel is denoised, how an image is cut for a method:
which axes are looped over and which form one block (a plane, or a volume for 3-D
methods), the tile size, the output dtype and the parameters given. :meth:`Plan.choose`
then reads a few sample planes of each channel and fixes that channel's automatic
parameters (and its noise model when a variance-stabilising transform is asked for).
:func:`~.pipeline.denoise_iter` and :func:`~.lazy.denoise_dask` both run a plan, so they
cut, sample and parametrise an image identically.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...axes import resolve_dtype
from ...errors import InputError, ParameterError
from ..methods import Method
from ..notes import say
from .tiling import reflect

__all__ = ["DEFAULT_TILE", "DEPTH_TILE", "SAMPLES_FOR_AUTO", "Plan", "make_plan"]

DEFAULT_TILE = 1024
DEPTH_TILE = 32  # planes per tile for 3-D methods, so long stacks are read piece by piece
SAMPLES_FOR_AUTO = 4


@dataclass
class Plan:
    """How one image is denoised by one method.

    The image is seen transposed to ``loop_axes + block_axes`` (:attr:`order`): every
    position of the loop axes (:meth:`indices`) is one block, denoised tile by tile with
    the parameters of its channel (:attr:`params`, filled by :meth:`choose`).

    A block's reach: in Y and X, the method's ``halo`` (tiles overlap by it); along the
    stack, :attr:`plane_reach` planes before and after (:meth:`window`, read by the
    driver as a window of ``2 * plane_reach + 1`` planes, reflected at the stack's ends).
    A plan pickles with its method's name (a dask worker looks the method up).
    """

    method: Method
    axes: str
    shape: tuple[int, ...]
    loop_axes: str
    block_axes: str
    tile: tuple[int, ...]
    out_dtype: np.dtype
    base: dict[str, Any]
    params: list[dict[str, Any]] = field(default_factory=list)
    stabilisers: list[Any] = field(default_factory=list)
    plane_reach: int = 0
    fused_samples: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)
    """Sample planes :meth:`choose` fused with their neighbours, kept for the driver
    (which takes each once instead of fusing it again); never pickled."""

    # Derived once from the fields above (by __post_init__), read many times per block.
    order: tuple[int, ...] = field(init=False)
    """The transposition from the image's axes to ``loop_axes + block_axes``."""
    loop_shape: tuple[int, ...] = field(init=False)
    block_shape: tuple[int, ...] = field(init=False)
    channel_axis: int | None = field(init=False)
    """Position of ``C`` among the loop axes, None without one."""
    n_channels: int = field(init=False)
    plane_axis: int | None = field(init=False)
    """Position among the loop axes of the stack axis that :attr:`plane_reach` runs
    along (``T``, else ``Z``); None when the blocks have no neighbours."""

    def __post_init__(self) -> None:
        n_loop = len(self.loop_axes)
        self.order = tuple(self.axes.index(a) for a in self.loop_axes + self.block_axes)
        self.loop_shape = tuple(self.shape[i] for i in self.order[:n_loop])
        self.block_shape = tuple(self.shape[i] for i in self.order[n_loop:])
        self.channel_axis = self.loop_axes.index("C") if "C" in self.loop_axes else None
        axis = self.channel_axis
        self.n_channels = self.loop_shape[axis] if axis is not None else 1
        stack = [a for a in "TZ" if a in self.loop_axes]
        self.plane_axis = self.loop_axes.index(stack[0]) if stack else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "method": self.method.name, "fused_samples": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from ..methods import get_method

        self.__dict__.update(state, method=get_method(state["method"]))

    def window(self, index: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The loop positions of the planes the block at ``index`` sees: ``[index]`` without
        a reach, else the ``2k + 1`` positions ``i - k .. i + k`` along :attr:`plane_axis`,
        reflected at the ends (``-1 -> 1``, ``n -> n - 2``; one plane: itself)."""
        axis = self.plane_axis
        if not self.plane_reach or axis is None:
            return [index]
        i, n = index[axis], self.loop_shape[axis]
        k = self.plane_reach
        return [(*index[:axis], reflect(j, n), *index[axis + 1 :]) for j in range(i - k, i + k + 1)]

    def neighbour_planes(self) -> int:
        """How many distinct neighbouring planes each plane is denoised with (0: alone):
        ``2 * plane_reach``, at most the other planes of the stack."""
        if not self.plane_reach or self.plane_axis is None:
            return 0
        return min(2 * self.plane_reach, self.loop_shape[self.plane_axis] - 1)

    @property
    def inverse(self) -> tuple[int, ...]:
        """The transposition back to the image's axes."""
        return tuple(int(i) for i in np.argsort(self.order))

    @property
    def in_file_order(self) -> bool:
        """True when the blocks, taken in loop order, follow one another in the image's
        own (C) order: then a file can be written block by block as they are done."""
        return self.order == tuple(range(len(self.axes)))

    def indices(self) -> list[tuple[int, ...]]:
        """Every loop position, in C order."""
        return list(itertools.product(*[range(n) for n in self.loop_shape]))

    def channel(self, index: tuple[int, ...]) -> int:
        """The channel of the block at loop position ``index``."""
        return index[self.channel_axis] if self.channel_axis is not None else 0

    def choose(self, view, *, check: Callable[[np.ndarray], None] | None = None) -> Iterator[int]:
        """Fix each channel's parameters from its sample planes; yields each channel once done.

        ``view`` is the image transposed by :attr:`order` (an array, or a dask array);
        ``check`` is called on every sample plane first (the lazy path checks values there).
        """
        self.params, self.stabilisers, self.fused_samples = [], [], {}
        indices = self.indices()
        for c in range(self.n_channels):
            picked = sample_indices(indices, self.channel_axis, c)
            if self.neighbour_planes() and self.method.combine is not None:
                # the network sees each plane fused with its neighbours (less noise):
                # its settings are chosen on such planes, not on single frames
                samples = [self.combined(view, i, check) for i in picked]
            else:
                samples = [np.asarray(view[i], np.float32) for i in picked]
                if check is not None:
                    for s in samples:
                        check(s)
            if self.method.auto is not None or self.base.get("vst"):
                where = f" (channel {c + 1} of {self.n_channels})" if self.n_channels > 1 else ""
                say(
                    f"Choosing the settings from {_planes(len(samples))} of the image{where}…",
                    short="Choosing settings",
                )
            p, model = choose_params(self.method, self.base, samples)
            self.params.append(p)
            self.stabilisers.append(model)
            yield c

    def combined(self, view, index: tuple[int, ...], check=None) -> np.ndarray:
        """The plane at ``index`` as the driver gives it to the network (:meth:`fused`),
        its window read from ``view`` (each distinct plane once; ``check`` on each), kept
        in :attr:`fused_samples` for the driver."""
        positions = self.window(index)
        read = {j: np.asarray(view[j], np.float32) for j in dict.fromkeys(positions)}
        if check is not None:
            for plane in read.values():
                check(plane)
        window = np.stack([read[j] for j in positions])
        self.fused_samples[index] = fused = self.fused(index, window)
        return fused

    def fused(self, index: tuple[int, ...], window, params=None) -> np.ndarray:
        """The window of planes at ``index`` turned into one by the method's ``combine``
        step, with ``params`` (default: the plan's given parameters) for its keys."""
        from .fusion import window_neighbours

        p = self.base if params is None else params
        keys = {k: p.get(k) for k in self.method.combine_keys}
        slots = window_neighbours(self.window(index))
        return np.asarray(self.method.combine(window, slots, **keys), np.float32)

    def position(self, index: tuple[int, ...]) -> tuple[tuple[str, int, int], ...]:
        """The block at loop position ``index`` as ``((axis, index, size), ...)``."""
        return tuple(zip(self.loop_axes, index, self.loop_shape, strict=True))

    def where(self, index: tuple[int, ...]) -> str:
        """The method's name and the block's loop position, for progress messages."""
        name = self.method.name
        if not self.loop_axes:
            return name
        return name + " " + " ".join(f"{a}={i}" for a, i in zip(self.loop_axes, index, strict=True))


POSITION_WORDS = {"T": "frame", "Z": "plane", "C": "channel"}


def position_text(position: tuple[tuple[str, int, int], ...]) -> str:
    """'channel 2 of 3, frame 4 of 10' for ``(("C", 1, 3), ("T", 3, 10))`` (counted from 1)."""
    return ", ".join(f"{POSITION_WORDS.get(axis, axis)} {i + 1} of {n}" for axis, i, n in position)


def make_plan(
    m: Method,
    axes: str,
    shape: tuple[int, ...],
    dtype: Any,
    *,
    tile: Any = None,
    output_dtype: Any = None,
    params: Mapping[str, Any] | None = None,
) -> Plan:
    """The :class:`Plan` of ``m`` on an image of ``shape`` and ``dtype`` with checked ``axes``.

    Raises ParameterError for bad parameters or tile size, InputError when a 3-D method
    meets an image without a Z or T axis.
    """
    base = m.resolve_params(dict(params or {}))
    out_dtype = np.dtype(dtype) if output_dtype is None else resolve_dtype(output_dtype)
    loop_axes, block_axes = layout(axes, m)
    shape = tuple(int(n) for n in shape)
    block_shape = tuple(shape[axes.index(a)] for a in block_axes)
    return Plan(
        method=m,
        axes=axes,
        shape=shape,
        loop_axes=loop_axes,
        block_axes=block_axes,
        tile=resolve_tile(tile, m, block_shape),
        out_dtype=out_dtype,
        base=base,
        plane_reach=m.reach(base) if ("T" in loop_axes or "Z" in loop_axes) else 0,
    )


def layout(axes: str, method: Method) -> tuple[str, str]:
    """Split axes into (loop axes, block axes) for the method."""
    if method.ndim == 3:
        depth = "Z" if "Z" in axes else ("T" if "T" in axes else None)
        if depth is None and method.planes_fallback:  # e.g. a multi-frame network
            return "".join(a for a in axes if a not in "YX"), "YX"
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


def resolve_tile(tile: Any, method: Method, block_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The tile shape for a block: ``tile`` (or the method's default) in Y and X."""
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


def _planes(n: int) -> str:
    return "the plane" if n == 1 else f"{n} sample planes"


def sample_indices(indices: list, channel_axis: int | None, channel: int) -> list:
    """The loop positions of up to :data:`SAMPLES_FOR_AUTO` planes (blocks) of one
    channel, spread evenly (``indices`` are all the loop positions)."""
    in_channel = [i for i in indices if channel_axis is None or i[channel_axis] == channel]
    pick = np.unique(np.linspace(0, len(in_channel) - 1, SAMPLES_FOR_AUTO).round().astype(int))
    return [in_channel[k] for k in pick]


def sample_planes(view, indices: list, channel_axis: int | None, channel: int) -> list[np.ndarray]:
    """Up to :data:`SAMPLES_FOR_AUTO` planes (blocks) of one channel, spread evenly, as float32.

    ``view`` has the loop axes first; ``indices`` are all its loop positions.
    """
    return [np.asarray(view[i], np.float32) for i in sample_indices(indices, channel_axis, channel)]


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

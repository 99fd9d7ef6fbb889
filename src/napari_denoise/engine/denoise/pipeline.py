"""From a whole image (any supported axes) to blocks, tiles and back: the one denoising loop.

:func:`denoise_iter` is a generator: it yields :class:`~.tiling.Progress` after every tile
and returns a :class:`DenoiseResult`. The GUI runs it in a worker thread (each ``yield``
is a point where Cancel takes effect), the CLI and :func:`napari_denoise.denoise` simply
drain it. Nothing here imports napari or Qt.

It is made of two steps: :func:`plan_iter` checks the image (:mod:`.checks`) and fixes
the :class:`~.plan.Plan` (layout, tile, per-channel parameters), then the one driver
(:func:`.driver.drive`) streams the blocks from a reader to a writer: here into an
array; :func:`napari_denoise.files.denoise_file` and the GUI's filling layer give it
their own writer, so memory holds one block (one window of planes) at a time.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ParameterError
from ..methods import Method, default_method, get_method
from .checks import MIN_SIZE, CheckedBlocks, check_finite, check_image, check_layout, is_lazy
from .driver import (
    CAST_SLAB,
    RAMP,
    Block,
    Written,
    _geometry,  # noqa: F401  (tests and benchmarks measure the tiles with it)
    cast_into,
    denoise_block,
    drive,
)
from .mapped import release_mapped
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
from .tiling import Progress, drain

__all__ = ["DenoiseResult", "block_iter", "denoise_iter", "drain", "make_result", "plan_iter"]

# Names whose home is now plan.py, checks.py, driver.py or mapped.py, still importable here.
__all__ += ["DEFAULT_TILE", "DEPTH_TILE", "SAMPLES_FOR_AUTO", "choose_params", "sample_planes"]
__all__ += ["MIN_SIZE", "check_finite", "check_image", "check_layout"]
__all__ += ["CAST_SLAB", "RAMP", "Block", "cast_into", "denoise_block", "release_mapped"]


@dataclass
class DenoiseResult:
    """The denoised array and what produced it."""

    data: np.ndarray
    axes: str
    method: str
    params: dict[str, Any]
    channel_params: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    neighbours: int = 0
    """How many neighbouring planes of the stack each plane was denoised with (0: alone)."""

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
        if self.neighbours:
            info["neighbour_planes"] = self.neighbours
        method = get_method(self.method)
        if method.model is not None:
            info["model"] = method.model.as_dict()
        return info


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
    for item in drive(plan, view, out):
        if not isinstance(item, Written):
            yield item
    return make_result(
        out, plan.axes, plan.method, plan.base, plan.params, start, plan.neighbour_planes()
    )


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
    if is_lazy(image):  # a lazy array: read (and its values checked) a block at a time
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
    if check is not None:  # the driver reads it a block at a time, checking each
        view = CheckedBlocks(view, plan)
    return plan, view


def block_iter(plan: Plan, view: Any) -> Generator[Progress | Block, None, None]:
    """The driver's blocks handed over as :class:`Block` (result and position) instead of
    written: kept for code written against it; new code gives :func:`.driver.drive` a
    writer."""
    done: list[Block] = []
    for item in drive(plan, view, lambda index, result: done.append(Block(index, result))):
        yield done.pop() if isinstance(item, Written) else item


def make_result(
    data, axes: str, m: Method, base: dict, resolved: list[dict], start: float, neighbours=0
):
    """The :class:`DenoiseResult` of a run that began at ``start`` (perf_counter):
    ``params`` are the channels' resolved ones when they all agree, else the given ones;
    ``neighbours``: the plan's :meth:`~.plan.Plan.neighbour_planes`."""
    summary = resolved[0] if len({repr(sorted(p.items())) for p in resolved}) == 1 else base
    return DenoiseResult(
        data=data,
        axes=axes,
        method=m.name,
        params=_jsonable(summary),
        channel_params=[_jsonable(p) for p in resolved],
        seconds=time.perf_counter() - start,
        neighbours=int(neighbours),
    )


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

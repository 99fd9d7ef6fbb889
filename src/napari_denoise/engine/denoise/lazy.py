"""Denoising as a dask graph: one task per plane, for a cluster or for data beyond memory.

:func:`denoise_dask` returns at once with a :class:`~.pipeline.DenoiseResult` whose
``data`` is a lazy dask array; computing it (``.compute()``, ``dask.array.store``, or a
``distributed.Client``) runs one task per plane (per volume for 3-D methods), each tile by
tile exactly as :func:`~.pipeline.denoise_iter` does. Automatic parameters are chosen once,
before the graph is built, from the same sample planes the in-memory path reads, so the
result equals ``denoise`` on the same data, whichever machine computes each plane.

A task names its method, and the worker looks it up in its own registry: the workers need
napari-denoise installed, and a user model must be in their model folder too.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from ...errors import ParameterError
from ..methods import default_method, get_method
from .checks import check_finite, check_layout
from .driver import cast_into, run
from .pipeline import DenoiseResult, drain, make_result
from .plan import Plan, make_plan, reflect

__all__ = ["LOCAL_SCHEDULERS", "check_scheduler", "compute", "denoise_dask", "scheduler_context"]

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
CONNECT_SECONDS = 10
THREADS_VARIABLE = "NAPARI_DENOISE_THREADS"  # torch threads per process (see zoo)


def denoise_dask(
    image: Any,
    method: Any = None,
    *,
    axes: str | None = None,
    tile: int | None = None,
    output_dtype: Any = None,
    params: dict[str, Any] | None = None,
) -> DenoiseResult:
    """Build the lazy denoising of ``image`` (a dask array, or any array) by ``method``.

    The arguments are those of :func:`~.pipeline.denoise_iter`. Only the sample planes
    for the automatic parameters are read now; ``result.data`` is a dask array of the
    input's shape (and ``output_dtype``, the input's by default). A plane holding NaN or
    infinite values fails when it is computed, with an InputError naming it.
    """
    import dask.array as da

    start = time.perf_counter()
    m = default_method() if method is None else get_method(method)
    if not isinstance(image, da.Array) and not (
        hasattr(image, "shape") and hasattr(image, "dtype")
    ):
        image = np.asarray(image)
    axes = check_layout(image.shape, image.dtype, axes)
    plan = make_plan(
        m, axes, image.shape, image.dtype, tile=tile, output_dtype=output_dtype, params=params
    )
    loop_axes, n_loop = plan.loop_axes, len(plan.loop_axes)
    # An in-memory or memory-mapped array is cut into planes where it lies: a task then
    # carries (or reads) its own plane only, never the whole image.
    chunks = tuple(1 if a in loop_axes else -1 for a in axes)
    if isinstance(image, da.Array):
        arr = image
    elif MappedPlanes.fits(image):  # read where it lies, a plane per task
        arr = da.from_array(
            MappedPlanes(image), chunks=chunks, meta=np.empty((0,) * image.ndim, image.dtype)
        )
    else:
        arr = da.from_array(image, chunks=chunks)
    view = arr.transpose(plan.order).rechunk((1,) * n_loop + (-1,) * len(plan.block_axes))
    drain(plan.choose(view, check=check_finite))

    # Each task runs the one driver on its block (the plan travels with its method's name).
    task = partial(_plane, plan=plan)
    out_dtype = plan.out_dtype
    meta = np.empty((0,) * view.ndim, out_dtype)
    if plan.plane_reach and plan.plane_axis is not None:  # each task gets its window
        lazy = _windows(view, plan).map_blocks(task, dtype=out_dtype, meta=meta, drop_axis=n_loop)
    else:
        lazy = view.map_blocks(task, dtype=out_dtype, meta=meta)
    data = lazy.transpose(list(plan.inverse))
    return make_result(data, axes, m, plan.base, plan.params, start, plan.neighbour_planes())


class MappedPlanes:
    """A file's memory map as dask should see it: read a chunk at a time.

    ``dask.array.from_array`` copies any array that has a ``copy`` method, which for a
    memory map means reading the whole file into memory while the graph is built. This
    wrapper has none; a chunk is read (copied out of the map) when a task needs it, and
    pickled for a worker process it is the file's name and layout, reopened there.
    """

    def __init__(self, mapped: np.memmap):
        self._mapped = mapped
        self.shape = mapped.shape
        self.dtype = mapped.dtype
        self.ndim = mapped.ndim

    @staticmethod
    def fits(image: Any) -> bool:
        """True for a whole-file shared memory map (not a view of one, not copy-on-write,
        whose private changes a reopened map would not see), as the readers return."""
        return (
            isinstance(image, np.memmap)
            and getattr(image, "mode", None) in ("r", "r+", "w+")
            and isinstance(image.base, mmap.mmap)
            and getattr(image, "filename", None) is not None
            and image.flags.c_contiguous
        )

    def __getitem__(self, index) -> np.ndarray:
        from .pipeline import release_mapped

        out = np.array(self._mapped[index])
        release_mapped(self._mapped)  # the copy is what the task needs; the pages can go
        return out

    def __reduce__(self):
        m = self._mapped
        return (_reopen, (m.filename, m.dtype.str, m.shape, m.offset))


def _reopen(filename: str, dtype: str, shape: tuple[int, ...], offset: int) -> MappedPlanes:
    return MappedPlanes(np.memmap(filename, dtype=dtype, mode="r", shape=shape, offset=offset))


def _windows(view, plan: Plan):
    """``view`` with a window axis after the loop axes: at loop position ``i``, the planes
    of :meth:`~.plan.Plan.window` (``2k + 1``, reflected at the ends), one chunk each."""
    import dask.array as da

    axis, k = plan.plane_axis, plan.plane_reach
    n = plan.loop_shape[axis]
    lead = (slice(None),) * axis
    shifted = [view[(*lead, [reflect(i + d, n) for i in range(n)])] for d in range(-k, k + 1)]
    n_loop = len(plan.loop_axes)
    stacked = da.stack(shifted, axis=n_loop)
    return stacked.rechunk((1,) * n_loop + (-1,) * (1 + len(plan.block_axes)))


def _plane(block: np.ndarray, *, plan: Plan, block_info=None) -> np.ndarray:
    """One task: one block (plane, or volume) of the transposed image, denoised by the
    driver; with a plane reach ``block`` holds its window of planes."""
    n_loop = len(plan.loop_axes)
    index = tuple((block_info or {}).get(0, {}).get("chunk-location", (0,) * block.ndim)[:n_loop])
    data = np.asarray(block).reshape(block.shape[n_loop:])
    if np.issubdtype(data.dtype, np.floating):
        label = " ".join(f"{a}={i}" for a, i in zip(plan.loop_axes, index, strict=True))
        check_finite(data, where=f"The plane at {label}" if label else "The image")
    window = plan.window(index)
    planes = dict(zip(window, data, strict=True)) if len(window) > 1 else {index: data}
    out = np.empty(plan.block_shape, plan.out_dtype)
    run(plan, planes, lambda _, result: cast_into(out, result), indices=[index])
    return out.reshape((1,) * n_loop + plan.block_shape)


def check_scheduler(scheduler: str | None) -> None:
    """ParameterError unless ``scheduler`` names a local dask scheduler or looks like a
    scheduler's address (and ``distributed`` is installed for that)."""
    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        return
    if "://" not in scheduler:
        raise ParameterError(
            f"Unknown scheduler '{scheduler}': use one of {', '.join(LOCAL_SCHEDULERS)}, or the "
            "address of a dask scheduler such as tcp://host:8786."
        )
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ParameterError(
            "Computing on a dask cluster needs the 'distributed' package "
            "(pip install 'napari-denoise[cluster]')."
        ) from None


@contextlib.contextmanager
def scheduler_context(scheduler: str | None = None, *, progress: bool = False):
    """Within it, dask computes (``.compute()``, ``da.store``, ``to_zarr``) run on
    ``scheduler``: a local one (``threads``, ``processes``, ``synchronous``), the dask
    cluster whose scheduler is at that address (``tcp://host:8786``; needs the
    ``distributed`` package), or dask's default (None: a running ``distributed.Client``
    if there is one, else threads). ``progress`` shows dask's bar on local schedulers."""
    import dask

    check_scheduler(scheduler)
    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        with contextlib.ExitStack() as stack:
            if scheduler is not None:
                stack.enter_context(dask.config.set(scheduler=scheduler))
            if scheduler == "processes" and not os.environ.get(THREADS_VARIABLE):
                # One worker process per core: each should use one core, not all of them.
                stack.enter_context(_environment(THREADS_VARIABLE, "1"))
            if progress:
                from dask.diagnostics import ProgressBar

                stack.enter_context(ProgressBar(out=sys.stderr))
            yield
        return
    from distributed import Client

    try:
        client = Client(scheduler, timeout=CONNECT_SECONDS)
    except OSError as err:
        raise ParameterError(f"Could not reach the dask scheduler at {scheduler}: {err}") from None
    with client:  # the default client while open: every compute goes to the cluster
        yield


@contextlib.contextmanager
def _environment(name: str, value: str):
    """``os.environ[name] = value`` while inside (the worker processes inherit it)."""
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def compute(lazy, scheduler: str | None = None, *, progress: bool = False) -> np.ndarray:
    """A dask array computed on ``scheduler`` (see :func:`scheduler_context`)."""
    with scheduler_context(scheduler, progress=progress):
        return lazy.compute()

"""File in, file out: read an image, denoise it, write the result with its provenance.

The one place where a file-level run is put together, used by the CLI and the demo.
A TIFF output is written as it is computed, block by block from the (memory-mapped)
input, so a stack larger than memory goes disk to disk in bounded memory.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .engine.denoise.pipeline import (
    Block,
    DenoiseResult,
    block_iter,
    cast_into,
    denoise_iter,
    drain,
    make_result,
    plan_iter,
    release_mapped,
)
from .engine.denoise.plan import Plan
from .io import (
    TIFF_SUFFIXES,
    Image,
    is_zarr,
    read_image,
    tiff_page_shape,
    write_image,
    write_json,
    write_tiff_planes,
)
from .provenance import make_provenance

__all__ = ["denoise_file", "save_result", "sidecar_path"]


def sidecar_path(output: Path) -> Path:
    """The provenance sidecar written beside ``output`` (same name, ``.json``)."""
    return Path(output).with_suffix(".json")


def save_result(
    result: DenoiseResult, image: Image, output: Path, *, extra: dict | None = None
) -> dict[str, Any]:
    """Write ``result`` as a TIFF (provenance embedded) plus its JSON sidecar, atomically.

    Returns the provenance record.
    """
    output = Path(output)
    prov = _provenance(result, image, output, extra)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_image(output, result.data, axes=image.axes, scale=image.scale, metadata=prov)
    write_json(sidecar_path(output), prov)
    return prov


def _provenance(result: DenoiseResult, image: Image, output: Path, extra: dict | None) -> dict:
    return make_provenance(
        method=result.method,
        params=result.params,
        input_path=image.path,
        input_shape=image.data.shape,
        input_dtype=image.data.dtype,
        axes=image.axes,
        extra={**result.provenance(), "output": str(output.resolve()), **(extra or {})},
    )


def denoise_file(
    source: str | Path,
    output: str | Path,
    method: Any = None,
    *,
    axes: str | None = None,
    tile: int | None = None,
    output_dtype: Any = None,
    params: dict | None = None,
    on_progress=None,
    extra: dict | None = None,
    scheduler: str | None = None,
) -> tuple[Image, DenoiseResult, dict[str, Any]]:
    """Read ``source``, denoise it and write ``output`` + sidecar; nothing is written on error.

    A TIFF ``output`` is written block by block as the blocks are done (``result.data``
    is then the written file, memory-mapped): memory does not grow with the number of
    planes. With ``scheduler`` the planes are computed with dask (:mod:`.engine.lazy`): on
    a local scheduler (``threads``, ``processes``) or on the cluster at that address; the
    result is the same. Returns the input image, the result and the provenance record.
    """
    image = read_image(source, axes=axes)
    kw = {"axes": image.axes, "tile": tile, "output_dtype": output_dtype, "params": params}
    if scheduler:
        from .engine.denoise.lazy import denoise_dask, scheduler_context

        extra = {**(extra or {}), "scheduler": scheduler}
        streamed = _is_tiff(output)  # its progress comes from here, not dask's bar
        with scheduler_context(scheduler, progress=on_progress is not None and not streamed):
            result = denoise_dask(image.data, method, **kw)
            start = time.perf_counter()
            if streamed:
                prov = _stream_dask_tiff(image, Path(output), result, extra, on_progress)
                return image, result, prov
            if not is_zarr(output):  # a Zarr folder is written plane by plane as computed
                result.data = result.data.compute()
            prov = save_result(result, image, Path(output), extra=extra)
            result.seconds += time.perf_counter() - start
        return image, result, prov
    if _is_tiff(output):
        result, prov = _stream_tiff(image, Path(output), method, kw, on_progress, extra)
        return image, result, prov
    result = drain(denoise_iter(image.data, method, **kw), on_progress)
    prov = save_result(result, image, Path(output), extra=extra)
    return image, result, prov


def _is_tiff(output: str | Path) -> bool:
    return Path(output).name.lower().endswith(TIFF_SUFFIXES)


def _stream_tiff(image: Image, output: Path, method, kw: dict, on_progress, extra):
    """Denoise ``image`` into the TIFF ``output`` block by block; the result and provenance."""
    start = time.perf_counter()
    plan, view = drain(plan_iter(image.data, method, **kw), on_progress)
    result = make_result(None, plan.axes, plan.method, plan.base, plan.params, start)
    prov = _provenance(result, image, output, extra)
    output.parent.mkdir(parents=True, exist_ok=True)
    page = tiff_page_shape(plan.shape, plan.axes)

    def final() -> dict:  # the provenance states the time the whole run took
        result.seconds = time.perf_counter() - start
        prov["seconds"] = round(result.seconds, 3)
        return prov

    with contextlib.ExitStack() as stack:
        if plan.in_file_order:
            pages = _pages_as_done(plan, view, page, on_progress)
        else:  # blocks come in another order than the file's pages: gather them on disk
            scratch = stack.enter_context(_scratch_array(plan.shape, plan.out_dtype, output))
            _fill(scratch, plan, view, on_progress)
            pages = _pages_of(scratch, page)
        write_tiff_planes(
            output,
            pages,
            shape=plan.shape,
            dtype=plan.out_dtype,
            axes=plan.axes,
            scale=image.scale,
            metadata=prov,
            final_metadata=final,
        )
    write_json(sidecar_path(output), prov)
    result.data = read_image(output, axes=plan.axes).data  # the file, mapped where it can be
    return result, prov


def _pages_as_done(plan: Plan, view, page: tuple[int, ...], on_progress):
    """The output's TIFF pages, each block cast into one reused buffer as it is done."""
    buffer = np.empty(plan.block_shape, plan.out_dtype.newbyteorder("="))
    for item in block_iter(plan, view):
        if isinstance(item, Block):
            cast_into(buffer, item.data)
            yield from buffer.reshape((-1, *page))
        elif on_progress is not None:
            on_progress(item)


def _stream_dask_tiff(image: Image, output: Path, result: DenoiseResult, extra, on_progress):
    """Compute the lazy ``result`` a few planes at a time into the TIFF ``output``."""
    start = time.perf_counter()
    built = result.seconds  # building the graph, sampling the automatic parameters
    data = result.data
    prov = _provenance(result, image, output, extra)
    output.parent.mkdir(parents=True, exist_ok=True)
    page = tiff_page_shape(data.shape, result.axes)

    def final() -> dict:
        result.seconds = built + time.perf_counter() - start
        prov["seconds"] = round(result.seconds, 3)
        return prov

    with contextlib.ExitStack() as stack:
        chunks = _computed_chunks(data, on_progress)
        if _chunks_in_file_order(data.chunks, len(page)):
            pages = (p for _, values in chunks for p in values.reshape((-1, *page)))
        else:
            scratch = stack.enter_context(_scratch_array(data.shape, data.dtype, output))
            for where, values in chunks:
                scratch[where] = values
                release_mapped(scratch)
            pages = _pages_of(scratch, page)
        write_tiff_planes(
            output,
            pages,
            shape=data.shape,
            dtype=data.dtype,
            axes=result.axes,
            scale=image.scale,
            metadata=prov,
            final_metadata=final,
        )
    write_json(sidecar_path(output), prov)
    result.data = read_image(output, axes=result.axes).data
    return prov


def _chunks_in_file_order(chunks: tuple[tuple[int, ...], ...], page_ndim: int) -> bool:
    """Whether a dask array's chunks, in C order, follow one another in the file: leading
    axes in chunks of one, the rest (the page's axes at least) in one chunk each."""
    k = next((i for i, c in enumerate(chunks) if any(n != 1 for n in c)), len(chunks))
    return all(len(c) == 1 for c in chunks[k:]) and len(chunks) - k >= page_ndim


def _computed_chunks(data, on_progress):
    """``(region, values)`` of each chunk of the dask array ``data`` in C order, computed as
    many at a time as the scheduler has workers: only those are held at once."""
    import dask

    from .engine.denoise.tiling import Progress

    edges = [np.cumsum((0, *c)) for c in data.chunks]
    ids = list(np.ndindex(*data.numblocks))
    group = _workers()
    for i in range(0, len(ids), group):
        part = ids[i : i + group]
        values = dask.compute(*[data.blocks[b] for b in part])
        for b, v in zip(part, values, strict=True):
            where = tuple(slice(int(e[k]), int(e[k + 1])) for e, k in zip(edges, b, strict=True))
            yield where, np.asarray(v)
        if on_progress is not None:
            on_progress(Progress(i + len(part), len(ids), "computing planes"))


def _workers() -> int:
    """Threads of the dask cluster in use, else this machine's cores."""
    with contextlib.suppress(ImportError, ValueError):
        from distributed import default_client

        return max(1, sum(default_client().nthreads().values()))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _scratch_array(shape: tuple[int, ...], dtype, output: Path):
    """A file-backed array of ``shape``, hidden beside ``output``, removed afterwards."""
    path = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.scratch.part"
    try:
        yield np.lib.format.open_memmap(
            path, mode="w+", dtype=np.dtype(dtype).newbyteorder("="), shape=tuple(shape)
        )
    finally:
        path.unlink(missing_ok=True)


def _fill(out: np.ndarray, plan: Plan, view, on_progress) -> None:
    target = np.transpose(out, plan.order)
    for item in block_iter(plan, view):
        if isinstance(item, Block):
            cast_into(target[item.index], item.data)
            release_mapped(out)  # written pages go to the file, not the process's memory
        elif on_progress is not None:
            on_progress(item)


def _pages_of(out: np.ndarray, page: tuple[int, ...]):
    for k, p in enumerate(out.reshape((-1, *page))):
        yield p
        if k % 16 == 15:
            release_mapped(out)

"""File in, file out: read an image, denoise it, write the result with its provenance.

The one place where a file-level run is put together, used by the CLI and the demo; also
the rules that keep a user's files safe (:func:`plan_outputs`, :func:`check_outputs`):

* an input is never written over, however its path is spelt (relative, absolute,
  symbolic or hard link: compared by file identity, not by name);
* an output name keeps the input's whole name: ``run.1.tif`` -> ``run.1_denoised.tif``;
* the provenance sidecar is named after the exact output file: ``x.tif`` ->
  ``x.tif.json`` (so ``x.tif`` and ``x.tiff`` never share one, and a user's own
  ``x.json`` is never touched);
* an existing output (or sidecar) is replaced only when asked (``overwrite``), and every
  output path is checked before anything is computed;
* image and sidecar appear together or not at all (:func:`~.atomic.atomic_batch`);
* a run holds its output name from the check to the last rename (:func:`~.atomic.claim`):
  a second run writing the same output at the same time is refused before it computes,
  and without ``overwrite`` the files are created exclusively, so two runs never both
  succeed and an image never gets another run's sidecar.

A TIFF output is written as it is computed, block by block from the (memory-mapped)
input, so a stack larger than memory goes disk to disk in bounded memory.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .atomic import OutputBusy, atomic_batch, claim, part_path
from .axes import check_computable, colour_picture_problem, resolve_dtype
from .engine.denoise.driver import Written, cast_into, drive, run
from .engine.denoise.mapped import release_mapped
from .engine.denoise.pipeline import DenoiseResult, denoise_iter, drain, make_result, plan_iter
from .engine.denoise.plan import Plan
from .errors import InputError, ParameterError, WriteError
from .io import (
    SUPPORTED_SUFFIXES,
    TIFF_SUFFIXES,
    Image,
    cannot_write,
    count_series,
    image_stem,
    image_suffix,
    is_zarr,
    read_image,
    tiff_page_shape,
    write_image,
    write_json,
    write_tiff_planes,
)
from .provenance import make_provenance

__all__ = [
    "Job",
    "check_outputs",
    "denoise_file",
    "output_name",
    "plan_jobs",
    "plan_outputs",
    "save_result",
    "sidecar_path",
]


def sidecar_path(output: str | os.PathLike) -> Path:
    """The provenance sidecar of ``output``: its exact name plus ``.json`` (``x.tif.json``)."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def output_name(source: str | os.PathLike) -> str:
    """The output file name for ``source`` in an output folder: its whole name without the
    type suffix, plus ``_denoised.tif`` (``.zarr`` for a Zarr input)."""
    return f"{image_stem(source)}_denoised{'.zarr' if is_zarr(source) else '.tif'}"


class Job(NamedTuple):
    """One image to denoise: a file (and which of its series, if it holds several: TIFF
    series or the images of an OME-Zarr container) and where its result goes."""

    source: Path
    series: int | None
    output: Path


def plan_jobs(inputs: list[Path], out: str | os.PathLike) -> list[Job]:
    """One job per input, or per series of an input that holds several (TIFF, OME-Zarr).

    ``out`` names one image file (by a supported suffix) for one input, or else a folder
    (an existing one, a name without a suffix, or one ending in ``/``) that receives
    :func:`output_name` of each input. A name with an unknown suffix (``out.jpg``) is
    refused rather than made a folder. Series ``k`` of a file goes to
    ``<name>_series<k>_denoised.tif`` (``.zarr``) in a folder, or
    ``<out stem>_series<k><suffix>``.
    """
    text = os.fspath(out)
    out = Path(text)
    folder = text.endswith(("/", os.sep)) or (out.is_dir() and not is_zarr(out))
    suffix = image_suffix(out)
    if not folder and out.suffix:
        if suffix not in SUPPORTED_SUFFIXES:
            raise ParameterError(
                f"-o {text}: cannot write {suffix!r} files; name a "
                f"{', '.join(s for s in SUPPORTED_SUFFIXES if s != '.ome.zarr')} file, "
                "or a folder (end it with '/')."
            )
        if len(inputs) > 1:
            raise ParameterError(
                f"{len(inputs)} inputs need an output folder, but -o {text} names one image."
            )
    jobs: list[Job] = []
    for source in inputs:
        n = count_series(source)
        for k in range(n) if n > 1 else [None]:
            if folder or not out.suffix:
                name = output_name(source)
                if k is not None:
                    kind = ".zarr" if is_zarr(source) else ".tif"
                    name = f"{image_stem(source)}_series{k}_denoised{kind}"
                jobs.append(Job(source, k, out / name))
            else:
                tag = f"_series{k}" if k is not None else ""
                jobs.append(Job(source, k, out.with_name(f"{image_stem(out)}{tag}{suffix}")))
    return jobs


def plan_outputs(inputs: list[Path], out: str | os.PathLike) -> list[Path]:
    """The output paths of :func:`plan_jobs`."""
    return [job.output for job in plan_jobs(inputs, out)]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _nested(path: Path, inputs: list) -> str | None:
    """Why writing ``path`` would touch an input folder (a Zarr image is a folder): it lies
    inside one, or replacing it (a folder) would delete one inside it."""
    target = path.resolve()
    for source in inputs:
        src = Path(source).resolve()
        if src.is_dir() and target.is_relative_to(src):
            return f"{path} is inside the input {source} (an input is never written into)"
        if target.is_dir() and src.is_relative_to(target):
            return f"{path} holds the input {source} (replacing it would delete the input)"
    return None


def _folder_problem(path: Path) -> str | None:
    """Why no file can be created at ``path`` (its nearest existing ancestor must be a
    writable folder; missing folders below it are created), or None."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # a dangling link
            return f"{parent} is a broken link"
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the folder {parent} is not writable"
    return None


def check_outputs(inputs: list[Path], outputs: list[Path], *, overwrite: bool = False) -> None:
    """Check every output path (and its sidecar) before anything is computed.

    ``outputs[i]`` is the output of ``inputs[i]``; every input is protected.

    Raises
    ------
    WriteError
        One sentence naming every problem: an output (or sidecar) that is an input (any
        spelling of the same file), that two inputs would share, that exists (unless
        ``overwrite``), that is a folder or read-only, or whose folder cannot be made.
    """
    problems: list[str] = []
    seen: dict[str, Path | str] = {}
    for i, dst in enumerate(outputs):
        src = inputs[i] if i < len(inputs) else "the result"
        for path in (dst, sidecar_path(dst)):
            key = os.path.normcase(str(Path(path).resolve()))  # any spelling of one path
            if key in seen:
                problems.append(f"{path} would be written for both {seen[key]} and {src}")
                continue
            seen[key] = src
            clash = next((p for p in inputs if _same_file(p, path)), None)
            if clash is not None:
                problems.append(f"{path} is the input {clash} (an input is never written over)")
                continue
            where = _nested(path, inputs)
            if where:
                problems.append(where)
                continue
            if path.is_symlink() or path.exists():
                zarr_ok = is_zarr(path) and path.is_dir()
                if path.is_dir() and not zarr_ok:
                    problems.append(f"{path} is a folder")
                elif not overwrite:
                    problems.append(f"{path} exists (pass --overwrite to replace it)")
                elif not os.access(path, os.W_OK):
                    problems.append(f"{path} is read-only")
                continue
            why = _folder_problem(path)
            if why:
                problems.append(f"cannot write {path}: {why}")
                break  # the sidecar has the same folder
    if problems:
        raise WriteError("Nothing was computed: " + "; ".join(dict.fromkeys(problems)) + ".")


def save_result(
    result: DenoiseResult,
    image: Image,
    output: Path,
    *,
    extra: dict | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``result`` as an image (provenance embedded) plus its JSON sidecar, atomically:
    both appear, or neither. The input file is never written over; an existing output is
    replaced only with ``overwrite``.

    Returns the provenance record.
    """
    output = Path(output)
    inputs = [image.path] if image.path is not None else []
    check_outputs(inputs, [output], overwrite=overwrite)
    with _output_claim(output, overwrite):
        check_outputs(inputs, [output], overwrite=overwrite)  # again, now that it is ours
        prov = _provenance(result, image, output, extra)
        _make_parent(output)
        with atomic_batch():  # (each atomic write first clears stale part files of its folder)
            write_image(
                output,
                result.data,
                axes=image.axes,
                scale=image.scale,
                metadata=prov,
                source_metadata=image.metadata,
            )
            write_json(sidecar_path(output), prov)
    return prov


@contextlib.contextmanager
def _output_claim(output: Path, overwrite: bool):
    """Hold ``output`` and its sidecar for this run (:func:`~.atomic.claim`): no other run
    writes them meanwhile, and without ``overwrite`` they are created exclusively."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                claim(output, also=[sidecar_path(output)], replace=overwrite, make_parents=True)
            )
        except OutputBusy as err:
            who = f" (process {err.pid})" if err.pid else ""
            raise WriteError(
                f"Nothing was computed: another run{who} is writing {output} right now; "
                "wait for it to end, or choose another output."
            ) from None
        yield


def _holding_output(func):
    """Run ``func(source, output, ..., overwrite=...)`` holding its output (and sidecar):
    the paths are checked first (nothing is made for a refused output), then claimed,
    then ``func`` checks them again and computes."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        source, output = Path(bound.arguments["source"]), Path(bound.arguments["output"])
        overwrite = bound.arguments["overwrite"]
        check_outputs([source], [output], overwrite=overwrite)
        with _output_claim(output, overwrite):
            return func(*args, **kwargs)

    return run


def _provenance(result: DenoiseResult, image: Image, output: Path, extra: dict | None) -> dict:
    return make_provenance(
        method=result.method,
        params=result.params,
        input_path=image.path,
        input_shape=image.data.shape,
        input_dtype=image.data.dtype,
        axes=image.axes,
        series=image.metadata.get("series"),  # TIFF: its number; OME-Zarr: its name
        extra={**result.provenance(), "output": str(output.resolve()), **(extra or {})},
    )


def _make_parent(output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"Cannot write {output}: {exc.strerror or exc}.") from exc


@_holding_output
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
    overwrite: bool = False,
    series: int | None = None,
) -> tuple[Image, DenoiseResult, dict[str, Any]]:
    """Read ``source``, denoise it and write ``output`` + sidecar; nothing is written on error.

    The output path and its format are checked before anything is computed: ``output``
    is never ``source`` (whatever the spelling), an existing output is replaced only with
    ``overwrite`` (the CLI passes ``--overwrite``), and a format that cannot hold the
    result (a stack to ``.png``) is refused. The run holds ``output`` and its sidecar from
    that check to the end (:func:`~.atomic.claim`): another run writing them at the same
    time is refused (:class:`~.errors.WriteError`), and image and sidecar are one run's.
    A TIFF ``output`` is written block by block as the blocks are done (``result.data``
    is then the written file, memory-mapped): memory does not grow with the number of
    planes. With ``scheduler`` the planes are computed
    with dask (:mod:`.engine.denoise.lazy`): on a local scheduler (``threads``, ``processes``) or
    on the cluster at that address; the result is the same. Returns the input image, the
    result and the provenance record.
    """
    source, output = Path(source), Path(output)
    check_outputs([source], [output], overwrite=overwrite)
    image = read_image(source, axes=axes, series=series)
    problem = colour_picture_problem(image.data.shape, image.data.dtype, axes, how="--axes YXC")
    if problem:
        raise InputError(f"{problem[0].upper()}{problem[1:]}.")
    check_computable(image.data)
    _check_format(output, image, output_dtype)
    # An alpha channel says where the picture is, not how bright: it is kept as it is.
    alpha = image.metadata.get("alpha_channel") if image.axes.endswith("C") else None
    data = image.data[..., :alpha] if alpha is not None else image.data
    kw = {"axes": image.axes, "tile": tile, "output_dtype": output_dtype, "params": params}
    save = {"extra": {**(extra or {}), **({"alpha": "kept"} if alpha is not None else {})}}
    save["overwrite"] = overwrite
    if scheduler:
        from .engine.denoise.lazy import denoise_dask, scheduler_context

        save["extra"] = {**save["extra"], "scheduler": scheduler}
        streamed = _is_tiff(output) and alpha is None  # its progress comes from here
        with scheduler_context(scheduler, progress=on_progress is not None and not streamed):
            result = denoise_dask(data, method, **kw)
            start = time.perf_counter()
            if streamed:
                prov = _stream_dask_tiff(image, output, result, save["extra"], on_progress)
                return image, result, prov
            if not is_zarr(output):  # a Zarr folder is written plane by plane as computed
                result.data = result.data.compute()
            _restore_alpha(result, image, alpha)
            prov = save_result(result, image, output, **save)
            result.seconds += time.perf_counter() - start
        return image, result, prov
    if _is_tiff(output) and alpha is None:
        result, prov = _stream_tiff(image, output, method, kw, on_progress, save["extra"])
        return image, result, prov
    result = drain(denoise_iter(data, method, **kw), on_progress)
    _restore_alpha(result, image, alpha)
    prov = save_result(result, image, output, **save)
    return image, result, prov


def _restore_alpha(result: DenoiseResult, image: Image, alpha: int | None) -> None:
    if alpha is None:
        return
    kept = image.data[..., alpha:]
    if hasattr(result.data, "dask"):
        import dask.array as da

        result.data = da.concatenate([result.data, da.asarray(kept).astype(result.data.dtype)], -1)
    else:
        result.data = np.concatenate([result.data, np.asarray(kept, result.data.dtype)], axis=-1)


def _check_format(output: Path, image: Image, output_dtype: Any) -> None:
    dtype = resolve_dtype(output_dtype)
    problem = cannot_write(output, dtype or image.data.dtype, image.axes)
    if problem:
        raise WriteError(f"Cannot write {output}: {problem}")


def _is_tiff(output: str | Path) -> bool:
    return Path(output).name.lower().endswith(TIFF_SUFFIXES)


def _stream_tiff(image: Image, output: Path, method, kw: dict, on_progress, extra):
    """Denoise ``image`` into the TIFF ``output`` block by block; the result and provenance."""
    start = time.perf_counter()
    plan, view = drain(plan_iter(image.data, method, **kw), on_progress)
    result = make_result(
        None, plan.axes, plan.method, plan.base, plan.params, start, plan.neighbour_planes()
    )
    prov = _provenance(result, image, output, extra)
    _make_parent(output)
    page = tiff_page_shape(plan.shape, plan.axes)

    def final() -> dict:  # the provenance states the time the whole run took
        result.seconds = time.perf_counter() - start
        prov["seconds"] = round(result.seconds, 3)
        return prov

    with atomic_batch(), contextlib.ExitStack() as stack:
        if plan.in_file_order:
            pages = _pages_as_done(plan, view, page, on_progress)
        else:  # blocks come in another order than the file's pages: gather them on disk
            scratch = stack.enter_context(_scratch_array(plan.shape, plan.out_dtype, output))
            _fill(scratch, plan, view, on_progress)
            pages = _pages_of(scratch, page)
        _write_tiff_and_sidecar(
            output, pages, plan.shape, plan.out_dtype, plan.axes, image, prov, final
        )
    result.data = read_image(output, axes=plan.axes).data  # the file, mapped where it can be
    return result, prov


def _write_tiff_and_sidecar(output, pages, shape, dtype, axes, image, prov, final) -> None:
    """The streamed TIFF (its provenance completed by ``final`` after the last page) and its
    sidecar; called inside an atomic batch, so both appear together or not at all."""
    write_tiff_planes(
        output,
        pages,
        shape=shape,
        dtype=dtype,
        axes=axes,
        scale=image.scale,
        metadata=prov,
        final_metadata=final,
        source_metadata=image.metadata,  # channel names and display settings, as read
    )
    write_json(sidecar_path(output), prov)  # as completed by final() after the last page


def _pages_as_done(plan: Plan, view, page: tuple[int, ...], on_progress):
    """The output's TIFF pages, each block cast into one reused buffer as it is done."""
    buffer = np.empty(plan.block_shape, plan.out_dtype.newbyteorder("="))

    def write(index, result) -> None:
        cast_into(buffer, result)

    for item in drive(plan, view, write):
        if isinstance(item, Written):
            yield from buffer.reshape((-1, *page))
        elif on_progress is not None:
            on_progress(item)


def _stream_dask_tiff(image: Image, output: Path, result: DenoiseResult, extra, on_progress):
    """Compute the lazy ``result`` a few planes at a time into the TIFF ``output``."""
    start = time.perf_counter()
    built = result.seconds  # building the graph, sampling the automatic parameters
    data = result.data
    prov = _provenance(result, image, output, extra)
    _make_parent(output)
    page = tiff_page_shape(data.shape, result.axes)

    def final() -> dict:
        result.seconds = built + time.perf_counter() - start
        prov["seconds"] = round(result.seconds, 3)
        return prov

    with atomic_batch(), contextlib.ExitStack() as stack:
        chunks = _computed_chunks(data, on_progress)
        if _chunks_in_file_order(data.chunks, len(page)):
            pages = (p for _, values in chunks for p in values.reshape((-1, *page)))
        else:
            scratch = stack.enter_context(_scratch_array(data.shape, data.dtype, output))
            for where, values in chunks:
                scratch[where] = values
                release_mapped(scratch)
            pages = _pages_of(scratch, page)
        _write_tiff_and_sidecar(
            output, pages, data.shape, data.dtype, result.axes, image, prov, final
        )
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
    path = part_path(output, "scratch")
    try:
        yield np.lib.format.open_memmap(
            path, mode="w+", dtype=np.dtype(dtype).newbyteorder("="), shape=tuple(shape)
        )
    finally:
        path.unlink(missing_ok=True)


def _fill(out: np.ndarray, plan: Plan, view, on_progress) -> None:
    # written pages go to the file, not the process's memory (the driver releases them)
    run(plan, view, out, progress=on_progress)


def _pages_of(out: np.ndarray, page: tuple[int, ...]):
    for k, p in enumerate(out.reshape((-1, *page))):
        yield p
        if k % 16 == 15:
            release_mapped(out)

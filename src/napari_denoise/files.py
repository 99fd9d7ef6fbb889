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
* image and sidecar appear together or not at all (:func:`~.atomic.atomic_batch`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .atomic import atomic_batch
from .axes import check_computable, colour_picture_problem, resolve_dtype
from .engine.denoise.pipeline import DenoiseResult, denoise_iter, drain
from .errors import InputError, ParameterError, WriteError
from .io import (
    SUPPORTED_SUFFIXES,
    Image,
    cannot_write,
    count_series,
    image_stem,
    image_suffix,
    is_zarr,
    read_image,
    write_image,
    write_json,
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
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write ``result`` as an image (provenance embedded) plus its JSON sidecar, atomically:
    both appear, or neither. The input file is never written over; an existing output is
    replaced only with ``overwrite``.

    Returns the provenance record.
    """
    output = Path(output)
    check_outputs([image.path] if image.path is not None else [], [output], overwrite=overwrite)
    prov = make_provenance(
        method=result.method,
        params=result.params,
        input_path=image.path,
        input_shape=image.data.shape,
        input_dtype=image.data.dtype,
        axes=image.axes,
        series=image.metadata.get("series"),  # TIFF: its number; OME-Zarr: its name
        extra={**result.provenance(), "output": str(output.resolve()), **(extra or {})},
    )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"Cannot write {output}: {exc.strerror or exc}.") from exc
    with atomic_batch():  # (each atomic write first clears stale part files of its folder)
        write_image(output, result.data, axes=image.axes, scale=image.scale, metadata=prov)
        write_json(sidecar_path(output), prov)
    return prov


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
    overwrite: bool = True,
    series: int | None = None,
) -> tuple[Image, DenoiseResult, dict[str, Any]]:
    """Read ``source``, denoise it and write ``output`` + sidecar; nothing is written on error.

    The output path and its format are checked before anything is computed: ``output``
    is never ``source`` (whatever the spelling), an existing output is replaced only with
    ``overwrite`` (the CLI passes ``--overwrite``), and a format that cannot hold the
    result (a stack to ``.png``) is refused. With ``scheduler`` the planes are computed
    with dask (:mod:`.engine.lazy`): on a local scheduler (``threads``, ``processes``) or
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
        with scheduler_context(scheduler, progress=on_progress is not None):
            result = denoise_dask(data, method, **kw)
            start = time.perf_counter()
            if not is_zarr(output):  # a Zarr folder is written plane by plane as computed
                result.data = result.data.compute()
            _restore_alpha(result, image, alpha)
            prov = save_result(result, image, output, **save)
            result.seconds += time.perf_counter() - start
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

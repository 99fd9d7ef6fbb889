"""File in, file out: read an image, denoise it, write the result with its provenance.

The one place where a file-level run is put together, used by the CLI and the demo.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .engine.denoise.pipeline import DenoiseResult, denoise_iter, drain
from .io import Image, is_zarr, read_image, write_image, write_json
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
    prov = make_provenance(
        method=result.method,
        params=result.params,
        input_path=image.path,
        input_shape=image.data.shape,
        input_dtype=image.data.dtype,
        axes=image.axes,
        extra={**result.provenance(), "output": str(output.resolve()), **(extra or {})},
    )
    output.parent.mkdir(parents=True, exist_ok=True)
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
) -> tuple[Image, DenoiseResult, dict[str, Any]]:
    """Read ``source``, denoise it and write ``output`` + sidecar; nothing is written on error.

    With ``scheduler`` the planes are computed with dask (:mod:`.engine.lazy`): on a local
    scheduler (``threads``, ``processes``) or on the cluster at that address; the result
    is the same. Returns the input image, the result and the provenance record.
    """
    image = read_image(source, axes=axes)
    kw = {"axes": image.axes, "tile": tile, "output_dtype": output_dtype, "params": params}
    if scheduler:
        from .engine.denoise.lazy import denoise_dask, scheduler_context

        extra = {**(extra or {}), "scheduler": scheduler}
        with scheduler_context(scheduler, progress=on_progress is not None):
            result = denoise_dask(image.data, method, **kw)
            start = time.perf_counter()
            if not is_zarr(output):  # a Zarr folder is written plane by plane as computed
                result.data = result.data.compute()
            prov = save_result(result, image, Path(output), extra=extra)
            result.seconds += time.perf_counter() - start
        return image, result, prov
    result = drain(denoise_iter(image.data, method, **kw), on_progress)
    prov = save_result(result, image, Path(output), extra=extra)
    return image, result, prov

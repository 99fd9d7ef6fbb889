"""napari-denoise: denoising for fluorescence microscopy, in napari and headless.

The public API is Qt-free and works on plain arrays::

    import napari_denoise as nd
    clean = nd.denoise(noisy)                      # the default method, axes inferred
    clean = nd.denoise(stack, "gaussian", axes="TYX", sigma=1.2)
    lazy = nd.denoise_dask(dask_stack, axes="TYX")      # a dask array: one task per plane
    nd.compare(ground_truth, clean, data_range=255)
    [m.name for m in nd.list_methods()]
    result = nd.finetune(noisy, mode="n2v", minutes=2)   # a new model, now a method
    nd.export_model("unet-fluo", "unet-fluo.zip")         # a bioimage.io model package
    name = nd.import_model("someone_elses_model.zip")     # ... and one made a method

Importing this package does not import napari, Qt or torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import (
    Cancelled,
    DenoiseError,
    InputError,
    ModelFileError,
    ParameterError,
    ReadError,
    UnknownMethodError,
    WriteError,
)

__all__ = [
    "Cancelled",
    "DenoiseError",
    "FinetuneSpec",
    "InputError",
    "ModelFileError",
    "ParameterError",
    "ReadError",
    "TrainConfig",
    "UnknownMethodError",
    "WriteError",
    "__version__",
    "compare",
    "denoise",
    "denoise_dask",
    "denoise_iter",
    "export_model",
    "finetune",
    "get_method",
    "import_model",
    "list_methods",
    "read_image",
    "write_image",
]


def denoise(
    image: Any,
    method: str | None = None,
    axes: str | None = None,
    *,
    tile: int | None = None,
    output_dtype: Any = None,
    **params: Any,
) -> Any:
    """Denoise an image and return an array of the same shape (and dtype, by default).

    Parameters
    ----------
    image : array_like
        2-D to 5-D image (``YX``, ``ZYX``, ``TYX``, ``CYX``, ``YXC``, ``TZCYX`` ...). An
        xarray ``DataArray`` gives its axes by its dims when they are axis letters
        (``t``, ``z``, ``c``, ``y``, ``x``, any case; other names are refused unless
        ``axes`` is given) and the result is a ``DataArray`` like it; a torch tensor is
        computed on the CPU and the result is a tensor on its device
        (:func:`napari_denoise.axes.unwrap_array`).
    method : str, optional
        A name from :func:`list_methods`; the default method when omitted.
    axes : str, optional
        Axis letters from ``TZCYX``, one per dimension; inferred when omitted.
    tile : int, optional
        Tile size in pixels (Y and X).
    output_dtype : dtype, optional
        Defaults to the input dtype (rounded and clipped for integer types).
    **params
        Method parameters; see ``get_method(name).params``. Unset automatic parameters
        are chosen from the image.

    Examples
    --------
    >>> import numpy as np, napari_denoise as nd
    >>> rng = np.random.default_rng(0)
    >>> noisy = (100 + 10 * rng.standard_normal((64, 64))).astype(np.float32)
    >>> clean = nd.denoise(noisy, "gaussian")
    >>> bool(clean.std() < noisy.std())
    True
    """
    from .axes import unwrap_array
    from .engine.denoise.pipeline import denoise_iter as _iter
    from .engine.denoise.pipeline import drain

    image, axes, rewrap = unwrap_array(image, axes)  # torch, xarray: read right, given back
    # Every other input check (ragged lists, layout, NaN, values float32 cannot hold, the
    # output dtype) is made once, in engine/denoise/checks.py and the plan.
    result = drain(
        _iter(image, method, axes=axes, tile=tile, output_dtype=output_dtype, params=params)
    )
    return rewrap(result.data)


def denoise_dask(
    image: Any,
    method: str | None = None,
    axes: str | None = None,
    *,
    tile: int | None = None,
    output_dtype: Any = None,
    **params: Any,
):
    """Lazy form of :func:`denoise` for dask arrays (or any array): a dask array, one task
    per plane, equal to ``denoise``'s result once computed, on any scheduler or cluster.

    Automatic parameters are chosen now, from a few sample planes; nothing else is read
    until the result is computed::

        import dask.array as da
        from distributed import Client
        client = Client("tcp://scheduler:8786")   # workers need napari-denoise installed
        clean = nd.denoise_dask(da.from_zarr("stack.zarr"), axes="TYX")
        clean.to_zarr("stack_denoised.zarr")
    """
    from .axes import unwrap_array
    from .engine.denoise.lazy import denoise_dask as _lazy

    image, axes, _ = unwrap_array(image, axes)  # an xarray's dims are its axes
    return _lazy(image, method, axes=axes, tile=tile, output_dtype=output_dtype, params=params).data


def denoise_iter(image: Any, method: str | None = None, axes: str | None = None, **kwargs: Any):
    """Generator form of :func:`denoise`: yields progress, returns a ``DenoiseResult``."""
    from .axes import unwrap_array
    from .engine.denoise.pipeline import denoise_iter as _iter

    image, axes, _ = unwrap_array(image, axes)  # an xarray's dims are its axes
    params = kwargs.pop("params", {})
    return _iter(image, method, axes=axes, params=params, **kwargs)


def compare(
    image_true: Any, image_test: Any, *, data_range: float | None = None, slice_axes: int = 0
) -> dict:
    """PSNR, SSIM, NRMSE, SNR and range-invariant PSNR/SSIM of ``image_test`` against ``image_true``.

    ``data_range`` defaults to the ground truth's own range (``max - min``, whatever its
    dtype); the result says which was used (``data_range``, ``data_range_note``). A
    constant ground truth without ``data_range``, empty or non-finite images, different
    shapes and images in different units (a uint8 ground truth against a 0-1 float
    result) are refused with an InputError. See :mod:`napari_denoise.engine.metrics`.
    """
    from .engine.metrics import compare as _compare

    return _compare(image_true, image_test, data_range=data_range, slice_axes=slice_axes)


def list_methods(kind: str | None = None):
    """Registered methods (models first, then classical filters)."""
    from .engine.methods import list_methods as _list

    return _list(kind=kind)


def get_method(name: str):
    """The registered method ``name`` (UnknownMethodError with suggestions otherwise)."""
    from .engine.methods import get_method as _get

    return _get(name)


def read_image(path, *, axes: str | None = None, series: int | None = None):
    """Read a TIFF, OME-TIFF, PNG or NPY file into an ``Image`` (data, axes, scale, metadata);
    ``series`` picks one image of a file (or OME-Zarr container) that holds several."""
    from .io import read_image as _read

    return _read(path, axes=axes, series=series)


def write_image(path, data, *, axes: str, scale=None, metadata=None, source_metadata=None):
    """Write an array atomically (TIFF, OME-TIFF, NPY, PNG or Zarr by suffix);
    ``source_metadata`` (an ``Image.metadata``) gives channel names and display settings
    to keep where the format holds them."""
    from .io import write_image as _write

    return _write(
        path, data, axes=axes, scale=scale, metadata=metadata, source_metadata=source_metadata
    )


def finetune(
    noisy: Any,
    clean: Any = None,
    *,
    regions=None,
    axes: str | None = None,
    stop=None,
    checkpoint=None,
    resume: bool = False,
    out_dir=None,
    on_progress=None,
    **spec: Any,
):
    """Fine-tune or train a model on your images; save it and register it as a method.

    ``spec`` holds the fields of :class:`FinetuneSpec` (``mode``, ``start``, ``name``,
    ``steps`` or ``minutes``, ``loss``, ``seed`` ...), checked when the record is made
    (:class:`ParameterError`, one sentence). ``on_progress`` receives every
    :class:`~napari_denoise.engine.training.loop.TrainProgress`. Returns a ``FinetuneResult``
    (``name``, ``card``, ``path``, ``model``); the generator form is
    :func:`napari_denoise.engine.training.finetune.finetune_iter`.
    """
    from .engine.denoise.pipeline import drain
    from .engine.training.config import FinetuneSpec
    from .engine.training.finetune import Phase, finetune_iter, prepare

    prepared = prepare(FinetuneSpec(**spec), noisy, clean, regions, axes=axes)
    gen = finetune_iter(prepared, stop=stop, checkpoint=checkpoint, resume=resume, out_dir=out_dir)

    def steps_only(tick):  # the phases before and after the steps are for interfaces
        if on_progress is not None and not isinstance(tick, Phase):
            on_progress(tick)

    return drain(gen, steps_only)


def export_model(model_name: str, path, *, overwrite: bool = False) -> Path:
    """Write a blind 2-D model as a bioimage.io model package (``.zip``, format 0.5).

    TorchScript and ``pytorch_state_dict`` weights, test tensors from a real image, a cover,
    a README from the model card. The package's output is in normalised units (0 and 1 =
    the input's 0.1 and 99.9 percentiles); see :mod:`napari_denoise.bioimageio.export`.
    Needs ``bioimageio.core``.
    """
    from .bioimageio import export_model as _export

    return _export(model_name, path, overwrite=overwrite)


def import_model(
    path, *, name: str | None = None, allow_code: bool = False, overwrite: bool = False
) -> str:
    """Register a bioimage.io denoising model (2-D, one channel) as a method; return its name.

    ``allow_code=True`` runs an architecture defined by a Python file inside the package,
    which can do anything your account can: only for packages you trust. See
    :mod:`napari_denoise.bioimageio.import_` for what is accepted. Needs ``bioimageio.core``.
    """
    from .bioimageio import import_model as _import

    return _import(path, name=name, allow_code=allow_code, overwrite=overwrite)


def __getattr__(name: str):
    if name in ("FinetuneSpec", "TrainConfig"):  # no torch, but loaded only when asked
        from .engine.training import config

        return getattr(config, name)
    raise AttributeError(f"module 'napari_denoise' has no attribute {name!r}")

"""npe2 entry points that need no Qt: the TIFF reader, the TIFF writer and the sample data.

Each hook is a few lines handing off to :mod:`napari_denoise.io`. Layers carry their axes
letters in ``metadata["axes"]`` (napari itself has no notion of T/Z/C) and, for results
made by the Denoise widget, the provenance record in ``metadata["napari_denoise"]``,
which :func:`write_tiff` saves beside the image as a ``.json`` sidecar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .files import sidecar_path  # one naming rule for every writer

__all__ = [
    "PROVENANCE_KEY",
    "get_reader",
    "read_tiff",
    "sample_fmd_pair",
    "sample_timelapse",
    "sidecar_path",
    "write_tiff",
]

PROVENANCE_KEY = "napari_denoise"
SAMPLES = Path(__file__).parent / "sample_data"
_TIFF = (".tif", ".tiff")
_UNITS = {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}


def get_reader(path: str | list[str]):
    """npe2 reader hook: :func:`read_tiff` for TIFF and OME-TIFF files, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(str(p).lower().endswith(_TIFF) for p in paths):
        return read_tiff
    return None


def read_tiff(path: str | list[str]) -> list[tuple]:
    """Layer data tuples for one or more TIFF files: one image layer per channel.

    Axes come from the file (ImageJ / OME / our own metadata), a ``C`` axis is split
    into separate layers, and pixel sizes (µm, seconds for T) become the layer scale.
    """
    from .io import read_image

    paths = [path] if isinstance(path, str) else list(path)
    return [layer for p in paths for layer in image_layers(read_image(p))]


def image_layers(image, name: str | None = None) -> list[tuple]:
    """Layer data tuples for an :class:`~napari_denoise.io.Image` (channels split)."""
    axes = image.axes
    name = name or (image.path.name.split(".")[0] if image.path else "image")
    plane_axes = axes.replace("C", "")
    scale = [image.scale.get(a, 1.0) for a in plane_axes]
    units = [_UNITS[a] if a in image.scale else "pixel" for a in plane_axes]
    base_meta = {
        "axes": plane_axes,
        "pixel_size": {a: image.scale[a] for a in plane_axes if a in image.scale},
        "source_path": str(image.path) if image.path else None,
    }
    if "embedded" in image.metadata:  # provenance of a file napari-denoise wrote
        base_meta[PROVENANCE_KEY] = image.metadata["embedded"]
    kwargs: dict[str, Any] = {
        "scale": scale,
        "axis_labels": [a.lower() for a in plane_axes],
        "units": units,
    }
    if "C" not in axes:
        return [(image.data, {"name": name, "metadata": base_meta, **kwargs}, "image")]
    n = image.data.shape[axes.index("C")]
    names = image.metadata.get("channel_names") or [f"ch{i + 1}" for i in range(n)]
    meta = {
        "name": [f"{name} [{c}]" for c in names],
        "metadata": [{**base_meta, "channel": i} for i in range(n)],
        "channel_axis": axes.index("C"),
        **kwargs,
    }
    return [(image.data, meta, "image")]


def layer_axes(shape: tuple[int, ...], metadata: dict | None) -> str | None:
    """The axes letters stored with a layer if they fit its shape, else None (infer)."""
    axes = (metadata or {}).get("axes")
    if isinstance(axes, str) and len(axes) == len(shape):
        return axes
    return None


def write_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: the image as TIFF, its provenance as a ``.json`` sidecar.

    The provenance (from ``meta["metadata"]["napari_denoise"]``, set when the Denoise
    widget made the layer) is also embedded in the TIFF. Pixel sizes come from the layer
    scale for axes that have one.
    """
    from .axes import infer_axes
    from .io import write_image, write_json

    data = np.asarray(data)
    metadata = meta.get("metadata") or {}
    axes = layer_axes(data.shape, metadata) or infer_axes(data.shape)
    layer_scale = meta.get("scale") or [1.0] * data.ndim
    scale = {a: float(s) for a, s in zip(axes, layer_scale, strict=True) if a in "TZYX" and s != 1}
    scale.update({a: s for a, s in (metadata.get("pixel_size") or {}).items() if a in axes})
    provenance = metadata.get(PROVENANCE_KEY)
    written = [str(write_image(path, data, axes=axes, scale=scale, metadata=provenance))]
    if provenance:
        written.append(str(write_json(sidecar_path(path), provenance)))
    return written


def sample_fmd_pair() -> list[tuple]:
    """A real noisy confocal image (FMD, mouse brain) and its 50-frame average (ground truth)."""
    from .io import read_image

    noisy = read_image(SAMPLES / "fmd_confocal_mice_noisy.png")
    gt = read_image(SAMPLES / "fmd_confocal_mice_gt.png")
    info = "FMD test_mix, Confocal_MICE_1 (Zhang et al., CVPR 2019); see sample_data/README.md"

    def meta(image) -> dict:  # the file too, as for any opened file (Copy as command, Save)
        return {"axes": "YX", "source": info, "source_path": str(image.path)}

    return [
        (gt.data, {"name": "ground truth (FMD)", "metadata": meta(gt)}, "image"),
        (noisy.data, {"name": "noisy (FMD)", "metadata": meta(noisy)}, "image"),
    ]


def sample_timelapse() -> list[tuple]:
    """A real noisy membrane time-lapse, 5 frames of 256x256 (uint16, TYX)."""
    from .io import read_image

    return image_layers(read_image(SAMPLES / "membrane_timelapse.tif"), name="membrane time-lapse")

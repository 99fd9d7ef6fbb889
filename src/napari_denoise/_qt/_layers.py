"""How results and differences are shown as napari layers (no Qt, no denoising numerics).

A result layer sits exactly on its input (same scale, translate and affine), starts with
the input's contrast limits and colormap so the two can be compared by eye, and carries
its provenance in ``metadata["napari_denoise"]`` (what the TIFF writer saves).
A difference layer is computed lazily, plane by plane, with dask: it costs no memory
and no time until a plane is shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._napari import PROVENANCE_KEY
from ..errors import InputError
from ._preview import current_index
from ._words import settings_text

PREVIEW_SUFFIX = "preview"
# Metadata keys marking layers this plugin made (never offered as an input or ground truth).
RESULT_KEY = "result_of"
PREVIEW_KEY = "preview_of"
DIFFERENCE_KEY = "difference_of"


def difference_colormap():
    """Blue (negative) - black (zero) - orange (positive): readable on napari's dark canvas."""
    from napari.utils.colormaps import Colormap

    colors = [[0.2, 0.6, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.6, 0.1, 1.0]]
    # A short name: napari lists every colormap in its layer controls, which widen to
    # fit the longest one (taking the width from the canvas).
    return Colormap(colors, name="difference")


def result_name(
    input_name: str, method: str, *, preview: bool = False, settings: dict | None = None
) -> str:
    """'noisy [gaussian]', 'noisy [gaussian, Blur width 1.5 px]' or 'noisy [gaussian preview]'.

    ``settings``: the parameters set away from their defaults, named in the name by their
    labels on screen (:func:`~._words.settings_text`), so that two results of one method
    with different settings have names that say how they differ.
    """
    from ..engine.methods import get_method

    head = f"{method} {PREVIEW_SUFFIX}" if preview else method
    words = settings_text(get_method(method), settings) if settings else ""
    return f"{input_name} [{', '.join(w for w in (head, words) if w)}]"


def previews_of(viewer, source) -> list:
    """The preview layers made from ``source``."""
    return [ly for ly in viewer.layers if ly.metadata.get(PREVIEW_KEY) == source.name]


def save_layer(layer, path) -> list[Path]:
    """Write ``layer`` with napari-denoise's TIFF writer: the image, its pixel sizes and (for
    a result) its provenance, embedded and as a ``.json`` sidecar. Refuses to write over
    the file the layer's input was read from."""
    from .._napari import write_tiff

    path = Path(path)
    sources = {layer.metadata.get("source_path"), layer.source.path}
    sources |= {(layer.metadata.get(PROVENANCE_KEY) or {}).get("input", {}).get("path")}
    if any(s and Path(s).resolve() == path.resolve() for s in sources):
        raise InputError(f"{path.name} is the input image; choose another file name.")
    meta = {"metadata": layer.metadata, "scale": list(layer.scale)}
    return [Path(p) for p in write_tiff(str(path), np.asarray(layer.data), meta)]


def result_kwargs(source, *, axes: str, provenance: dict | None = None) -> dict:
    """Layer keywords that place a result over ``source`` and look like it."""
    metadata = {k: v for k, v in source.metadata.items() if k != PROVENANCE_KEY}
    metadata["axes"] = axes
    metadata[RESULT_KEY] = source.name
    if provenance is not None:
        metadata[PROVENANCE_KEY] = provenance
    return {
        "scale": source.scale,
        "translate": source.translate,
        "affine": source.affine,
        "contrast_limits": tuple(source.contrast_limits),
        "colormap": source.colormap.name,
        "gamma": source.gamma,
        "metadata": metadata,
        "axis_labels": source.axis_labels,
        "units": source.units,
    }


def lazy_difference(a, b):
    """``a - b`` in float32, computed plane by plane only when napari shows a plane."""
    import dask.array as da

    chunks = (1,) * (a.ndim - 2) + a.shape[-2:]
    da_a = da.from_array(a, chunks=chunks, asarray=True)
    da_b = da.from_array(b, chunks=chunks, asarray=True)
    return da_a.astype(np.float32) - da_b.astype(np.float32)


def symmetric_limits(diff, plane_index: tuple) -> tuple[float, float]:
    """Contrast limits +-L for a difference, L from the 99.5th percentile of one plane."""
    plane = np.abs(np.asarray(diff[plane_index], dtype=np.float32))
    limit = float(np.percentile(plane, 99.5)) if plane.size else 1.0
    limit = limit if limit > 0 else 1.0
    return -limit, limit


def add_difference(viewer, a_layer, b_layer, *, name: str):
    """Add (or refresh) the layer ``a - b`` over ``a_layer``, with a diverging colormap."""
    diff = lazy_difference(a_layer.data, b_layer.data)
    limits = symmetric_limits(diff, tuple(current_index(viewer, a_layer)[:-2]))
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data, layer.contrast_limits = diff, limits
        return layer
    return viewer.add_image(
        diff,
        name=name,
        colormap=difference_colormap(),
        contrast_limits=limits,
        scale=a_layer.scale,
        translate=a_layer.translate,
        affine=a_layer.affine,
        metadata={
            "axes": a_layer.metadata.get("axes"),
            DIFFERENCE_KEY: [a_layer.name, b_layer.name],
        },
    )

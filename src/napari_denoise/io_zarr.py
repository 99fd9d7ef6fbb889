"""Zarr folders: read lazily as dask arrays, written as single-scale OME-Zarr (NGFF 0.4).

Reading takes a plain Zarr array, or the full-resolution level of an OME-Zarr image
(NGFF 0.4 ``multiscales`` in the group's attributes, or 0.5 under ``ome``) with its axes
and pixel sizes. Nothing is loaded: ``Image.data`` is a dask array, computed plane by
plane where it is used (:func:`napari_denoise.denoise_dask` keeps it lazy end to end).

Writing makes an OME-Zarr group (Zarr format 2, as NGFF 0.4 asks) with one level ``0``,
its axes in NGFF's order (``TCZYX``; a ``YXC`` image is written ``CYX``, and its own order
kept under ``napari_denoise_axes`` so that this module reads it back as it was), one
plane per chunk, the axes and pixel sizes in ``multiscales`` and our metadata
(provenance) under ``napari_denoise``. Channel names and display ranges the input stated
go in ``omero`` (labels, windows) for other viewers and, exactly, under
``napari_denoise_channels``. Only pixel sizes that are known are stated: an
axis without one gets NGFF's required scale 1 but no unit, and reading takes a scale only
where its axis names a unit of length or time (converted to µm and seconds), so a size
is never invented on the way through. A dask array is written chunk by chunk as it is
computed, on whatever scheduler is active. The folder is built beside the target under a
temporary name and renamed into place only when complete: a failed write leaves nothing.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import clean_stale_parts, commit_part, part_path
from .errors import InputError, ReadError, WriteError

__all__ = ["ZARR_SUFFIXES", "count_zarr_series", "read_zarr", "write_zarr"]

ZARR_SUFFIXES = (".zarr", ".ome.zarr")
_NGFF_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
_NGFF_UNITS = {"T": "second", "Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
_METADATA_KEY = "napari_denoise"
_AXES_KEY = "napari_denoise_axes"  # the image's own axis order (NGFF's is TCZYX)
_CHANNELS_KEY = "napari_denoise_channels"  # channel names and display, as read (exact)
# NGFF unit names (UDUNITS-2) in µm for space, seconds for time
_UM_PER_UNIT = {
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "micron": 1.0,
    "millimeter": 1e3,
    "nm": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "mm": 1e3,
}
_S_PER_UNIT = {
    "millisecond": 1e-3,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
    "ms": 1e-3,
    "s": 1.0,
}


def read_zarr(path: Path, series: int | None = None):
    """``(data, axes or None, scale, metadata)`` of the Zarr folder ``path``; ``data`` is a
    dask array, ``axes`` None when the folder does not state them. A container of several
    OME-Zarr images (bioformats2raw's series 0, 1, ...) needs ``series`` (an index in
    their order), rather than silently giving its first."""
    import dask.array as da
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many types on folders that are not Zarr
        raise ReadError(f"Cannot read {path}: it is not a Zarr array or group ({exc}).") from exc
    meta: dict[str, Any] = {"source_format": "zarr"}
    axes, scale = None, {}
    if isinstance(node, zarr.Array):
        array = node
        attrs = dict(node.attrs)
        axes = attrs.get("axes") if isinstance(attrs.get("axes"), str) else None
    else:
        root = dict(node.attrs)
        node, name = _image_group(node, path, series)
        attrs = dict(node.attrs)
        if name is not None:
            meta["series"] = name
            if _METADATA_KEY in root:
                attrs[_METADATA_KEY] = root[_METADATA_KEY]
        multiscales = _multiscales(node)
        if multiscales:
            first = multiscales[0]
            level = first["datasets"][0]
            array = node[level["path"]]
            entries = first.get("axes", [])
            names = [a["name"] if isinstance(a, dict) else a for a in entries]
            letters = "".join(str(n)[:1].upper() for n in names)
            axes = letters if len(letters) == array.ndim else None
            units = [a.get("unit") if isinstance(a, dict) else None for a in entries]
            for t in level.get("coordinateTransformations", []):
                if t.get("type") == "scale" and axes:
                    scale = _sizes(axes, t.get("scale", []), units)
            meta["ome_zarr_level"] = level["path"]
        else:
            arrays = [name for name, _ in node.arrays()]
            if len(arrays) != 1:
                raise ReadError(
                    f"Cannot read {path}: the Zarr group holds {len(arrays)} arrays and no "
                    "OME-Zarr 'multiscales' saying which is the image; open the array's own "
                    "folder instead."
                )
            array = node[arrays[0]]
    if np.dtype(array.dtype).kind not in "biuf":
        raise ReadError(f"Cannot read {path}: it holds {array.dtype} data, not a numeric image.")
    if _METADATA_KEY in attrs:
        meta["embedded"] = attrs[_METADATA_KEY]
    meta.update(_channels(attrs))
    data = da.from_zarr(array)
    own = attrs.get(_AXES_KEY)
    if axes and isinstance(own, str) and sorted(own) == sorted(axes) and own != axes:
        data = data.transpose([axes.index(a) for a in own])  # back to the image's own order
        axes = own
    return data, axes, scale, meta


def _channels(attrs: dict) -> dict:
    """``channel_names`` and ``display`` from our own record, else from ``omero``."""
    own = attrs.get(_CHANNELS_KEY)
    if isinstance(own, dict):
        return {k: own[k] for k in ("channel_names", "display") if k in own}
    omero = attrs.get("omero")
    channels = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(channels, list) or not all(isinstance(c, dict) for c in channels):
        return {}
    out: dict = {}
    names = [c.get("label") for c in channels]
    if names and all(isinstance(n, str) and n for n in names):
        out["channel_names"] = names
    with contextlib.suppress(TypeError, ValueError, KeyError, AttributeError):
        ranges = [[float(c["window"]["start"]), float(c["window"]["end"])] for c in channels]
        if ranges:
            out["display"] = {"ranges": ranges}
    return out


def _sizes(axes: str, values, units) -> dict[str, float]:
    """Pixel sizes (µm; seconds for T) of the axes whose unit is known: a scale without a
    unit (NGFF's required 1 where nothing is known) is no size."""
    scale: dict[str, float] = {}
    for letter, value, unit in zip(axes, values, units, strict=False):
        table = _S_PER_UNIT if letter == "T" else _UM_PER_UNIT
        factor = table.get(str(unit).strip().lower()) if unit is not None else None
        try:
            size = float(value) * factor if factor is not None and letter in "TZYX" else None
        except (TypeError, ValueError):
            size = None
        if size is not None and np.isfinite(size) and size > 0:
            scale[letter] = size
    return scale


def _multiscales(group) -> list | None:
    attrs = dict(group.attrs)
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _series_groups(group) -> list:
    """``(name, group)`` of the OME-Zarr images a container holds, in series order; empty
    when ``group`` is an image (or a plain group) itself."""
    if _multiscales(group) or any(True for _ in group.arrays()):
        return []
    return sorted(((name, g) for name, g in group.groups() if _multiscales(g)), key=_series_key)


def count_zarr_series(path: Path) -> int:
    """How many OME-Zarr images the folder holds (1 for an image or a plain array)."""
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception:  # reported properly when the folder is read
        return 1
    if isinstance(node, zarr.Array):
        return 1
    return max(1, len(_series_groups(node)))


def _image_group(group, path: Path, series: int | None):
    """The group holding the image: ``group`` itself, or one series of a container of
    several OME-Zarr images (bioformats2raw's layout): the only one, or the one asked."""
    children = _series_groups(group)
    if not children:
        if series not in (None, 0):
            raise InputError(f"Cannot read series {series} of {path}: it holds one image.")
        return group, None
    if series is None and len(children) > 1:
        names = ", ".join(name for name, _ in children[:6]) + (", ..." if len(children) > 6 else "")
        raise InputError(
            f"Cannot read {path} as one image: it holds {len(children)} image series ({names}); "
            f"read one with series=K, 0 to {len(children) - 1} (the command line denoises "
            "each into its own folder)."
        )
    k = 0 if series is None else int(series)
    if not 0 <= k < len(children):
        raise InputError(
            f"Cannot read series {k} of {path}: it holds {len(children)} (0 to {len(children) - 1})."
        )
    return children[k][1], children[k][0]


def _series_key(item) -> tuple:
    name = item[0]
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def write_zarr(
    path: Path,
    data,
    axes: str,
    scale: dict[str, float],
    metadata: dict | None,
    channels: dict | None = None,
) -> None:
    """Write ``data`` (numpy or dask) as a single-scale OME-Zarr folder at ``path``;
    ``channels`` holds ``channel_names`` and ``display`` that fit its channels."""
    import dask.array as da
    import zarr

    if not path.parent.is_dir():
        raise WriteError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    if path.exists() and not (path / ".zattrs").is_file() and not (path / "zarr.json").is_file():
        raise WriteError(f"Cannot write {path}: it exists and is not a Zarr folder; not replaced.")
    lazy = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    # NGFF 0.4 orders the axes time, channel, then space (z, y, x).
    own = axes
    order = [axes.index(a) for a in "TCZYX" if a in axes]
    lazy, axes = lazy.transpose(order), "".join(axes[i] for i in order)
    planes = tuple(n if a in "YX" else 1 for a, n in zip(axes, lazy.shape, strict=True))
    lazy = lazy.rechunk(planes)
    clean_stale_parts(path.parent)
    tmp = part_path(path)
    try:
        group = zarr.open_group(store=str(tmp), mode="w", zarr_format=2)
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "name": path.name,
                "axes": [
                    {"name": a.lower(), "type": _NGFF_TYPES[a]}
                    | ({"unit": _NGFF_UNITS[a]} if a in scale else {})
                    for a in axes
                ],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [float(scale.get(a, 1.0)) for a in axes]}
                        ],
                    }
                ],
            }
        ]
        if own != axes:
            group.attrs[_AXES_KEY] = own
        if channels:
            group.attrs.update(_channel_attrs(channels))
        if metadata:
            group.attrs[_METADATA_KEY] = metadata
        target = group.create_array(
            "0", shape=lazy.shape, dtype=lazy.dtype, chunks=planes, fill_value=0
        )
        da.store(lazy, target, lock=False)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The old folder goes only once the new one is complete (with its sidecar, in a batch).
    commit_part(tmp, path)


def _channel_attrs(channels: dict) -> dict:
    """Attributes for ``channel_names`` and ``display``: ``omero`` for other viewers (what
    it can say: labels and windows) and our exact record (LUTs as lists)."""
    display = dict(channels.get("display") or {})
    if "luts" in display:
        display["luts"] = [np.asarray(t).tolist() for t in display["luts"]]
    own = {
        k: v
        for k, v in (("channel_names", channels.get("channel_names")), ("display", display))
        if v
    }
    names, ranges = own.get("channel_names"), display.get("ranges")
    n = len(names) if names else len(ranges) if ranges else 0
    attrs: dict = {_CHANNELS_KEY: own}
    if n:
        entries = []
        for i in range(n):
            entry: dict = {"active": True}
            if names:
                entry["label"] = names[i]
            if ranges:
                lo, hi = ranges[i]
                entry["window"] = {"start": lo, "end": hi, "min": lo, "max": hi}
            entries.append(entry)
        omero: dict = {"channels": entries}
        if display.get("mode") in ("composite", "color"):
            omero["rdefs"] = {"model": "color"}
        attrs["omero"] = omero
    return attrs

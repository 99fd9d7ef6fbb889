"""Reading and writing microscopy images together with their axes and pixel sizes.

Axes use the letters of :data:`AXES_LETTERS`; pixel sizes are in µm for X/Y/Z, seconds for T.

Unlabelled stack axes (tifffile's ``I``/``Q``, any ``.npy``) are time: ``T``, or ``Z`` when
``T`` is taken.  The real unlabelled stacks we meet are time-lapses, and calling one ``Z``
would let 3D methods mix frames of moving cells; pass ``axes="ZYX"`` for a volume.

Metadata given to :func:`write_image` (e.g. provenance) is stored as JSON in the private
TIFF tag :data:`METADATA_TAG` (first page; ImageJ and OME readers ignore it) or in a PNG
text chunk ``napari_denoise``; :func:`read_image` returns it as ``metadata["embedded"]``.
NPY files hold only the array (write a :func:`write_json` sidecar).

What an input says about its channels is kept in ``Image.metadata`` and written back by
:func:`write_image` (``source_metadata``) where the output format can hold it:
``channel_names`` (OME ``Channel Name``, OME-Zarr ``omero`` labels) and ``display``
(ImageJ's ``mode`` such as ``composite``, per-channel display ``ranges`` and ``luts``;
OME-Zarr ``omero`` windows). Nothing is invented: a size, name or range the input does
not state is not written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import PngImagePlugin

from .atomic import atomic_write
from .axes import AXES_LETTERS, cast_to_dtype, infer_axes, normalize_axes  # noqa: F401  (re-exported)
from .errors import DenoiseError, InputError, ReadError

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".tif",
    ".tiff",
    ".ome.tif",
    ".ome.tiff",
    ".png",
    ".npy",
    ".zarr",
    ".ome.zarr",
)
ZARR_SUFFIXES = (".zarr", ".ome.zarr")  # folders, read lazily (see io_zarr)
METADATA_TAG = 65000  # in the TIFF range reserved for private, reusable tags
# Our files' exact axes and shape as JSON: ImageJ and OME readers drop singleton axes
# (a one-plane 'TYX' stack reads back as 'YX'), so a file we wrote is read back as written.
LAYOUT_TAG = 65001
_PNG_KEY = "napari_denoise"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_OME_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")
# Only microscope-scale lengths count: a 'cm' or 'inch' calibration is a leftover of other
# software (the real Convallaria frame says 1 pixel per cm), not a pixel size.
_UM_PER_UNIT = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "micron": 1.0, "microns": 1.0, "mm": 1e3}
_S_PER_UNIT = {"s": 1.0, "sec": 1.0, "second": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


@dataclass
class Image:
    """An image as read from disk.

    Attributes
    ----------
    data : numpy.ndarray
        Pixels as stored (a read-only ``np.memmap`` when the file allows it).
    axes : str
        One letter of :data:`AXES_LETTERS` per dimension of ``data``.
    scale : dict of str to float
        Pixel size per axis letter where the file states it (µm; seconds for T).
    path : pathlib.Path or None
        The file read.
    metadata : dict
        ``source_format``, ``original_dtype``, ``units`` and, when known,
        ``channel_names``, ``display`` (``mode``, ``ranges``: one ``[low, high]`` per
        channel, ``luts``: one 3x256 uint8 table per channel) and ``embedded`` (what
        :func:`write_image` stored).
    """

    data: np.ndarray
    axes: str
    scale: dict[str, float]
    path: Path | None = None
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- axes
def _map_file_axes(letters: str, shape: tuple[int, ...]) -> str:
    """Translate tifffile's axes to ours; fall back to :func:`infer_axes` if they don't fit."""
    out: list[str] = []
    for letter in letters:
        if letter == "S":
            letter = "C"
        elif letter in "IQ":  # unlabelled stack axis: T, else Z (see the module notes)
            letter = next((c for c in "TZ" if c not in letters and c not in out), "?")
        out.append(letter)
    try:
        return normalize_axes("".join(out), len(shape))
    except InputError:  # e.g. spectral axes, or ImageJ channels *and* RGB samples
        return infer_axes(shape)


# --------------------------------------------------------------------------- reading
def read_image(
    path: str | os.PathLike, *, axes: str | None = None, series: int | None = None
) -> Image:
    """Read a TIFF (plain, ImageJ, OME), PNG or NPY file with its axes and pixel sizes.

    Parameters
    ----------
    path : str or path-like
        The file; its suffix chooses the reader (see :data:`SUPPORTED_SUFFIXES`).
    axes : str, optional
        Replaces the axes found in the file; pixel sizes of axes it renames are dropped.
    series : int, optional
        Which image series of a TIFF file that holds several (:func:`count_series`);
        such a file is refused without it rather than read in part.

    Returns
    -------
    Image
        ``data`` is a read-only memory map when the pixels lie uncompressed, contiguous
        and in native byte order in the file; otherwise an in-memory array.

    Raises
    ------
    ReadError
        If the file is missing, a folder, of an unknown type, empty, truncated or corrupt.
    InputError
        If ``axes`` does not fit the image, the file holds several series and ``series``
        is not given (or names none of them), or a palette PNG's colours are not a ramp.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.exists():
        raise ReadError(f"Cannot read {path}: the file does not exist.")
    if (
        series is not None
        and suffix not in ZARR_SUFFIXES
        and not suffix.endswith((".tif", ".tiff"))
    ):
        if series != 0:
            raise InputError(f"Cannot read series {series} of {path}: it holds one image.")
        series = None
    if suffix in ZARR_SUFFIXES:
        image = _read_zarr_image(path, series)
    else:
        image = _read_file(path, suffix, series)
    image.metadata["original_dtype"] = str(image.data.dtype)
    if axes is not None:
        new = normalize_axes(axes, image.data.ndim, shape=image.data.shape)
        # A pixel size stays valid only for an axis whose meaning the override keeps.
        image.scale = {a: v for a, v in image.scale.items() if new.find(a) == image.axes.find(a)}
        if "alpha_channel" in image.metadata and new.find("C") != image.axes.find("C"):
            del image.metadata["alpha_channel"]  # the override gives that axis a new meaning
        image.axes = new
    image.metadata["units"] = {k: ("s" if k == "T" else "µm") for k in image.scale}
    return image


def count_series(path: str | os.PathLike) -> int:
    """How many image series a TIFF file (reduced-resolution copies and pyramid levels not
    counted) or an OME-Zarr container holds; 1 for any other file, and for a file that
    cannot be opened (reading it then says why)."""
    path = Path(path)
    if _suffix(path) in ZARR_SUFFIXES and path.is_dir():
        from .io_zarr import count_zarr_series

        return count_zarr_series(path)
    if not _suffix(path).endswith((".tif", ".tiff")) or not path.is_file():
        return 1
    try:
        with _tifffile_errors(), tifffile.TiffFile(path) as tif:
            return max(1, len(_image_series(tif)))
    except Exception:  # reported properly when the file is read
        return 1


def _image_series(tif: tifffile.TiffFile) -> list:
    """The series that are images of their own, not thumbnails of another."""
    series = list(tif.series)
    full = [s for s in series if not getattr(s.keyframe, "is_reduced", False)]
    return full or series[:1]


def _read_file(path: Path, suffix: str, series: int | None = None) -> Image:
    """A TIFF, PNG or NPY file as stored (axes and sizes from the file)."""
    if path.is_dir():
        raise ReadError(f"Cannot read {path}: it is a folder, not an image file.")
    if suffix not in SUPPORTED_SUFFIXES:
        raise ReadError(f"Cannot read {path}: {_unknown_type(suffix)}")
    if not os.access(path, os.R_OK):
        raise ReadError(f"Cannot read {path}: permission denied.")
    if path.stat().st_size == 0:
        raise ReadError(f"Cannot read {path}: the file is empty.")
    kind = {".png": "PNG", ".npy": "NPY"}.get(suffix, "TIFF")
    try:
        if kind == "TIFF":
            image = _read_tiff(path, series)
        else:
            image = {"PNG": _read_png, "NPY": _read_npy}[kind](path)
    except DenoiseError:
        raise
    except Exception as exc:  # tifffile, codecs and Pillow raise many types on bad files
        why = f"the file is damaged, truncated or not a valid {kind} file ({exc})."
        raise ReadError(f"Cannot read {path}: {why}") from exc
    return image


def _read_zarr_image(path: Path, series: int | None = None) -> Image:
    from .io_zarr import read_zarr

    if not path.is_dir():
        raise ReadError(f"Cannot read {path}: a Zarr image is a folder, and this is a file.")
    data, found, scale, meta = read_zarr(path, series)
    axes = (found and _checked_axes(found, data.shape)) or infer_axes(data.shape)
    return Image(data, axes, scale, path, meta)


def _checked_axes(axes: str, shape: tuple[int, ...]) -> str | None:
    try:
        return normalize_axes(axes, len(shape), shape=shape)
    except InputError:
        return None


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr folder (by its suffix)."""
    return _suffix(Path(path)) in ZARR_SUFFIXES


def image_suffix(path: str | os.PathLike) -> str:
    """The file type suffix of ``path``, lower case: the longest of
    :data:`SUPPORTED_SUFFIXES` it ends with (``.ome.tif`` over ``.tif``), else its last one."""
    return _suffix(Path(path))


def image_stem(path: str | os.PathLike) -> str:
    """``path``'s name without its type suffix (:func:`image_suffix`): ``run.1.tif`` ->
    ``run.1``, ``cells.ome.tif`` -> ``cells``."""
    name = Path(path).name
    suffix = image_suffix(path)
    return name[: len(name) - len(suffix)] if suffix and name.lower().endswith(suffix) else name


def cannot_write(path: str | os.PathLike, dtype, axes: str) -> str | None:
    """Why :func:`write_image` would refuse to write such an image to ``path``, or None."""
    suffix = _suffix(Path(path))
    if suffix in ZARR_SUFFIXES:
        dtype = np.dtype(dtype)
        return None if dtype.kind in "biuf" else f"{dtype} is not a numeric image dtype."
    return _cannot_write(suffix, np.dtype(dtype), axes)


def _unknown_type(suffix: str) -> str:
    return f"unknown file type {suffix or '(none)'!r}; use {', '.join(SUPPORTED_SUFFIXES)}."


def _suffix(path: Path) -> str:
    name = path.name.lower()
    matches = [s for s in SUPPORTED_SUFFIXES if name.endswith(s)]
    return max(matches, key=len) if matches else path.suffix.lower()  # '.ome.tif' over '.tif'


@contextlib.contextmanager
def _tifffile_errors():
    """Collect the errors tifffile logs: on a cut-short file it logs them and returns less."""
    problems: list[str] = []
    me = threading.get_ident()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == me:  # not the reads of other threads
                problems.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))

    handler = _Collect(level=logging.ERROR)
    logging.getLogger("tifffile").addHandler(handler)
    try:
        yield problems
    finally:
        logging.getLogger("tifffile").removeHandler(handler)


def _pick_series(path: Path, tif: tifffile.TiffFile, index: int | None):
    """The series to read: the only one, or the one asked for; never one of several
    silently (the others would be lost without a word)."""
    found = _image_series(tif)
    if index is None and len(found) > 1:
        shapes = ", ".join("x".join(map(str, s.shape)) for s in found[:4])
        more = ", ..." if len(found) > 4 else ""
        raise InputError(
            f"Cannot read {path} as one image: it holds {len(found)} image series "
            f"({shapes}{more}); read one with series=K, 0 to {len(found) - 1} (the command "
            "line denoises each into its own file)."
        )
    index = 0 if index is None else int(index)
    if not 0 <= index < len(found):
        raise InputError(
            f"Cannot read series {index} of {path}: it holds {len(found)} (0 to {len(found) - 1})."
        )
    return found[index], index if len(found) > 1 else None


def _alpha_samples(page) -> bool:
    """Whether the last sample of a TIFF page is alpha (TIFF ExtraSamples 1 or 2)."""
    extra = getattr(page, "extrasamples", ()) or ()
    return bool(len(extra)) and int(extra[-1]) in (1, 2)


def _read_tiff(path: Path, index: int | None = None) -> Image:
    with _tifffile_errors() as problems, tifffile.TiffFile(path) as tif:
        series, number = _pick_series(path, tif, index)
        data = _memmap_series(path, tif, series)
        if data is None and not problems:
            data = series.asarray()
        if problems:  # strict on purpose: denoising a half-read stack helps nobody
            why = f"the file is truncated or damaged ({problems[0]}); was it copied completely?"
            raise ReadError(f"Cannot read {path}: {why}")
        meta: dict = {"source_format": "tiff"}
        if number is not None:
            meta["series"] = number
        alpha = _alpha_samples(series.keyframe) and series.axes.endswith("S")
        if series.kind == "ome" and tif.ome_metadata:
            meta["source_format"] = "ome-tiff"
            scale = _ome_scale(tif.ome_metadata, meta)
        elif tif.imagej_metadata is not None:
            meta["source_format"] = "imagej-tiff"
            scale = _imagej_scale(tif.imagej_metadata, tif.pages[0])
            display = _imagej_display(tif.imagej_metadata)
            if display:
                meta["display"] = display
            names = _imagej_channel_names(tif.imagej_metadata)
            if names:
                meta["channel_names"] = names
        elif tif.shaped_metadata:  # where write_image keeps the sizes of non-ImageJ files
            shaped = tif.shaped_metadata[0]
            scale = shaped.get("scale")
            meta.update(_checked_channels(shaped.get("channel_names"), shaped.get("display")))
        else:
            scale = {}
        tag = tif.pages[0].tags.get(METADATA_TAG)
        if tag is not None:
            with contextlib.suppress(ValueError, TypeError):
                meta["embedded"] = json.loads(tag.value)
        layout = _layout(tif.pages[0], data.shape) if number is None else None
    if layout is not None:  # a file we wrote: its singleton axes back in place
        axes, shape = layout
        data = data.reshape(shape)
    else:
        axes = _map_file_axes(series.axes, data.shape)
    if alpha and axes.endswith("C"):
        meta["alpha_channel"] = data.shape[-1] - 1
    scale = {
        k: float(v)
        for k, v in (scale.items() if isinstance(scale, dict) else ())
        if k in axes and isinstance(v, int | float) and np.isfinite(v) and v > 0
    }
    return Image(data, axes, scale, path, meta)


def _layout(page, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]] | None:
    """``(axes, shape)`` stored in :data:`LAYOUT_TAG` when they describe pixels of
    ``shape`` with singleton axes put back (anything else is ignored)."""
    tag = page.tags.get(LAYOUT_TAG)
    if tag is None:
        return None
    try:
        record = json.loads(tag.value)
        axes, full = str(record["axes"]), tuple(int(n) for n in record["shape"])
        axes = normalize_axes(axes, len(full))
    except (ValueError, TypeError, KeyError, InputError):
        return None
    if tuple(n for n in full if n != 1) != tuple(n for n in shape if n != 1):
        return None
    return axes, full


def _layout_tag(shape: tuple[int, ...], axes: str) -> tuple:
    text = json.dumps({"axes": axes, "shape": [int(n) for n in shape]})
    return (LAYOUT_TAG, "s", 0, text, True)


def _memmap_series(path: Path, tif: tifffile.TiffFile, series) -> np.ndarray | None:
    """Map the pixels if they lie contiguous and uncompressed; None if they don't."""
    native = "<" if sys.byteorder == "little" else ">"
    if series.dataoffset is None or (series.dtype.itemsize > 1 and tif.byteorder != native):
        return None
    end, size = series.dataoffset + series.nbytes, path.stat().st_size
    if end > size:  # never map past the end of a cut-short file
        why = f"the file is truncated (its pixels need {end} bytes, it has {size})."
        raise ReadError(f"Cannot read {path}: {why} Was it copied completely?")
    offset = series.dataoffset
    return np.memmap(path, dtype=series.dtype, mode="r", offset=offset, shape=series.shape)


def _unit_factor(unit, table: dict[str, float]) -> float | None:
    if not isinstance(unit, str):
        return None
    unit = unit.replace("\\u00B5", "µ").replace("\u03bc", "µ").strip().lower()  # ImageJ escapes µ
    return table.get(unit)


def _imagej_scale(ij: dict, page) -> dict[str, float]:
    scale: dict[str, float] = {}
    factor = _unit_factor(ij.get("unit"), _UM_PER_UNIT)
    if factor is not None:
        for letter, name in (("X", "XResolution"), ("Y", "YResolution")):
            tag = page.tags.get(name)
            # A resolution of exactly 1 is what TIFF writers put when nothing is calibrated.
            if tag is not None and tag.value[0] and tag.value[0] != tag.value[1]:
                scale[letter] = tag.value[1] / tag.value[0] * factor
        if "spacing" in ij:
            scale["Z"] = float(ij["spacing"]) * factor
    seconds = _unit_factor(ij.get("tunit", "sec"), _S_PER_UNIT)
    if "finterval" in ij and seconds is not None:
        scale["T"] = float(ij["finterval"]) * seconds
    return scale


def _imagej_display(ij: dict) -> dict:
    """ImageJ's display settings: ``mode``, per-channel ``ranges`` and ``luts``."""
    display: dict = {}
    if isinstance(ij.get("mode"), str):
        display["mode"] = ij["mode"]
    ranges = ij.get("Ranges")
    if isinstance(ranges, list | tuple) and len(ranges) >= 2 and len(ranges) % 2 == 0:
        display["ranges"] = [
            [float(ranges[i]), float(ranges[i + 1])] for i in range(0, len(ranges), 2)
        ]
    elif isinstance(ij.get("min"), int | float) and isinstance(ij.get("max"), int | float):
        display["ranges"] = [[float(ij["min"]), float(ij["max"])]]
    luts = ij.get("LUTs")
    if isinstance(luts, list) and luts and all(np.shape(t) == (3, 256) for t in luts):
        display["luts"] = [np.asarray(t, np.uint8) for t in luts]
    return _checked_channels(None, display).get("display", {})


def _imagej_channel_names(ij: dict) -> list[str] | None:
    """Channel names from ImageJ slice labels that name each plane by its channel (as
    :func:`write_image` writes them, and Fiji shows them); None for other labels."""
    labels, n = ij.get("Labels"), ij.get("channels")
    if not isinstance(labels, list) or not isinstance(n, int) or n < 2 or len(labels) % n:
        return None
    names = labels[:n]
    if not all(isinstance(x, str) and x for x in names):
        return None
    return list(names) if all(labels[k] == names[k % n] for k in range(len(labels))) else None


def _checked_channels(names, display) -> dict:
    """``channel_names`` and ``display`` as :class:`Image` holds them, dropping what is
    malformed (they come from files)."""
    out: dict = {}
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        out["channel_names"] = list(names)
    if isinstance(display, dict):
        clean: dict = {}
        if isinstance(display.get("mode"), str):
            clean["mode"] = display["mode"]
        ranges = display.get("ranges")
        with contextlib.suppress(TypeError, ValueError):
            pairs = [[float(lo), float(hi)] for lo, hi in ranges]
            if pairs and all(np.isfinite(p).all() for p in pairs):
                clean["ranges"] = pairs
        luts = display.get("luts")
        with contextlib.suppress(TypeError, ValueError):
            tables = [np.asarray(t, np.uint8) for t in luts]
            if tables and all(t.shape == (3, 256) for t in tables):
                clean["luts"] = tables
        if clean:
            out["display"] = clean
    return out


def _channel_count(shape: tuple[int, ...], axes: str) -> int:
    return int(shape[axes.index("C")]) if "C" in axes else 1


def _channel_facts(source: dict | None, shape: tuple[int, ...], axes: str) -> dict:
    """The ``channel_names`` and ``display`` of ``source`` that fit an image of ``shape``
    and ``axes`` (one entry per channel); the rest is left out, not guessed."""
    facts = _checked_channels((source or {}).get("channel_names"), (source or {}).get("display"))
    n = _channel_count(shape, axes)
    if len(facts.get("channel_names", [])) != n:
        facts.pop("channel_names", None)
    display = facts.get("display", {})
    for key in ("ranges", "luts"):
        if key in display and len(display[key]) != n:
            del display[key]
    if not display:
        facts.pop("display", None)
    return facts


def _ome_scale(xml: str, meta: dict) -> dict[str, float]:
    try:
        pixels = next(e for e in ET.fromstring(xml).iter() if e.tag.split("}")[-1] == "Pixels")
    except (ET.ParseError, StopIteration):  # broken OME-XML: the pixels are still usable
        return {}
    scale: dict[str, float] = {}
    for letter in "XYZ":
        factor = _unit_factor(pixels.get(f"PhysicalSize{letter}Unit", "µm"), _UM_PER_UNIT)
        if pixels.get(f"PhysicalSize{letter}") and factor:
            scale[letter] = float(pixels.get(f"PhysicalSize{letter}")) * factor
    seconds = _unit_factor(pixels.get("TimeIncrementUnit", "s"), _S_PER_UNIT)
    if pixels.get("TimeIncrement") and seconds:
        scale["T"] = float(pixels.get("TimeIncrement")) * seconds
    names = [c.get("Name") for c in pixels if c.tag.split("}")[-1] == "Channel"]
    if names and all(names):
        meta["channel_names"] = names
    return scale


def _read_png(path: Path) -> Image:
    with PILImage.open(path) as im:
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:  # an animated PNG: reading it would keep only its first frame
            raise InputError(
                f"Cannot read {path}: it is an animated PNG of {frames} frames, and only "
                "the first would be read; save the frames as a TIFF stack instead."
            )
        if im.mode == "1":
            im = im.convert("L")
        data = np.array(im)
        if im.mode in ("P", "PA"):
            _check_palette_ramp(
                path, im.getpalette() or [], data if im.mode == "P" else data[..., 0]
            )
        text = getattr(im, "text", {}).get(_PNG_KEY)
        alpha = im.mode in ("LA", "PA", "RGBA", "La", "RGBa")
    if data.dtype == np.int32:  # older Pillow opens 16-bit PNGs as 32-bit integers
        data = data.astype(np.uint16)
    meta: dict = {"source_format": "png"}
    if alpha and data.ndim == 3:
        meta["alpha_channel"] = data.shape[-1] - 1
    if text:
        with contextlib.suppress(ValueError):
            meta["embedded"] = json.loads(text)
    return Image(data, "YX" if data.ndim == 2 else "YXC", {}, path, meta)


def _check_palette_ramp(path: Path, palette: list[int], index: np.ndarray) -> None:
    """Accept a palette (indexed-colour) image whose index is its intensity: the colours
    of the indices it uses lie on one ramp from black (grey, or a single colour as Fiji
    saves an 8-bit image with a LUT); refuse any other palette, whose indices are not
    intensities (converting it to RGB would hide the intensities in colours)."""
    lut = np.asarray(palette, np.float64).reshape(-1, 3)
    used = np.unique(index)
    used = used[used < len(lut)]
    colours = lut[used]
    t = used.astype(np.float64)
    colour = (t @ colours) / (t @ t) if t @ t > 0 else np.zeros(3)
    error = np.abs(colours - t[:, None] * colour[None, :]).max() if used.size else 0.0
    if used.size == len(np.unique(index)) and (colour.max() > 0 or t @ t == 0) and error <= 1.0:
        return
    raise InputError(
        f"Cannot read {path}: it is an indexed-colour (palette) image whose colours are not "
        "one grey or single-colour ramp, so its pixel values are not intensities; save it "
        "as 8-bit grayscale (in Fiji: Image > Lookup Tables > Grays, then save) and try again."
    )


def _read_npy(path: Path) -> Image:
    with open(path, "rb") as fh:  # look at the header first: never unpickle anything
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0
        if version != (1, 0):
            read_header = np.lib.format.read_array_header_2_0
        dtype = read_header(fh)[2]
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ReadError(f"Cannot read {path}: it holds {dtype} (object) data, not a numeric image.")
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    return Image(data, infer_axes(data.shape), {}, path, {"source_format": "npy"})


# --------------------------------------------------------------------------- writing
def write_image(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    axes: str,
    scale: dict | None = None,
    metadata: dict | None = None,
    source_metadata: dict | None = None,
) -> Path:
    """Write an image atomically, keeping its dtype, axes and pixel sizes.

    ``.tif``/``.tiff``: an ImageJ hyperstack when ImageJ can hold the image (uint8, uint16
    or float32, axes in ``TZCYX`` order), else a tifffile "shaped" TIFF whose JSON
    description keeps axes and sizes.  ``.ome.tif``/``.ome.tiff``: OME-TIFF (Y and X last).
    ``.png``: 2D uint8/uint16 only.  ``.npy``: the bare array.  PNG and NPY keep no sizes.

    Parameters
    ----------
    path : str or path-like
        Target file in an existing folder; an existing file is replaced only once the new
        one is completely written, and a failed write leaves no file behind.
    data : numpy.ndarray
        Pixels, written with their own dtype.
    axes : str
        One letter per dimension of ``data`` (see :func:`normalize_axes`).
    scale : dict, optional
        Pixel size per axis letter (µm; seconds for T); letters not in ``axes`` are ignored.
    metadata : dict, optional
        JSON-able facts such as provenance, embedded as the module notes describe.
    source_metadata : dict, optional
        ``Image.metadata`` of the input: its ``channel_names`` and ``display`` are
        written where the format holds them and they fit (one per channel).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        If the suffix, dtype, axes, scale or metadata cannot be written.
    """
    path = Path(path)
    if _suffix(path) in ZARR_SUFFIXES:
        return _write_zarr_image(path, data, axes, scale, metadata, source_metadata)
    data = np.asarray(data)
    if not data.dtype.isnative:  # compare and store dtypes in the machine's byte order
        data = data.astype(data.dtype.newbyteorder("="))
    axes = normalize_axes(axes, data.ndim, shape=data.shape)
    suffix = _suffix(path)
    problem = _cannot_write(suffix, data.dtype, axes)
    if problem:
        raise InputError(f"Cannot write {path}: {problem}")
    scale = _clean_scale(scale, axes)
    text = _to_json(metadata, indent=None) if metadata else None
    if suffix == ".png":
        atomic_write(path, lambda fh: _write_png(fh, data, text))
    elif suffix == ".npy":
        atomic_write(path, lambda fh: np.save(fh, data, allow_pickle=False))
    else:
        facts = _channel_facts(source_metadata, data.shape, axes)
        kwargs = _tiff_options(data, axes, scale, ome=suffix.startswith(".ome"), facts=facts)
        kwargs["extratags"] = [_layout_tag(data.shape, axes)]
        if text:
            kwargs["extratags"].append((METADATA_TAG, "s", 0, text, True))
        atomic_write(path, lambda fh: tifffile.imwrite(fh, data, **kwargs))
    return path


TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff")


def tiff_page_shape(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """The shape of one TIFF page of an image :func:`write_tiff_planes` writes: ``(Y, X)``,
    or ``(Y, X, C)`` when the channels are the last axis (stored side by side)."""
    return tuple(shape[-3:]) if axes.endswith("C") and len(shape) > 2 else tuple(shape[-2:])


def write_tiff_planes(
    path: str | os.PathLike,
    pages: Iterable[np.ndarray],
    *,
    shape: tuple[int, ...],
    dtype,
    axes: str,
    scale: dict | None = None,
    metadata: dict | None = None,
    final_metadata: Callable[[], dict] | None = None,
    source_metadata: dict | None = None,
) -> Path:
    """Write a TIFF page by page as ``pages`` yields them, atomically, as :func:`write_image`.

    Only one page need exist at a time, so an image larger than memory can be written as
    it is computed. The file is the one :func:`write_image` writes for an array of
    ``shape`` and ``dtype`` (ImageJ, OME or shaped TIFF, with ``axes`` and ``scale``).

    Parameters
    ----------
    path : str or path-like
        A ``.tif``/``.tiff``/``.ome.tif``/``.ome.tiff`` file in an existing folder. Until
        the last page is written the data go to a hidden part file; an error (also one
        raised by ``pages``, or Ctrl-C) leaves no file behind.
    pages : iterable of numpy.ndarray
        The pages in the C order of ``shape``, each of :func:`tiff_page_shape`.
    shape, dtype : the whole image's
    axes, scale, metadata, source_metadata : as for :func:`write_image`
    final_metadata : callable, optional
        Called once after the last page; what it returns replaces ``metadata`` in the
        file (for example provenance that states how long the computation took).
    """
    path = Path(path)
    suffix = _suffix(path)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype).newbyteorder("=")
    axes = normalize_axes(axes, len(shape), shape=shape)
    problem = _unknown_type(suffix) if suffix not in TIFF_SUFFIXES else None
    problem = problem or _cannot_write(suffix, dtype, axes)
    if problem:
        raise InputError(f"Cannot write {path}: {problem}")
    like = np.broadcast_to(np.zeros((), dtype), shape)  # shape and dtype, no memory
    facts = _channel_facts(source_metadata, shape, axes)
    kwargs = _tiff_options(
        like, axes, _clean_scale(scale, axes), ome=suffix.startswith(".ome"), facts=facts
    )
    text = _to_json(metadata, indent=None) if metadata else None
    kwargs["extratags"] = [_layout_tag(shape, axes)]
    if text:
        kwargs["extratags"].append((METADATA_TAG, "s", 0, text, True))

    def write(fh) -> None:
        tifffile.imwrite(fh, iter(pages), shape=shape, dtype=dtype, **kwargs)
        if final_metadata is None:
            return
        final = _to_json(final_metadata(), indent=None)
        fh.flush()
        with tifffile.TiffFile(fh.name, mode="r+b") as tif:
            tag = tif.pages[0].tags.get(METADATA_TAG)
            if tag is None:
                raise InputError(f"Cannot write {path}: give metadata to replace at the end.")
            tag.overwrite(final)  # in place, or appended when longer

    atomic_write(path, write)
    return path


def _write_zarr_image(
    path: Path, data, axes: str, scale: dict | None, metadata: dict | None, source: dict | None
):
    from .io_zarr import write_zarr

    if not hasattr(data, "dask"):  # a dask array stays lazy: written as it is computed
        data = np.asarray(data)
    axes = normalize_axes(axes, data.ndim, shape=data.shape)
    if np.dtype(data.dtype).kind not in "biuf":
        raise InputError(f"Cannot write {path}: {data.dtype} is not a numeric image dtype.")
    meta = json.loads(_to_json(metadata, indent=None)) if metadata else None
    facts = _channel_facts(source, data.shape, axes)
    write_zarr(path, data, axes, _clean_scale(scale, axes), meta, facts)
    return path


def _cannot_write(suffix: str, dtype: np.dtype, axes: str) -> str | None:
    """Why the format of ``suffix`` cannot hold such an image, or None if it can."""
    if suffix not in SUPPORTED_SUFFIXES:
        return _unknown_type(suffix)
    if dtype.kind not in "biuf":
        return f"{dtype} is not a numeric image dtype."
    if suffix == ".png" and (axes != "YX" or dtype.name not in ("uint8", "uint16")):
        return f"PNG holds only 2D (YX) uint8 or uint16 images, not {axes} {dtype}; use .tif."
    if suffix.startswith(".ome") and not axes.endswith("YX"):
        return f"OME-TIFF needs Y and X as the last axes, not {axes!r}; write a plain .tif."
    if suffix.startswith(".ome") and dtype.name not in _OME_DTYPES:
        return f"OME-TIFF cannot hold {dtype} pixels; write a plain .tif."
    return None


def _tiff_options(
    data: np.ndarray, axes: str, scale: dict[str, float], *, ome: bool, facts: dict | None = None
) -> dict:
    """tifffile.imwrite keywords that make the file carry ``axes``, ``scale`` and the
    channel facts (:func:`_channel_facts`) the format can hold."""
    facts = facts or {}
    display = facts.get("display", {})
    if ome:
        meta: dict = {"axes": axes}
        if "channel_names" in facts:
            meta["Channel"] = {"Name": facts["channel_names"]}
        for letter in "XYZ":
            if letter in scale:
                meta[f"PhysicalSize{letter}"] = scale[letter]
                meta[f"PhysicalSize{letter}Unit"] = "µm"
        if "T" in scale:
            meta.update(TimeIncrement=scale["T"], TimeIncrementUnit="s")
        return {"ome": True, "photometric": "minisblack", "metadata": meta}
    if data.dtype in _IMAGEJ_DTYPES and "".join(c for c in AXES_LETTERS if c in axes) == axes:
        meta = {"axes": axes}
        if "Z" in scale:
            meta["spacing"] = scale["Z"]
        if scale.keys() & set("XYZ"):
            meta["unit"] = "um"  # ImageJ shows 'um' as µm; one unit serves X, Y and Z
        if "T" in scale:
            meta["finterval"] = scale["T"]
        if "mode" in display:
            meta["mode"] = display["mode"]
        if "ranges" in display:
            meta["Ranges"] = tuple(v for pair in display["ranges"] for v in pair)
            if len(display["ranges"]) == 1:
                meta["min"], meta["max"] = display["ranges"][0]
        if "luts" in display:
            meta["LUTs"] = [np.asarray(t, np.uint8) for t in display["luts"]]
        if "channel_names" in facts and "C" in axes and data.shape[axes.index("C")] > 1:
            # ImageJ has no channel names: each plane's label names its channel (the
            # channels are the innermost of T, Z, C in ImageJ's plane order).
            planes = int(np.prod([n for a, n in zip(axes, data.shape, strict=True) if a in "TZC"]))
            names = facts["channel_names"]
            meta["Labels"] = [names[k % len(names)] for k in range(planes)]
        options: dict = {"imagej": True, "metadata": meta}
        if "X" in scale and "Y" in scale:
            options["resolution"] = (1.0 / scale["X"], 1.0 / scale["Y"])
        return options
    # Any other order or dtype: tifffile's JSON description keeps the axes and the scale.
    meta = {"axes": axes, "scale": scale}
    if "channel_names" in facts:
        meta["channel_names"] = facts["channel_names"]
    if display:
        shown = {k: v for k, v in display.items() if k != "luts"}
        if "luts" in display:
            shown["luts"] = [np.asarray(t).tolist() for t in display["luts"]]
        meta["display"] = shown
    options = {"ome": False, "photometric": "minisblack", "metadata": meta}
    if axes.endswith("C") and data.shape[-1] > 1 and data.dtype != bool:
        # (tifffile packs 1-bit samples lossily; one channel is a plain page)
        # A pixel's channels side by side, one page per plane; 3 or 4 as RGB(A), so that
        # other viewers show a colour image rather than a stack of 3-pixel-wide strips.
        options["planarconfig"] = "contig"
        if data.shape[-1] in (3, 4) and data.dtype.kind in "uf":
            options["photometric"] = "rgb"
    return options


def _write_png(fh, data: np.ndarray, text: str | None) -> None:
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text(_PNG_KEY, text)
    PILImage.fromarray(data).save(fh, format="PNG", pnginfo=info)


def _clean_scale(scale: dict | None, axes: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (scale or {}).items():
        letter = str(key).upper()
        if letter not in AXES_LETTERS:
            raise InputError(f"scale has an unknown axis {key!r}; use T, Z, C, Y or X.")
        size = value if isinstance(value, int | float | np.number) else float("nan")
        if not (np.isfinite(size) and size > 0):
            raise InputError(f"The pixel size of axis {letter} must be positive, not {value!r}.")
        if letter in axes:  # e.g. a volume's Z size passed along with one of its planes
            out[letter] = float(size)
    return out


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically (e.g. a provenance sidecar).

    Parameters
    ----------
    path : str or path-like
        Target file in an existing folder.
    obj : object
        JSON-able data; NumPy scalars and arrays and paths are converted.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        If ``obj`` cannot be expressed as JSON (nothing is written then).
    """
    path = Path(path)
    payload = (_to_json(obj, indent=2) + "\n").encode("utf-8")
    atomic_write(path, lambda fh: fh.write(payload))
    return path


def _to_json(obj, *, indent: int | None) -> str:
    def convert(value):
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")

    try:  # ASCII keeps the text valid in a TIFF ASCII tag
        return json.dumps(obj, indent=indent, default=convert, ensure_ascii=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The metadata cannot be stored as JSON: {exc}.") from exc

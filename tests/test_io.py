"""Tests of napari_denoise.io: axes, pixel sizes, real files, errors and atomic writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile

from napari_denoise.errors import InputError, ReadError, WriteError
from napari_denoise.io import (
    SUPPORTED_SUFFIXES,
    cast_to_dtype,
    infer_axes,
    normalize_axes,
    read_image,
    write_image,
    write_json,
)

STACKS = "BioImageAnalysisNotebooks_stacks"
CONVALLARIA = "PN2V_Convallaria_frame/20190520_tl_25um_50msec_05pc_488_130EM_Conv0000.tif"
W2S = "W2S_8bit_subset/images_avg1_8bit/input_avg1_001_0.tif"
MYXO = "Myxococcus_bacteria_16bit_pair/Noisy_images_avg1_16bit.png"

# Every layout the engine may meet, with a small shape; ZTYX and XY are orders ImageJ can't hold.
LAYOUTS = {
    "YX": (12, 10),
    "ZYX": (3, 12, 10),
    "TYX": (4, 12, 10),
    "CYX": (2, 12, 10),
    "YXC": (12, 10, 3),
    "TZYX": (2, 3, 12, 10),
    "TCYX": (2, 3, 12, 10),
    "TZCYX": (2, 3, 2, 12, 10),
    "ZTYX": (3, 2, 12, 10),
    "XY": (10, 12),
}
SCALE = {"T": 1.5, "Z": 0.7, "Y": 0.21, "X": 0.13}
DTYPES = [np.uint8, np.uint16, np.float32]


def _sample(shape, dtype, seed=0) -> np.ndarray:
    """Random values over the dtype's whole range, so clipping or scaling would show."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 1000, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _truncate(src, dst, fraction=0.5):
    payload = src.read_bytes()
    dst.write_bytes(payload[: int(len(payload) * fraction)])
    return dst


# --------------------------------------------------------------------------- round trips
# OME-TIFF needs Y and X last; its refusal of other orders is tested separately.
FORMATS = [(".tif", a) for a in LAYOUTS] + [(".ome.tif", a) for a in LAYOUTS if a.endswith("YX")]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("suffix", "axes"), FORMATS)
def test_round_trip_keeps_data_axes_and_pixel_size(tmp_path, axes, dtype, suffix):
    data = _sample(LAYOUTS[axes], dtype)
    provenance = {"method": "nlm", "sigma": np.float32(0.5), "steps": [1, 2]}
    path = write_image(tmp_path / f"img{suffix}", data, axes=axes, scale=SCALE, metadata=provenance)

    image = read_image(path)

    assert image.data.dtype == data.dtype
    np.testing.assert_array_equal(np.asarray(image.data), data)
    assert image.axes == axes
    expected = {k: v for k, v in SCALE.items() if k in axes}
    assert image.scale == pytest.approx(expected, rel=1e-6)
    assert image.metadata["embedded"] == {"method": "nlm", "sigma": 0.5, "steps": [1, 2]}
    assert image.path == path
    assert isinstance(image.data, np.memmap)  # written uncompressed, so read without a copy
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.parametrize("axes", ["YX", "ZYX", "TZCYX", "CYX"])
def test_imagej_layouts_stay_readable_as_imagej(tmp_path, axes):
    data = _sample(LAYOUTS[axes], np.uint16)
    path = write_image(tmp_path / "a.tif", data, axes=axes, scale=SCALE, metadata={"k": "é"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej  # the embedded JSON must not break ImageJ's own description
        assert tif.series[0].axes == axes
        assert tif.imagej_metadata["unit"] == "um"
    assert read_image(path).metadata["source_format"] == "imagej-tiff"


def test_ome_output_is_valid_ome(tmp_path):
    data = _sample((3, 2, 12, 10), np.uint16)
    path = write_image(tmp_path / "a.ome.tiff", data, axes="ZTYX", scale=SCALE)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        assert tif.series[0].axes == "ZTYX"
        assert 'PhysicalSizeX="0.13"' in tif.ome_metadata
    assert read_image(path).metadata["source_format"] == "ome-tiff"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.int16, bool])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_channels_last_round_trip_and_rgb_pages(tmp_path, dtype, channels):
    data = _sample((4, 12, 10, channels), np.uint8).astype(dtype)
    path = write_image(tmp_path / "a.tif", data, axes="ZYXC", scale={"Z": 2.0})
    image = read_image(path)
    assert image.axes == "ZYXC" and image.scale == {"Z": 2.0}
    np.testing.assert_array_equal(np.asarray(image.data), data)
    with tifffile.TiffFile(path) as tif:
        rgb = tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB
    # Other viewers should see colour planes, not stacks of 3-pixel-wide strips.
    assert rgb == (channels in (3, 4) and np.dtype(dtype).kind in "uf")


def test_non_imagej_order_is_not_written_as_imagej(tmp_path):
    path = write_image(tmp_path / "a.tif", _sample((3, 2, 12, 10), np.uint8), axes="ZTYX")
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
        assert tif.series[0].shape == (3, 2, 12, 10)


def test_partial_scale_is_not_invented(tmp_path):
    path = write_image(
        tmp_path / "a.tif", _sample((3, 12, 10), np.uint8), axes="ZYX", scale={"Z": 2}
    )
    image = read_image(path)
    assert image.scale == {"Z": 2.0}  # no made-up X/Y size from TIFF's default resolution
    assert image.metadata["units"] == {"Z": "µm"}


def test_scale_of_absent_axes_is_dropped_and_bad_scale_refused(tmp_path):
    path = write_image(tmp_path / "a.tif", _sample((12, 10), np.uint8), axes="YX", scale=SCALE)
    assert read_image(path).scale == pytest.approx({"X": 0.13, "Y": 0.21})
    with pytest.raises(InputError, match="positive"):
        write_image(tmp_path / "b.tif", np.zeros((4, 4), np.uint8), axes="YX", scale={"X": -1})
    with pytest.raises(InputError, match="unknown axis"):
        write_image(tmp_path / "b.tif", np.zeros((4, 4), np.uint8), axes="YX", scale={"Q": 1})
    assert not (tmp_path / "b.tif").exists()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(tmp_path, dtype):
    data = _sample((20, 30), dtype)
    path = write_image(tmp_path / "a.png", data, axes="YX", metadata={"a": 1})
    image = read_image(path)
    assert image.data.dtype == dtype and image.axes == "YX"
    np.testing.assert_array_equal(image.data, data)
    assert image.metadata["embedded"] == {"a": 1}


@pytest.mark.parametrize(
    ("data", "axes"),
    [(np.zeros((3, 8, 8), np.uint8), "ZYX"), (np.zeros((8, 8), np.float32), "YX")],
)
def test_png_refuses_what_it_cannot_hold(tmp_path, data, axes):
    with pytest.raises(InputError, match="PNG"):
        write_image(tmp_path / "a.png", data, axes=axes)
    assert list(tmp_path.iterdir()) == []


def test_npy_round_trip_is_memmap_and_axes_can_be_overridden(tmp_path):
    data = _sample((3, 12, 10), np.float32)
    path = write_image(tmp_path / "a.npy", data, axes="ZYX")
    image = read_image(path)
    assert isinstance(image.data, np.memmap) and not image.data.flags.writeable
    np.testing.assert_array_equal(image.data, data)
    assert image.axes == "TYX"  # NPY carries no axes: the unlabelled-stack rule applies
    assert read_image(path, axes="zyx").axes == "ZYX"


def test_ome_refuses_axes_and_dtypes_it_cannot_hold(tmp_path):
    with pytest.raises(InputError, match="OME-TIFF"):
        write_image(tmp_path / "a.ome.tif", np.zeros((4, 5), np.uint8), axes="XY")
    with pytest.raises(InputError, match="int64"):
        write_image(tmp_path / "a.ome.tif", np.zeros((4, 5), np.int64), axes="YX")
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_unknown_suffix_and_non_numeric(tmp_path):
    with pytest.raises(InputError, match=r"\.tif"):
        write_image(tmp_path / "a.jpg", np.zeros((4, 4), np.uint8), axes="YX")
    with pytest.raises(InputError, match="numeric"):
        write_image(tmp_path / "a.tif", np.array([["a"]]), axes="YX")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- real files
@pytest.mark.parametrize(
    ("name", "shape", "dtype", "axes"),
    [
        ("cancer_cell_migration_crop.tif", (48, 130, 130), np.uint16, "TYX"),
        ("membrane_2d_timelapse.tif", (5, 256, 256), np.uint16, "TYX"),
        ("Bead_Image1_crop.tif", (41, 150, 150), np.uint8, "ZYX"),
        ("hela-cells.tif", (512, 672, 3), np.uint16, "YXC"),
    ],
)
def test_real_stacks(shared_data, name, shape, dtype, axes):
    path = shared_data / STACKS / name
    image = read_image(path)
    assert image.data.shape == shape and image.data.dtype == dtype
    assert image.axes == axes
    np.testing.assert_array_equal(np.asarray(image.data), tifffile.imread(path))


def test_real_bead_stack_keeps_pixel_sizes(shared_data):
    image = read_image(shared_data / STACKS / "Bead_Image1_crop.tif")
    assert image.scale["Z"] == pytest.approx(0.125)
    assert image.scale["X"] == pytest.approx(1 / 44.460534)  # ImageJ: 44.46 pixels per µm
    assert image.metadata["units"]["Z"] == "µm"
    assert "Z" not in read_image(image.path, axes="TYX").scale  # Z size means nothing for T


def test_real_hela_has_xy_but_no_z_size(shared_data):
    image = read_image(shared_data / STACKS / "hela-cells.tif")
    assert image.scale == pytest.approx({"X": 1 / 19.420064, "Y": 1 / 19.420064})


def test_uncompressed_real_tiffs_are_read_only_memmaps(shared_data):
    for name in ("cancer_cell_migration_crop.tif", "Bead_Image1_crop.tif"):
        data = read_image(shared_data / STACKS / name).data
        assert isinstance(data, np.memmap) and not data.flags.writeable


def test_real_imagej_2d_files(shared_data):
    w2s = read_image(shared_data / W2S)
    assert (w2s.data.shape, w2s.data.dtype, w2s.axes) == ((512, 512), np.uint8, "YX")
    assert w2s.metadata["source_format"] == "imagej-tiff"
    conv = read_image(shared_data / CONVALLARIA)
    assert (conv.data.shape, conv.data.dtype, conv.axes) == ((1024, 1024), np.uint16, "YX")
    assert conv.scale == {}  # calibrated in 'cm' at 1 pixel/cm: not a microscope pixel size


def test_real_pngs(shared_data):
    fmd = read_image(shared_data / "FMD_test_mix" / "raw" / "Confocal_MICE_1.png")
    assert (fmd.data.shape, fmd.data.dtype, fmd.axes) == ((512, 512), np.uint8, "YX")
    myxo = read_image(shared_data / MYXO)
    assert (myxo.data.shape, myxo.data.dtype, myxo.axes) == ((512, 512), np.uint16, "YX")
    assert myxo.data.min() == 111 and myxo.data.max() == 2651  # values from the data README


# --------------------------------------------------------------------------- read errors
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ReadError, match=r"nothere\.tif.*does not exist"):
        read_image(tmp_path / "nothere.tif")
    folder = tmp_path / "stack.tif"
    folder.mkdir()
    with pytest.raises(ReadError, match=r"stack\.tif.*folder"):
        read_image(folder)


def test_unknown_suffix_lists_supported_ones(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff")
    with pytest.raises(ReadError, match=r"photo\.jpg") as err:
        read_image(path)
    assert all(s in str(err.value) for s in SUPPORTED_SUFFIXES)


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif", ".png", ".npy"])
def test_garbage_and_empty_files(tmp_path, suffix):
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not an image at all \x00\x01\x02" * 10)
    with pytest.raises(ReadError, match=re.escape(f"garbage{suffix}")):
        read_image(garbage)
    empty = tmp_path / f"empty{suffix}"
    empty.touch()
    with pytest.raises(ReadError, match=re.escape(f"empty{suffix}") + ".*empty"):
        read_image(empty)


@pytest.mark.parametrize(
    "name",
    [
        f"{STACKS}/cancer_cell_migration_crop.tif",
        f"{STACKS}/Bead_Image1_crop.tif",
        f"{STACKS}/hela-cells.tif",
        CONVALLARIA,
        W2S,
        "FMD_test_mix/raw/Confocal_MICE_1.png",
        MYXO,
    ],
)
def test_real_file_truncated_to_half_raises(shared_data, tmp_path, name):
    source = shared_data / name
    cut = _truncate(source, tmp_path / f"cut{''.join(source.suffixes)}")
    with pytest.raises(ReadError, match=re.escape(cut.name)):
        read_image(cut)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("imagej", [False, True])
def test_truncated_multipage_tiff_raises(tmp_path, compression, imagej):
    # Cut between pages, tifffile alone returns fewer planes instead of failing.
    path = tmp_path / "whole.tif"
    tifffile.imwrite(path, _sample((20, 64, 64), np.uint16), imagej=imagej, compression=compression)
    with pytest.raises(ReadError, match=r"cut\.tif"):
        read_image(_truncate(path, tmp_path / "cut.tif"))


def test_truncated_npy_and_pickled_npy_raise(tmp_path):
    path = write_image(tmp_path / "a.npy", np.zeros((64, 64)), axes="YX")
    with pytest.raises(ReadError, match=r"cut\.npy"):
        read_image(_truncate(path, tmp_path / "cut.npy"))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ReadError, match=r"objects\.npy.*object"):
        read_image(pickled)


# --------------------------------------------------------------------------- axes
@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((64, 48), "YX"),
        ((48, 130, 130), "TYX"),
        ((512, 672, 3), "YXC"),
        ((3, 512, 512), "TYX"),
        ((4, 4, 3), "TYX"),  # a tiny plane with 3 columns is not an RGB image
        ((5, 64, 64, 4), "TYXC"),
        ((5, 6, 64, 64), "TZYX"),
        ((2, 5, 3, 64, 64), "TZCYX"),
    ],
)
def test_infer_axes(shape, axes):
    assert infer_axes(shape) == axes


@pytest.mark.parametrize("shape", [(10,), (), (1, 2, 3, 4, 5, 6)])
def test_infer_axes_refuses_other_ranks(shape):
    with pytest.raises(InputError, match="2 to 5 dimensions"):
        infer_axes(shape)


def test_normalize_axes_accepts_and_canonicalises():
    assert normalize_axes("zyx", 3) == "ZYX"
    assert normalize_axes("YXS", 3) == "YXC"
    assert normalize_axes(" tczyx ", 5) == "TCZYX"


@pytest.mark.parametrize(
    ("axes", "ndim", "message"),
    [
        ("ZYX", 2, "has 3 letters but the image has 2 dimensions"),
        ("YXY", 3, "repeats Y"),
        ("QYX", 3, "'Q'"),
        ("TZC", 3, "Y and X"),
        ("", 2, "0 letters"),
        (("Y", "X"), 2, "string"),
    ],
)
def test_normalize_axes_refuses_bad_strings(axes, ndim, message):
    with pytest.raises(InputError, match=message):
        normalize_axes(axes, ndim)


def test_bad_axes_in_read_and_write(tmp_path, shared_data):
    with pytest.raises(InputError, match=r"shape \(512, 512\)"):
        read_image(shared_data / W2S, axes="ZYX")
    with pytest.raises(InputError):
        write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), axes="ZX")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic writes
def _half_writing_imwrite(fh, data, **kwargs):
    fh.write(b"II*\x00" + b"\x00" * 1000)  # a partial TIFF on disk, then the crash
    raise RuntimeError("disk on fire")


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, exception):
    def crash(fh, data, **kwargs):
        fh.write(b"II*\x00" + b"\x00" * 1000)
        raise exception("stopped half-way")

    monkeypatch.setattr(tifffile, "imwrite", crash)
    with pytest.raises(exception):
        write_image(tmp_path / "out.tif", np.zeros((8, 8), np.uint8), axes="YX")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
    target = write_image(tmp_path / "out.tif", _sample((8, 8), np.uint16), axes="YX")
    before = target.read_bytes()
    monkeypatch.setattr(tifffile, "imwrite", _half_writing_imwrite)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(target, np.zeros((8, 8), np.uint8), axes="YX")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_write_replaces_existing_file_and_needs_existing_folder(tmp_path):
    target = write_image(tmp_path / "out.tif", np.zeros((8, 8), np.uint8), axes="YX")
    write_image(target, np.ones((4, 4), np.uint16), axes="YX")
    assert read_image(target).data.shape == (4, 4)
    with pytest.raises(WriteError, match="does not exist"):
        write_image(tmp_path / "missing" / "out.tif", np.zeros((8, 8), np.uint8), axes="YX")


def test_write_json(tmp_path):
    obj = {"method": "bm3d", "sigma": np.float64(0.1), "shape": np.array([2, 3]), "µ": "ok"}
    path = write_json(tmp_path / "run.json", obj)
    assert json.loads(path.read_text("utf-8")) == {
        "method": "bm3d",
        "sigma": 0.1,
        "shape": [2, 3],
        "µ": "ok",
    }
    assert path.read_text("utf-8").startswith('{\n  "')  # indented for people to read
    with pytest.raises(InputError, match="JSON"):
        write_json(tmp_path / "bad.json", {"f": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_unsupported_dtype_for_metadata_is_refused_before_writing(tmp_path):
    with pytest.raises(InputError, match="JSON"):
        write_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint8), axes="YX", metadata={1j: 2})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- dtypes
def test_cast_to_uint8_rounds_half_to_even_and_clips():
    result = cast_to_dtype(np.array([-3.2, 300.6, 2.5, 3.5, 127.49, np.nan], np.float32), np.uint8)
    assert result.dtype == np.uint8
    assert result.tolist() == [0, 255, 2, 4, 127, 0]


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([-40000.7, 40000.0, -0.5], np.int16, [-32768, 32767, 0]),
        ([1e10, -1e10, np.inf], np.uint16, [65535, 0, 65535]),
        ([4.3e9], np.uint32, None),  # float32 can't hold 2**32-1: must not wrap to 0
    ],
)
def test_cast_to_integer_never_wraps(values, dtype, expected):
    result = cast_to_dtype(np.array(values, np.float32), dtype)
    assert result.dtype == dtype
    if expected is None:
        assert result[0] > 4_000_000_000
    else:
        assert result.tolist() == expected


def test_cast_between_integers_and_to_float():
    assert cast_to_dtype(np.array([-5, 300, 7], np.int64), np.uint8).tolist() == [0, 255, 7]
    assert cast_to_dtype(np.array([70000], np.uint32), np.int16).tolist() == [32767]
    floats = np.array([1.25, -2.5], np.float64)
    as_f32 = cast_to_dtype(floats, np.float32)
    assert as_f32.dtype == np.float32 and as_f32.tolist() == [1.25, -2.5]

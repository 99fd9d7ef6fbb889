"""Zarr folders: lazy reading (plain arrays and OME-Zarr), atomic OME-Zarr writing, CLI."""

import json

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

import napari_denoise as nd  # noqa: E402
from napari_denoise.cli import main  # noqa: E402
from napari_denoise.errors import InputError, ReadError, WriteError  # noqa: E402
from napari_denoise.io_zarr import write_zarr  # noqa: E402


@pytest.fixture
def stack():
    return np.random.default_rng(0).poisson(30, (4, 48, 40)).astype(np.uint16)


def test_round_trip_keeps_pixels_axes_sizes_and_metadata_and_reads_lazily(tmp_path, stack):
    path = tmp_path / "movie.zarr"
    scale = {"T": 2.0, "Y": 0.1, "X": 0.1}
    nd.write_image(path, stack, axes="TYX", scale=scale, metadata={"method": "test"})
    image = nd.read_image(path)
    assert isinstance(image.data, da.Array)  # nothing is read until it is used
    assert image.axes == "TYX" and image.scale == scale
    assert image.metadata["embedded"] == {"method": "test"}
    np.testing.assert_array_equal(image.data.compute(), stack)
    ngff = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert [a["name"] for a in ngff["axes"]] == ["t", "y", "x"]
    assert ngff["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.1, 0.1]
    assert zarr.open_array(str(path / "0"), mode="r").chunks == (1, 48, 40)  # a plane a chunk


def test_axes_are_written_in_ngff_order(tmp_path, stack):
    path = tmp_path / "channels.ome.zarr"
    yxc = np.moveaxis(stack[:3], 0, -1)
    nd.write_image(path, yxc, axes="YXC")
    group = zarr.open_group(str(path), mode="r")  # on disk: NGFF's order, for every reader
    assert [a["name"] for a in group.attrs["multiscales"][0]["axes"]] == ["c", "y", "x"]
    np.testing.assert_array_equal(group["0"][:], stack[:3])
    image = nd.read_image(path)  # read back here as it was written: YXC
    assert image.axes == "YXC"
    np.testing.assert_array_equal(image.data.compute(), yxc)


def test_a_plain_zarr_array_is_read_with_inferred_axes(tmp_path, stack):
    path = tmp_path / "plain.zarr"
    arr = zarr.open_array(str(path), mode="w", shape=stack.shape, dtype=stack.dtype)
    arr[:] = stack
    image = nd.read_image(path)
    assert image.axes == "TYX" and image.scale == {}
    np.testing.assert_array_equal(image.data.compute(), stack)


def test_folders_that_are_not_images_get_clear_messages(tmp_path, stack):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ReadError, match="not a Zarr array or group"):
        nd.read_image(tmp_path / "empty.zarr")
    (tmp_path / "file.zarr").write_bytes(b"no")
    with pytest.raises(ReadError, match="a Zarr image is a folder"):
        nd.read_image(tmp_path / "file.zarr")
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a", shape=(8, 8), dtype="u1")
    group.create_array("b", shape=(8, 8), dtype="u1")
    with pytest.raises(ReadError, match="holds 2 arrays"):
        nd.read_image(tmp_path / "two.zarr")


def test_a_failed_write_leaves_nothing_and_keeps_the_old_image(tmp_path, stack, monkeypatch):
    path = tmp_path / "out.zarr"
    nd.write_image(path, stack, axes="TYX")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(da, "store", broken)
    with pytest.raises(WriteError, match="No space left"):
        nd.write_image(path, stack[:2] * 2, axes="TYX")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # no part left over
    np.testing.assert_array_equal(nd.read_image(path).data.compute(), stack)  # untouched
    monkeypatch.undo()
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "mine.txt").write_text("keep me")
    with pytest.raises(WriteError, match="not a Zarr folder; not replaced"):
        nd.write_image(tmp_path / "notes.zarr", stack, axes="TYX")
    assert (tmp_path / "notes.zarr" / "mine.txt").read_text() == "keep me"


def test_cli_zarr_in_zarr_out_on_dask_matches_the_tiff_run(tmp_path, stack):
    source = tmp_path / "in.zarr"
    nd.write_image(source, stack, axes="TYX")
    lazy_out, tiff_out = tmp_path / "out.zarr", tmp_path / "out.tif"
    base = ["denoise", str(source), "--method", "gaussian", "-q"]
    assert main([*base, "-o", str(lazy_out), "--scheduler", "synchronous"]) == 0
    assert main([*base, "-o", str(tiff_out)]) == 0
    np.testing.assert_array_equal(
        nd.read_image(lazy_out).data.compute(), nd.read_image(tiff_out).data
    )
    assert nd.read_image(lazy_out).metadata["embedded"]["method"] == "gaussian"
    # Several Zarr inputs into a folder: Zarr outputs.
    other = tmp_path / "second.zarr"
    nd.write_image(other, stack[:2], axes="TYX")
    assert (
        main(
            [
                *base[:1],
                str(source),
                str(other),
                "--method",
                "gaussian",
                "-q",
                "-o",
                str(tmp_path / "many"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "many").glob("*.zarr")) == [
        "in_denoised.zarr",
        "second_denoised.zarr",
    ]


def test_a_container_of_ome_zarr_series_opens_each_series_never_only_the_first(tmp_path, stack):
    # bioformats2raw's layout: the root holds series 0, 1, ... each an OME-Zarr image.
    root = tmp_path / "plate.zarr"
    root.mkdir()
    write_zarr(root / "1", stack[:2], "TYX", {}, None)
    write_zarr(root / "0", stack, "TYX", {"X": 0.2, "Y": 0.2}, None)
    zarr.open_group(str(root), mode="a", zarr_format=2).attrs["bioformats2raw.layout"] = 3
    with pytest.raises(InputError, match="2 image series"):
        nd.read_image(root)
    image = nd.read_image(root, series=0)
    assert image.metadata["series"] == "0" and image.axes == "TYX" and image.scale["X"] == 0.2
    np.testing.assert_array_equal(image.data.compute(), stack)
    np.testing.assert_array_equal(nd.read_image(root, series=1).data.compute(), stack[:2])
    out = tmp_path / "out"
    assert main(["denoise", str(root), "-o", str(out), "--method", "gaussian", "-q"]) == 0
    assert sorted(p.name for p in out.glob("*.zarr")) == [
        "plate_series0_denoised.zarr",
        "plate_series1_denoised.zarr",
    ]
    assert nd.read_image(out / "plate_series1_denoised.zarr").data.shape == stack[:2].shape

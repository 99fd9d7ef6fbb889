"""No silent wrong answer, no dropped metadata (issue 22, section 3).

Each class of the sweep has its tests here: the data range of every score, singleton
axes kept through a file run, the metadata an input states (and none invented), and the
run-time settings that were ignored or crashed (device, threads, out of memory, ``-o -``,
torch tensors and xarray arrays given to the API).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import napari_denoise as nd
from napari_denoise.cli import main
from napari_denoise.engine import metrics as M
from napari_denoise.errors import InputError


# --------------------------------------------------------------------------- data range
@pytest.fixture
def pair12(fmd_pair):
    """A real FMD pair put in 12-bit units inside uint16 (values about 331 to 2600)."""
    noisy, gt = fmd_pair
    to12 = lambda a: (331 + 8.9 * a[:128, :128].astype(np.float64)).astype(np.uint16)  # noqa: E731
    return to12(noisy), to12(gt)


def _own_range_psnr(gt, test):
    g, t = gt.astype(np.float64), test.astype(np.float64)
    return 10 * math.log10((g.max() - g.min()) ** 2 / np.mean((g - t) ** 2))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64, "list"])
def test_default_data_range_is_the_ground_truths_own_whatever_the_dtype(pair12, dtype):
    noisy, gt = pair12
    expected = _own_range_psnr(gt, noisy)
    if dtype == "list":
        args = (gt.tolist(), noisy.tolist())
    else:
        args = (gt.astype(dtype), noisy.astype(dtype))
    res = nd.compare(*args)
    assert res["data_range"] == float(gt.max()) - float(gt.min())
    assert res["psnr"] == pytest.approx(expected, abs=1e-9)
    assert M.psnr(*args) == pytest.approx(expected, abs=1e-9)
    # The range-invariant score uses the same range: never above what the fit allows.
    assert res["psnr_ri"] < expected + 3 and res["ssim_ri"] < 0.99
    assert f"{res['data_range']:g}" in res["data_range_note"]
    assert "max - min of the ground truth" in res["data_range_note"]


def test_a_given_data_range_is_used_and_said(pair12):
    noisy, gt = pair12
    res = nd.compare(gt, noisy, data_range=4095)
    g, t = gt.astype(float), noisy.astype(float)
    assert res["psnr"] == pytest.approx(10 * math.log10(4095**2 / np.mean((g - t) ** 2)))
    assert res["data_range_note"] == "data range 4095 (given)"


def test_constant_ground_truth_is_refused_without_a_range_and_ri_is_not_infinite():
    gt = np.full((16, 16), 40, np.uint8)
    test = gt + np.arange(16, dtype=np.uint8)[None, :] % 3
    with pytest.raises(InputError, match=r"constant.*data_range"):
        nd.compare(gt, test)
    with pytest.raises(InputError, match="constant"):
        M.psnr_range_invariant(gt, test, data_range=255)
    res = nd.compare(gt, test, data_range=255)
    assert math.isfinite(res["psnr"])
    assert math.isnan(res["psnr_ri"]) and math.isnan(res["ssim_ri"])  # undefined, not inf


def test_a_constant_plane_of_a_stack_is_left_out_of_the_range_invariant_mean(pair12):
    noisy, gt = pair12
    gt3 = np.stack([gt, np.full_like(gt, 500)])
    noisy3 = np.stack([noisy, noisy])
    res = nd.compare(gt3, noisy3, slice_axes=1)
    assert math.isnan(res["per_slice"][1]["psnr_ri"])
    assert res["psnr_ri"] == pytest.approx(res["per_slice"][0]["psnr_ri"])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda g: (g, g / 255.0), ["uint8", "float64", "same scale"]),  # 0-255 vs 0-1
        (lambda g: (g / 255.0, g), ["float64", "uint8", "same scale"]),
        (lambda g: (g, g.astype(np.uint16) * 257), ["uint8", "uint16"]),  # 8- vs 16-bit
    ],
)
def test_images_in_different_units_are_refused(fmd_pair, make, words):
    gt = fmd_pair[1][:64, :64]
    true, test = make(gt)
    for call in (
        lambda: nd.compare(true, test),
        lambda: nd.compare(true, test, data_range=255),
        lambda: M.ssim(true, test, data_range=255),
    ):
        with pytest.raises(InputError) as info:
            call()
        for word in words:
            assert word in str(info.value)


def test_a_float_result_in_the_inputs_units_is_still_scored(pair12):
    noisy, gt = pair12
    res = nd.compare(gt, noisy.astype(np.float32) + 0.25)
    assert math.isfinite(res["psnr"]) and res["data_range"] == float(gt.max()) - float(gt.min())


def test_cli_compare_uses_and_prints_the_own_range(pair12, tmp_path, capsys):
    import tifffile

    noisy, gt = pair12
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    tifffile.imwrite(tmp_path / "pred.tif", noisy)
    assert main(["compare", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")]) == 0
    out = capsys.readouterr().out
    span = float(gt.max()) - float(gt.min())
    assert f"data range {span:g} (max - min of the ground truth" in out
    assert f"PSNR  {_own_range_psnr(gt, noisy):.2f} dB" in out
    assert main(["compare", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data_range"] == span


def test_cli_compare_refuses_a_constant_ground_truth_in_one_sentence(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "gt.tif", np.full((16, 16), 7, np.uint16))
    tifffile.imwrite(tmp_path / "pred.tif", np.full((16, 16), 9, np.uint16))
    code = main(["compare", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "constant" in err and "Traceback" not in err
    args = ["compare", str(tmp_path / "pred.tif"), str(tmp_path / "gt.tif"), "--json"]
    assert main([*args, "--data-range", "100"]) == 0
    printed = json.loads(capsys.readouterr().out)  # nan is null: valid JSON
    assert printed["psnr_ri"] is None and printed["data_range"] == 100


def test_gui_default_range_is_the_same_rule(pair12):
    pytest.importorskip("qtpy")
    from napari_denoise._qt._scores import data_range_for

    gt = pair12[1]
    assert data_range_for(gt, None) == M.data_range_of(gt)
    assert data_range_for(gt, None)[0] == float(gt.max()) - float(gt.min())
    assert data_range_for(gt, 4095)[0] == 4095


# --------------------------------------------------------------------------- singleton axes
SINGLETONS = [
    ((1, 48, 40), "TYX"),
    ((1, 48, 40), "ZYX"),
    ((1, 48, 40), "CYX"),
    ((48, 40, 1), "YXC"),
    ((1, 1, 48, 40), "TZYX"),
    ((3, 1, 48, 40), "TCYX"),
    ((1, 3, 1, 48, 40), "TZCYX"),
    ((2, 48, 40, 1), "TYXC"),
]


def _real_planes(shape, fmd_pair, dtype=np.uint16):
    """Real FMD pixels in ``shape`` (planes cut from one capture)."""
    noisy = fmd_pair[0].astype(dtype)
    n = int(np.prod(shape))
    return noisy.ravel()[:n].reshape(shape).copy()


@pytest.mark.parametrize(("shape", "axes"), SINGLETONS)
@pytest.mark.parametrize(
    "suffix", [".tif", ".ome.tif", ".zarr", "streamed.tif", "streamed.ome.tif"]
)
@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_a_written_image_reads_back_with_its_singleton_axes(
    tmp_path, fmd_pair, shape, axes, suffix, dtype
):
    from napari_denoise.io import read_image, tiff_page_shape, write_image, write_tiff_planes

    if "ome" in suffix and not axes.endswith("YX"):
        pytest.skip("OME-TIFF holds Y and X last only")
    data = _real_planes(shape, fmd_pair, dtype)
    path = tmp_path / f"out{suffix}"
    scale = {"X": 0.25, "Y": 0.25}
    if suffix.startswith("streamed"):
        pages = iter(data.reshape((-1, *tiff_page_shape(shape, axes))))
        write_tiff_planes(path, pages, shape=shape, dtype=data.dtype, axes=axes, scale=scale)
    else:
        write_image(path, data, axes=axes, scale=scale)
    back = read_image(path)
    assert back.axes == axes and back.data.shape == shape
    np.testing.assert_array_equal(np.asarray(back.data), data)
    assert back.scale == scale


def _singleton_inputs(tmp_path, fmd_pair):
    import tifffile
    import zarr

    data = _real_planes((1, 48, 40), fmd_pair)
    np.save(tmp_path / "one.npy", data)
    tifffile.imwrite(tmp_path / "one.tif", data)  # a shaped TIFF: (1, 48, 40) 'QYX'
    z = zarr.open_array(str(tmp_path / "one.zarr"), mode="w", shape=data.shape, dtype=data.dtype)
    z[:] = data
    return data, ["one.npy", "one.tif", "one.zarr"]


@pytest.mark.parametrize("out_suffix", [".tif", ".ome.tif", ".npy", ".zarr"])
def test_cli_keeps_a_singleton_axis_in_every_format(tmp_path, fmd_pair, capsys, out_suffix):
    from napari_denoise.io import read_image

    data, names = _singleton_inputs(tmp_path, fmd_pair)
    for name in names:
        src = tmp_path / name
        out = tmp_path / f"res_{name.replace('.', '_')}{out_suffix}"
        code = main(["denoise", str(src), "-o", str(out), "--method", "gaussian", "-q"])
        err = capsys.readouterr().err
        assert code == 0, err
        source, result = read_image(src), read_image(out)
        assert result.data.shape == data.shape == source.data.shape
        if out_suffix != ".npy":  # a .npy holds no axes
            assert result.axes == source.axes


# --------------------------------------------------------------------------- metadata
def _luts():
    tables = [np.zeros((3, 256), np.uint8) for _ in range(3)]
    for i, t in enumerate(tables):
        t[i] = np.arange(256)  # red, green, blue
    return tables


@pytest.fixture
def composite(tmp_path, fmd_pair):
    """A Fiji-style composite hyperstack: 2 frames x 3 channels, real pixels, display
    ranges and LUTs per channel, 0.2 µm pixels, 0.5 µm slices, 2 min between frames."""
    import tifffile

    data = _real_planes((2, 3, 48, 40), fmd_pair)
    path = tmp_path / "composite.tif"
    meta = {
        "axes": "TCYX",
        "mode": "composite",
        "Ranges": (10.0, 200.0, 5.0, 150.0, 0.0, 255.0),
        "LUTs": _luts(),
        "unit": "um",
        "finterval": 2.0,
        "tunit": "min",
    }
    tifffile.imwrite(path, data, imagej=True, metadata=meta, resolution=(5.0, 5.0))
    return path


@pytest.mark.parametrize("out_suffix", [".tif", ".zarr"])
def test_imagej_composite_mode_ranges_luts_and_sizes_are_kept(composite, tmp_path, out_suffix):
    from napari_denoise.io import read_image

    out = tmp_path / f"res{out_suffix}"
    assert main(["denoise", str(composite), "-o", str(out), "--method", "gaussian", "-q"]) == 0
    source, result = read_image(composite), read_image(out)
    assert source.metadata["display"]["mode"] == "composite"  # read ...
    assert source.scale == pytest.approx({"X": 0.2, "Y": 0.2, "T": 120.0})
    assert result.axes == source.axes and result.scale == pytest.approx(source.scale)  # ... kept
    shown, kept = source.metadata["display"], result.metadata["display"]
    assert kept["mode"] == "composite"
    assert kept["ranges"] == shown["ranges"] == [[10, 200], [5, 150], [0, 255]]
    for a, b in zip(kept["luts"], _luts(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("out_suffix", [".ome.tif", ".tif", ".zarr"])
def test_ome_channel_names_are_kept(tmp_path, fmd_pair, out_suffix):
    import tifffile

    from napari_denoise.io import read_image

    data = _real_planes((3, 48, 40), fmd_pair)
    src = tmp_path / "channels.ome.tif"
    names = ["DAPI", "GFP", "mCherry"]
    meta = {"axes": "CYX", "Channel": {"Name": names}, "PhysicalSizeX": 0.1}
    meta.update(PhysicalSizeY=0.1, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    tifffile.imwrite(src, data, ome=True, metadata=meta)
    out = tmp_path / f"res{out_suffix}"
    assert main(["denoise", str(src), "-o", str(out), "--method", "gaussian", "-q"]) == 0
    result = read_image(out)
    assert result.metadata["channel_names"] == names
    assert result.scale == pytest.approx({"X": 0.1, "Y": 0.1})


@pytest.mark.parametrize("out_suffix", [".zarr", ".tif", ".ome.tif"])
def test_no_pixel_size_or_interval_is_invented(tmp_path, fmd_pair, out_suffix):
    import tifffile
    import zarr

    from napari_denoise.io import read_image

    data = _real_planes((2, 48, 40), fmd_pair)
    src = tmp_path / "plain.zarr"
    z = zarr.open_array(str(src), mode="w", shape=data.shape, dtype=data.dtype)
    z[:] = data
    out = tmp_path / f"res{out_suffix}"
    assert main(["denoise", str(src), "-o", str(out), "--method", "gaussian", "-q"]) == 0
    result = read_image(out)
    assert result.scale == {} and result.metadata["units"] == {}
    if out_suffix == ".zarr":  # NGFF needs a scale per axis: 1, but with no unit claimed
        axes = zarr.open_group(str(out), mode="r").attrs["multiscales"][0]["axes"]
        assert all("unit" not in a for a in axes)
    elif out_suffix == ".ome.tif":
        xml = tifffile.TiffFile(out).ome_metadata
        assert "PhysicalSizeX" not in xml and "TimeIncrement" not in xml
    else:
        description = tifffile.TiffFile(out).pages[0].description
        assert "finterval" not in description and "unit" not in description


def test_ome_zarr_sizes_follow_their_units(tmp_path, fmd_pair):
    import zarr

    from napari_denoise.io import read_image

    data = _real_planes((2, 48, 40), fmd_pair)
    group = zarr.open_group(str(tmp_path / "nm.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=data.shape, dtype=data.dtype)[:] = data
    axes = [
        {"name": "t", "type": "time", "unit": "millisecond"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space"},  # no unit: no size claimed
    ]
    scale = {"type": "scale", "scale": [250.0, 65.0, 65.0]}
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": [scale]}],
        }
    ]
    image = read_image(tmp_path / "nm.ome.zarr")
    assert image.scale == pytest.approx({"T": 0.25, "Y": 0.065})


# --------------------------------------------------------------------------- run settings
def test_param_device_that_is_missing_is_refused_not_run_on_the_cpu(tmp_path, fmd_pair, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    src = tmp_path / "in.npy"
    np.save(src, fmd_pair[0][:64, :64])
    out = tmp_path / "out.tif"
    code = main(
        [
            "denoise",
            str(src),
            "-o",
            str(out),
            "--method",
            "unet-fluo",
            "--param",
            "device=cuda",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "'cuda' is not available" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]
    args = ["denoise", str(src), "-o", str(out), "--method", "unet-fluo", "-q"]
    code = main([*args, "--device", "cpu", "--param", "device=mps"])
    assert code == 2 and "different devices" in capsys.readouterr().err


def test_param_device_cpu_is_used(tmp_path, fmd_pair):
    src = tmp_path / "in.npy"
    np.save(src, fmd_pair[0][:64, :64])
    out = tmp_path / "out.tif"
    args = ["denoise", str(src), "-o", str(out), "--method", "unet-fluo", "--param", "device=cpu"]
    assert main([*args, "-q"]) == 0
    prov = json.loads((tmp_path / "out.tif.json").read_text())
    assert prov["params"]["device"] == "cpu"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_bad_thread_counts_are_one_sentence(tmp_path, fmd_pair, capsys, monkeypatch, value):
    from napari_denoise.engine.device import env_threads
    from napari_denoise.errors import ParameterError

    monkeypatch.setenv("NAPARI_DENOISE_THREADS", value)
    with pytest.raises(ParameterError, match="NAPARI_DENOISE_THREADS"):
        env_threads()
    src = tmp_path / "in.npy"
    np.save(src, fmd_pair[0][:64, :64])
    code = main(["denoise", str(src), "-o", str(tmp_path / "o.tif"), "--method", "unet-fluo", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "NAPARI_DENOISE_THREADS" in err and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_a_huge_thread_count_is_clamped_to_the_cores(monkeypatch):
    import os

    from napari_denoise.engine.device import env_threads

    monkeypatch.setenv("NAPARI_DENOISE_THREADS", "99999999999")
    assert env_threads() == (os.cpu_count() or 1)
    monkeypatch.setenv("NAPARI_DENOISE_THREADS", "1")
    assert env_threads() == 1


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        "torch.cuda.OutOfMemoryError",  # torch's own class (made in the test: torch is heavy)
    ],
)
@pytest.mark.parametrize("out_name", ["out.tif", "out.zarr"])
def test_out_of_memory_is_one_sentence_and_leaves_no_file(
    tmp_path, fmd_pair, capsys, error, out_name
):
    from napari_denoise.engine.methods import Method, register, unregister

    if error == "torch.cuda.OutOfMemoryError":
        import torch

        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    calls = []

    def runs_out(block, **_):
        calls.append(1)
        if len(calls) > 1:  # after the first plane has been written
            raise error
        return block

    register(Method("runs-out-of-memory", runs_out), replace=True)
    try:
        src = tmp_path / "in.npy"
        np.save(src, _real_planes((4, 48, 40), fmd_pair))
        code = main(
            [
                "denoise",
                str(src),
                "-o",
                str(tmp_path / out_name),
                "--method",
                "runs-out-of-memory",
                "-q",
            ]
        )
    finally:
        unregister("runs-out-of-memory")
    err = capsys.readouterr().err
    assert code == 2 and "out of memory" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]  # no part, no output


def test_dash_output_is_refused_and_makes_no_folder(tmp_path, fmd_pair, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("in.npy", fmd_pair[0][:32, :32])
    code = main(["denoise", "in.npy", "-o", "-", "--method", "gaussian", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "standard output" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


# --------------------------------------------------------------------------- API inputs
def test_xarray_dims_are_the_axes_and_a_dataarray_comes_back(fmd_pair):
    xr = pytest.importorskip("xarray")
    data = _real_planes((3, 48, 40), fmd_pair)
    arr = xr.DataArray(data, dims=("c", "y", "x"), coords={"c": ["a", "b", "c"]}, attrs={"k": 1})
    out = nd.denoise(arr, "gaussian")
    assert isinstance(out, xr.DataArray) and out.dims == arr.dims and out.attrs == {"k": 1}
    assert list(out.coords["c"].values) == ["a", "b", "c"]
    np.testing.assert_array_equal(out.values, nd.denoise(data, "gaussian", axes="CYX"))
    assert not np.array_equal(out.values, nd.denoise(data, "gaussian"))  # inferred: TYX
    upper = nd.denoise(xr.DataArray(data, dims=("Z", "Y", "X")), "gaussian")
    np.testing.assert_array_equal(upper.values, nd.denoise(data, "gaussian", axes="ZYX"))


def test_xarray_dims_that_are_not_letters_or_disagree_are_refused(fmd_pair):
    xr = pytest.importorskip("xarray")
    data = _real_planes((3, 48, 40), fmd_pair)
    with pytest.raises(InputError, match="not axis letters"):
        nd.denoise(xr.DataArray(data, dims=("plane", "row", "col")), "gaussian")
    with pytest.raises(InputError, match="contradicts"):
        nd.denoise(xr.DataArray(data, dims=("c", "y", "x")), "gaussian", axes="TYX")
    named = xr.DataArray(data, dims=("plane", "row", "col"))  # told: fine
    np.testing.assert_array_equal(
        nd.denoise(named, "gaussian", axes="ZYX").values, nd.denoise(data, "gaussian", axes="ZYX")
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "uint8"])
def test_a_torch_tensor_is_computed_on_the_cpu_and_given_back_as_one(fmd_pair, dtype):
    import torch

    data = _real_planes((48, 40), fmd_pair, np.uint8)
    tensor = torch.from_numpy(data).to(getattr(torch, dtype))
    if dtype == "float32":
        tensor.requires_grad_(True)
    out = nd.denoise(tensor, "gaussian")
    assert isinstance(out, torch.Tensor) and out.dtype == tensor.dtype
    assert out.shape == tensor.shape and out.device == tensor.device
    expected = nd.denoise(tensor.detach().float().numpy() if dtype != "uint8" else data, "gaussian")
    np.testing.assert_allclose(
        out.float().numpy(), expected, atol=1.0 if dtype == "bfloat16" else 0
    )


def test_the_lazy_and_generator_forms_read_xarray_dims_too(fmd_pair):
    xr = pytest.importorskip("xarray")
    from napari_denoise.engine.denoise.pipeline import drain

    data = _real_planes((3, 48, 40), fmd_pair)
    arr = xr.DataArray(data, dims=("c", "y", "x"))
    expected = nd.denoise(data, "gaussian", axes="CYX")
    np.testing.assert_array_equal(nd.denoise_dask(arr, "gaussian").compute(), expected)
    np.testing.assert_array_equal(drain(nd.denoise_iter(arr, "gaussian")).data, expected)


@pytest.mark.parametrize(
    ("shape", "axes"),
    [
        ((48, 40, 1), "YXC"),
        ((2, 48, 40, 1), "TYXC"),
        ((2, 3, 48, 40, 1), "TZYXC"),
        ((1, 48, 40), "TYX"),
    ],
)
def test_a_trailing_singleton_is_one_channel_not_frames_one_pixel_wide(
    tmp_path, fmd_pair, shape, axes
):
    from napari_denoise.io import read_image

    data = _real_planes(shape, fmd_pair)
    np.save(tmp_path / "in.npy", data)
    image = read_image(tmp_path / "in.npy")
    assert image.axes == axes
    out = nd.denoise(data, "gaussian")
    expected = nd.denoise(data.reshape(data.shape[:-1]) if axes.endswith("C") else data, "gaussian")
    np.testing.assert_array_equal(out.reshape(expected.shape), expected)  # plane by plane

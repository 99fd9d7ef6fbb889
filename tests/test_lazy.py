"""Denoising as a dask graph: same result as in memory, lazy, and on a (local) cluster."""

import json

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import napari_denoise as nd  # noqa: E402
from napari_denoise.cli import main  # noqa: E402
from napari_denoise.engine.denoise.lazy import check_scheduler, compute, denoise_dask  # noqa: E402
from napari_denoise.engine.denoise.pipeline import SAMPLES_FOR_AUTO  # noqa: E402


@pytest.fixture
def stack():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:64, :80]
    scene = 40 + 30 * np.sin(x / 6.0) * np.cos(y / 9.0)
    return rng.poisson(np.clip(scene, 1, None), (7, 64, 80)).astype(np.uint16)


class CountingPlanes:
    """An array-like that counts which planes dask reads from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.read, self.sizes = set(), []

    def __getitem__(self, key):
        first = key[0] if isinstance(key, tuple) else key
        rows = range(*first.indices(self.shape[0])) if isinstance(first, slice) else [first]
        self.read.update(rows)
        self.sizes.append(len(rows))
        return self.data[key]


@pytest.mark.parametrize("method", ["gaussian", "unet-fluo", "box3d"])
def test_the_graph_gives_what_denoise_gives(stack, method):
    result = denoise_dask(stack, method)
    assert isinstance(result.data, da.Array) and result.data.shape == stack.shape
    out = compute(result.data, "synchronous")
    assert out.dtype == stack.dtype
    np.testing.assert_array_equal(out, nd.denoise(stack, method))


def test_channels_get_their_own_automatic_parameters(stack):
    image = np.stack([stack[0], stack[1] * 3], axis=-1)  # YXC, the second 3x brighter
    result = denoise_dask(image, "gaussian", axes="YXC", params={"vst": True})
    assert len(result.channel_params) == 2
    np.testing.assert_array_equal(
        compute(result.data, "threads"), nd.denoise(image, "gaussian", axes="YXC", vst=True)
    )


def test_building_the_graph_reads_only_the_sample_planes(stack):
    planes = CountingPlanes(np.concatenate([stack, stack, stack]))  # 21 planes
    lazy = da.from_array(planes, chunks=(1, 64, 80))
    result = denoise_dask(lazy, "gaussian")
    assert 0 < len(planes.read) <= SAMPLES_FOR_AUTO
    assert result.data.numblocks == (21, 1, 1)  # one task per plane
    compute(result.data, "synchronous")
    assert len(planes.read) == 21


def test_a_bad_plane_fails_when_computed_and_is_named(stack):
    data = stack.astype(np.float32)
    data[3, 10, 10] = np.nan  # not among the sample planes (0, 2, 4, 6)
    result = denoise_dask(data, "gaussian")
    with pytest.raises(nd.InputError, match="plane at T=3 contains 1 NaN"):
        compute(result.data, "synchronous")


def test_unknown_schedulers_are_refused_before_anything_runs(stack, tmp_path):
    with pytest.raises(nd.ParameterError, match="Unknown scheduler 'fast'"):
        check_scheduler("fast")
    source = tmp_path / "in.tif"
    nd.write_image(source, stack, axes="TYX")
    out = tmp_path / "out.tif"
    assert main(["denoise", str(source), "-o", str(out), "--scheduler", "fast", "-q"]) == 2
    assert not out.exists()


def test_the_cli_runs_on_a_dask_cluster_with_the_same_result(stack, tmp_path):
    distributed = pytest.importorskip("distributed")
    source = tmp_path / "in.tif"
    nd.write_image(source, stack, axes="TYX")
    plain, remote = tmp_path / "plain.tif", tmp_path / "remote.tif"
    assert main(["denoise", str(source), "-o", str(plain), "--method", "gaussian", "-q"]) == 0
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        args = ["denoise", str(source), "-o", str(remote), "--method", "gaussian"]
        assert main([*args, "--scheduler", cluster.scheduler_address, "-q"]) == 0
        # Zarr to Zarr: the workers read and write the planes themselves.
        zarr_in, zarr_out = tmp_path / "in.zarr", tmp_path / "out.zarr"
        nd.write_image(zarr_in, stack, axes="TYX")
        args = ["denoise", str(zarr_in), "-o", str(zarr_out), "--method", "gaussian"]
        assert main([*args, "--scheduler", cluster.scheduler_address, "-q"]) == 0
    np.testing.assert_array_equal(nd.read_image(remote).data, nd.read_image(plain).data)
    np.testing.assert_array_equal(nd.read_image(zarr_out).data.compute(), nd.read_image(plain).data)
    sidecar = json.loads(remote.with_name(remote.name + ".json").read_text())
    assert sidecar["scheduler"] == cluster.scheduler_address
    assert (
        sidecar["params"] == json.loads(plain.with_name(plain.name + ".json").read_text())["params"]
    )


def test_the_public_lazy_api_returns_a_dask_array_of_the_input_shape(stack):
    lazy = nd.denoise_dask(da.from_array(stack, chunks=(2, 32, 80)), "gaussian", sigma=1.0)
    assert isinstance(lazy, da.Array) and lazy.shape == stack.shape and lazy.dtype == stack.dtype
    np.testing.assert_array_equal(lazy.compute(), nd.denoise(stack, "gaussian", sigma=1.0))


def test_an_array_in_memory_is_cut_into_planes_where_it_lies(stack):
    planes = CountingPlanes(stack)  # not a dask array: denoise_dask cuts it itself
    lazy = denoise_dask(planes, "gaussian", axes="TYX").data
    np.testing.assert_array_equal(lazy.compute(), nd.denoise(stack, "gaussian"))
    # Every read was one plane: no task ever held (or shipped) the whole image.
    assert max(planes.sizes) == 1  # (dask also reads an empty slice for its metadata)


def test_worker_processes_use_one_thread_each_unless_told_otherwise(monkeypatch):
    import os

    from napari_denoise.engine.denoise.lazy import scheduler_context

    monkeypatch.delenv("NAPARI_DENOISE_THREADS", raising=False)
    with scheduler_context("processes"):
        assert os.environ["NAPARI_DENOISE_THREADS"] == "1"
    assert "NAPARI_DENOISE_THREADS" not in os.environ
    with scheduler_context("threads"):
        assert "NAPARI_DENOISE_THREADS" not in os.environ
    monkeypatch.setenv("NAPARI_DENOISE_THREADS", "3")
    with scheduler_context("processes"):
        assert os.environ["NAPARI_DENOISE_THREADS"] == "3"

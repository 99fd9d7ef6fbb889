"""Bounded memory: a stack goes disk to disk plane by plane, a big plane costs a few copies.

Allocations are counted with tracemalloc (numpy reports its buffers to it); memory maps are
not allocations, so what is measured is what the run itself holds. Peak RSS figures are in
benchmarks/memory.py, not here.
"""

import json
import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_denoise.engine.denoise.pipeline import denoise_iter, drain
from napari_denoise.engine.denoise.tiling import run_tiled
from napari_denoise.errors import InputError
from napari_denoise.files import denoise_file, sidecar_path
from napari_denoise.io import read_image

PLANE = (192, 160)
FIXED = {"sigma": 1.0}  # no automatic choice: only the loop itself is measured


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _stack_file(path, n, dtype=np.uint16, axes="TYX"):
    rng = np.random.default_rng(n)
    data = rng.integers(0, 4000, (n, *PLANE)).astype(dtype)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})
    return data


def test_denoise_file_memory_does_not_grow_with_the_number_of_planes(tmp_path):
    peaks = {}
    _stack_file(tmp_path / "warm.tif", 2)  # first-time imports and caches are not the loop's
    denoise_file(tmp_path / "warm.tif", tmp_path / "warm_out.tif", "gaussian", params=FIXED)
    for n in (32, 128):
        src, dst = tmp_path / f"in{n}.tif", tmp_path / f"out{n}.tif"
        _stack_file(src, n)
        peaks[n] = _peak(lambda s=src, d=dst: denoise_file(s, d, "gaussian", params=FIXED))
    plane_bytes = PLANE[0] * PLANE[1] * 4  # one plane as float32
    # The whole output stack (128 planes of uint16 = 64 float32 planes) is never held.
    assert peaks[128] < peaks[32] + 4 * plane_bytes, peaks


def test_streamed_file_equals_the_in_memory_result_with_provenance(tmp_path):
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    data = _stack_file(src, 5)
    _, result, prov = denoise_file(src, dst, "gaussian", params=FIXED)
    expected = drain(denoise_iter(data, "gaussian", axes="TYX", params=FIXED)).data
    written = read_image(dst)
    np.testing.assert_array_equal(written.data, expected)
    assert written.axes == "TYX" and written.metadata["source_format"] == "imagej-tiff"
    assert written.metadata["embedded"] == prov == json.loads(sidecar_path(dst).read_text())
    assert prov["seconds"] == round(result.seconds, 3) > 0
    np.testing.assert_array_equal(result.data, expected)  # the file, mapped back


@pytest.mark.parametrize(("axes", "shape"), [("ZCYX", (3, 2, 40, 48)), ("YXC", (40, 48, 2))])
def test_streamed_file_equals_in_memory_for_other_layouts(tmp_path, axes, shape):
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    tifffile.imwrite(src, data, metadata={"axes": axes})
    denoise_file(src, dst, "gaussian", axes=axes, params=FIXED)
    expected = drain(denoise_iter(data, "gaussian", axes=axes, params=FIXED)).data
    written = read_image(dst)
    assert written.axes == axes
    np.testing.assert_array_equal(written.data, expected)


class Stop(Exception):
    pass


@pytest.mark.parametrize("scheduler", [None, "threads"])
@pytest.mark.parametrize(("axes", "shape"), [("TYX", (6, 64, 48)), ("YXC", (64, 48, 3))])
def test_a_failure_in_the_middle_of_a_stream_leaves_no_file(tmp_path, axes, shape, scheduler):
    if scheduler:
        pytest.importorskip("dask")
    src = tmp_path / "in.tif"
    tifffile.imwrite(
        src, np.random.default_rng(0).random(shape).astype(np.float32), metadata={"axes": axes}
    )

    def stop_half_way(tick):
        if 0.5 <= tick.fraction < 1:  # e.g. Ctrl-C while planes are being written
            raise Stop

    with pytest.raises(Stop):
        denoise_file(
            src,
            tmp_path / "out.tif",
            "gaussian",
            axes=axes,
            params=FIXED,
            scheduler=scheduler,
            on_progress=stop_half_way,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]  # no part, no scratch


def test_nan_in_a_plane_fails_before_anything_is_written(tmp_path):
    src, dst = tmp_path / "in.tif", tmp_path / "out.tif"
    data = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    data[4, 3, 3] = np.nan
    tifffile.imwrite(src, data)
    with pytest.raises(InputError):
        denoise_file(src, dst, "gaussian", params=FIXED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_a_big_plane_is_blended_with_one_accumulator():
    block = np.random.default_rng(0).random((1024, 1024)).astype(np.float32)
    kwargs = {"tile": (128, 128), "overlap": (24, 24), "halo": (8, 8)}
    out = None

    def run():
        nonlocal out
        out = drain(run_tiled(block, lambda b: b * 2, **kwargs))

    peak = _peak(run)
    np.testing.assert_allclose(out, block * 2, rtol=1e-6)
    # The result itself plus tile-sized temporaries: not the weights of every tile, nor a
    # second image-sized weight sum, nor a divided copy.
    assert peak < 1.5 * block.nbytes, peak / block.nbytes


def test_one_plane_costs_a_few_times_its_size(tmp_path):
    plane = np.random.default_rng(0).integers(0, 60000, (2048, 1024)).astype(np.uint16)
    out = None

    def run():
        nonlocal out
        out = drain(denoise_iter(plane, "gaussian", tile=256, params=FIXED))

    peak = _peak(run)
    assert out.data.shape == plane.shape
    # output (1x) + float32 result (2x) + small slabs: at most about 4x the plane.
    assert peak < 4 * plane.nbytes, peak / plane.nbytes


def test_a_dask_array_is_read_one_block_at_a_time(tmp_path):
    da = pytest.importorskip("dask.array")
    data = np.random.default_rng(0).random((48, 256, 256)).astype(np.float32)
    lazy = da.from_array(data, chunks=(1, 256, 256))
    drain(denoise_iter(lazy[:2], "gaussian", params=FIXED))  # first-time imports, not the loop's
    out = np.lib.format.open_memmap(
        tmp_path / "o.npy", mode="w+", dtype=data.dtype, shape=data.shape
    )
    run = lambda: drain(denoise_iter(lazy, "gaussian", axes="TYX", params=FIXED, out=out))  # noqa: E731
    peak = _peak(run)
    assert peak < data.nbytes / 4, peak / data.nbytes  # never the whole stack at once
    expected = drain(denoise_iter(data, "gaussian", axes="TYX", params=FIXED)).data
    np.testing.assert_array_equal(out, expected)


def test_a_dask_plane_with_nan_is_named():
    da = pytest.importorskip("dask.array")
    data = np.random.default_rng(0).random((12, 32, 32)).astype(np.float32)
    data[2, 5, 5] = np.nan  # not one of the sample planes: found when its turn comes
    with pytest.raises(InputError, match="T=2"):
        drain(denoise_iter(da.from_array(data, chunks=(1, 32, 32)), "gaussian", params=FIXED))


def test_the_result_can_go_to_a_file_backed_array(tmp_path):
    data = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    out = np.lib.format.open_memmap(
        tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=data.shape
    )
    result = drain(denoise_iter(data, "gaussian", params=FIXED, out=out))
    assert result.data is out
    expected = drain(denoise_iter(data, "gaussian", params=FIXED)).data
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


@pytest.mark.parametrize("shape", [(300, 257), (40, 90, 70)])
def test_band_normalisation_is_bit_identical_to_one_weight_sum(shape, monkeypatch):
    from napari_denoise.engine.denoise import tiling

    monkeypatch.setattr(tiling, "NORM_BAND", 5000)  # many bands, some cutting tiles
    block = np.random.default_rng(2).random(shape).astype(np.float32)
    n = len(shape)
    kwargs = {"tile": (64,) * n, "overlap": (20,) * n, "halo": (4,) * n}
    out = drain(run_tiled(block, np.sqrt, **kwargs))
    acc = np.zeros(shape, np.float32)
    norm = np.zeros(shape, np.float32)
    for t in tiling.plan_tiles(shape, **kwargs):
        acc[t.region] += np.sqrt(block[t.region]) * t.weight
        norm[t.region] += t.weight
    np.testing.assert_array_equal(out, acc / norm)


@pytest.mark.parametrize(
    ("axes", "shape", "method", "params"),
    [
        ("TYX", (7, 40, 48), "gaussian", FIXED),
        ("ZCYX", (5, 2, 40, 48), "box3d", {"size": 3, "size_z": 3}),  # blocks out of file order
        ("YXC", (40, 48, 2), "gaussian", FIXED),
    ],
)
def test_dask_scheduler_streams_the_same_tiff(tmp_path, axes, shape, method, params):
    pytest.importorskip("dask")
    src = tmp_path / "in.tif"
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    tifffile.imwrite(src, data, metadata={"axes": axes})
    expected = drain(denoise_iter(data, method, axes=axes, params=params)).data
    ticks = []
    _, result, prov = denoise_file(
        src,
        tmp_path / "out.tif",
        method,
        axes=axes,
        params=params,
        scheduler="threads",
        on_progress=ticks.append,
    )
    written = read_image(tmp_path / "out.tif")
    np.testing.assert_array_equal(written.data, expected)
    np.testing.assert_array_equal(result.data, expected)
    assert written.metadata["embedded"] == prov and prov["scheduler"] == "threads"
    assert ticks and ticks[-1].fraction == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif", "out.tif.json"]


def test_dask_scheduler_memory_does_not_grow_with_the_number_of_planes(tmp_path):
    pytest.importorskip("dask")
    peaks = {}
    _stack_file(tmp_path / "warm.tif", 2)
    denoise_file(
        tmp_path / "warm.tif", tmp_path / "w.tif", "gaussian", params=FIXED, scheduler="threads"
    )
    for n in (32, 128):
        src, dst = tmp_path / f"in{n}.tif", tmp_path / f"out{n}.tif"
        _stack_file(src, n)
        run = lambda s=src, d=dst: denoise_file(s, d, "gaussian", params=FIXED, scheduler="threads")  # noqa: E731
        peaks[n] = _peak(run)
    plane_bytes = PLANE[0] * PLANE[1] * 4
    assert peaks[128] < peaks[32] + 4 * plane_bytes, peaks


def test_building_the_dask_graph_of_a_mapped_file_does_not_read_it(tmp_path):
    pytest.importorskip("dask")
    import pickle

    from napari_denoise.engine.denoise.lazy import denoise_dask

    data = _stack_file(tmp_path / "in.tif", 64)
    image = read_image(tmp_path / "in.tif")
    assert isinstance(image.data, np.memmap)
    holder = {}
    peak = _peak(lambda: holder.update(r=denoise_dask(image.data, "gaussian", params=FIXED)))
    assert peak < data.nbytes / 4, peak  # dask's from_array would copy the whole map
    lazy = holder["r"].data
    np.testing.assert_array_equal(lazy[5].compute(), denoise_iter_plane(data[5]))
    # A worker process gets the file's name, not its pixels.
    assert len(pickle.dumps(lazy.dask)) < data.nbytes / 4


def denoise_iter_plane(plane):
    return drain(denoise_iter(plane, "gaussian", params=FIXED)).data


def test_a_copy_on_write_map_keeps_its_changes(tmp_path):
    # Handing pages back is safe for a file's shared pages, not for private changes.
    data = np.random.default_rng(0).random((5, 300, 200)).astype(np.float32)
    np.save(tmp_path / "a.npy", data)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="c")
    mapped[:] = 7.0  # in this process only
    result = drain(denoise_iter(mapped, "gaussian", params=FIXED)).data
    np.testing.assert_allclose(result, 7.0, rtol=1e-6)


@pytest.mark.parametrize("scheduler", [None, "threads"])
def test_a_streamed_tiff_never_appears_without_its_sidecar(tmp_path, monkeypatch, scheduler):
    import napari_denoise.files as files
    from napari_denoise.errors import WriteError

    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.random.default_rng(0).random((3, 40, 40)).astype(np.float32))

    def fail(path, obj):
        raise WriteError(f"Cannot write {path}: disk full.")

    monkeypatch.setattr(files, "write_json", fail)
    with pytest.raises(WriteError):
        denoise_file(src, tmp_path / "out.tif", "gaussian", axes="TYX", scheduler=scheduler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]  # no image, no part file

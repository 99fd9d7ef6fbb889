"""Tiles: blended without seams, exact for local filters, and stoppable between tiles."""

from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_denoise.engine.denoise.pipeline import drain
from napari_denoise.engine.denoise.tiling import effective_tile, plan_tiles, run_tiled
from napari_denoise.errors import ParameterError


def _tiled(block, fn, tile, halo):
    overlap = 2 * halo + 8
    return drain(run_tiled(block, fn, tile=(tile, tile), overlap=(overlap,) * 2, halo=(halo,) * 2))


@pytest.mark.parametrize(
    ("fn", "halo"),
    [
        (lambda b: ndi.gaussian_filter(b, 1.5, truncate=4.0), 6),
        (lambda b: ndi.uniform_filter(b, 7), 3),
        (lambda b: ndi.median_filter(b, 5), 2),
    ],
)
def test_tiled_equals_untiled_for_local_filters(fmd_pair, fn, halo):
    noisy = fmd_pair[0][:300, :257].astype(np.float32)
    out = _tiled(noisy, fn, tile=64, halo=halo)
    np.testing.assert_allclose(out, fn(noisy), rtol=0, atol=1e-4)


def test_weights_cover_every_pixel_and_identity_is_exact():
    rng = np.random.default_rng(1)
    block = rng.random((131, 190)).astype(np.float32)
    out = _tiled(block, lambda b: b, tile=40, halo=4)
    np.testing.assert_allclose(out, block, atol=1e-6)
    total = np.zeros(block.shape, np.float32)
    for t in plan_tiles(block.shape, (40, 40), (16, 16), (4, 4)):
        total[t.region] += t.weight
    assert total.min() > 0


def test_consumer_stopping_stops_the_work():
    calls = []

    def fn(b):
        calls.append(b.shape)
        return b

    gen = run_tiled(
        np.zeros((256, 256), np.float32), fn, tile=(64, 64), overlap=(16, 16), halo=(4, 4)
    )
    first = next(gen)
    assert first.total > 4
    next(gen)
    gen.close()
    assert len(calls) == 2 < first.total


def test_too_small_tile_grows_and_too_small_overlap_is_refused():
    tiles = plan_tiles((500, 500), (20, 20), (24, 24), (8, 8))
    assert min(t.weight.shape[0] for t in tiles) >= 4 * 16 - 8  # grown to four margins
    with pytest.raises(ParameterError, match="too small"):
        plan_tiles((500, 500), (200, 200), (16, 16), (8, 8))


def test_3d_method_tiles_along_depth_too_and_stays_exact():
    import napari_denoise as nd

    rng = np.random.default_rng(3)
    vol = rng.random((80, 70, 60)).astype(np.float32)  # deeper than one depth tile
    out = nd.denoise(vol, "box3d", axes="ZYX", size=3, size_z=5, tile=32)
    np.testing.assert_allclose(out, ndi.uniform_filter(vol, (5, 3, 3)), atol=1e-5)


def test_tile_starts_align_to_a_network_downsampling_factor():
    tiles = plan_tiles((517, 300), (128, 128), (40, 40), (8, 8), multiple=8)
    starts = {(t.region[0].start, t.region[1].start) for t in tiles}
    assert all(y % 8 == 0 and x % 8 == 0 for y, x in starts)
    covered = np.zeros((517, 300), bool)
    for t in tiles:
        covered[t.region] |= t.weight > 0
    assert covered.all()


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "multiple"),
    [(2048, 512, 56, 8), (2048, 512, 110, 8), (517, 128, 40, 8), (131, 40, 16, 1), (80, 32, 24, 1)],
)
def test_tiles_are_no_bigger_than_needed(length, tile, overlap, multiple):
    """Every pixel computed twice is one the blending needs: neighbours share exactly the
    overlap, no tile exceeds the tile size, and together they cover the axis."""
    tiles = plan_tiles((length,), (tile,), (overlap,), (overlap // 2 - 2,), multiple=multiple)
    tile = effective_tile(length, tile, overlap, overlap // 2 - 2, multiple)  # grown
    spans = [(t.region[0].start, t.region[0].stop) for t in tiles]
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(b - a <= tile for a, b in spans)
    assert all(a % multiple == 0 for a, _ in spans)
    assert all(prev[1] - nxt[0] == overlap for prev, nxt in pairwise(spans))
    # No more tiles than full-size ones would need.
    assert len(spans) <= -(-(length - overlap) // ((tile - overlap) // multiple * multiple))


def test_batched_tiles_give_the_same_result_and_progress_per_batch():
    rng = np.random.default_rng(2)
    block = rng.random((200, 170)).astype(np.float32)

    def fn(b):
        return ndi.gaussian_filter(b, 1.0, truncate=3.0)

    calls = []

    def fn_batch(tiles):
        assert len({t.shape for t in tiles}) == 1  # one shape per call
        calls.append(len(tiles))
        return [fn(t) for t in tiles]

    kwargs = dict(tile=(64, 64), overlap=(16, 16), halo=(4, 4))
    single = drain(run_tiled(block, fn, **kwargs))
    ticks = []
    batched = drain(run_tiled(block, fn, batch=3, fn_batch=fn_batch, **kwargs), ticks.append)
    np.testing.assert_array_equal(batched, single)
    assert max(calls) == 3  # runs of same-shaped tiles, up to the batch size
    assert len(ticks) < ticks[-1].total and ticks[-1].done == ticks[-1].total

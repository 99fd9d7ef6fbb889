"""Tiles never show: every shipped model, cut by many seams, equals one whole-image pass.

The criterion is the largest error anywhere (an average hides a seam): on a real uint8
capture, tiled and whole outputs differ by at most half a grey level (the target is one)
for the smallest tile the CLI accepts (16, which grows to what the model's overlap
needs). benchmarks/tile_seams.py measures the same on a 1000 x 1000 mosaic at every
tile size.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

import napari_denoise as nd
from napari_denoise.engine.denoise import tiling
from napari_denoise.engine.denoise.pipeline import _geometry
from napari_denoise.engine.methods import get_method
from napari_denoise.engine.models import registry, store

SHIPPED = sorted(p.stem for p in store.SHIPPED_DIR.glob("*.json"))
MAX_ERROR = 0.5  # grey levels (uint8 input); the target is 1
FACTOR = 1.5  # tiles down to 1.5 discarded margins in these tests (4 by default)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles down to 1.5 discarded margins, so that a small crop is cut by seams for
    every network (the default, 4, would need crops of some 1000 pixels)."""
    monkeypatch.setattr(tiling, "MIN_TILE_PER_MARGIN", FACTOR, raising=False)


@pytest.mark.parametrize("name", SHIPPED)
def test_tiled_equals_whole_for_every_shipped_model(name, fmd_pair, small_tiles):
    method = get_method(name)
    geometry = _geometry(method, {}, (1, 1))
    overlap, halo = geometry["overlap"][0], geometry["halo"][0]
    # Two tiles a side (four, crossing seams) of the smallest tile the CLI accepts (16,
    # grown); a network that must see the whole plane gets one tile whatever is asked.
    least = tiling.effective_tile(10**6, 16, overlap, halo, method.multiple)
    crop = 96 if method.tile is None else min(512, 2 * least - overlap)
    image = fmd_pair[0][:crop, :crop]
    whole = nd.denoise(image, name, tile=4096, output_dtype="float32")
    plan = tiling.plan_tiles(image.shape, (16, 16), **_geometry(method, {}, image.shape))
    if method.tile is None:
        assert len(plan) == 1
    else:
        assert len(plan) >= 4
    tiled = nd.denoise(image, name, tile=16, output_dtype="float32")
    error = float(np.abs(tiled.astype(np.float64) - whole).max())
    assert error <= MAX_ERROR, (name, crop, len(plan), error)


def test_a_small_tile_grows_to_several_margins():
    # unet-fluo's reach (51) is a margin of 102 pixels discarded per tile: a 64-pixel tile
    # would compute every pixel about ten times; it grows to 4 margins instead.
    tiles = tiling.plan_tiles((2000, 2000), (64, 64), (110, 110), (51, 51), multiple=8)
    sizes = {t.region[0].stop - t.region[0].start for t in tiles}
    per_axis = -(-(2000 - 110) // (4 * 102 - 110))  # as many as 408-pixel tiles need
    assert len(tiles) == per_axis**2 and max(sizes) <= 4 * 102
    assert tiling.effective_tile(300, 64, 110, 51, 8) == 300  # the whole axis: one tile
    assert tiling.effective_tile(300, 16, 8, 0) == 16  # nothing discarded: no need to grow


def test_tileable_models_default_to_tiles_several_overlaps_wide():
    for name in SHIPPED:
        method = get_method(name)
        if method.tile is None:
            continue
        overlap = _geometry(method, {}, (1, 1))["overlap"][0]
        assert method.tile >= registry.TILE_PER_OVERLAP * overlap >= 4 * overlap


def test_models_with_global_attention_are_marked_and_run_whole_planes(fmd_pair):
    for name in ("ridnet-fluo", "restormer-fluo"):
        method = get_method(name)
        card = store.read_card(store.SHIPPED_DIR / f"{name}.json")
        assert card["tileable"] is False and method.tile is None
        assert "whole planes" in method.title and "Not tileable" in method.description
        tiles = tiling.plan_tiles((2048, 2048), (16, 16), **_geometry(method, {}, (2048, 2048)))
        assert len(tiles) == 1


def test_a_plane_too_large_for_a_whole_plane_model_is_refused(user_dir, fmd_pair):
    import json
    import shutil

    card = json.loads((store.SHIPPED_DIR / "ridnet-fluo.json").read_text())
    card.update(name="ridnet-small", whole_plane_max_pixels=1000, default_rank=None)
    card["weights"]["file"] = "ridnet-small.safetensors"
    user_dir.mkdir(parents=True)
    shutil.copy(
        store.SHIPPED_DIR / "ridnet-fluo.safetensors", user_dir / "ridnet-small.safetensors"
    )
    (user_dir / "ridnet-small.json").write_text(json.dumps(card))
    registry.register_models()
    with pytest.raises(nd.ParameterError, match=r"cannot be tiled.*64x64"):
        nd.denoise(fmd_pair[0][:64, :64], "ridnet-small")
    assert nd.denoise(fmd_pair[0][:30, :30], "ridnet-small").shape == (30, 30)


@pytest.mark.parametrize("architecture", ["restormer_lite", "ridnet"])
def test_a_user_model_with_global_attention_is_saved_as_not_tileable(user_dir, architecture):
    from napari_denoise.engine.models import build

    model = build(architecture, {})
    card = store.save_model(model, {"name": "mine"}, user_dir / "mine.safetensors")
    assert card["tileable"] is False
    registry.register_models()
    method = get_method("mine")
    assert method.tile is None and "whole planes" in method.title

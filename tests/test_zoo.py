"""Model files: round trip, every way a file can be wrong, registration, tiling, import cost."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.models import (  # noqa: E402
    build,
    inference,
    registry,
    store,
)
from napari_denoise.errors import ModelFileError  # noqa: E402

CARD = {
    "name": "tiny-unet",
    "title": "Tiny U-Net (test)",
    "training": {"data": ["synthetic"], "seed": 0, "steps": 0, "seconds": 0.0},
}


def _model(seed=0, **config):
    torch.manual_seed(seed)
    model = build("unet", {"base": 8, "depth": 2, **config})
    with torch.no_grad():  # not the identity, so that tiling and round trips are tested
        model.head.weight.normal_(0.0, 0.2)
    return model.eval()


@pytest.fixture
def saved(user_dir):
    card = store.save_model(_model(), CARD, user_dir / "tiny-unet.safetensors")
    registry.register_models()
    return user_dir / "tiny-unet", card


def test_user_model_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_DENOISE_MODEL_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert store.user_model_dir() == tmp_path / "napari-denoise" / "models"
    monkeypatch.setenv("NAPARI_DENOISE_MODEL_DIR", str(tmp_path / "mine"))
    assert store.user_model_dir() == tmp_path / "mine"


def test_round_trip_is_bit_exact_and_the_card_is_complete(saved):
    stem, _ = saved
    model, loaded_card = store.load_model("tiny-unet")
    original = _model()
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert not model.training
    x = torch.rand(1, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():  # the zoo runs channels-last; same layout, same numbers
        assert torch.equal(model(x), original.to(memory_format=torch.channels_last)(x))
    for field in ("architecture", "config", "normalisation", "parameters", "weights", "training"):
        assert field in loaded_card
    assert loaded_card["weights"]["sha256"] == store.sha256_file(stem.with_suffix(".safetensors"))
    assert loaded_card["parameters"] == sum(p.numel() for p in original.parameters())
    # The same model by path (card or weights file) as by name.
    assert store.load_model(stem.with_suffix(".json"))[1]["name"] == "tiny-unet"
    assert store.load_model(str(stem.with_suffix(".safetensors")))[1]["name"] == "tiny-unet"


def test_save_leaves_no_temporary_files(saved):
    stem, _ = saved
    assert sorted(p.name for p in stem.parent.iterdir()) == [
        "tiny-unet.json",
        "tiny-unet.safetensors",
    ]


def test_unknown_name_is_a_clear_model_file_error(user_dir):
    with pytest.raises(ModelFileError, match="There is no model named 'nope'"):
        store.load_model("nope")


def test_changed_weights_do_not_match_their_card(saved):
    stem, _ = saved
    weights = stem.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its card"):
        store.load_model("tiny-unet")


def test_weights_that_are_not_safetensors(saved):
    stem, card = saved
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(b"\x80\x04this is a pickle, not safetensors")
    card["weights"]["sha256"] = store.sha256_file(weights)  # even with a matching hash
    stem.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        store.load_model("tiny-unet")


def test_missing_weights(saved):
    stem, _ = saved
    stem.with_suffix(".safetensors").unlink()
    with pytest.raises(ModelFileError, match="weights of model 'tiny-unet' are missing"):
        store.load_model("tiny-unet")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"config": {"base": 16, "depth": 2}},
            r"tensor '.*' has shape .* the architecture expects",
        ),
        ({"config": {"base": 8, "depth": 1}}, "unexpected tensor"),
        ({"config": {"base": 8, "depth": 2, "wings": 2}}, "invalid config"),
        ({"architecture": "vit-huge"}, "needs architecture 'vit-huge'"),
    ],
)
def test_card_and_weights_that_do_not_fit(saved, change, words):
    stem, card = saved
    card.update(change)
    stem.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=words):
        store.load_model("tiny-unet")


def test_corrupt_card_is_an_unavailable_method_not_a_crash(saved):
    stem, _ = saved
    stem.with_suffix(".json").write_text('{"architecture": "unet", ')
    with pytest.raises(ModelFileError, match="not valid JSON"):
        store.load_model("tiny-unet")
    registry.register_models()
    method = next(m for m in nd.list_methods() if m.name == "tiny-unet")
    assert not method.available and "not valid JSON" in method.unavailable_reason
    assert any(m.name == "gaussian" for m in nd.list_methods())


def test_user_model_is_listed_as_a_model_method(saved):
    method = next(m for m in nd.list_methods() if m.name == "tiny-unet")
    assert method.kind == "model" and method.available
    described = method.describe()
    assert described["kind"] == "model"
    assert described["model"]["sha256"] == saved[1]["weights"]["sha256"]
    assert {p["name"] for p in described["params"]} == {
        "norm_low",
        "norm_high",
        "ensemble",
        "device",
    }
    assert method.default_rank is None and method.tile == registry.MODEL_TILE


def test_a_model_never_shadows_a_classical_filter(user_dir):
    store.save_model(_model(), {**CARD, "name": "gaussian"}, user_dir / "gaussian.safetensors")
    with pytest.warns(UserWarning, match="a method named 'gaussian' exists"):
        registry.register_models()
    assert nd.get_method("gaussian").kind == "classical"


def test_tiled_inference_matches_untiled(user_dir, fmd_pair):
    # A network without downsampling is shift-equivariant: tiles must agree to float
    # precision once the halo and the shared normalisation are right.
    torch.manual_seed(0)
    model = build("dncnn", {"depth": 6, "features": 8})
    with torch.no_grad():
        model.body[-1].weight.normal_(0.0, 0.5)
    store.save_model(model, {**CARD, "name": "tiny-dncnn"}, user_dir / "tiny-dncnn")
    registry.register_models()
    image = fmd_pair[0][:200, :168].astype(np.float32)
    whole = nd.denoise(image, "tiny-dncnn", tile=256, output_dtype="float32")
    tiled = nd.denoise(image, "tiny-dncnn", tile=64, output_dtype="float32")
    assert not np.allclose(whole, image, atol=1.0)  # the model does something
    span = float(image.max() - image.min())
    assert np.abs(whole - tiled).max() < 1e-4 * span


def test_tiled_unet_matches_untiled(saved, fmd_pair):
    image = fmd_pair[0][:200, :168].astype(np.float32)
    whole = nd.denoise(image, "tiny-unet", tile=256, output_dtype="float32")
    tiled = nd.denoise(image, "tiny-unet", tile=128, output_dtype="float32")
    span = float(image.max() - image.min())
    assert np.abs(whole - tiled).max() < 1e-3 * span


def test_self_ensemble_is_a_model_parameter_recorded_and_tiled_like_one_pass(saved, fmd_pair):
    from napari_denoise.engine.denoise.pipeline import denoise_iter, drain

    param = {p.name: p for p in nd.get_method("tiny-unet").params}["ensemble"]
    assert param.default == 1 and param.choices == (1, 2, 4, 8)
    image = fmd_pair[0][:200, :168].astype(np.float32)
    result = drain(
        denoise_iter(image, "tiny-unet", tile=256, output_dtype="float32", params={"ensemble": 8})
    )
    assert result.params["ensemble"] == 8
    single = nd.denoise(image, "tiny-unet", tile=256, output_dtype="float32")
    span = float(image.max() - image.min())
    assert np.abs(result.data - single).max() > 1e-3 * span  # the eight passes are averaged
    tiled = nd.denoise(image, "tiny-unet", tile=128, output_dtype="float32", ensemble=8)
    assert np.abs(result.data - tiled).max() < 1e-3 * span
    with pytest.raises(nd.ParameterError, match="ensemble"):
        nd.denoise(image, "tiny-unet", ensemble=3)


def test_batched_tiles_match_single_tiles(saved, fmd_pair, monkeypatch):
    """Tiles batched into one forward pass (as on a GPU; forced here on the CPU) give the
    same image as tiles run one at a time, with a shipped network told the noise too."""
    from napari_denoise.engine.denoise.pipeline import denoise_iter, drain

    # 512 pixels: several same-shaped tiles even once a tile grows to four overlaps.
    image = fmd_pair[0].astype(np.float32)
    for name in ("tiny-unet", "unet-fluo-nm"):
        monkeypatch.delenv("NAPARI_DENOISE_TILE_BATCH", raising=False)
        single = nd.denoise(image, name, tile=128, output_dtype="float32")
        monkeypatch.setenv("NAPARI_DENOISE_TILE_BATCH", "4")
        ticks = []
        batched = drain(denoise_iter(image, name, tile=128, output_dtype="float32"), ticks.append)
        span = float(image.max() - image.min())
        assert np.abs(batched.data - single).max() < 1e-4 * span
        if name == "tiny-unet":  # fewer progress ticks than tiles (plus set-up)
            assert len(ticks) < ticks[-1].total + 1
    assert inference.tile_batch({"device": "cpu"}) == 4  # the override
    monkeypatch.delenv("NAPARI_DENOISE_TILE_BATCH")
    assert inference.tile_batch({"device": "cpu"}) == 1  # the CPU runs tiles one at a time


def test_denoise_uses_one_normalisation_per_image_and_records_the_model(saved, fmd_pair):
    from napari_denoise.engine.denoise.pipeline import denoise_iter, drain

    image = fmd_pair[0][:96, :96]
    result = drain(denoise_iter(image, "tiny-unet"))
    lo, hi = np.percentile(image.astype(np.float32), [0.1, 99.9])
    assert result.params["norm_low"] == pytest.approx(lo, abs=1e-4)
    assert result.params["norm_high"] == pytest.approx(hi, abs=1e-4)
    assert result.provenance()["model"]["sha256"] == saved[1]["weights"]["sha256"]
    assert result.data.shape == image.shape and result.data.dtype == image.dtype


def test_strength_parameter_for_noise_level_networks(user_dir, fmd_pair):
    torch.manual_seed(0)
    model = build("drunet", {"channels": (8, 16), "blocks": 1})
    with torch.no_grad():
        model.tail.weight.normal_(0.0, 0.1)
    store.save_model(model, {**CARD, "name": "tiny-drunet"}, user_dir / "tiny-drunet")
    registry.register_models()
    method = nd.get_method("tiny-drunet")
    assert "strength" in {p.name for p in method.params}
    image = fmd_pair[0][:64, :64].astype(np.float32)
    params = method.auto([image], method.resolve_params({}))
    assert 0 < params["strength"] < 1
    weak = nd.denoise(image, "tiny-drunet", strength=0.0, output_dtype="float32")
    strong = nd.denoise(image, "tiny-drunet", strength=0.5, output_dtype="float32")
    assert not np.allclose(weak, strong)


def test_importing_the_package_and_listing_models_does_not_import_torch(saved):
    code = (
        "import sys, napari_denoise as nd\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "names = [m.name for m in nd.list_methods(kind='model')]\n"
        "assert 'tiny-unet' in names, names\n"
        "assert 'torch' not in sys.modules, 'list_methods'\n"
    )
    env = {**os.environ, "NAPARI_DENOISE_MODEL_DIR": str(saved[0].parent)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_bf16_decision_is_measured_and_recorded(fmd_pair):
    noisy, gt = fmd_pair
    record = inference.choose_cpu_precision(
        _model(), [(noisy[:64, :64].astype(np.float32), gt[:64, :64].astype(np.float32))], repeats=1
    )
    assert {"fp32_ms_per_mp", "bf16_ms_per_mp", "bf16_psnr_change_db", "cpu_bf16"} <= set(record)
    if record["cpu_bf16"]:
        assert record["bf16_ms_per_mp"] < record["fp32_ms_per_mp"]
        assert abs(record["bf16_psnr_change_db"]) < 0.05


SHIPPED = sorted(p.stem for p in store.SHIPPED_DIR.glob("*.json"))


def test_the_shipped_models_are_listed():
    assert "unet-fluo" in SHIPPED
    listed = {m.name for m in nd.list_methods(kind="model") if m.available}
    assert set(SHIPPED) <= listed


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_raises_psnr_on_a_real_fmd_pair(name, fmd_pair):
    from napari_denoise.engine.metrics import psnr

    card = store.read_card(store.SHIPPED_DIR / f"{name}.json")
    assert card["weights"]["sha256"] == store.sha256_file(
        store.SHIPPED_DIR / card["weights"]["file"]
    )
    noisy, gt = fmd_pair[0][:256, :256], fmd_pair[1][:256, :256]
    out = nd.denoise(noisy, name)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert psnr(gt, out, data_range=255) > psnr(gt, noisy, data_range=255) + 3.0


def test_noise_map_network_is_told_the_estimated_noise_and_strength_scales_it(user_dir, fmd_pair):
    torch.manual_seed(0)
    model = build("unet", {"base": 8, "depth": 2, "noise_map": True})
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.1)
    card = store.save_model(model, {**CARD, "name": "tiny-nm"}, user_dir / "tiny-nm")
    assert card["noise_input"] == "poisson-gaussian" and card["takes_noise_level"]
    registry.register_models()
    method = nd.get_method("tiny-nm")
    names = {p.name for p in method.params}
    assert {"strength", "noise_gain", "noise_floor"} <= names
    noisy = fmd_pair[0][:128, :128].astype(np.float32)
    params = method.auto([noisy], method.resolve_params({}))
    # FMD confocal captures are shot-noise limited: a clear Poisson part.
    assert params["noise_gain"] > 0 and params["strength"] == 1.0
    base = nd.denoise(noisy, "tiny-nm", output_dtype="float32")
    again = nd.denoise(noisy, "tiny-nm", strength=1.0, output_dtype="float32")
    stronger = nd.denoise(noisy, "tiny-nm", strength=2.0, output_dtype="float32")
    np.testing.assert_array_equal(base, again)
    assert not np.allclose(base, stronger)

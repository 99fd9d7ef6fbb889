"""One bad model card never breaks the tool; only shipped models decide the default."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_denoise as nd  # noqa: E402
from napari_denoise.cli import main  # noqa: E402
from napari_denoise.engine.methods import default_method, list_methods  # noqa: E402
from napari_denoise.engine.models import build, registry, store  # noqa: E402
from napari_denoise.errors import ModelFileError  # noqa: E402


@pytest.fixture
def user_card(user_dir):
    """A valid user model (a small U-Net) saved in the user folder; its card's path."""
    torch.manual_seed(0)
    model = build("unet", {"base": 8, "depth": 2}).eval()
    store.save_model(model, {"name": "mine"}, user_dir / "mine.safetensors")
    registry.register_models()
    return user_dir / "mine.json"


def _edit(path, **fields):
    card = json.loads(path.read_text())
    card.update(fields)
    path.write_text(json.dumps(card))
    registry.register_models()


BAD_FIELDS = [
    ({"halo": "abc"}, "halo"),
    ({"halo": -3}, "halo"),
    ({"halo": 2.5}, "halo"),
    ({"name": None}, "name"),
    ({"name": ""}, "name"),
    ({"name": 7}, "name"),
    ({"default_rank": "high"}, "default_rank"),
    ({"multiple": 0}, "multiple"),
    ({"multiple": "8"}, "multiple"),
    ({"reach": [1]}, "reach"),
    ({"title": 5}, "title"),
    ({"description": {"a": 1}}, "description"),
    ({"architecture": 3}, "architecture"),
    ({"config": [1, 2]}, "config"),
    ({"weights": {"sha256": 12}}, "sha256"),
    ({"normalisation": {"kind": "percentile", "low": "a", "high": 99.9}}, "normalisation"),
    ({"normalisation": {"kind": "percentile", "low": 99.0, "high": 1.0}}, "normalisation"),
    ({"noise_input": "gamma"}, "noise_input"),
    ({"takes_noise_level": "yes"}, "takes_noise_level"),
    ({"inference": {"cpu_bf16": "no"}}, "cpu_bf16"),
    ({"tileable": "no"}, "tileable"),
    ({"whole_plane_max_pixels": 0}, "whole_plane_max_pixels"),
    # the default's detail restoration rule: read at run time, so checked here
    ({"detail": "yes"}, "detail"),
    ({"detail": {"widths": ["a"]}}, "detail"),
    ({"detail": {"widths": []}}, "detail"),
    ({"detail": {"widths": [-1.0]}}, "detail"),
    ({"detail": {"widths": [9.0]}}, "detail"),
    ({"detail": {"margin": "0.2"}}, "detail"),
    ({"detail": {"margin": -0.5}}, "detail"),
    # the default's rule for mixing in the Gaussian (issue 23), read at run time too
    ({"gaussian_fallback": "yes"}, "gaussian_fallback"),
    ({"gaussian_fallback": {"margin": "0.05"}}, "gaussian_fallback"),
    ({"gaussian_fallback": {"margin": -1}}, "gaussian_fallback"),
]


@pytest.mark.parametrize(("fields", "word"), BAD_FIELDS)
def test_a_bad_field_makes_that_model_unavailable_and_nothing_else(
    user_card, fields, word, fmd_pair, capsys
):
    _edit(user_card, **fields)
    with pytest.raises(ModelFileError, match=word):
        store.read_card(user_card)
    # Listed, unavailable, with the reason naming the field.
    bad = [m for m in list_methods() if m.model is None and not m.available]
    assert len(bad) == 1 and word in bad[0].unavailable_reason
    assert main(["list"]) == 0
    assert "unavailable" in capsys.readouterr().out
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sum(not m["available"] for m in listed) == 1
    # Every other method still runs, and a shipped model is still the default.
    image = fmd_pair[0][:64, :64]
    assert nd.denoise(image, "gaussian").shape == image.shape
    assert default_method().name == "unet-fluo"


def test_cli_runs_a_filter_with_a_bad_user_card(user_card, fmd_pair, tmp_path):
    import tifffile

    _edit(user_card, halo="abc")
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, fmd_pair[0][:64, :64])
    code = main(["denoise", str(src), "-o", str(tmp_path / "out.tif"), "--method", "gaussian"])
    assert code == 0 and (tmp_path / "out.tif").exists()


def test_a_user_card_cannot_make_itself_the_default(user_card, monkeypatch):
    _edit(user_card, default_rank=1e9)
    mine = nd.get_method("mine")
    assert mine.available  # a rank in a user card is ignored, not an error
    assert default_method().name == "unet-fluo"
    assert not mine.is_default


def test_the_user_names_the_default_model_explicitly(user_card, monkeypatch):
    monkeypatch.setenv("NAPARI_DENOISE_DEFAULT_MODEL", "mine")
    registry.register_models()
    assert default_method().name == "mine"
    monkeypatch.setenv("NAPARI_DENOISE_DEFAULT_MODEL", "no-such-model")
    with pytest.warns(UserWarning, match="no-such-model"):
        registry.register_models()
    assert default_method().name == "unet-fluo"
    monkeypatch.delenv("NAPARI_DENOISE_DEFAULT_MODEL")
    registry.register_models()


def test_every_shipped_card_passes_the_validation():
    for path in sorted(store.SHIPPED_DIR.glob("*.json")):
        card = store.read_card(path)
        assert card["name"] == path.stem
    assert all(m.available for m in list_methods(kind="model"))


def test_a_valid_user_card_is_untouched_by_validation(user_card):
    method = nd.get_method("mine")
    assert method.available and method.default_rank is None
    assert np.isfinite(nd.denoise(np.random.default_rng(0).random((40, 40)), "mine")).all()


def test_a_user_card_with_a_detail_rule_gets_the_detail_restoration(user_card):
    _edit(user_card, detail={"widths": [0.0, 1.3], "margin": 0.2})
    method = nd.get_method("mine")
    assert {"detail", "detail_width"} <= {p.name for p in method.params}
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    out = nd.denoise(image, "mine", output_dtype="float32")
    assert out.shape == image.shape and np.isfinite(out).all()

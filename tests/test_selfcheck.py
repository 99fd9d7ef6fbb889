"""The no-ground-truth check: SURE of a black-box denoiser against the real error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_denoise.engine.denoise import selfcheck


@pytest.fixture(scope="module")
def clean(shared_data):
    import tifffile

    gt = tifffile.imread(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_1.tif"
    )
    return gt.astype(np.float64)[:256, :256]


def poisson_gaussian(clean, photons, seed=0):
    rng = np.random.default_rng(seed)
    gain = 255.0 / photons
    return (gain * rng.poisson(clean / gain) + rng.normal(0, 1.0, clean.shape)).astype(np.float32)


def blur(sigma):
    return lambda im: gaussian_filter(np.asarray(im, np.float64), sigma)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_risk_estimates_the_real_error(clean, sigma):
    noisy = poisson_gaussian(clean, photons=60)
    out = blur(sigma)(noisy)
    true = float(np.mean((out - clean) ** 2))
    assert selfcheck.risk(noisy, blur(sigma)) == pytest.approx(true, rel=0.15)


def test_better_picks_the_result_closer_to_the_truth(clean):
    """At high SNR light smoothing wins, at low SNR strong smoothing: the check follows."""
    for photons, expected in ((2000, "light"), (10, "strong")):
        noisy = poisson_gaussian(clean, photons)
        name, scores = selfcheck.better(noisy, {"light": blur(0.6), "strong": blur(2.5)})
        true = {
            k: float(np.mean((blur(s)(noisy) - clean) ** 2))
            for k, s in (("light", 0.6), ("strong", 2.5))
        }
        assert min(true, key=true.get) == expected  # the premise
        assert name == expected, scores


def test_blend_weight_backs_off_an_over_smoothing_denoiser(clean):
    noisy = poisson_gaussian(clean, photons=2000)
    strong = blur(3.0)
    w = selfcheck.blend_weight(noisy, strong)
    assert 0.0 <= w < 0.9
    err = lambda out: float(np.mean((out - clean) ** 2))  # noqa: E731
    blended = w * strong(noisy) + (1 - w) * noisy
    assert err(blended) < err(strong(noisy))
    assert selfcheck.blend_weight(noisy, lambda im: np.asarray(im, np.float64)) == 1.0


def test_correlated_noise_is_measured(w2s_noise_pair):
    correlated, independent = w2s_noise_pair
    # conftest: 3 (white) and 12 (smoothed) grey levels of noise; 12 (white) alone
    c = selfcheck.estimate_noise_covariance(correlated)
    i = selfcheck.estimate_noise_covariance(independent)
    assert c.correlation is not None and i.correlation is None
    # within 30%: the finest scale holds little of smoothed noise (1/8 here), and some signal
    assert np.mean(c.variance) == pytest.approx(9 + 144, rel=0.3)
    assert np.mean(i.variance) == pytest.approx(144, rel=0.2)
    z = c.sample(np.random.default_rng(0)) / np.sqrt(c.variance)
    assert np.mean(z[:, 1:] * z[:, :-1]) > 0.3  # neighbours share the noise


def test_same_seed_same_answer(clean):
    noisy = poisson_gaussian(clean, photons=60)
    assert selfcheck.risk(noisy, blur(1.0), seed=3) == selfcheck.risk(noisy, blur(1.0), seed=3)


# --- at the end of a self-supervised fine-tune: new vs start model ------------------------


@pytest.fixture(scope="module")
def stripes(shared_data):
    """Held-out-like stripes of real W2S noisy images, normalised as training does."""
    import tifffile

    out = []
    for name in ("input_avg1_009_0.tif", "input_avg1_010_2.tif"):
        z = tifffile.imread(shared_data / "W2S_8bit_subset" / "images_avg1_8bit" / name)
        z = z.astype(np.float32)[:96, :256]
        lo, hi = np.percentile(z, [0.1, 99.9])
        out.append((z - lo) / (hi - lo))
    return out


def _prepared(start, stripes, mode="n2v"):
    from types import SimpleNamespace

    return SimpleNamespace(
        spec=SimpleNamespace(mode=mode),
        start_card={"name": "unet-fluo"},
        started_from={"name": "unet-fluo"},
        model=start,
        val_images=stripes,
    )


def test_finetune_check_keeps_the_start_model_when_the_new_one_is_worse(stripes):
    import copy

    import torch

    from napari_denoise.engine.methods import get_method
    from napari_denoise.engine.models.inference import loaded
    from napari_denoise.engine.training.finetune import compare_with_start

    good, _ = loaded(get_method("unet-fluo").model.card, "cpu")
    worse = copy.deepcopy(good)
    with torch.no_grad():  # a fine-tune gone wrong: the residual head damaged
        for p in list(worse.parameters())[-2:]:
            p.mul_(3.0)
    kept = compare_with_start(_prepared(good, stripes), worse, name="unet-fluo-n2v")
    assert kept["better"] == "start" and kept["new_mse"] > kept["start_mse"]
    assert "NOT better than 'unet-fluo'" in kept["message"]
    assert "keep using 'unet-fluo'" in kept["message"]
    taken = compare_with_start(_prepared(worse, stripes), good, name="unet-fluo-n2v")
    assert taken["better"] == "new" and "'unet-fluo-n2v' is better" in taken["message"]
    # Supervised training has its own ground truth; a fresh network has no start to keep.
    assert compare_with_start(_prepared(good, stripes, mode="supervised"), worse) is None


def test_train_n2v_from_a_trained_model_says_which_is_better(
    user_dir, shared_data, tmp_path, capsys
):
    import json

    import tifffile

    from napari_denoise.cli import main

    src = shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    stack = tmp_path / "membrane.tif"
    tifffile.imwrite(stack, tifffile.imread(src)[:2], imagej=True, metadata={"axes": "TYX"})
    args = ["train", str(stack), "--mode", "n2v", "--steps", "2", "--start", "unet-fluo"]
    assert main([*args, "--batch-size", "2", "--patch", "32", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    card = json.loads(next(user_dir.glob("*.json")).read_text())
    check = card["training"]["selfcheck"]
    assert check["better"] == ("new" if check["new_mse"] < check["start_mse"] else "start")
    assert check["message"] in out and "Check without ground truth" in out


# --- the default model's per-image blend ---------------------------------------------------


@pytest.fixture(scope="module")
def clean_whole(shared_data):
    import tifffile

    gt = tifffile.imread(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_1.tif"
    )
    return gt.astype(np.float64)


def test_default_backs_off_on_a_clean_image_and_not_on_a_noisy_one(clean_whole):
    import napari_denoise as nd
    from napari_denoise.engine.denoise.pipeline import choose_params
    from napari_denoise.engine.methods import get_method

    method = get_method("unet-fluo")
    base = {p.name: p.default for p in method.params}
    err = {}
    for photons in (3000, 10):
        noisy = np.clip(np.round(poisson_gaussian(clean_whole, photons, seed=1)), 0, 255)
        params, _ = choose_params(method, base, [noisy])
        err[photons] = {
            w: float(np.mean((nd.denoise(noisy, "unet-fluo", blend=w) - clean_whole) ** 2))
            for w in (params["blend"], 1.0)
        }
        if photons == 10:
            assert params["blend"] == 1.0  # a noisy image: the network alone
        else:
            assert params["blend"] < 1.0  # a clean image: the network over-smooths
            assert err[photons][params["blend"]] < err[photons][1.0]


def test_blend_is_pixel_by_pixel_so_tiles_stay_as_the_network_makes_them(clean):
    import napari_denoise as nd

    noisy = np.clip(np.round(poisson_gaussian(clean, 3000, seed=2)), 0, 255).astype(np.uint8)
    for tile in (None, 96):
        mixed = nd.denoise(noisy, "unet-fluo", blend=0.6, tile=tile, output_dtype="float32")
        net = nd.denoise(noisy, "unet-fluo", blend=1.0, tile=tile, output_dtype="float32")
        assert np.max(np.abs(mixed - (0.6 * net + 0.4 * noisy))) < 0.01

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


def test_detail_choice_puts_back_what_an_over_smoothing_denoiser_removed(clean):
    noisy = poisson_gaussian(clean, photons=2000)
    strong = blur(3.0)
    out = strong(noisy)
    amount, width = selfcheck.detail_choice(noisy, strong, result=out, margin=0.2)
    assert 0.3 < amount <= 1.0 and width > 0  # smoothed detail beats the raw input here
    err = lambda im: float(np.mean((im - clean) ** 2))  # noqa: E731
    restored = selfcheck.put_back(out, noisy, amount, width)
    assert err(restored) < 0.5 * err(out)
    raw, _ = selfcheck.detail_choice(noisy, strong, result=out, widths=(0.0,), margin=0.2)
    assert err(restored) < err(selfcheck.put_back(out, noisy, raw, 0.0))


def test_detail_choice_keeps_pure_noise_out_when_the_noise_is_read_low(clean):
    """A perfect denoiser leaves pure noise as its residual. With the noise variance read
    10% low (as on some real W2S frames) SURE takes that noise for detail; the margin
    keeps it out."""
    noisy = poisson_gaussian(clean, photons=100)
    truth = lambda im: clean  # noqa: E731  (no dependence on the input: J = 0)
    noise = selfcheck.estimate_noise_covariance(noisy)
    true_var = float(np.mean((noisy - clean) ** 2))
    low = selfcheck.NoiseCovariance(
        noise.variance * 0.9 * true_var / float(np.mean(noise.variance))
    )
    amount, _ = selfcheck.detail_choice(noisy, truth, noise=low, margin=0.0)
    assert amount > 0.05  # the premise: the mechanism the margin guards against
    assert selfcheck.detail_choice(noisy, truth, noise=low, margin=0.2) == (0.0, 0.0)


def test_put_back_smooths_each_plane_on_its_own():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 40, 40)).astype(np.float32)
    result = np.zeros_like(image)
    both = selfcheck.put_back(result, image, 0.5, 1.3)
    for k in range(2):
        alone = selfcheck.put_back(result[k], image[k], 0.5, 1.3)
        np.testing.assert_allclose(both[k], alone, atol=1e-6)
    np.testing.assert_array_equal(selfcheck.put_back(result, image, 0.0, 1.3), result)


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


# --- the default model's per-image detail restoration ---------------------------------------


@pytest.fixture(scope="module")
def clean_whole(shared_data):
    import tifffile

    gt = tifffile.imread(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_1.tif"
    )
    return gt.astype(np.float64)


def test_default_puts_back_detail_on_a_clean_image_and_not_on_a_noisy_one(clean_whole):
    import napari_denoise as nd
    from napari_denoise.engine.denoise.pipeline import choose_params
    from napari_denoise.engine.methods import get_method

    method = get_method("unet-fluo")
    base = {p.name: p.default for p in method.params}
    for photons in (3000, 10):
        noisy = np.clip(np.round(poisson_gaussian(clean_whole, photons, seed=1)), 0, 255)
        params, _ = choose_params(method, base, [noisy])
        err = {
            d: float(np.mean((nd.denoise(noisy, "unet-fluo", detail=d) - clean_whole) ** 2))
            for d in (params["detail"], 0.0)
        }
        if photons == 10:
            assert params["detail"] == 0.0  # a noisy image: the network alone
        else:
            assert params["detail"] > 0.3  # a clean image: the network over-smooths
            # more than 10% less squared error than the network alone
            assert err[params["detail"]] < 0.9 * err[0.0]


def test_detail_is_local_so_tiles_stay_as_the_network_makes_them(clean_whole):
    import napari_denoise as nd
    from napari_denoise.engine.denoise.selfcheck import put_back

    # 512 x 512 in tiles of at least four times the overlap (~460 px): 2 x 2 tiles
    noisy = np.clip(np.round(poisson_gaussian(clean_whole, 3000, seed=2)), 0, 255)
    noisy = noisy.astype(np.uint8)
    whole = None
    for tile in (None, 96):
        kw = dict(tile=tile, output_dtype="float32")
        restored = nd.denoise(noisy, "unet-fluo", detail=0.8, detail_width=3.0, **kw)
        net = nd.denoise(noisy, "unet-fluo", detail=0.0, **kw)
        expected = put_back(net, noisy, 0.8, 3.0)
        assert np.max(np.abs(restored - expected)) < 0.02
        if whole is None:
            whole = restored
        else:  # the halo grows by the detail's reach (12 px): exact as the network alone
            assert np.max(np.abs(restored - whole)) < 3e-5  # 5e-5 with the network's halo


def test_one_detail_setting_given_the_other_is_chosen_for_it(clean_whole):
    """A width given alone gets the amount best for that width, not the amount chosen for
    another width (on a clean image ``detail_width=0`` got the amount chosen for 0.9 px,
    1.0: the noisy input itself came back); an amount given alone gets the width best
    for that amount (it got a fixed 1.3 px whatever the image)."""
    from napari_denoise.engine.denoise.pipeline import choose_params
    from napari_denoise.engine.methods import get_method
    from napari_denoise.engine.models.registry import choose_detail
    from napari_denoise.engine.models.store import read_card

    method = get_method("unet-fluo")
    rule = read_card(method.model.card)["detail"]
    noisy = np.clip(np.round(poisson_gaussian(clean_whole, 3000, seed=1)), 0, 255)
    samples = [noisy.astype(np.float32)]

    def chosen(**given):
        params, _ = choose_params(method, method.resolve_params(given), samples)
        return params

    auto = chosen()
    amount, width = auto["detail"], auto["detail_width"]
    assert amount > 0.3  # the premise: a clean image gets detail back
    # Either value given alone: the other one comes back as chosen with it.
    assert chosen(detail=amount)["detail_width"] == width
    assert chosen(detail_width=width)["detail"] == pytest.approx(amount, abs=1e-6)
    # A width the rule did not choose: the amount of the rule restricted to that width.
    other = min((w for w in rule["widths"] if w != width), key=lambda w: abs(w - 0.0))
    fixed = {k: v for k, v in auto.items() if k not in ("detail", "detail_width")}
    best, _ = choose_detail(
        samples, fixed, card_path=method.model.card, rule={**rule, "widths": [other]}
    )
    assert abs(best - amount) > 0.05  # the premise: another width, another amount
    given = chosen(detail_width=other)
    assert given["detail_width"] == other
    assert given["detail"] == pytest.approx(best, abs=1e-6)
    # The network alone: no width to choose, none recorded.
    assert chosen(detail=0.0)["detail_width"] == 0.0
    # A noisy image with a width given: nothing put back, and the width stays as given.
    noisy = np.clip(np.round(poisson_gaussian(clean_whole, 10, seed=1)), 0, 255)
    samples = [noisy.astype(np.float32)]
    given = chosen(detail_width=2.0)
    assert (given["detail"], given["detail_width"]) == (0.0, 2.0)


def test_a_stack_gets_no_detail_that_one_of_its_planes_would_refuse(clean_whole):
    """One detail setting serves every plane of a channel. A stack whose middle plane is
    clean and the others noisy (a Z-stack's focus, a bleaching time-lapse) got the middle
    plane's choice, which put noise back into the noisy planes (twice the network's
    squared error there); every sampled plane must now find the setting harmless, and a
    stack of clean planes still gets its detail back."""
    from napari_denoise.engine.denoise.pipeline import denoise_iter, drain

    def plane(photons, seed):
        noisy = np.clip(np.round(poisson_gaussian(clean_whole, photons, seed=seed)), 0, 255)
        return noisy.astype(np.uint8)

    def run(stack, **params):
        kw = dict(axes="ZYX", output_dtype="float32", params=params)
        return drain(denoise_iter(stack, "unet-fluo", **kw))

    def err(out):
        return float(np.mean((out - clean_whole) ** 2))

    mixed = np.stack([plane(30, 1), plane(3000, 2), plane(30, 3)])
    auto, net = run(mixed), run(mixed, detail=0.0)
    for k in (0, 2):  # the noisy planes: no worse than the network alone
        assert err(auto.data[k]) <= 1.01 * err(net.data[k])
    clean = np.stack([plane(3000, 4), plane(3000, 5)])
    assert run(clean).params["detail"] > 0.3


def _offset_crop(clean_whole, photons, seed, offset=30.0):
    """A dim 256 x 256 corner of a W2S field with a black level of 30: the Poisson-Gaussian
    fit reads its noise at a third of the truth for some noise draws."""
    rng = np.random.default_rng(seed)
    clean = clean_whole[256:, :256]
    gain = 255.0 / photons
    noisy = gain * rng.poisson(clean / gain) + offset + rng.normal(0, 1.0, clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.float32), clean + offset


@pytest.mark.parametrize("photons,seed", [(10, 1), (100, 2)])
def test_noise_is_never_read_below_what_the_finest_detail_holds(clean_whole, photons, seed):
    noisy, clean = _offset_crop(clean_whole, photons, seed)
    true = float(np.mean((noisy - clean) ** 2))
    noise = selfcheck.estimate_noise_covariance(noisy)
    assert noise.correlation is None  # the premise: independent noise
    assert float(np.mean(noise.variance)) >= 0.9 * true


@pytest.mark.parametrize("photons,seed", [(10, 1), (100, 2)])
def test_the_default_puts_no_noise_back_where_the_noise_fit_fails(clean_whole, photons, seed):
    import napari_denoise as nd

    noisy, clean = _offset_crop(clean_whole, photons, seed)
    auto = nd.denoise(noisy, "unet-fluo", output_dtype="float32")
    net = nd.denoise(noisy, "unet-fluo", detail=0.0, output_dtype="float32")
    err = lambda out: float(np.mean((out - clean) ** 2))  # noqa: E731
    assert err(auto) <= 1.05 * err(net)  # was 5.6x (10 photons) and 2.7x (100 photons)


def test_sharp_bright_spots_are_not_read_as_noise(clean):
    """Sub-resolution beads (one bright pixel each) hold a large diagonal detail energy
    in a few blocks; the floor read it as noise (8x the truth), and SURE then called a
    blur that erases them 20x better than it is."""
    rng = np.random.default_rng(5)
    spots = np.zeros_like(clean)
    y, x = rng.integers(0, clean.shape[0], (2, 60))
    spots[y, x] = 2000.0
    truth = clean + spots
    noisy = poisson_gaussian(truth, photons=60)
    noise = selfcheck.estimate_noise_covariance(noisy)
    assert float(np.mean(noise.variance)) == pytest.approx(np.mean((noisy - truth) ** 2), rel=0.2)
    out = blur(1.5)(noisy)
    true = float(np.mean((out - truth) ** 2))
    assert selfcheck.risk(noisy, blur(1.5), noise=noise) == pytest.approx(true, rel=0.15)


def test_the_detail_floor_keeps_photon_counting_noise(clean):
    """Where most pixels see no photon, a photon is noise, not structure: the floor keeps
    it (a local median read such noise at 2% of the truth)."""
    rng = np.random.default_rng(0)
    truth = 10.0 * clean / clean.mean() * 0.05  # 0.05 photons per pixel, 10 grey levels each
    noisy = (10.0 * rng.poisson(truth / 10.0)).astype(np.float32)
    energy = selfcheck._finest_detail_energy(noisy)
    assert energy == pytest.approx(np.mean((noisy - truth) ** 2), rel=0.2)


def test_a_black_plane_has_no_noise_and_does_not_veto_a_stack(clean):
    """An all-zero plane (a dark frame) read its noise as NaN, and a stack sampled with one
    silently got no detail back at all."""
    black = np.zeros((128, 128), np.float32)
    assert np.isfinite(selfcheck.estimate_noise_covariance(black).variance).all()
    noisy = poisson_gaussian(clean, photons=2000)

    def lifted(im):  # a denoiser whose output is not exactly 0 on a black plane
        return blur(3.0)(im) + 0.01

    alone = selfcheck.detail_choice([noisy], lifted, margin=0.2)
    assert alone[0] > 0.3  # the premise: this plane gets detail back
    assert selfcheck.detail_choice([black, noisy], lifted, margin=0.2) == alone

"""The training generator: stopping, determinism, checkpoints, and the patch samplers."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.models import build  # noqa: E402
from napari_denoise.engine.training.datasets import (  # noqa: E402
    MixedDataset,
    NoiseRecipe,
    NoisyOnlyDataset,
    PairedDataset,
    SyntheticNoiseDataset,
    align_affine,
    load_image,
)
from napari_denoise.engine.training.loop import TrainProgress, augment, train_iter  # noqa: E402

SMALL = {"base": 8, "depth": 2}


@pytest.fixture(scope="module")
def pairs(shared_data):
    root = shared_data / "W2S_8bit_subset"
    out = []
    for fov in ("001", "009"):
        noisy = load_image(root / "images_avg1_8bit" / f"input_avg1_{fov}_0.tif")
        clean = load_image(root / "images_avg400_8bit" / f"target_avg400_{fov}_0.tif")
        out.append((noisy[192:320, 192:320], clean[192:320, 192:320]))
    return out


@pytest.fixture(scope="module")
def train_data(pairs):
    return PairedDataset(pairs[:1])


@pytest.fixture(scope="module")
def val_pairs(pairs):
    noisy, clean = pairs[1]
    return [(noisy, align_affine(clean, noisy))]


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _train(data, *, seed=0, steps=6, **kwargs):
    torch.manual_seed(0)
    model = build("unet", SMALL)
    gen = train_iter(
        model, data, steps=steps, batch_size=4, patch=32, seed=seed, threads=1, **kwargs
    )
    ticks = []
    return drain(gen, ticks.append), ticks


def test_progress_records_and_eta(train_data):
    outcome, ticks = _train(train_data, steps=4)
    model = outcome.model
    assert [t.step for t in ticks] == [1, 2, 3, 4]
    assert all(isinstance(t, TrainProgress) for t in ticks)
    assert ticks[-1].eta_s == 0 and ticks[0].eta_s > 0
    assert all(np.isfinite(t.loss) for t in ticks) and "step 4/4" in ticks[-1].message
    assert not model.training


def test_stop_ends_within_one_step_and_returns_the_best_so_far(train_data, val_pairs):
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3  # asked before step 4: stop there

    model, ticks = _train(train_data, steps=50, val_pairs=val_pairs, val_every=2, stop=stop)
    assert model.stop_reason == "stopped"
    assert [t.step for t in ticks] == [1, 2, 3]
    assert model.steps_done == 3
    # The best of the validations at steps 2 and 3 (the stop validates the last step).
    assert model.best_step in (2, 3)
    assert model.best_val_psnr >= ticks[1].val_psnr


def test_stop_before_the_first_step_returns_the_untrained_model(train_data):
    torch.manual_seed(0)
    untrained = _weights(build("unet", SMALL))
    outcome, ticks = _train(train_data, stop=lambda: True)
    assert ticks == [] and outcome.steps_done == 0
    for key, value in untrained.items():
        assert torch.equal(outcome.model.state_dict()[key], value)


def test_same_seed_same_weights_other_seed_other_weights(train_data):
    a, b, c = (_train(train_data, seed=s)[0].model for s in (3, 3, 4))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_resuming_a_checkpoint_gives_the_uninterrupted_result(train_data, tmp_path):
    straight = _train(train_data, steps=6)[0].model
    calls = []
    ckpt = tmp_path / "ckpt"
    _train(
        train_data,
        steps=6,
        checkpoint=ckpt,
        checkpoint_every=3,
        stop=lambda: len(calls.append(1) or calls) > 3,
    )
    assert ckpt.with_suffix(".json").exists() and ckpt.with_suffix(".safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    outcome, ticks = _train(train_data, steps=6, checkpoint=ckpt, resume=True)
    resumed = outcome.model
    assert [t.step for t in ticks] == [4, 5, 6]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_unknown_loss_is_refused(train_data):
    with pytest.raises(ValueError, match="Unknown loss 'l3'"):
        _train(train_data, loss="l3")


@pytest.mark.parametrize("loss", ["l2", "l1+ssim"])
def test_other_losses_run(train_data, loss):
    _, ticks = _train(train_data, steps=2, loss=loss)
    assert np.isfinite(ticks[-1].loss)


def test_augmentation_applies_the_same_transform_to_both():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 16.0).reshape(2, 1, 4, 4)
    a, b = augment(x, x + 100, g)
    assert torch.equal(b, a + 100)
    assert sorted(a.flatten().tolist()) == sorted(x.flatten().tolist())


def test_synthetic_noise_is_reproducible_normalised_and_partly_correlated(shared_data):
    images = [
        load_image(p)
        for p in sorted((shared_data / "BSD_Train400_natural" / "Train400").glob("*.png"))[:8]
    ]
    ds = SyntheticNoiseDataset(
        images, NoiseRecipe(correlated=1.0, white_fraction=(0.0, 0.0), scale=(1.0, 1.0))
    )
    n1, c1 = ds.batch(16, 64, torch.Generator().manual_seed(1))
    n2, c2 = ds.batch(16, 64, torch.Generator().manual_seed(1))
    assert torch.equal(n1, n2) and torch.equal(c1, c2)
    assert n1.shape == c1.shape == (16, 1, 64, 64)
    assert -0.5 < float(n1.min()) and float(n1.max()) < 1.5
    noise = (n1 - c1)[..., 8:-8, 8:-8]
    noise = noise - noise.mean(dim=(2, 3), keepdim=True)
    lag1 = float((noise[..., :, 1:] * noise[..., :, :-1]).mean() / (noise**2).mean())
    assert lag1 > 0.2  # neighbours share noise
    white = SyntheticNoiseDataset(images, NoiseRecipe(correlated=0.0))
    n, c = white.batch(16, 64, torch.Generator().manual_seed(1))
    noise = (n - c) - (n - c).mean(dim=(2, 3), keepdim=True)
    assert abs(float((noise[..., :, 1:] * noise[..., :, :-1]).mean() / (noise**2).mean())) < 0.1


def test_real_pairs_are_aligned_to_the_noisy_scale(pairs):
    noisy, clean = pairs[0]
    aligned = align_affine(clean * 0.5 + 30, noisy)
    np.testing.assert_allclose(aligned, align_affine(clean, noisy), atol=1e-3)
    n, c = PairedDataset(pairs).batch(4, 32, torch.Generator().manual_seed(0))
    assert abs(float((n - c).mean())) < 0.05  # same scale and offset


def test_mixed_and_noisy_only_samplers(pairs):
    mixed = MixedDataset([(PairedDataset(pairs), 1.0), (NoisyOnlyDataset([pairs[0][0]]), 1.0)])
    n, c = mixed.batch(8, 32, torch.Generator().manual_seed(0))
    assert n.shape == c.shape == (8, 1, 32, 32)


def test_synthetic_noise_coefficients_match_the_noise_they_describe():
    """The (a, b) handed to noise-map networks predict the variance of the noise made."""
    flat = [np.full((160, 160), 100.0, np.float32), np.full((160, 160), 10.0, np.float32)]
    recipe = NoiseRecipe(
        background=(0.1, 0.6),
        contrast=(0.05, 0.05),
        correlated=0.0,
        noise_jitter=0.0,
        psf_sigma=(0.0, 0.0),
        gamma=(1.0, 1.0),
        scale=(0.5, 1.0),
        photons=(20.0, 200.0),
    )
    ds = SyntheticNoiseDataset(flat, recipe, region=128)
    noisy, clean, coeffs = ds.batch(6, 96, torch.Generator().manual_seed(3), with_noise=True)
    predicted = coeffs[:, 0] * clean.mean(dim=(1, 2, 3)) + coeffs[:, 1]
    measured = (noisy - clean).var(dim=(1, 2, 3))
    assert torch.allclose(predicted, measured, rtol=0.15)


def test_real_pairs_get_the_inference_time_noise_estimate(pairs):
    from napari_denoise.engine.denoise.calibrate import noise_coefficients

    ds = PairedDataset(pairs[:1])
    *_, coeffs = ds.batch(3, 32, torch.Generator().manual_seed(0), with_noise=True)
    expected = noise_coefficients(ds.pairs[0][0])
    assert coeffs.shape == (3, 2)
    assert torch.allclose(coeffs, torch.tensor([expected] * 3, dtype=torch.float32))
    mixed = MixedDataset([(ds, 1.0), (NoisyOnlyDataset([pairs[0][0]]), 1.0)])
    assert [t.shape[0] for t in mixed.batch(5, 32, torch.Generator(), with_noise=True)] == [5] * 3


def test_blind_spot_training_tells_noise_level_networks_an_estimated_level():
    """In blind-spot modes the target is the noisy patch: the level comes from its finest scale."""
    from napari_denoise.engine.training.loop import haar_sigma

    x = 0.5 + 0.1 * torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(haar_sigma(x), torch.full((3,), 0.1), rtol=0.1)
    seen = []
    model = build("drunet", {"channels": (8, 16), "blocks": 1})
    forward = model.forward
    model.forward = lambda inp, level: seen.append(level.clone()) or forward(inp, level)
    data = NoisyOnlyDataset([x[0, 0].numpy() * 100])
    for _ in train_iter(model, data, steps=2, batch_size=2, patch=32, mode="n2v", threads=1):
        pass
    assert seen and all(float(level.min()) > 0.02 for level in seen)


def test_training_gives_back_the_thread_count_and_returns_an_outcome(train_data):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    gen = train_iter(
        build("unet", SMALL), train_data, steps=2, batch_size=2, patch=32, threads=wanted
    )
    seen = [torch.get_num_threads() for _ in gen]  # while training: the count asked for
    assert seen == [wanted, wanted]
    assert torch.get_num_threads() == before  # afterwards: the process's own setting
    outcome = drain(train_iter(build("unet", SMALL), train_data, steps=2, batch_size=2, patch=32))
    assert outcome.stop_reason == "completed" and outcome.steps_done == 2
    assert [v["step"] for v in outcome.validations] == [] and not outcome.model.training


def test_learning_rate_follows_warm_up_then_cosine_decay(train_data):
    ticks = list(
        train_iter(
            build("unet", SMALL), train_data, steps=6, batch_size=2, patch=32, lr=1e-2, warmup=2
        )
    )
    lrs = [t.lr for t in ticks]
    assert lrs[0] == pytest.approx(0.5e-2) and lrs[1] == pytest.approx(1e-2)
    assert lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] > 1e-4

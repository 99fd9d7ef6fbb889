"""Blind-spot masking (Noise2Void, N2V2), the PSF wrapper, and self-supervised train_iter."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.models import build, config_dict  # noqa: E402
from napari_denoise.engine.models.psf_wrap import PsfWrap, gaussian_psf, wrap  # noqa: E402
from napari_denoise.engine.training import blindspot as selfsup  # noqa: E402
from napari_denoise.engine.training.datasets import NoisyOnlyDataset, load_image  # noqa: E402
from napari_denoise.engine.training.loop import train_iter  # noqa: E402

SMALL = {"base": 8, "depth": 2}


@pytest.fixture(scope="module")
def convallaria(shared_data):
    """A real shot-noise-limited 16-bit frame (no ground truth), 128 x 128 crop."""
    frame = load_image(
        shared_data
        / "PN2V_Convallaria_frame"
        / "20190520_tl_25um_50msec_05pc_488_130EM_Conv0000.tif"
    )
    return frame[448:576, 448:576]


@pytest.fixture(scope="module")
def patches(convallaria):
    """Four normalised 32 x 32 patches of the real frame."""
    ds = NoisyOnlyDataset([convallaria])
    noisy, _ = ds.batch(4, 32, torch.Generator().manual_seed(0))
    return noisy


def _mask(x, seed=0, **kwargs):
    return selfsup.blind_spot_batch(x, torch.Generator().manual_seed(seed), **kwargs)


def _positions(mask):
    return [tuple(p) for p in (mask[:, 0] > 0).nonzero().tolist()]  # (b, y, x)


# --- the masking contract -------------------------------------------------------------------


@pytest.mark.parametrize("replace", ["random", "median"])
def test_masked_inputs_do_not_depend_on_any_masked_pixel(patches, replace):
    """The blind spot, exactly: changing the original value of masked pixels changes nothing
    the network sees, so the prediction used for their loss cannot depend on them."""
    inp, target, mask = _mask(patches, replace=replace)
    assert torch.equal(target, patches)
    changed = patches.clone()
    changed[mask > 0] += 1000.0  # every masked pixel at once
    inp2, target2, mask2 = _mask(changed, replace=replace)
    assert torch.equal(mask, mask2)
    assert torch.equal(inp, inp2)
    assert not torch.equal(target, target2)


def test_the_prediction_for_a_masked_pixel_ignores_its_own_value(patches):
    torch.manual_seed(0)
    model = build("unet", SMALL).eval()
    with torch.no_grad():  # a network that is not the identity, with a full receptive field
        model.head.weight.normal_(0.0, 0.3)
    inp, _, mask = _mask(patches)
    b, y, x = _positions(mask)[5]
    changed = patches.clone()
    changed[b, 0, y, x] = -50.0
    inp2, _, _ = _mask(changed)
    with torch.no_grad():
        before, after = model(inp)[b, 0, y, x], model(inp2)[b, 0, y, x]
    assert float(before) == float(after)
    # ... while without the mask the same change reaches the prediction.
    with torch.no_grad():
        assert float(model(patches)[b, 0, y, x]) != float(model(changed)[b, 0, y, x])


def test_masked_pixels_are_a_stratified_fraction_and_never_neighbours(patches):
    _, _, mask = _mask(patches, fraction=1 / 64)
    assert mask.shape == patches.shape
    assert int(mask.sum()) == 4 * 16  # one per 8 x 8 cell of a 32 x 32 patch
    pos = _positions(mask)
    for i, (b, y, x) in enumerate(pos):
        for b2, y2, x2 in pos[i + 1 :]:
            if b == b2:
                assert max(abs(y - y2), abs(x - x2)) >= 3  # outside each other's 5x5 window
    _, _, dense = _mask(patches, fraction=0.04)
    assert int(dense.sum()) == 4 * 36  # spacing 5


def test_n2v_replaces_by_another_pixel_of_the_5x5_window(patches):
    inp, _, mask = _mask(patches, seed=3)
    same = 0
    for b, y, x in _positions(mask):
        window = patches[b, 0, max(0, y - 2) : y + 3, max(0, x - 2) : x + 3]
        assert bool((window == inp[b, 0, y, x]).any())
        same += int(inp[b, 0, y, x] == patches[b, 0, y, x])
    assert same < len(_positions(mask)) // 4  # not the pixel itself (except equal values)
    unmasked = mask == 0
    assert torch.equal(inp[unmasked], patches[unmasked])


def test_n2v2_replaces_by_the_median_of_the_window_without_its_centre():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32) % 97
    inp, _, mask = _mask(x, replace="median")
    for b, y, xx in _positions(mask):
        if 2 <= y < 30 and 2 <= xx < 30:
            window = x[b, 0, y - 2 : y + 3, xx - 2 : xx + 3].flatten().tolist()
            del window[12]  # the centre
            assert float(inp[b, 0, y, xx]) == pytest.approx(float(np.median(window)))
    # A centre far off its neighbours leaves the median untouched.
    spiked = x.clone()
    spiked[mask > 0] = 1e6
    assert torch.equal(_mask(spiked, replace="median")[0], inp)


@pytest.mark.parametrize("replace", ["random", "median"])
@pytest.mark.parametrize("radius", [1, 2])
def test_a_blind_block_hides_every_pixel_that_shares_the_centres_noise(patches, replace, radius):
    """Correlated noise: the whole (2r+1)-square around a masked centre is hidden, so
    changing any pixel of it (the pixels whose noise the centre shares) changes nothing
    the network sees; the loss still counts the centre only."""
    x = torch.cat([patches, patches.flip(-1)], dim=-1)  # 32 x 64: room for several blocks
    inp, _, mask = _mask(x, replace=replace, radius=radius)
    pos = _positions(mask)
    assert len(pos) >= 4
    changed = x.clone()
    for b, y, xx in pos:
        changed[
            b, 0, max(0, y - radius) : y + radius + 1, max(0, xx - radius) : xx + radius + 1
        ] += 1000.0
    inp2, _, mask2 = _mask(changed, replace=replace, radius=radius)
    assert torch.equal(mask, mask2) and torch.equal(inp, inp2)
    # Every value in a block comes from the ring around it, none from the block itself.
    for b, y, xx in pos:
        if (
            radius + 2 <= y < x.shape[-2] - radius - 2
            and radius + 2 <= xx < x.shape[-1] - radius - 2
        ):
            ring = x[
                b, 0, y - radius - 2 : y + radius + 3, xx - radius - 2 : xx + radius + 3
            ].clone()
            ring[2:-2, 2:-2] = float("nan")
            block = inp[b, 0, y - radius : y + radius + 1, xx - radius : xx + radius + 1]
            for v in block.flatten().tolist():
                if replace == "random":
                    assert bool((ring == v).any())
    # Centres stay 2r + 3 apart: no ring reaches into another block.
    for i, (b, y, xx) in enumerate(pos):
        for b2, y2, x2 in pos[i + 1 :]:
            if b == b2:
                assert max(abs(y - y2), abs(xx - x2)) >= 2 * radius + 3


def test_blind_radius_is_checked(patches):
    with pytest.raises(ValueError, match="radius"):
        _mask(patches, radius=4)
    with pytest.raises(ValueError, match="radius"):
        _mask(patches[..., :8, :8], radius=2)


def test_blind_radius_comes_from_the_noise(shared_data):
    """Independent noise (a real W2S widefield frame: correlation ratio ~1) keeps one-pixel
    blind spots; the same ground truth with smoothed (camera-like) noise gets a block."""
    gt = load_image(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_0.tif"
    )
    noisy = load_image(
        shared_data / "W2S_8bit_subset" / "images_avg1_8bit" / "input_avg1_009_0.tif"
    )
    assert selfsup.blind_radius_for([noisy]) == 0
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    white = rng.normal(0, 12.0, gt.shape)
    smooth = gaussian_filter(rng.normal(0, 1.0, gt.shape), 1.0)
    correlated = gt + white * 0.3 + smooth * (12.0 / smooth.std())
    r = selfsup.blind_radius_for([correlated])
    assert 1 <= r <= selfsup.MAX_BLIND_RADIUS


def test_masks_come_from_the_generator_alone(patches):
    a = _mask(patches, seed=1)
    b = _mask(patches, seed=1)
    c = _mask(patches, seed=2)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[2], c[2])


def test_masked_loss_counts_only_masked_pixels(patches):
    _, target, mask = _mask(patches)
    pred = target.clone()
    pred[mask == 0] += 5.0  # errors outside the mask do not count
    assert float(selfsup.masked_loss(pred, target, mask, "l1")) == 0.0
    pred[mask > 0] += 0.5
    assert float(selfsup.masked_loss(pred, target, mask, "l1")) == pytest.approx(0.5)
    assert float(selfsup.masked_loss(pred, target, mask, "l2")) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="use loss 'l1' or 'l2'"):
        selfsup.masked_loss(pred, target, mask, "l1+ssim")


def test_bad_fraction_and_patches_are_refused(patches):
    with pytest.raises(ValueError, match="masked fraction"):
        _mask(patches, fraction=0.2)
    with pytest.raises(ValueError, match="5 pixels"):
        _mask(torch.zeros(1, 1, 4, 4))


def test_blind_config_asks_for_no_pass_through_and_reports_what_is_missing():
    config, missing = selfsup.blind_config("n2v2", "unet", {"base": 8})
    assert config["base"] == 8
    for key, value in selfsup.N2V2_FLAGS.items():
        assert config.get(key, missing.get(key)) == value
    assert selfsup.passes_input_through({"base": 8})
    assert not selfsup.passes_input_through({"residual": False})
    config, _ = selfsup.blind_config("n2v", "dncnn", {})
    assert "skip_top" not in config


# --- the PSF wrapper ------------------------------------------------------------------------


def test_psf_wrap_outputs_the_blurred_estimate_and_keeps_the_inner_weights():
    torch.manual_seed(0)
    inner = build("unet", SMALL)
    model = wrap(inner, 1.5)
    assert model.net is inner and model.architecture == "psf-wrap"
    assert set(model.state_dict()) == {f"net.{k}" for k in inner.state_dict()}
    assert model.multiple == inner.multiple and model.reach == inner.reach + 5
    k = gaussian_psf(1.5)
    assert float(k.sum()) == pytest.approx(1.0) and len(k) == 11
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        denoised = model(x)
        deconvolved = model.deconvolved(x)
    assert torch.allclose(denoised, model.blur(deconvolved))
    assert float(denoised.std()) < float(deconvolved.std())  # the blur smooths
    rebuilt = build("psf-wrap", {**config_dict(model), "output": "deconvolved"})
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), deconvolved)
    with pytest.raises(ValueError, match="sigma must be positive"):
        build("psf-wrap", {"sigma": 0.0})
    assert isinstance(rebuilt, PsfWrap)


def test_positivity_penalty_is_the_mean_negative_part():
    x = torch.tensor([[-2.0, 1.0], [0.0, -1.0]])
    assert float(selfsup.positivity_penalty(x)) == pytest.approx(0.75)


# --- self-supervised training ---------------------------------------------------------------


def _run(model, data, **kwargs):
    gen = train_iter(model, data, batch_size=4, patch=32, threads=1, **kwargs)
    ticks = []
    return drain(gen, ticks.append), ticks


def _held_out_loss(model, images, mode="n2v"):
    triples = selfsup.masked_validation_set(images, multiple=4, seed=99)
    return selfsup.masked_validation_loss(model, triples, loss="l2")


@pytest.mark.parametrize("mode", ["n2v", "n2v-psf"])
def test_blind_spot_training_lowers_the_masked_loss_on_a_real_frame(convallaria, mode):
    train, held_out = convallaria[:96], convallaria[96:]
    data = NoisyOnlyDataset([train])
    lo, hi = np.percentile(train, [0.1, 99.9])
    val = [(held_out - lo) / (hi - lo)]
    torch.manual_seed(0)
    model = build("unet", SMALL)
    before = _held_out_loss(wrap(model, 1.0) if mode == "n2v-psf" else model, val)
    outcome, ticks = _run(model, data, steps=100, lr=2e-3, loss="l2", mode=mode, val_images=val)
    trained = outcome.model
    after = _held_out_loss(trained, val)
    assert after < 0.95 * before
    assert ticks[-1].val_loss is not None and ticks[-1].val_psnr is None
    assert outcome.best_val_loss == pytest.approx(
        min(v["loss"] for v in outcome.validations), abs=1e-6
    )
    assert "validation loss" in ticks[-1].message
    if mode == "n2v-psf":
        assert trained.architecture == "psf-wrap" and trained.config.sigma == 1.0


def test_blind_spot_training_is_deterministic(convallaria):
    data = NoisyOnlyDataset([convallaria])

    def weights(seed):
        torch.manual_seed(0)
        outcome, _ = _run(build("unet", SMALL), data, steps=4, mode="n2v2", seed=seed)
        return outcome.model.state_dict()

    a, b, c = weights(5), weights(5), weights(6)
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert any(not torch.equal(v, c[k]) for k, v in a.items())


def test_patience_stops_when_validation_stops_improving(convallaria):
    data = NoisyOnlyDataset([convallaria[:96]])
    val = [np.asarray(convallaria[96:], np.float32) / float(convallaria.max())]
    torch.manual_seed(0)
    # lr 0: the weights never change, so no validation after the first improves.
    model, ticks = _run(
        build("unet", SMALL),
        data,
        steps=50,
        lr=0.0,
        mode="n2v",
        val_images=val,
        val_every=2,
        patience=2,
    )
    assert model.stop_reason == "patience"
    assert [t.step for t in ticks] == [1, 2, 3, 4, 5, 6]
    assert model.best_step == 2 and model.steps_done == 6


def test_blind_spot_modes_refuse_the_ssim_loss(convallaria):
    with pytest.raises(ValueError, match="blind-spot training"):
        _run(
            build("unet", SMALL),
            NoisyOnlyDataset([convallaria]),
            steps=1,
            mode="n2v",
            loss="l1+ssim",
        )
    with pytest.raises(ValueError, match="Unknown training mode"):
        _run(build("unet", SMALL), NoisyOnlyDataset([convallaria]), steps=1, mode="n2x")


def test_resuming_needs_the_same_network_and_mode(convallaria, tmp_path):
    from napari_denoise.errors import ModelFileError

    data = NoisyOnlyDataset([convallaria])
    ckpt = tmp_path / "ckpt"
    _run(build("unet", SMALL), data, steps=2, mode="n2v", checkpoint=ckpt)
    with pytest.raises(ModelFileError, match="'n2v' run"):
        _run(build("unet", SMALL), data, steps=4, mode="n2v2", checkpoint=ckpt, resume=True)
    with pytest.raises(ModelFileError, match="written for a 'unet' network"):
        _run(
            build("unet", {"base": 4, "depth": 2}),
            data,
            steps=4,
            mode="n2v",
            checkpoint=ckpt,
            resume=True,
        )

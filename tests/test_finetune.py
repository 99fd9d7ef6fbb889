"""Fine-tuning and self-supervised training on the user's data: prepare() and finetune_iter()."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.models import (  # noqa: E402
    build,
    inference,
    registry,
    store,
)
from napari_denoise.engine.training.finetune import (  # noqa: E402
    FinetuneSpec,
    Phase,
    finetune_iter,
    prepare,
)
from napari_denoise.engine.training.loop import validate  # noqa: E402
from napari_denoise.errors import (  # noqa: E402
    Cancelled,
    InputError,
    ModelFileError,
    ParameterError,
    UnknownMethodError,
)

TINY = {
    "start": "new:unet",
    "config": {"base": 8, "depth": 2},
    "batch_size": 4,
    "patch": 32,
    "threads": 1,
}


@pytest.fixture(scope="module")
def w2s(shared_data):
    """A real W2S pair (uint8, each image stretched to 0..255 on its own), 128 x 128."""
    root = shared_data / "W2S_8bit_subset"
    noisy = tifffile.imread(root / "images_avg1_8bit" / "input_avg1_001_0.tif")
    clean = tifffile.imread(root / "images_avg400_8bit" / "target_avg400_001_0.tif")
    crop = (slice(192, 320), slice(192, 320))
    return noisy[crop], clean[crop]


@pytest.fixture(scope="module")
def membrane(shared_data):
    """A real uint16 time-lapse, 3 frames of 96 x 96."""
    stack = tifffile.imread(
        shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    )
    return stack[:3, 80:176, 80:176]


def _run(prepared, **kwargs):
    gen = finetune_iter(prepared, **kwargs)
    ticks = []
    result = drain(gen, ticks.append)
    return result, [t for t in ticks if not isinstance(t, Phase)]  # the steps


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path.with_suffix(".safetensors"))


# --- training does what it should ----------------------------------------------------------


def test_supervised_fine_tuning_on_a_real_pair_raises_the_validation_psnr(user_dir, w2s):
    noisy, clean = w2s
    spec = FinetuneSpec(steps=80, lr=2e-3, val_fraction=0.25, name="w2s-ft", **TINY)
    prepared = prepare(spec, noisy, clean)
    before = validate(prepared.model, prepared.val_pairs)
    result, ticks = _run(prepared)
    after = result.card["validation"]["psnr"]
    assert after > before + 3.0
    assert after == pytest.approx(max(v["psnr"] for v in result.card["validation"]["history"]))
    assert [t.step for t in ticks] == list(range(1, 81))
    assert sum(t.validated for t in ticks) == 10 and ticks[-1].eta_s == 0


def test_noise2void_from_the_shipped_model_lowers_the_masked_loss(user_dir, shared_data):
    from napari_denoise.engine.training import blindspot as selfsup

    frame = tifffile.imread(
        shared_data
        / "PN2V_Convallaria_frame"
        / "20190520_tl_25um_50msec_05pc_488_130EM_Conv0000.tif"
    )[448:576, 448:576]
    spec = FinetuneSpec(
        mode="n2v", start="unet-fluo", steps=40, batch_size=4, patch=32, threads=1, loss="l2"
    )
    prepared = prepare(spec, frame)
    assert prepared.lr == 1e-3 and prepared.val_images and not prepared.val_pairs
    held_out = selfsup.masked_validation_set(prepared.val_images, multiple=8, seed=123)
    before = selfsup.masked_validation_loss(prepared.model, held_out, loss="l2")
    result, _ = _run(prepared)
    assert selfsup.masked_validation_loss(result.model, held_out, loss="l2") < 0.95 * before
    card = result.card
    assert card["validation"]["kind"] == "masked loss" and card["validation"]["masked_loss"] > 0
    assert card["training"]["blind_spot"]["replacement"].startswith("random")
    assert result.name == "unet-fluo-n2v"


def test_stop_keeps_the_best_checkpoint_and_still_saves_the_model(user_dir, w2s):
    noisy, clean = w2s
    spec = FinetuneSpec(steps=40, val_fraction=0.25, name="stopped", **TINY)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 7  # asked before step 8

    result, ticks = _run(prepare(spec, noisy, clean), stop=stop)
    assert [t.step for t in ticks] == list(range(1, 8))
    training = result.card["training"]
    assert result.stopped and training["stopped_early"] and training["stop_reason"] == "stopped"
    assert training["steps"] == 7 and training["steps_planned"] == 40
    assert result.registered and nd.get_method("stopped").kind == "model"

    ckpt = user_dir / ".checkpoints" / "stopped"
    info = json.loads(ckpt.with_suffix(".json").read_text())
    assert info["step"] == 7
    history = result.card["validation"]["history"]
    assert [v["step"] for v in history] == [4, 7]  # every 4 steps, and where it stopped
    best = max(history, key=lambda v: v["psnr"])
    assert result.card["validation"]["best_step"] == best["step"] == info["best_step"]
    saved = _weights(result.path)
    ckpt_tensors = _weights(ckpt)
    for key, value in saved.items():
        assert torch.equal(value, ckpt_tensors[f"best.{key}"]), key
    assert not [p for p in user_dir.rglob("*.tmp")]

    # Resuming by name (as the widget does) continues, replaces the stopped model and,
    # once complete, removes the default checkpoint.
    resumed, ticks = _run(prepare(spec, noisy, clean), resume=True)
    assert ticks[0].step == 8 and ticks[-1].step == 40
    assert resumed.name == "stopped" and not resumed.stopped
    assert store.read_card(user_dir / "stopped.json")["training"]["steps"] == 40
    assert not ckpt.with_suffix(".json").exists() and not ckpt.parent.exists()


def test_resume_continues_to_the_uninterrupted_result(user_dir, w2s, tmp_path):
    noisy, clean = w2s

    def prepared(name):
        return prepare(FinetuneSpec(steps=12, name=name, **TINY), noisy, clean)

    straight, _ = _run(prepared("straight"))
    ckpt = tmp_path / "ckpt" / "run"
    calls = []
    stopped, _ = _run(
        prepared("resumed"), checkpoint=ckpt, stop=lambda: len(calls.append(1) or calls) > 5
    )
    assert stopped.stopped and stopped.card["training"]["steps"] == 5
    resumed, ticks = _run(prepared("resumed"), checkpoint=ckpt, resume=True)
    assert [t.step for t in ticks] == list(range(6, 13))
    assert not resumed.stopped and resumed.card["training"]["steps"] == 12
    assert resumed.card["weights"]["sha256"] == straight.card["weights"]["sha256"]
    assert ckpt.with_suffix(".json").exists()  # a checkpoint the user named is kept


def test_stop_before_the_first_step_saves_nothing(user_dir, w2s):
    prepared = prepare(FinetuneSpec(steps=5, name="never", **TINY), *w2s)
    with pytest.raises(Cancelled, match="no model was saved"):
        _run(prepared, stop=lambda: True)
    assert not (user_dir / "never.json").exists()
    with pytest.raises(ParameterError, match="Nothing to resume"):
        _run(prepared, resume=True)


def test_the_trained_model_is_a_method_at_once_with_a_complete_card(user_dir, w2s):
    noisy, clean = w2s
    spec = FinetuneSpec(steps=3, batch_size=2, patch=32, threads=1)  # from unet-fluo
    result, _ = _run(prepare(spec, noisy, clean, data_names=("noisy layer", "clean layer")))
    assert result.name == "unet-fluo-ft" and result.path == user_dir / "unet-fluo-ft.json"
    assert result.registered
    method = nd.get_method("unet-fluo-ft")
    assert method.kind == "model"
    assert nd.denoise(noisy, "unet-fluo-ft").shape == noisy.shape

    start = store.read_card(store.SHIPPED_DIR / "unet-fluo.json")
    card = store.read_card(result.path)
    assert card["started_from"] == {
        "name": "unet-fluo",
        "architecture": "unet",
        "sha256": start["weights"]["sha256"],
    }
    assert card["normalisation"] == start["normalisation"]
    assert card["noise_model"] == start["noise_model"]
    training = card["training"]
    assert training["mode"] == "supervised" and training["lr"] == 3e-4
    assert training["seed"] == 0 and training["steps"] == 3 and training["seconds"] > 0
    assert training["loss"] == "l1" and training["napari_denoise"] == nd.__version__
    assert training["data"][0].startswith("noisy layer: 1 slice(s) of 128x128")
    assert training["data_details"]["pairs"] == 1 and training["command"] is None
    assert card["validation"]["kind"] == "psnr" and card["validation"]["psnr"] > 0
    assert card["weights"]["sha256"] == store.sha256_file(user_dir / "unet-fluo-ft.safetensors")
    # A second run gets a new name instead of overwriting the first.
    again, _ = _run(prepare(spec, noisy, clean))
    assert again.name == "unet-fluo-ft-2"


def test_same_seed_and_data_give_the_same_weights(user_dir, membrane):
    def sha(name, seed):
        spec = FinetuneSpec(mode="n2v", steps=4, seed=seed, name=name, **TINY)
        result, _ = _run(prepare(spec, membrane))
        return result.card["weights"]["sha256"]

    assert sha("a", 1) == sha("b", 1) != sha("c", 2)


def test_n2v_psf_returns_the_denoised_image_and_a_deconvolved_twin(user_dir, membrane):
    from napari_denoise.engine.models.psf_wrap import PsfWrap

    spec = FinetuneSpec(mode="n2v-psf", steps=3, psf_sigma=1.5, positivity=0.5, **TINY)
    result, _ = _run(prepare(spec, membrane[0]))
    assert result.name == "unet-n2v-psf" and isinstance(result.model, PsfWrap)
    card = result.card
    assert card["architecture"] == "psf-wrap" and card["config"]["output"] == "denoised"
    assert card["psf"]["sigma"] == 1.5 and card["psf"]["positivity"] == 0.5
    assert card["config"]["config"].get("residual", False) is False  # no pass-through wanted
    twin = store.read_card(result.deconvolved_path)
    assert twin["name"] == "unet-n2v-psf-deconvolved" and twin["config"]["output"] == "deconvolved"
    assert twin["weights"]["sha256"] == card["weights"]["sha256"]

    image = membrane[0].astype(np.float32)
    denoised = nd.denoise(image, "unet-n2v-psf")
    deconvolved = nd.denoise(image, "unet-n2v-psf-deconvolved")
    with torch.no_grad():
        blurred = result.model.blur(torch.from_numpy(deconvolved)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(denoised, blurred, atol=1e-3 * float(np.ptp(image)))


def test_a_stack_is_trained_slice_by_slice_with_one_stripe_per_slice(user_dir, membrane):
    spec = FinetuneSpec(mode="n2v", steps=2, **TINY)
    prepared = prepare(spec, membrane, axes="TYX")
    data = prepared.data
    assert data["slices"] == 3 and data["training_crops"] == 3 and len(prepared.val_images) == 3
    assert data["validation"]["rectangles"] == [[80, 0, 96, 96]]
    volume = prepare(spec, np.stack([membrane] * 2), axes="TZYX")
    assert volume.data["slices"] == 6
    result, _ = _run(prepared)
    assert result.card["training"]["data_details"]["shape"] == [3, 96, 96]


def test_a_long_stack_trains_on_evenly_spaced_slices(membrane, monkeypatch):
    from napari_denoise.engine.training import split

    monkeypatch.setattr(split, "MAX_TRAIN_PIXELS", 2 * 96 * 80)  # two slices' worth
    prepared = prepare(FinetuneSpec(mode="n2v", **TINY), membrane, axes="TYX")
    assert prepared.data["slices_trained"] == 2 and prepared.data["training_crops"] == 2
    assert len(prepared.val_images) == 3  # validation still sees every (sampled) slice


def test_training_patches_never_touch_the_validation_stripes_or_leave_the_regions():
    ny, nx = 160, 200
    coords = (np.arange(ny)[:, None] * 1000 + np.arange(nx)[None, :]).astype(np.float32)
    regions = [(10, 5, 90, 70), (100, 60, 150, 190)]  # tall: stripe at the bottom; wide: right
    spec = FinetuneSpec(mode="n2v", val_fraction=0.2, **TINY)
    prepared = prepare(spec, coords, regions=regions)
    assert prepared.data["validation"]["rectangles"] == [[74, 5, 90, 70], [100, 164, 150, 190]]
    lo, hi = prepared.data["normalisation"]["low"], prepared.data["normalisation"]["high"]
    noisy, _ = prepared.sampler.batch(400, 32, torch.Generator().manual_seed(0))
    values = np.rint(noisy.numpy().ravel() * (hi - lo) + lo).astype(int)
    y, x = values // 1000, values % 1000
    in_first = (y >= 10) & (y < 74) & (x >= 5) & (x < 70)
    in_second = (y >= 100) & (y < 150) & (x >= 60) & (x < 164)
    assert np.all(in_first | in_second)
    assert in_first.any() and in_second.any()


def test_clean_images_are_aligned_to_the_noisy_scale(w2s):
    noisy, clean = w2s
    spec = FinetuneSpec(**TINY)
    a = prepare(spec, noisy, clean)
    b = prepare(spec, noisy, clean.astype(np.float32) * 0.5 + 30)  # another scale and offset
    na, ca = a.sampler.batch(4, 32, torch.Generator().manual_seed(0))
    nb, cb = b.sampler.batch(4, 32, torch.Generator().manual_seed(0))
    assert torch.equal(na, nb)
    torch.testing.assert_close(ca, cb, atol=1e-3, rtol=0)
    assert abs(float((na - ca).mean())) < 0.05  # same scale as the noisy image


def test_a_time_budget_becomes_steps_with_a_sensible_eta(user_dir, membrane):
    # A budget of 4.8 s: long enough that a busy machine still plans more steps than the
    # few it times, short enough for a unit test. Behaviour, not speed, is checked.
    spec = FinetuneSpec(mode="n2v", minutes=0.08, **TINY)
    start = time.perf_counter()
    result, ticks = _run(prepare(spec, membrane[0]))
    wall = time.perf_counter() - start
    assert 2.0 < wall < 1.1 * 4.8 + 2.0 + 1.5
    training = result.card["training"]
    assert training["time_budget_minutes"] == 0.08 and training["steps_planned"] > 8
    assert ticks[len(ticks) // 2].eta_s < 4.8
    assert training["command"] is None


def test_n2v2_trains_a_network_without_pass_through(user_dir, membrane):
    spec = FinetuneSpec(mode="n2v2", steps=3, **TINY)
    result, _ = _run(prepare(spec, membrane[0]))
    config = result.card["config"]
    assert config["residual"] is False
    assert result.card["training"]["blind_spot"]["replacement"].startswith("median")


def test_correlated_noise_gets_a_blind_block_chosen_from_the_noise(user_dir, w2s_noise_pair):
    """Smoothed (camera-like) noise on a real W2S ground truth: the blind spot grows to a
    block on its own, the card says so; independent noise keeps one pixel; a radius given
    by the user is kept."""
    correlated, independent = w2s_noise_pair
    spec = FinetuneSpec(mode="n2v2", steps=2, **TINY)
    prepared = prepare(spec, correlated)
    assert prepared.blind_radius >= 1
    assert any("correlated" in note for note in prepared.notes)
    result, _ = _run(prepared)
    spot = result.card["training"]["blind_spot"]
    assert spot["radius"] == prepared.blind_radius and spot["radius_chosen"] == "from the noise"
    assert prepare(spec, independent).blind_radius == 0
    given = FinetuneSpec(mode="n2v2", steps=2, blind_radius=0, **TINY)
    assert prepare(given, correlated).blind_radius == 0
    with pytest.raises(ParameterError, match="blind_radius"):
        prepare(FinetuneSpec(mode="n2v", blind_radius=5, **TINY), correlated)
    sparse = {**TINY, "patch": 16}  # a 1-in-500 masked fraction needs 22-pixel cells
    with pytest.raises(ParameterError, match="need patches of at least 22 pixels, not 16"):
        prepare(FinetuneSpec(mode="n2v", mask_fraction=0.002, **sparse), independent)


# --- bad input gets a clear message ---------------------------------------------------------


def test_pairs_of_different_shapes_are_refused(w2s):
    noisy, clean = w2s
    with pytest.raises(InputError, match=r"different shapes: \(128, 128\) and \(96, 128\)"):
        prepare(FinetuneSpec(**TINY), noisy, clean[:96])


def test_supervised_training_needs_the_clean_image(w2s):
    with pytest.raises(InputError, match=r"needs a clean .* choose mode 'n2v'"):
        prepare(FinetuneSpec(**TINY), w2s[0])


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([(50, 50, 50, 90)], r"Region 1 \(50, 50, 50, 90\) is empty"),
        ([(200, 200, 260, 260)], "lies outside the 128 x 128 image"),
        (
            [(0, 0, 60, 20)],
            "Region 1 is 60 x 20 pixels inside the image, smaller than one 32-pixel",
        ),
        ([(100, 100, 300, 300)], "smaller than one 32-pixel"),  # clipped to 28 x 28
        ([(0, 0, 64, 64), (32, 32, 100, 100)], "Regions 1 and 2 overlap"),
        ([(0, 0, 40)], "four numbers"),
        ([(0, 0, 40, 40)], "Too little data for a validation split: Region 1 is 40 x 40"),
    ],
)
def test_bad_regions_are_refused(w2s, regions, message):
    noisy, clean = w2s
    with pytest.raises(InputError, match=message):
        prepare(FinetuneSpec(**TINY), noisy, clean, regions)


def test_an_image_too_small_for_a_validation_split_is_refused(w2s):
    noisy, clean = w2s
    with pytest.raises(InputError, match="Too little data for a validation split: The image"):
        prepare(FinetuneSpec(**TINY), noisy[:40, :40], clean[:40, :40])
    # Without validation the same image is enough.
    prepared = prepare(FinetuneSpec(val_fraction=0, **TINY), noisy[:40, :40], clean[:40, :40])
    assert prepared.data["validation"]["kind"] is None
    with pytest.raises(InputError, match="20 x 20 pixels, smaller than one 32-pixel"):
        prepare(FinetuneSpec(**TINY), noisy[:20, :20], clean[:20, :20])


def test_colour_and_multichannel_images_must_pick_one_channel(shared_data):
    hela = tifffile.imread(shared_data / "BioImageAnalysisNotebooks_stacks" / "hela-cells.tif")
    with pytest.raises(InputError, match=r"3 channels .* pick one channel"):
        prepare(FinetuneSpec(mode="n2v", **TINY), hela)
    one = prepare(FinetuneSpec(mode="n2v", steps=1, **TINY), hela[:128, :128, 1:2], axes="YXC")
    assert one.data["slices"] == 1


def test_a_model_for_other_dimensionality_is_refused(user_dir, w2s):
    model = build("unet", {"base": 8, "depth": 2})
    store.save_model(model, {"name": "volume-net", "ndim": 3}, user_dir / "volume-net")
    registry.register_models()
    with pytest.raises(InputError, match="'volume-net' is a 3-D network"):
        prepare(FinetuneSpec(start="volume-net", patch=32), *w2s)


def test_unknown_start_models_list_the_known_ones(w2s):
    with pytest.raises(ModelFileError, match=r"no model named 'unet-flou'.*unet-fluo"):
        prepare(FinetuneSpec(start="unet-flou"), *w2s)
    with pytest.raises(UnknownMethodError, match=r"Unknown architecture 'vit'.*new:unet"):
        prepare(FinetuneSpec(start="new:vit"), *w2s)


def test_bad_values_and_settings_are_refused(w2s):
    noisy, clean = w2s
    bad = noisy.astype(np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match=r"The noisy image cannot be used: .*NaN"):
        prepare(FinetuneSpec(**TINY), bad, clean)
    with pytest.raises(InputError, match="at least a 2-D"):
        prepare(FinetuneSpec(mode="n2v", **TINY), noisy[0])
    with pytest.raises(ParameterError, match=r"patch size 36 is not a multiple of 8.*use 40"):
        prepare(FinetuneSpec(patch=36), noisy, clean)
    with pytest.raises(ParameterError, match="Loss 'l1\\+ssim' needs clean images"):
        prepare(FinetuneSpec(mode="n2v", loss="l1+ssim", **TINY), noisy)
    with pytest.raises(ParameterError, match="Unknown training mode 'n3v'"):
        prepare(FinetuneSpec(mode="n3v", **TINY), noisy)
    with pytest.raises(ParameterError, match="val_fraction"):
        prepare(FinetuneSpec(val_fraction=0.9, **TINY), noisy, clean)
    with pytest.raises(ParameterError, match="method named 'gaussian' already exists"):
        prepare(FinetuneSpec(name="gaussian", **TINY), noisy, clean)
    with pytest.raises(ParameterError, match="cannot be used"):
        prepare(FinetuneSpec(name="../evil", **TINY), noisy, clean)


def test_n2v2_refuses_a_network_that_passes_its_input_through(w2s):
    with pytest.raises(ParameterError, match="N2V2 cannot train model 'unet-fluo'"):
        prepare(FinetuneSpec(mode="n2v2", patch=32), w2s[0])


def test_an_existing_model_of_the_same_name_is_not_overwritten(user_dir, w2s):
    noisy, clean = w2s
    spec = FinetuneSpec(steps=1, name="mine", **TINY)
    _run(prepare(spec, noisy, clean))
    before = (user_dir / "mine.safetensors").read_bytes()
    with pytest.raises(ParameterError, match="A model named 'mine' already exists"):
        _run(prepare(spec, noisy, clean))
    assert (user_dir / "mine.safetensors").read_bytes() == before


def test_a_psf_model_loads_in_a_fresh_process(user_dir, membrane, tmp_path):
    spec = FinetuneSpec(mode="n2v-psf", steps=1, name="psf-fresh", **TINY)
    _run(prepare(spec, membrane[0]))
    image = tmp_path / "frame.npy"
    np.save(image, membrane[0])
    code = (
        "import sys, numpy as np, napari_denoise as nd; "
        "print(nd.denoise(np.load(sys.argv[1]), 'psf-fresh').shape)"
    )
    env = {**os.environ, "NAPARI_DENOISE_MODEL_DIR": str(user_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(image)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(96, 96)"


def test_a_network_told_the_noise_gets_the_inference_time_estimate(user_dir, w2s):
    spec = FinetuneSpec(steps=2, **{**TINY, "config": {"base": 8, "noise_map": True}})
    prepared = prepare(spec, *w2s)
    _, _, coeffs = prepared.sampler.batch(3, 32, torch.Generator(), with_noise=True)
    lo, hi = prepared.data["normalisation"]["low"], prepared.data["normalisation"]["high"]
    expected = inference.noise_for(prepared.model, (w2s[0].astype(np.float32) - lo) / (hi - lo))
    torch.testing.assert_close(coeffs, torch.tensor([expected] * 3, dtype=torch.float32))
    result, _ = _run(prepared)
    assert nd.denoise(w2s[0], result.name).shape == w2s[0].shape


def test_a_stack_trains_against_one_clean_plane_on_the_planes_the_model_sees(user_dir):
    """Issue 24, point 4: supervised training on a stack takes a clean stack or one clean
    plane for a still sample's stack; a start model that fuses a stack's neighbours
    learns from fused planes (lower noise), as it will denoise them."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    clean = (20 + 80 * np.exp(-((yy - 40) ** 2 + (xx - 50) ** 2) / 300.0)).astype(np.float32)
    noisy = rng.poisson(np.broadcast_to(clean, (5, 96, 96))).astype(np.float32)

    def error(prepared):
        return np.mean([np.mean((a - c) ** 2) for a, c in prepared.val_pairs])

    plain = prepare(FinetuneSpec(**TINY), noisy, clean, axes="TYX")  # does not fuse
    assert plain.data["pairs"] == 5 and "input" not in plain.data
    fused = prepare(
        FinetuneSpec(**{**TINY, "start": "unet-fluo", "config": None}), noisy, clean, axes="TYX"
    )
    assert fused.data["input"] == "planes fused with their neighbours along T"
    assert any("fused with its matching neighbours along T" in n for n in fused.notes)
    assert error(fused) < error(plain) / 2.5, (error(fused), error(plain))
    with pytest.raises(InputError, match="one clean plane for a stack"):
        prepare(FinetuneSpec(**TINY), noisy, clean[:80], axes="TYX")

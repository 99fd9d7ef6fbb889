"""Noise2Noise between neighbouring frames ("n2n-frames"): a noisy stack alone trains."""

import json

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")

from napari_denoise.cli import main  # noqa: E402
from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.training.config import FinetuneSpec  # noqa: E402
from napari_denoise.engine.training.finetune import finetune_iter, prepare  # noqa: E402
from napari_denoise.engine.training.frame_pairs import neighbour_pairs  # noqa: E402
from napari_denoise.errors import InputError, ParameterError  # noqa: E402

TINY = {"start": "new:unet", "config": {"base": 8, "depth": 2}, "batch_size": 2, "patch": 32}
DRIFT = (3, -2)  # pixels per frame (dy, dx)


def _clean_field(size: int) -> np.ndarray:
    """A smooth random field with blob-like structures, 10 .. 250 grey levels."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    field = gaussian_filter(rng.random((size, size)), 4, mode="wrap")
    field = (field - field.min()) / (field.max() - field.min())
    return 10 + 240 * field


@pytest.fixture(scope="module")
def drifting():
    """A 5-frame stack of one field drifting by DRIFT per frame, under Poisson noise
    (each frame a whole-pixel roll of one clean field), with its clean frames."""
    base = _clean_field(192)
    rng = np.random.default_rng(0)
    clean = np.stack([np.roll(base, (DRIFT[0] * t, DRIFT[1] * t), axis=(0, 1)) for t in range(5)])
    noisy = rng.poisson(clean).astype(np.float32)
    return noisy, clean


def test_the_mode_is_refused_on_a_single_image_in_one_sentence(user_dir):
    image = np.random.default_rng(0).poisson(50, (96, 96)).astype(np.float32)
    spec = FinetuneSpec(mode="n2n-frames", steps=2, **TINY)
    with pytest.raises(InputError) as err:
        prepare(spec, image)
    message = str(err.value)
    assert "needs a stack with a T or Z axis of at least 2 planes" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    # a channel axis is not a neighbour axis either
    with pytest.raises(InputError, match="T or Z axis"):
        prepare(spec, image[None], axes="CYX")


def test_the_record_fills_in_and_insists_on_the_squared_error():
    assert FinetuneSpec(mode="n2n-frames").loss == "l2"  # N2N learns the mean
    assert FinetuneSpec().loss == "l1"  # the other modes keep theirs
    with pytest.raises(ParameterError, match="use 'l2'"):
        FinetuneSpec(mode="n2n-frames", loss="l1")


def test_neighbours_run_along_t_else_z_both_ways():
    axis, pairs = neighbour_pairs([3, 2], "TZYX")  # slices t * 2 + z
    assert axis == "T"
    assert sorted(pairs) == sorted([(0, 2), (2, 0), (1, 3), (3, 1), (2, 4), (4, 2), (3, 5), (5, 3)])
    axis, pairs = neighbour_pairs([1, 3], "TZYX")
    assert axis == "Z" and sorted(pairs) == [(0, 1), (1, 0), (1, 2), (2, 1)]


def test_pairs_are_aligned_and_stay_inside_the_training_area(user_dir, drifting):
    noisy, clean = drifting
    spec = FinetuneSpec(mode="n2n-frames", steps=2, **TINY)
    prepared = prepare(spec, noisy, axes="TYX")
    sampler = prepared.sampler
    for i, j, shift, rect in sampler.pairs:
        # frame j moved by `shift` lands on frame i
        assert shift == (DRIFT[0] * (i - j), DRIFT[1] * (i - j))
        assert rect[2] <= 192 - 20  # the validation stripe (10%, 20 px) is not trained on
    # Every drawn pair's clean content matches: the sampler's patches, re-drawn from the
    # clean stack with the same random stream, are identical.
    lo, hi = (prepared.data["normalisation"][k] for k in ("low", "high"))
    clean_n = (clean - lo) / (hi - lo)
    clean_sampler = type(sampler)(
        {k: clean_n[k].astype(np.float32) for k in sampler.planes},
        sampler.pairs,
        sampler.variance,
        scale=sampler.scale,
    )
    clean_sampler.weight = lambda a, b: 1.0  # noise-free: every patch is kept at once
    sampler.weight = lambda a, b: 1.0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    noisy_in, noisy_target = sampler.batch(16, 32, g1)
    clean_in, clean_target = clean_sampler.batch(16, 32, g2)
    np.testing.assert_allclose(clean_in.numpy(), clean_target.numpy(), atol=1e-6)
    assert float((noisy_in - noisy_target).abs().mean()) > 0.01  # but the noise differs
    # held-out pairs: aligned too, and from the validation stripe only
    assert prepared.val_images and prepared.data["validation"]["kind"] == "neighbour loss"
    for pair in prepared.val_images:
        assert pair.shape[0] == 2 and pair.shape[1] >= 16


def test_pairs_that_differ_by_more_than_noise_are_skipped(user_dir, drifting):
    """A cut to another field: patches across it are never (or almost never) drawn."""
    noisy, _ = drifting
    other = np.random.default_rng(9).poisson(np.rot90(_clean_field(192)) + 0.0)
    stack = np.concatenate([noisy[:3], other[None].astype(np.float32)])  # frame 3: a cut
    prepared = prepare(FinetuneSpec(mode="n2n-frames", steps=2, **TINY), stack, axes="TYX")
    s = prepared.sampler
    across = [k for k, (i, j, _, _) in enumerate(s.pairs) if 3 in (i, j)]
    still = [k for k, (i, j, _, _) in enumerate(s.pairs) if 3 not in (i, j)]
    weights = {"across": [], "still": []}
    rng = np.random.default_rng(1)
    for label, ks in (("across", across), ("still", still)):
        for _ in range(40):
            k = ks[rng.integers(len(ks))]
            _, _, (dy, dx), rect = s.pairs[k]
            y = int(rng.integers(max(0, dy), rect[2] - 32 + min(0, dy)))
            x = int(rng.integers(max(0, dx), rect[3] - 32 + min(0, dx)))
            weights[label].append(s.weight(*s._patch(k, 32, y, x)))
    assert np.mean(weights["across"]) < 0.05
    assert np.mean(weights["still"]) > 0.9


def test_a_few_steps_through_finetune_iter_save_a_card_with_the_mode(user_dir, drifting):
    noisy, _ = drifting
    spec = FinetuneSpec(mode="n2n-frames", steps=4, val_every=2, threads=1, **TINY)
    prepared = prepare(spec, noisy, axes="TYX", data_names=("drift.tif", None))
    result = drain(finetune_iter(prepared))
    card = json.loads(result.path.read_text())
    assert card["training"]["mode"] == "n2n-frames" and card["training"]["loss"] == "l2"
    assert card["training"]["frame_pairs"]["neighbour_axis"] == "T"
    assert card["training"]["frame_pairs"]["largest_shift_px"] == 3
    assert "neighbour_loss" in card["validation"]
    assert [v["step"] for v in card["validation"]["history"]] == [2, 4]
    assert result.name == "unet-n2n" and result.registered


def test_the_guard_compares_with_a_trained_start_model(user_dir, drifting):
    """From the shipped model, the no-ground-truth check runs and records its verdict."""
    noisy, _ = drifting
    spec = FinetuneSpec(mode="n2n-frames", steps=2, batch_size=2, patch=32, threads=1)
    result = drain(finetune_iter(prepare(spec, noisy, axes="TYX")))
    check = result.card["training"]["selfcheck"]
    assert check["start_model"] == "unet-fluo" and check["better"] in ("new", "start")
    assert "held-out neighbour loss" in result.recommendation
    assert np.isfinite(check["start_mse"]) and np.isfinite(check["new_mse"])
    # trained on fused inputs, as the start model runs on a stack, and used so too
    assert result.card["training"]["frame_pairs"]["input"].startswith("the plane fused")
    assert result.card["fuse_neighbours"] is True


def test_a_fused_input_never_holds_its_target(drifting):
    """The network's input for (plane i, target j) is plane i fused with its neighbours
    other than j: a new noise draw of plane j leaves it unchanged (N2N needs the target's
    noise independent of the input), while the input of (i, k) takes plane j in."""
    from napari_denoise.engine.training.frame_pairs import _fused_inputs

    noisy, clean = drifting
    again = noisy.copy()
    again[2] = np.random.default_rng(99).poisson(clean[2]).astype(np.float32)
    lines = [[0, 1, 2, 3, 4]]
    forward = [(0, 1), (1, 2), (2, 3), (3, 4)]
    a = _fused_inputs(noisy, lines, forward, lambda p: p / 255.0)
    b = _fused_inputs(again, lines, forward, lambda p: p / 255.0)
    for i, j in a:
        if 2 in (i, j):  # the input is plane 2 itself, or plane 2 is the target
            same = i != 2
        else:  # plane 2 may be fused into the input (it matches: a drift only)
            same = False
        if same:
            np.testing.assert_array_equal(a[(i, j)], b[(i, j)])
        else:
            assert not np.array_equal(a[(i, j)], b[(i, j)]), (i, j)


def test_the_cli_trains_on_a_stack_and_refuses_a_single_image(user_dir, drifting, tmp_path, capsys):
    noisy, _ = drifting
    path = tmp_path / "drift.tif"
    tifffile.imwrite(path, noisy, imagej=True, metadata={"axes": "TYX"})
    tiny = ["--start", "new:unet", "--config", '{"base": 8, "depth": 2}', "--threads", "1"]
    args = ["train", str(path), "--mode", "n2n-frames", "--steps", "3", "--patch", "32"]
    assert main([*args, "--batch-size", "2", *tiny]) == 0
    out = capsys.readouterr().out
    assert "saved model 'unet-n2n'" in out and "validation neighbour loss" in out
    card = json.loads((user_dir / "unet-n2n.json").read_text())
    assert card["training"]["mode"] == "n2n-frames"
    assert "--mode n2n-frames" in card["training"]["command"]

    single = tmp_path / "single.tif"
    tifffile.imwrite(single, noisy[0])
    assert main(["train", str(single), "--mode", "n2n-frames", *tiny]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "T or Z axis" in err and err.count("\n") == 1

"""``napari-denoise train`` end to end on real crops, into a temporary model folder."""

import json
import shlex

import pytest
import tifffile

pytest.importorskip("torch")

from napari_denoise.cli import main
from napari_denoise.io import read_image

TINY = [
    "--start",
    "new:unet",
    "--config",
    '{"base": 8, "depth": 2}',
    "--batch-size",
    "4",
    "--patch",
    "32",
    "--threads",
    "1",
]


@pytest.fixture
def pair(shared_data, tmp_path):
    """A real W2S noisy/clean crop (128 x 128, uint8) as TIFF files."""
    root = shared_data / "W2S_8bit_subset"
    crop = (slice(192, 320), slice(192, 320))
    paths = []
    for folder, name in (
        ("images_avg1_8bit", "input_avg1_002_1.tif"),
        ("images_avg400_8bit", "target_avg400_002_1.tif"),
    ):
        dst = tmp_path / name
        tifffile.imwrite(dst, tifffile.imread(root / folder / name)[crop])
        paths.append(dst)
    return paths


def test_train_saves_a_model_that_denoise_can_use_and_its_command_reproduces(
    user_dir, pair, tmp_path, capsys
):
    noisy, clean = pair
    code = main(
        ["train", str(noisy), "--clean", str(clean), "--name", "cli-ft", "--steps", "6", *TINY]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "saved model 'cli-ft'" in out and "validation PSNR" in out
    assert "step 6/6" in err
    card = json.loads((user_dir / "cli-ft.json").read_text())
    assert card["training"]["steps"] == 6 and card["started_from"]["name"] == "new:unet"

    assert main(["list", "--json"]) == 0
    assert "cli-ft" in {m["name"] for m in json.loads(capsys.readouterr().out)}
    result = tmp_path / "out.tif"
    assert main(["denoise", str(noisy), "-o", str(result), "--method", "cli-ft", "-q"]) == 0
    assert read_image(result).data.shape == (128, 128)

    # The card's command retrains the same weights.
    command = shlex.split(card["training"]["command"])
    assert command[:3] == ["napari-denoise", "train", str(noisy.resolve())]
    other = tmp_path / "again"
    assert main([*command[1:], "--out-dir", str(other), "-q"]) == 0
    again = json.loads((other / "cli-ft.json").read_text())
    assert again["weights"]["sha256"] == card["weights"]["sha256"]
    assert "not the user model folder" in capsys.readouterr().err


def test_noise2void_on_a_stack_with_a_region(user_dir, shared_data, tmp_path, capsys):
    src = shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    stack = tmp_path / "membrane.tif"
    tifffile.imwrite(stack, tifffile.imread(src)[:2], imagej=True, metadata={"axes": "TYX"})
    args = ["train", str(stack), "--mode", "n2v", "--steps", "3", "--region", "20,30,120,110"]
    assert main([*args, *TINY, "--blind-radius", "1"]) == 0
    out = capsys.readouterr().out
    assert "saved model 'unet-n2v'" in out and "validation masked loss" in out
    card = json.loads((user_dir / "unet-n2v.json").read_text())
    assert card["training"]["data_details"]["regions"] == [[20, 30, 120, 110]]
    assert card["training"]["data_details"]["slices"] == 2
    assert card["training"]["blind_spot"]["radius"] == 1  # as asked: a 3x3 blind block
    assert card["training"]["blind_spot"]["radius_chosen"] == "given"
    assert "--blind-radius 1" in card["training"]["command"]  # the command reproduces it


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--region", "1,2,3"], "--region expects y0,x0,y1,x1"),
        (["--region", "0,0,300,300", "--region", "10,10,90,90"], "Regions 1 and 2 overlap"),
        (["--config", "{base: 8}"], "--config is not valid JSON"),
        (["--mode", "n2v", "--loss", "l1+ssim"], "needs clean images"),
        (["--start", "no-such-model"], "no model named 'no-such-model'"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(user_dir, pair, capsys, extra, message):
    noisy, clean = pair
    code = main(["train", str(noisy), "--clean", str(clean), *TINY, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not user_dir.exists() or not list(user_dir.glob("*.json"))


def test_pairs_of_different_shapes_and_a_missing_clean_image(user_dir, pair, tmp_path, capsys):
    noisy, clean = pair
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, tifffile.imread(clean)[:64])
    assert main(["train", str(noisy), "--clean", str(small), *TINY]) == 2
    assert "different shapes" in capsys.readouterr().err
    assert main(["train", str(noisy), *TINY]) == 2
    assert "needs a clean" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.tif"), "--mode", "n2v"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_noise2void_on_correlated_noise_says_it_uses_a_blind_block(
    user_dir, w2s_noise_pair, tmp_path, capsys
):
    """The automatic blind block is announced (a choice made from the data) and recorded."""
    noisy = w2s_noise_pair[0]
    path = tmp_path / "correlated.tif"
    tifffile.imwrite(path, noisy)  # float32
    assert main(["train", str(path), "--mode", "n2v2", "--steps", "2", *TINY]) == 0
    err = capsys.readouterr().err
    assert "note: The noise is spatially correlated" in err and "block" in err
    card = json.loads((user_dir / "unet-n2v2.json").read_text())
    assert card["training"]["blind_spot"]["radius"] >= 1


def test_n2v2_without_start_trains_a_new_unet(user_dir, pair, capsys):
    """N2V2 cannot train the shipped residual U-Nets: without --start it builds a new one
    (as the Train widget does) instead of failing."""
    noisy_path, _ = pair
    args = ["train", str(noisy_path), "--mode", "n2v2", "--steps", "2", *TINY[2:]]
    assert main(args) == 0
    card = json.loads((user_dir / "unet-n2v2.json").read_text())
    assert card["started_from"]["name"] == "new:unet"


def test_a_stack_trains_against_one_clean_plane_from_the_command_line(user_dir, tmp_path, capsys):
    """``--axes TYX`` described the noisy stack and was applied to a one-plane clean image
    too, which refused it ("has 3 letters but the image has 2 dimensions")."""
    import numpy as np

    rng = np.random.default_rng(0)
    clean = (20 + 60 * rng.random((1, 96, 96)).round(1)).astype(np.float32)[0]
    noisy = rng.poisson(np.broadcast_to(clean, (4, 96, 96))).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", noisy)
    tifffile.imwrite(tmp_path / "average.tif", clean)
    args = ["train", str(tmp_path / "stack.tif"), "--clean", str(tmp_path / "average.tif")]
    code = main([*args, "--axes", "TYX", "--name", "cli-stack", "--steps", "2", *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "saved model 'cli-stack'" in out
    card = json.loads((user_dir / "cli-stack.json").read_text())
    assert card["training"]["data_details"]["shape"] == [4, 96, 96]

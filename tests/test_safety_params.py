"""Bad settings get one clear sentence, never a traceback, and nonsense is never accepted
silently (issue 13, 3: the 'Also' list)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

import napari_denoise as nd
from napari_denoise.cli import main
from napari_denoise.engine.methods import get_method, list_methods
from napari_denoise.errors import DenoiseError, InputError, ParameterError


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 200, (64, 64), dtype=np.uint8))
    return path


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_parameters_are_refused(small, tmp_path, capsys, value):
    args = ["denoise", str(small), "-o", str(tmp_path / "o.tif"), "--method", "gaussian"]
    assert main([*args, "--param", f"sigma={value}", "-q"]) == 2
    assert "finite" in _err(capsys)
    assert not (tmp_path / "o.tif").exists()
    with pytest.raises(ParameterError):
        nd.denoise(np.zeros((32, 32), np.float32), "gaussian", sigma=float(value))


def test_every_float_parameter_of_every_method_refuses_nan():
    for m in list_methods():
        for p in m.params:
            if p.type is float:
                with pytest.raises(ParameterError, match="finite"):
                    m.resolve_params({p.name: float("nan")})


@pytest.mark.parametrize(("method", "name"), [("box", "size"), ("median", "size")])
def test_even_window_sizes_are_refused(method, name):
    # An even window has no centre: the result would be shifted by half a pixel.
    with pytest.raises(ParameterError, match="odd"):
        get_method(method).resolve_params({name: 4})
    assert get_method(method).resolve_params({name: 5})[name] == 5


def test_box3d_even_sizes_are_refused():
    m = get_method("box3d")
    for name in ("size", "size_z"):
        with pytest.raises(ParameterError, match="odd"):
            m.resolve_params({name: 2})


def test_inverted_normalisation_range_is_refused(small, tmp_path, capsys):
    models = list_methods(kind="model", include_unavailable=False)
    if not models:
        pytest.skip("no model installed")
    m = models[0]
    with pytest.raises(ParameterError, match="norm_low"):
        m.resolve_params({"norm_low": 100.0, "norm_high": 5.0})
    with pytest.raises(ParameterError, match="norm_low"):
        m.resolve_params({"norm_low": 5.0, "norm_high": 5.0})
    args = ["denoise", str(small), "-o", str(tmp_path / "o.tif"), "--method", m.name]
    assert main([*args, "--param", "norm_low=100", "--param", "norm_high=5", "-q"]) == 2
    assert "norm_low" in _err(capsys)
    assert m.resolve_params({"norm_low": 5.0, "norm_high": 100.0})["norm_high"] == 100.0


@pytest.mark.parametrize("dtype", ["nonsense", object, "complex64", "U8"])
def test_nonsense_output_dtype_is_a_sentence(dtype):
    with pytest.raises(InputError, match="output_dtype"):
        nd.denoise(np.zeros((32, 32), np.float32), "gaussian", output_dtype=dtype, sigma=1.0)


@pytest.mark.parametrize("image", [[[1, 2, 3], [4, 5]], [[[1, 2], [3, 4]], [[1, 2]]]])
def test_ragged_lists_are_a_sentence(image):
    with pytest.raises(InputError, match="same size"):
        nd.denoise(image, "gaussian", sigma=1.0)


@pytest.mark.parametrize(
    ("config", "word"),
    [
        ('{"base": -3}', "base"),
        ('{"base": "x"}', "base"),
        ('{"base": 2.5}', "base"),
        ('{"residual": 3}', "residual"),
        ('{"nope": 1}', "nope"),
        ('{"base": 1e12}', "base"),
    ],
)
def test_train_config_errors_are_one_line(user_dir, small, capsys, config, word):
    args = ["train", str(small), "--mode", "n2v", "--start", "new:unet", "--steps", "1"]
    assert main([*args, "--config", config, "--patch", "32"]) == 2
    assert word in _err(capsys)


def test_train_out_dir_under_a_file_is_one_line(user_dir, small, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    args = ["train", str(small), "--mode", "n2v", "--start", "new:unet", "--steps", "1"]
    code = main(
        [*args, "--config", '{"base": 8}', "--patch", "32", "--out-dir", str(blocker / "m")]
    )
    assert code == 2
    assert "notes.txt" in _err(capsys)
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("which", ["noisy", "clean"])
def test_training_on_a_constant_image_is_refused(user_dir, tmp_path, capsys, which):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 200, (96, 96)).astype(np.uint8)
    const = np.full((96, 96), 7, np.uint8)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, const if which == "noisy" else noisy)
    tifffile.imwrite(b, const if which == "clean" else noisy)
    args = ["train", str(a), "--clean", str(b), "--start", "new:unet", "--steps", "2"]
    assert main([*args, "--config", '{"base": 8}', "--patch", "32"]) == 2
    line = _err(capsys)
    assert "constant" in line and "dB" not in line
    assert not user_dir.exists() or not list(user_dir.glob("*.safetensors"))


def test_finetune_api_refuses_a_constant_image(user_dir):
    with pytest.raises(DenoiseError, match="constant"):
        nd.finetune(
            np.full((96, 96), 3.0, np.float32),
            mode="n2v",
            start="new:unet",
            config={"base": 8},
            patch=32,
            steps=1,
        )


def test_config_must_be_an_object(user_dir, small, capsys):
    args = ["train", str(small), "--mode", "n2v", "--start", "new:unet", "--steps", "1"]
    assert main([*args, "--config", json.dumps([1, 2])]) == 2
    assert "JSON object" in _err(capsys)

"""The napari-denoise command end to end on real files."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_denoise.cli import main
from napari_denoise.engine.methods import default_method
from napari_denoise.engine.metrics import compare
from napari_denoise.io import read_image


@pytest.fixture
def stack(shared_data, tmp_path):
    src = shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    dst = tmp_path / "membrane.tif"
    shutil.copy(src, dst)
    return dst


def test_list_json_has_the_contract_fields(capsys):
    assert main(["list", "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)
    assert sum(m["default"] for m in methods) == 1
    for m in methods:
        assert isinstance(m["name"], str) and m["kind"] in ("classical", "model")
        assert isinstance(m["params"], list)
    assert {"gaussian", "nlm", "bm3d"} <= {m["name"] for m in methods}


def test_denoise_a_real_stack_writes_tiff_and_provenance(stack, tmp_path, capsys):
    out = tmp_path / "out" / "clean.tif"
    code = main(
        [
            "denoise",
            str(stack),
            "-o",
            str(out),
            "--method",
            "gaussian",
            "--param",
            "sigma=1.2",
            "-q",
        ]
    )
    assert code == 0
    original = tifffile.imread(stack)
    result = read_image(out)
    assert result.data.shape == original.shape and result.data.dtype == original.dtype
    assert result.axes == "TYX"
    assert result.data.std() < original.std()
    prov = json.loads((out.parent / "clean.tif.json").read_text())
    assert prov["method"] == "gaussian" and prov["params"]["sigma"] == 1.2
    assert prov["input"]["sha256"] and prov["input"]["shape"] == list(original.shape)
    assert prov["versions"]["numpy"] and prov["created"]
    assert result.metadata["embedded"]["method"] == "gaussian"


def test_several_inputs_go_to_a_folder_with_automatic_parameters(shared_data, tmp_path):
    raw = shared_data / "FMD_test_mix" / "raw"
    inputs = [str(raw / "Confocal_MICE_1.png"), str(raw / "TwoPhoton_MICE_1.png")]
    assert main(["denoise", *inputs, "-o", str(tmp_path / "res"), "-q"]) == 0
    written = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert written == [
        "Confocal_MICE_1_denoised.tif",
        "Confocal_MICE_1_denoised.tif.json",
        "TwoPhoton_MICE_1_denoised.tif",
        "TwoPhoton_MICE_1_denoised.tif.json",
    ]
    prov = json.loads((tmp_path / "res" / "Confocal_MICE_1_denoised.tif.json").read_text())
    default = default_method()
    assert prov["method"] == default.name
    automatic = [p.name for p in default.params if p.auto]
    assert automatic and all(prov["params"][name] is not None for name in automatic)


def test_compare_prints_the_engine_numbers(shared_data, tmp_path, capsys):
    raw = shared_data / "FMD_test_mix" / "raw" / "Confocal_FISH_2.png"
    gt = shared_data / "FMD_test_mix" / "gt" / "Confocal_FISH_2.png"
    out = tmp_path / "fish.tif"
    assert main(["denoise", str(raw), "-o", str(out), "--method", "box", "-q"]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), str(gt), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = compare(read_image(gt).data, read_image(out).data)  # the same default range
    for key in ("psnr", "ssim", "psnr_ri", "ssim_ri"):
        assert printed[key] == pytest.approx(expected[key], abs=1e-9)
    assert main(["compare", str(out), str(gt)]) == 0
    text = capsys.readouterr().out
    assert f"{expected['psnr']:.2f} dB" in text and "range-invariant" in text


def _assert_failed_cleanly(code, capsys, out_dir, words):
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err
    assert not any(p.suffix in (".tif", ".json") for p in out_dir.rglob("*"))


def test_truncated_file_fails_with_a_message_and_no_output(stack, tmp_path, capsys):
    data = stack.read_bytes()
    bad = tmp_path / "cut.tif"
    bad.write_bytes(data[: len(data) // 2])
    out_dir = tmp_path / "o"
    code = main(["denoise", str(bad), "-o", str(out_dir / "x.tif"), "--method", "gaussian", "-q"])
    _assert_failed_cleanly(code, capsys, tmp_path / "o", "cut.tif")


def test_nan_input_and_unknown_method_fail_cleanly(tmp_path, capsys):
    arr = np.ones((32, 32), np.float32)
    arr[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    out_dir = tmp_path / "o"
    code = main(["denoise", str(tmp_path / "nan.npy"), "-o", str(out_dir / "x.tif"), "-q"])
    _assert_failed_cleanly(code, capsys, out_dir, "NaN")
    code = main(
        ["denoise", str(tmp_path / "nan.npy"), "-o", str(out_dir / "x.tif"), "--method", "gausian"]
    )
    _assert_failed_cleanly(code, capsys, out_dir, "Did you mean 'gaussian'")
    code = main(
        ["denoise", str(tmp_path / "nan.npy"), "-o", str(out_dir / "x.tif"), "--param", "sigma"]
    )
    _assert_failed_cleanly(code, capsys, out_dir, "KEY=VALUE")


def test_compare_refuses_a_ground_truth_of_another_shape(shared_data, tmp_path, capsys):
    np.save(tmp_path / "small.npy", np.zeros((100, 100), np.uint8))
    gt = shared_data / "FMD_test_mix" / "gt" / "Confocal_FISH_2.png"
    assert main(["compare", str(tmp_path / "small.npy"), str(gt)]) == 2
    assert "different shapes" in capsys.readouterr().err


def test_demo_writes_result_figure_and_prints_the_table(tmp_path, capsys):
    from napari_denoise.demo import run_demo

    rows = run_demo(tmp_path)
    text = capsys.readouterr().out
    assert "noisy input" in text and "PSNR" in text
    noisy, denoised, *reference = list(rows.values())
    assert denoised["psnr"] > noisy["psnr"] + 3
    assert list(rows)[1] == default_method().name
    assert len(reference) == (default_method().name != "gaussian")  # the classical reference
    for name in (
        "fmd_confocal_mice_denoised.tif",
        "fmd_confocal_mice_comparison.png",
        "membrane_timelapse_denoised.tif",
        "membrane_timelapse_denoised.tif.json",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_console_script_and_light_import():
    code = "import sys, napari_denoise; print(sorted(m for m in ('napari', 'qtpy', 'PyQt6', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    exe = shutil.which("napari-denoise") or str(
        __import__("pathlib").Path(sys.executable).parent / "napari-denoise"
    )
    res = subprocess.run([exe, "list"], capture_output=True, text=True)
    assert res.returncode == 0 and "gaussian" in res.stdout


def test_list_names_each_parameter_by_its_label_too(capsys):
    # The widget shows 'Blur width (pixels)'; the command line takes 'sigma': list links them.
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "--param sigma=<float> (default auto): Blur width (pixels). " in out
    assert "np = Normal" in out

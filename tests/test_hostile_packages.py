"""Hostile model packages and model folders (issue 22 section 1): no package code runs
unless allowed, and even then TorchScript is inspected first; parsing is bounded; only
the package's own files are read; the model folder is untrusted input.

The cases that could hang or take the machine with a version lacking the bounds run in a
fresh process (benchmarks/hostile_packages.py's runner) with its data segment limited
and a 90 s time-out; the others run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

import napari_denoise as nd
from napari_denoise.bioimageio import BioimageioError
from napari_denoise.cli import main
from napari_denoise.errors import ModelFileError

REPO = Path(__file__).resolve().parents[1]


def _hostile():
    spec = importlib.util.spec_from_file_location(
        "hostile_packages", REPO / "benchmarks" / "hostile_packages.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = _hostile()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The real package of the shipped U-Net, unpacked (written once for the module)."""
    folder = tmp_path_factory.mktemp("base")
    package = nd.export_model("unet-fluo", folder / "unet-fluo.zip")
    with zipfile.ZipFile(package) as z:
        z.extractall(folder / "pkg")
    return folder / "pkg"


def _one_line_refusal(result: dict) -> str:
    assert not result["timed_out"], "did not answer within 90 s"
    err = result["stderr"]
    assert result["rc"] == 2, (result["rc"], err[-2000:])
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert result["peak_mb"] < H.PEAK_LIMIT_MB, result["peak_mb"]
    return lines[0]


# --- in a fresh process: what could hang or exhaust memory -----------------------------------


@pytest.mark.parametrize(
    ("build", "extra", "words"),
    [
        (H.billion_laughs, [], "expands to more than"),
        (H.zip_bomb, [], "unpacks to"),
        (lambda b, w: H.zip_bomb(b, w, lie=True), [], "cannot be unpacked|holds more"),
        (H.torchscript_loop, ["--allow-code"], "loop without a bound"),
        (H.fifo_rdf, [], "not a regular file"),
        (H.huge_config, [], "base=1000000"),
    ],
    ids=["billion-laughs", "zip-bomb", "zip-bomb-lying-sizes", "while-loop", "fifo-rdf", "config"],
)
def test_hostile_package_is_refused_quickly_in_bounded_memory(build, extra, words, base, tmp_path):
    import re

    package = build(base, tmp_path)
    result = H.run_cli(["import", str(package), "--name", "hostile", *extra], tmp_path / "models")
    line = _one_line_refusal(result)
    assert re.search(words, line), line
    assert not (tmp_path / "models" / "hostile.json").exists()


def test_hostile_model_folder_never_hangs_and_shows_each_entry_with_its_reason(tmp_path):
    import re

    from napari_denoise.engine.models.store import SHIPPED_DIR

    folder = tmp_path / "models"
    entries = H.hostile_model_folder(folder, SHIPPED_DIR / "unet-fluo.json")
    result = H.run_cli(["list"], folder)
    assert not result["timed_out"], "napari-denoise list did not answer within 90 s"
    assert result["rc"] == 0, result["stderr"][-2000:]
    assert result["peak_mb"] < H.PEAK_LIMIT_MB
    listed = {line.split()[0]: line for line in result["stdout"].splitlines() if line[:1].strip()}
    reasons = {
        "pipe": "not a regular file",
        "zeros": "outside its folder|not a regular file",
        "link-to-pipe": "not a regular file",
        "huge": "more than",
        "unet-fluo.json": "shipped model",
        "outside": "weights.file",
        "padded": "'config' of a TorchScript model",
    }
    assert len(entries) == len(reasons)
    for name, words in reasons.items():
        assert name in listed, (name, sorted(listed))
        assert "unavailable" in listed[name] and re.search(words, listed[name]), listed[name]
    assert "unavailable" not in listed["unet-fluo"]  # the shipped one is untouched


# --- here: TorchScript is code ----------------------------------------------------------------


@pytest.mark.parametrize("build", [H.torchscript_save, H.torchscript_setstate])
def test_torchscript_that_writes_files_never_runs(build, base, user_dir, tmp_path):
    marker = tmp_path / "written-by-the-package"
    rdf = build(base, tmp_path, marker)
    with pytest.raises(BioimageioError, match="allow_code"):
        nd.import_model(rdf, name="evil")
    assert not marker.exists()
    with pytest.raises(BioimageioError, match="is not run"):
        nd.import_model(rdf, name="evil", allow_code=True)
    assert not marker.exists()  # neither loading (__setstate__) nor running wrote it
    assert not (user_dir / "evil.json").exists()


def test_stored_torchscript_is_checked_again_when_loaded(base, user_dir, tmp_path):
    """A TorchScript card dropped into the model folder is not trusted either."""
    from napari_denoise.engine.models.store import sha256_file

    marker = tmp_path / "written-by-a-stored-model"
    rdf = H.torchscript_save(base, tmp_path, marker)
    user_dir.mkdir()
    weights = user_dir / "dropped.torchscript.pt"
    shutil.copy(rdf.parent / "evil.pt", weights)
    card = {
        "name": "dropped",
        "architecture": "torchscript",
        "config": {"step": 8, "min": 16},
        "normalisation": {"kind": "fixed", "low": 0.0, "high": 1.0},
        "halo": 0,
        "weights": {"file": weights.name, "format": "torchscript", "sha256": sha256_file(weights)},
    }
    (user_dir / "dropped.json").write_text(json.dumps(card))
    nd.list_methods()
    from napari_denoise.engine.models.registry import register_models

    register_models()
    with pytest.raises(ModelFileError, match="aten::save"):
        nd.denoise(np.zeros((32, 32), np.float32), "dropped")
    assert not marker.exists()


def test_an_honest_torchscript_package_imports_with_allow_code(base, user_dir, tmp_path):
    """The TorchScript route itself works: traced shipped networks pass the inspection."""
    folder = tmp_path / "ts"
    shutil.copytree(base, folder)
    data = H._rdf(folder)
    del data["weights"]["pytorch_state_dict"]
    data["weights"]["torchscript"].pop("parent", None)
    rdf = H._write_rdf(folder, data)
    with pytest.raises(BioimageioError, match="TorchScript, which is code"):
        nd.import_model(rdf, name="ts-ok")
    name = nd.import_model(rdf, name="ts-ok", allow_code=True)
    card = json.loads((user_dir / f"{name}.json").read_text())
    assert card["weights"]["format"] == "torchscript"
    assert card["imported_from"]["code_allowed"] is True
    out = nd.denoise(np.full((40, 40), 100, np.uint8), name)
    assert out.shape == (40, 40)


# --- here: only the package's own files; malformed packages -----------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (H.weights_outside, "outside the package"),
        (lambda b, w: H.weights_outside(b, w, absolute=True), "absolute path"),
    ],
    ids=["dotdot", "absolute"],
)
def test_weights_outside_the_package_are_not_read(build, words, base, user_dir, tmp_path):
    rdf = build(base, tmp_path)
    with pytest.raises(BioimageioError, match=words):
        nd.import_model(rdf, name="outside")
    assert not (user_dir / "outside.json").exists()


def test_weights_through_a_link_are_not_read(base, user_dir, tmp_path):
    folder, data = H._state_dict_only(base, tmp_path, "linked")
    source = folder / data["weights"]["pytorch_state_dict"]["source"]
    outside = tmp_path / "elsewhere.pt"
    shutil.move(source, outside)
    os.symlink(outside, source)
    data["weights"]["pytorch_state_dict"].pop("sha256", None)
    rdf = H._write_rdf(folder, data)
    with pytest.raises(BioimageioError, match=r"outside the package|link"):
        nd.import_model(rdf, name="linked")


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (H.weights_missing, "does not exist"),
        (H.weights_checksum, "SHA-256"),
        (H.huge_halo, "halo|not valid"),
    ],
    ids=["missing", "checksum", "halo"],
)
def test_malformed_package_is_one_sentence_and_exit_2(
    build, words, base, user_dir, tmp_path, capsys
):
    rdf = build(base, tmp_path)
    assert main(["import", str(rdf), "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "Traceback" not in err
    import re

    assert re.search(words, err), err


def test_yaml_anchors_are_read_and_nested_aliases_refused():
    from napari_denoise.bioimageio.package import parse_yaml

    assert parse_yaml("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    laughs = "l0: &l0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )
    with pytest.raises(ValueError, match="expands to more than"):
        parse_yaml(laughs)
    with pytest.raises(ValueError, match="refers to itself"):
        parse_yaml("a: &x [1, *x]\n")


# --- the model folder: weights bounded before reading -----------------------------------------


def test_oversized_weights_in_the_model_folder_are_refused_from_their_size(user_dir):
    from napari_denoise.engine.models.store import MAX_WEIGHTS_BYTES, SHIPPED_DIR, load_model

    user_dir.mkdir()
    card = json.loads((SHIPPED_DIR / "unet-fluo.json").read_text())
    card["name"] = "sparse"
    (user_dir / "sparse.json").write_text(json.dumps(card))
    with open(user_dir / "sparse.safetensors", "wb") as f:
        f.truncate(MAX_WEIGHTS_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ModelFileError, match="more than"):
        load_model(user_dir / "sparse.json")


# --- issue 25 point 9: the name comes back --------------------------------------------------


def test_an_exported_model_comes_back_under_its_own_name(user_dir, tmp_path):
    from napari_denoise.engine import zoo
    from napari_denoise.engine.models import build

    net = build("unet", {"base": 8, "depth": 2})
    title = "U-Net fluorescence, blind, fine-tuned on noisy CLE stacks of the lab"
    zoo.save_model(
        net, {"title": title, "training": {"data": ["a test"]}}, user_dir / "unet-fluo-ft"
    )
    zoo.register_models()
    package = nd.export_model("unet-fluo-ft", tmp_path / "ft.zip")
    for f in user_dir.iterdir():
        f.unlink()
    zoo.register_models()
    name = nd.import_model(package)
    assert name == "unet-fluo-ft"
    card = json.loads((user_dir / f"{name}.json").read_text())
    assert card["imported_from"]["original_name"] == "unet-fluo-ft"
    assert card["imported_from"]["weights_format"] == "pytorch_state_dict"
    # the name is taken now: a second import gets a free one, the first is kept
    assert nd.import_model(package) == "unet-fluo-ft-imported"
    assert nd.import_model(package, overwrite=True) == "unet-fluo-ft"

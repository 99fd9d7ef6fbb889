"""Never lose the user's data: inputs are never written over, outputs are checked before any
computation, names keep the whole stem, and a failed run leaves nothing behind (issue 13, 2)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_denoise import files
from napari_denoise.atomic import part_path
from napari_denoise.cli import main
from napari_denoise.errors import WriteError

GAUSS = ["--method", "gaussian", "--param", "sigma=1.0", "-q"]


def _tif(path, shape=(32, 32), seed=0):
    data = np.random.default_rng(seed).integers(0, 200, shape).astype(np.uint8)
    tifffile.imwrite(path, data)
    return path


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a denoising computation starts."""

    def boom(*a, **k):
        raise AssertionError("computed before the output paths were checked")

    monkeypatch.setattr(files, "denoise_iter", boom)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("spelling", ["same", "relative", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_input_is_never_written_over(
    tmp_path, monkeypatch, capsys, no_compute, spelling, overwrite
):
    raw = _tif(tmp_path / "raw.tif")
    before = raw.read_bytes()
    monkeypatch.chdir(tmp_path)
    out = {
        "same": str(raw),
        "relative": "raw.tif",
        "dotted": f"./sub/../{raw.name}",
        "symlink": "link.tif",
        "hardlink": "hard.tif",
    }[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "symlink":
        os.symlink(raw, tmp_path / "link.tif")
    if spelling == "hardlink":
        os.link(raw, tmp_path / "hard.tif")
    args = ["denoise", str(raw), "-o", out, *GAUSS] + (["--overwrite"] if overwrite else [])
    assert main(args) == 2
    assert "input" in _one_line_error(capsys)
    assert raw.read_bytes() == before
    assert not list(tmp_path.glob("*.json"))


def test_an_input_is_not_the_output_of_another(tmp_path, capsys, no_compute):
    a = _tif(tmp_path / "a.tif")
    b = _tif(tmp_path / "a_denoised.tif", seed=1)
    before = b.read_bytes()
    assert main(["denoise", str(a), str(b), "-o", str(tmp_path), "--overwrite", *GAUSS]) == 2
    assert "a_denoised.tif" in _one_line_error(capsys)
    assert b.read_bytes() == before


def test_output_names_keep_the_whole_stem(tmp_path):
    (tmp_path / "in").mkdir()
    a = _tif(tmp_path / "in" / "run.1.tif")
    b = _tif(tmp_path / "in" / "run.2.tif", seed=1)
    out = tmp_path / "out"
    assert main(["denoise", str(a), "-o", str(out), *GAUSS]) == 0
    assert main(["denoise", str(b), "-o", str(out), *GAUSS]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "run.1_denoised.tif",
        "run.1_denoised.tif.json",
        "run.2_denoised.tif",
        "run.2_denoised.tif.json",
    ]
    assert np.array_equal(
        tifffile.imread(out / "run.1_denoised.tif").shape, tifffile.imread(a).shape
    )


def test_sidecar_is_named_after_the_exact_output(tmp_path):
    src = _tif(tmp_path / "x.tif")
    own = tmp_path / "res.json"
    own.write_text('{"mine": true}')
    assert main(["denoise", str(src), "-o", str(tmp_path / "res.tif"), *GAUSS]) == 0
    assert main(["denoise", str(src), "-o", str(tmp_path / "res.tiff"), *GAUSS]) == 0
    assert json.loads(own.read_text()) == {"mine": True}
    for name in ("res.tif", "res.tiff"):
        prov = json.loads((tmp_path / f"{name}.json").read_text())
        assert prov["output"] == str((tmp_path / name).resolve())
    assert files.sidecar_path(tmp_path / "res.tif") == tmp_path / "res.tif.json"


def test_existing_output_needs_overwrite_and_is_checked_before_computing(
    tmp_path, capsys, monkeypatch
):
    src = _tif(tmp_path / "x.tif")
    out = tmp_path / "y.tif"
    out.write_bytes(b"keep me")
    with monkeypatch.context() as m:
        m.setattr(files, "denoise_iter", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
        assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert out.read_bytes() == b"keep me"
    assert main(["denoise", str(src), "-o", str(out), "--overwrite", *GAUSS]) == 0
    assert tifffile.imread(out).shape == (32, 32)


def test_an_existing_sidecar_also_needs_overwrite(tmp_path, capsys, no_compute):
    src = _tif(tmp_path / "x.tif")
    (tmp_path / "y.tif.json").write_text("{}")
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.tif"), *GAUSS]) == 2
    assert "y.tif.json" in _one_line_error(capsys)
    assert not (tmp_path / "y.tif").exists()


def test_one_message_names_every_problem(tmp_path, capsys, no_compute):
    inputs = [str(_tif(tmp_path / f"{n}.tif", seed=i)) for i, n in enumerate("abc")]
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_denoised.tif").write_bytes(b"1")
    (out / "c_denoised.tif").mkdir()
    assert main(["denoise", *inputs, "-o", str(out), *GAUSS]) == 2
    line = _one_line_error(capsys)
    assert "a_denoised.tif" in line and "c_denoised.tif" in line and "b_denoised" not in line
    assert sorted(p.name for p in out.iterdir()) == ["a_denoised.tif", "c_denoised.tif"]


@pytest.mark.parametrize("where", ["parent", "grandparent"])
def test_a_parent_that_is_a_file_is_refused_before_computing(tmp_path, capsys, no_compute, where):
    src = _tif(tmp_path / "x.tif")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    out = blocker / "y.tif" if where == "parent" else blocker / "sub" / "y.tif"
    assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 2
    assert "notes.txt" in _one_line_error(capsys)
    assert blocker.read_text() == "a file"


def test_a_read_only_folder_is_refused_before_computing(tmp_path, capsys, no_compute, monkeypatch):
    src = _tif(tmp_path / "x.tif")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root may write anywhere: let the check see what a user would
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: False if str(p) == str(ro) else access(p, mode)
        )
    try:
        assert main(["denoise", str(src), "-o", str(ro / "y.tif"), *GAUSS]) == 2
        assert "ro" in _one_line_error(capsys)
    finally:
        ro.chmod(0o700)


def test_png_output_is_a_png_file(tmp_path):
    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(src)
    out = tmp_path / "out.png"
    assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 0
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (32, 32)
    assert (tmp_path / "out.png.json").is_file()


def test_png_output_that_cannot_hold_the_result_is_refused_first(tmp_path, capsys, no_compute):
    src = _tif(tmp_path / "stack.tif", shape=(3, 32, 32))
    out = tmp_path / "out.png"
    assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 2
    assert "PNG" in _one_line_error(capsys)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.tif"]


def test_an_unknown_output_suffix_is_not_made_a_folder(tmp_path, capsys, no_compute):
    src = _tif(tmp_path / "x.tif")
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.jpg"), *GAUSS]) == 2
    assert ".jpg" in _one_line_error(capsys)
    assert not (tmp_path / "out.jpg").exists()


def test_a_failed_sidecar_leaves_no_image(tmp_path, capsys, monkeypatch):
    src = _tif(tmp_path / "x.tif")

    def fail(path, obj):
        raise WriteError(f"Cannot write {path}: disk full.")

    monkeypatch.setattr(files, "write_json", fail)
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.tif"), *GAUSS]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


def test_stale_part_files_of_ours_are_cleaned_at_the_next_write(tmp_path):
    src = _tif(tmp_path / "x.tif")
    dead = 2**22 + 12345  # above the default pid_max: no such process

    def part(name, pid):  # as a run of that process names its part files
        return tmp_path / part_path(tmp_path / name).name.replace(f".{os.getpid()}-", f".{pid}-")

    stale = part("y.tif", dead)
    stale.write_bytes(b"half")
    stale_dir = part("y.zarr", dead)
    stale_dir.mkdir()
    live = part("z.tif", os.getpid())  # a write in progress
    live.write_bytes(b"busy")
    other = tmp_path / ".notes.part"  # not ours
    other.write_bytes(b"mine")
    assert main(["denoise", str(src), "-o", str(tmp_path / "y.tif"), *GAUSS]) == 0
    assert not stale.exists() and not stale_dir.exists()
    assert live.exists() and other.exists()


def test_an_output_inside_an_input_folder_is_refused(tmp_path, capsys, no_compute):
    import napari_denoise as nd

    src = tmp_path / "in.zarr"
    nd.write_image(src, np.zeros((2, 32, 32), np.uint16), axes="TYX")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    assert main(["denoise", str(src), "-o", str(src / "clean.zarr"), *GAUSS]) == 2
    assert "inside the input" in _one_line_error(capsys)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_replacing_a_folder_that_holds_an_input_is_refused(tmp_path, capsys, no_compute):
    import napari_denoise as nd

    out = tmp_path / "out.zarr"
    nd.write_image(out, np.zeros((2, 32, 32), np.uint16), axes="TYX")
    src = out / "0"  # the array inside the folder that would be replaced
    assert main(["denoise", str(src), "-o", str(out), "--overwrite", *GAUSS]) == 2
    assert "holds the input" in _one_line_error(capsys)
    assert (out / "0").is_dir()


def test_every_atomic_write_cleans_stale_parts_of_its_folder(tmp_path):
    from napari_denoise.io import write_json

    dead = 2**22 + 54321
    stale = tmp_path / part_path(tmp_path / "card.json").name.replace(
        f".{os.getpid()}-", f".{dead}-"
    )
    stale.write_bytes(b"half a model card")
    write_json(tmp_path / "other.json", {"a": 1})
    assert not stale.exists()

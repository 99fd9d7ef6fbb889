"""Two processes at once lose nothing (issue 22, 2): two runs writing one output, two
trainings or saves of one model name, and a folder that cannot take the model.

The races run in two worker processes (spawned once for the module) that start each job
together at a barrier. Where the outcome would depend on timing, the workers are slowed at
a fixed point (the computation, a rename) so that the two runs overlap the same way every
time; the numbers over hundreds of unslowed rounds are benchmarks/concurrency.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_denoise.cli import main

GAUSS = ["--method", "gaussian", "--param", "sigma=1.0", "-q"]
TRAIN = [
    "--mode", "n2v", "--start", "new:unet", "--config", '{"base": 8, "depth": 2}',
    "--steps", "2", "--patch", "32", "--batch-size", "2", "--threads", "1",
]  # fmt: skip


# --- two worker processes ------------------------------------------------------------------


def _worker(conn, barrier) -> None:
    """Run the jobs sent on ``conn``, each after the barrier; answer (exit code, out, err,
    SHA-256 of the weights this run asked to save)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from napari_denoise import cli, files
    from napari_denoise.engine.models import store

    real_plan, real_replace, real_save = files.plan_iter, os.replace, store.save_model
    saved: list[str] = []
    delays: dict[str, float] = {}

    def slow_plan(*a, **k):  # both runs are computing at once
        time.sleep(delays.get("compute", 0.0))
        return real_plan(*a, **k)

    def slow_replace(src, dst, *a, **k):  # a gap between the image's and the sidecar's rename
        real_replace(src, dst, *a, **k)
        if str(dst).endswith((".tif", ".safetensors")):
            time.sleep(delays.get("after_rename", 0.0))

    def recording_save(module, card, path, **kw):
        from safetensors.torch import save

        state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        saved.append(hashlib.sha256(save(state)).hexdigest())
        time.sleep(delays.get("save", 0.0))  # both trainings end together
        return real_save(module, card, path, **kw)

    files.plan_iter, os.replace, store.save_model = slow_plan, slow_replace, recording_save
    while (job := conn.recv()) is not None:
        delays.clear()
        delays.update(job.get("delays", {}))
        saved.clear()
        out, err = io.StringIO(), io.StringIO()
        barrier.wait()
        time.sleep(delays.get("start", 0.0))
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if "argv" in job:
                    code = cli.main(job["argv"])
                else:
                    code = _save(job, real_save)
        except BaseException:  # a traceback is an answer too (the test shows it)
            code = -1
            err.write(traceback.format_exc())
        conn.send((code, out.getvalue(), err.getvalue(), list(saved)))


def _save(job: dict, save_model) -> int:
    """save_model of a tiny network made with ``job["seed"]``; 2 if refused."""
    import torch
    from safetensors.torch import save

    from napari_denoise.engine import models
    from napari_denoise.errors import WriteError

    torch.manual_seed(job["seed"])
    net = models.build("dncnn", {"depth": 2, "features": 4})
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    print(hashlib.sha256(save(state)).hexdigest())
    card = {"name": job["name"], "training": {"seed": job["seed"]}}
    kw = job.get("kw", {})
    if "overwrite" not in inspect.signature(save_model).parameters:
        kw = {}  # a version without the option replaced always
    try:
        save_model(net, card, job["path"], **kw)
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


class Pair:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.barrier = ctx.Barrier(2)
        self.conns, self.procs = [], []
        for _ in range(2):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, self.barrier), daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)

    def race(self, a: dict, b: dict, timeout: float = 120) -> list[tuple]:
        for conn, job in zip(self.conns, (a, b), strict=True):
            conn.send(job)
        results = []
        for conn in self.conns:
            assert conn.poll(timeout), "a worker did not answer"
            results.append(conn.recv())
        return results

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)


@pytest.fixture(scope="module")
def pair():
    workers = Pair()
    yield workers
    workers.close()


# --- helpers -------------------------------------------------------------------------------


def _inputs(folder: Path) -> dict[str, Path]:
    """Two different small images and their results (as the CLI writes them)."""
    refs = {}
    for seed, key in enumerate("ab"):
        src = folder / f"in_{key}.tif"
        tifffile.imwrite(src, np.random.default_rng(seed).integers(0, 4000, (40, 48), np.uint16))
        ref = folder / "refs" / f"{key}.tif"
        ref.parent.mkdir(exist_ok=True)
        with contextlib.redirect_stderr(io.StringIO()):
            assert main(["denoise", str(src), "-o", str(ref), *GAUSS]) == 0
        refs[key] = src
    return refs


def _one_line_refusal(result) -> str:
    code, _, err, _ = result
    assert code == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error"), err
    return lines[-1]


def _from_one_run(out: Path, inputs: dict[str, Path]) -> str:
    """Which run's result ``out`` is; fails unless its pixels, embedded provenance and
    sidecar are all that run's."""
    from napari_denoise.io import read_image

    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    image = read_image(out)
    assert image.metadata["embedded"] == sidecar
    key = next(k for k, src in inputs.items() if sidecar["input"]["path"] == str(src))
    ref = tifffile.imread(inputs[key].parent / "refs" / f"{key}.tif")
    np.testing.assert_array_equal(tifffile.imread(out), ref)
    assert sidecar["input"]["sha256"] == hashlib.sha256(inputs[key].read_bytes()).hexdigest()
    return key


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- denoise -------------------------------------------------------------------------------


def test_two_runs_writing_one_output_at_once_one_wins_the_other_is_refused(pair, tmp_path):
    inputs = _inputs(tmp_path)
    for k in range(3):
        out = tmp_path / f"r{k}" / "out.tif"  # its folder is made by the run
        jobs = [
            {
                "argv": ["denoise", str(inputs[key]), "-o", str(out), *GAUSS],
                "delays": {"compute": 0.3},
            }
            for key in "ab"
        ]
        results = pair.race(*jobs)
        codes = [r[0] for r in results]
        assert sorted(codes) == [0, 2], [r[2] for r in results]
        winner = "ab"[codes.index(0)]
        assert "another run" in _one_line_refusal(results[codes.index(2)])
        assert _from_one_run(out, inputs) == winner
        assert sorted(p.name for p in out.parent.iterdir()) == ["out.tif", "out.tif.json"]


def test_with_overwrite_image_and_sidecar_always_come_from_one_run(pair, tmp_path):
    inputs = _inputs(tmp_path)
    for k in range(3):
        out = tmp_path / f"r{k}" / "out.tif"
        out.parent.mkdir()
        with contextlib.redirect_stderr(io.StringIO()):
            assert main(["denoise", str(inputs["a"]), "-o", str(out), *GAUSS]) == 0
        argv = {
            key: ["denoise", str(inputs[key]), "-o", str(out), "--overwrite", *GAUSS]
            for key in "ab"
        }
        # a renames its image, pauses, then its sidecar; b renames both in that pause
        results = pair.race(
            {"argv": argv["a"], "delays": {"after_rename": 0.6}},
            {"argv": argv["b"], "delays": {"start": 0.2}},
        )
        codes = [r[0] for r in results]
        assert 0 in codes and set(codes) <= {0, 2}, [r[2] for r in results]
        for r in results:
            if r[0] == 2:
                _one_line_refusal(r)
        assert _from_one_run(out, inputs) in {"ab"[i] for i, c in enumerate(codes) if c == 0}
        assert sorted(p.name for p in out.parent.iterdir()) == ["out.tif", "out.tif.json"]


def test_denoise_file_does_not_replace_an_existing_output_by_default(tmp_path):
    from napari_denoise import files
    from napari_denoise.errors import WriteError

    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.zeros((32, 32), np.uint8))
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(WriteError, match="exists"):
        files.denoise_file(src, out, "gaussian", params={"sigma": 1.0})
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("made", ["out.tif", "out.tif.json"])
def test_a_file_made_by_another_program_during_the_run_is_not_replaced(tmp_path, monkeypatch, made):
    """A program that does not take our claims writes the output (or its sidecar) while
    the run computes: the run fails at its exclusive create and leaves that file alone,
    with nothing of its own."""
    from napari_denoise import files
    from napari_denoise.errors import WriteError

    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 200, (32, 32), np.uint8))
    real = files.plan_iter

    def meanwhile(*a, **k):
        (tmp_path / made).write_bytes(b"theirs")
        return real(*a, **k)

    monkeypatch.setattr(files, "plan_iter", meanwhile)
    with pytest.raises(WriteError, match="another program"):
        files.denoise_file(src, tmp_path / "out.tif", "gaussian", params={"sigma": 1.0})
    assert (tmp_path / made).read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.tif", made])


def _hold_output_then_hang(src: str, out: str, started) -> None:
    """A denoise run that stops in the middle of its computation (to be killed)."""
    from napari_denoise import files

    def hang(*a, **k):
        started.set()
        time.sleep(600)

    files.plan_iter = hang
    files.denoise_file(src, out, "gaussian", params={"sigma": 1.0})


def test_a_run_killed_with_sigkill_does_not_block_the_output(tmp_path, capsys):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 200, (32, 32), np.uint8))
    out = tmp_path / "out" / "x.tif"
    ctx = mp.get_context("spawn")
    started = ctx.Event()
    proc = ctx.Process(target=_hold_output_then_hang, args=(str(src), str(out), started))
    proc.start()
    try:
        assert started.wait(120)
        # while it runs, its output is its own
        assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 2
        assert f"process {proc.pid}" in capsys.readouterr().err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert main(["denoise", str(src), "-o", str(out), *GAUSS]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.tif", "x.tif.json"]


def test_a_lock_left_by_a_killed_run_is_removed_by_the_next_write_in_its_folder(tmp_path):
    from napari_denoise.atomic import claim
    from napari_denoise.io import write_json

    stale = tmp_path / ".old.tif.napari-denoise.lock"  # as a killed run leaves it
    stale.write_text("4194999 abcdef\n")
    with claim(tmp_path / "busy.tif"):  # a run in progress keeps its lock
        write_json(tmp_path / "other.json", {"a": 1})
        held = sorted(p.name for p in tmp_path.iterdir())
    assert held == [".busy.tif.napari-denoise.lock", "other.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]


# --- models --------------------------------------------------------------------------------


def test_two_saves_of_one_model_name_at_once_one_wins(pair, tmp_path):
    for k in range(3):
        folder = tmp_path / f"r{k}"
        jobs = [
            {"seed": seed, "name": "net", "path": str(folder / "net.safetensors")}
            for seed in (1, 2)
        ]
        results = pair.race(*jobs)
        codes = [r[0] for r in results]
        assert sorted(codes) == [0, 2], [r[2] for r in results]
        assert "net" in _one_line_refusal(results[codes.index(2)])
        winner = codes.index(0)
        card = json.loads((folder / "net.json").read_text())
        weights = _sha(folder / "net.safetensors")
        assert card["weights"]["sha256"] == weights == results[winner][1].split()[0]
        assert card["training"]["seed"] == winner + 1
        assert sorted(p.name for p in folder.iterdir()) == ["net.json", "net.safetensors"]


def test_saves_with_overwrite_keep_card_and_weights_of_one_run(pair, tmp_path):
    for k in range(3):
        folder = tmp_path / f"r{k}"
        jobs = [
            {"seed": seed, "name": "net", "path": str(folder / "net"), "kw": {"overwrite": True}}
            for seed in (1, 2)
        ]
        # run 1 renames its weights and pauses; run 2 saves all of its model in that pause
        jobs[0]["delays"] = {"after_rename": 0.6}
        jobs[1]["delays"] = {"start": 0.2}
        results = pair.race(*jobs)
        assert 0 in {r[0] for r in results}
        card = json.loads((folder / "net.json").read_text())
        weights = _sha(folder / "net.safetensors")
        assert card["weights"]["sha256"] == weights
        maker = next(i for i, r in enumerate(results) if r[1].split()[0] == weights)
        assert results[maker][0] == 0 and card["training"]["seed"] == maker + 1


def test_two_trainings_of_one_name_at_once_never_both_say_saved(pair, tmp_path):
    noisy = tmp_path / "noisy.tif"
    tifffile.imwrite(noisy, np.random.default_rng(0).poisson(50, (96, 96)).astype(np.uint16))
    for k in range(2):
        folder = tmp_path / f"r{k}"
        jobs = [
            {
                "argv": ["train", str(noisy), *TRAIN, "--name", "mine", "--seed", str(seed),
                         "--out-dir", str(folder), "--quiet"],
                "delays": {"save": 0.5},
            }
            for seed in (1, 2)
        ]  # fmt: skip
        results = pair.race(*jobs)
        codes = [r[0] for r in results]
        assert sorted(codes) == [0, 2], [r[2] for r in results]
        assert "'mine'" in _one_line_refusal(results[codes.index(2)])
        winner = codes.index(0)
        assert results[codes.index(2)][3] == []  # the refused one did not train
        card = json.loads((folder / "mine.json").read_text())
        weights = _sha(folder / "mine.safetensors")
        assert card["weights"]["sha256"] == weights == results[winner][3][-1]
        assert card["training"]["seed"] == winner + 1
        assert "saved model 'mine'" in results[winner][1]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a training step starts."""
    from napari_denoise.engine.training import loop

    def boom(*a, **k):
        raise AssertionError("trained before the model folder and name were checked")

    monkeypatch.setattr(loop, "train_iter", boom)


def test_a_model_folder_that_cannot_be_made_is_refused_before_training(
    tmp_path, capsys, no_training
):
    noisy = tmp_path / "noisy.tif"
    tifffile.imwrite(noisy, np.random.default_rng(0).poisson(50, (96, 96)).astype(np.uint16))
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    code = main(["train", str(noisy), *TRAIN, "--name", "x", "--out-dir", str(blocker / "models")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "notes.txt" in err
    assert blocker.read_text() == "a file"


def test_api_training_of_a_name_held_by_another_run_is_refused_before_training(
    user_dir, no_training
):
    import napari_denoise as nd
    from napari_denoise.engine.models import store
    from napari_denoise.errors import WriteError

    held, release = threading.Event(), threading.Event()

    def other_run():  # another run (a thread: a GUI training, say) holding the name
        with store.claim_model_name(user_dir / "mine.json"):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        assert held.wait(10)
        noisy = np.random.default_rng(0).poisson(50, (96, 96)).astype(np.float32)
        with pytest.raises(WriteError, match="'mine'"):
            nd.finetune(noisy, mode="n2v", start="new:unet", name="mine", steps=2, patch=32)
    finally:
        release.set()
        thread.join()
    assert not list(user_dir.glob("mine*"))

#!/usr/bin/env python
"""Two processes racing for the same output or model name: is anything lost or mixed up?

Each round starts two worker processes' jobs at the same instant (a shared barrier) and
then checks what is on disk. The workers are started once and import the package once;
each job is the ``napari-denoise`` command line run in the worker (``cli.main(argv)``:
argument parsing, checks, exit code and messages as from a shell) or, for ``save``, the
store's :func:`save_model` as the API and the Train widget call it.

Kinds (``--kinds``, all by default):

``denoise``
    ``denoise in_a.tif -o out.tif`` and ``denoise in_b.tif -o out.tif`` (a fresh output
    each round). Right: exactly one exits 0, the other exits 2 with one line of message;
    the image is the winner's result (pixels equal to its reference result), its sidecar
    and its embedded provenance name the winner's input, with its SHA-256.
``denoise-overwrite``
    The same with ``--overwrite``, writing over one output that exists from the start.
    Right: at least one exits 0, every other exits 2; image pixels, embedded provenance
    and sidecar all come from one run (one that exited 0, the last to finish).
``train``
    ``train noisy.tif --mode n2v --name m<k> --steps 2 --seed 1`` and ``--seed 2``, into
    one fresh ``--out-dir``. Right: every run that says "saved model 'N' to P" finds its
    own weights in P's weights file (the SHA-256 its network had when it was saved), the
    card's SHA-256 and seed match those weights, and exactly one run has the name asked
    for (the other is refused, exit 2, or says where else it saved).
``save`` / ``save-overwrite``
    ``save_model`` of two different tiny networks under one name, without / with
    ``overwrite``. Right: without, exactly one succeeds, the other gets ``WriteError``;
    either way the card's SHA-256 is that of the weights file, and both come from one
    run.

Also counted: files left behind (part files, locks) after a round. Use another checkout's
``src`` with ``PYTHONPATH`` to measure that version::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/concurrency.py --rounds 300
    OMP_NUM_THREADS=1 PYTHONPATH=/elsewhere/src python benchmarks/concurrency.py --rounds 50
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

KINDS = ("denoise", "denoise-overwrite", "train", "save", "save-overwrite")
# what a refusal says -> its cause: the other run held the name at that moment, had already
# written it, or made it between this run's check and its exclusive create
CAUSES = (
    ("right now", "held by the other run"),
    ("exists", "already written"),
    ("created by another program", "made at the commit"),
)
SAVED = re.compile(r"saved model '(?P<name>[^']+)' to (?P<path>\S+\.json)")


# --- the workers ---------------------------------------------------------------------------


def _worker(conn, barrier) -> None:
    """Run each job sent on ``conn`` after the barrier; send back (exit code, out, err, info)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from napari_denoise import cli
    from napari_denoise.engine.models import store

    recorded: list[str] = []
    real_save = store.save_model

    def recording_save(module, card, path, **kw):
        # the SHA-256 of the weights as this run asks to save them (safetensors bytes
        # are a pure function of the tensors), to find them again on disk
        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        recorded.append(hashlib.sha256(save(state)).hexdigest())
        return real_save(module, card, path, **kw)

    store.save_model = recording_save
    while True:
        job = conn.recv()
        if job is None:
            return
        recorded.clear()
        out, err = io.StringIO(), io.StringIO()
        barrier.wait()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                if job["kind"] == "cli":
                    rc = cli.main(job["argv"])
                else:
                    rc = _save_job(job, real_save)
        except BaseException:  # a traceback is a result to report
            rc = -1
            err.write(traceback.format_exc())
        conn.send((rc, out.getvalue(), err.getvalue(), list(recorded)))


def _save_job(job: dict, save_model) -> int:
    import torch
    from safetensors.torch import save

    from napari_denoise.engine import models
    from napari_denoise.errors import DenoiseError

    torch.manual_seed(job["seed"])
    net = models.build("dncnn", {"depth": 2, "features": 4})
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    print(hashlib.sha256(save(state)).hexdigest())
    kw = {"overwrite": True} if job["overwrite"] else {}
    if "overwrite" not in inspect.signature(save_model).parameters:
        kw = {}  # a version without the option, which always replaced
    try:
        save_model(net, {"name": job["name"], "training": {"seed": job["seed"]}}, job["path"], **kw)
    except DenoiseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


class Pair:
    """Two worker processes that start each pair of jobs together."""

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

    def race(self, a: dict, b: dict) -> list[tuple]:
        for conn, job in zip(self.conns, (a, b), strict=True):
            conn.send(job)
        return [conn.recv() for conn in self.conns]

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(10)


# --- checks ----------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(text: str) -> bool:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return bool(lines) and lines[-1].startswith("error") and "Traceback" not in text


def _leftovers(folder: Path, expected: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


def _check_denoise(results, out: Path, refs: dict, overwrite: bool) -> dict:
    """Problems of one denoise round (empty: right)."""
    import tifffile

    from napari_denoise.io import read_image

    wins = [i for i, r in enumerate(results) if r[0] == 0]
    problems: dict[str, str] = {}
    for i, r in enumerate(results):
        if r[0] not in (0, 2):
            problems["crash"] = f"run {i} exit {r[0]}: {r[2][-300:]}"
        elif r[0] == 2 and not _one_line(r[2]):
            problems["unclear"] = f"run {i}: {r[2][-300:]}"
    if not overwrite and len(wins) != 1:
        problems["not one winner"] = f"{len(wins)} runs exited 0"
    if overwrite and not wins:
        problems["no winner"] = "no run exited 0"
    side = out.with_name(out.name + ".json")
    if not out.exists() or not side.exists():
        problems["missing"] = f"image {out.exists()}, sidecar {side.exists()}"
        return problems
    sidecar = json.loads(side.read_text())
    embedded = read_image(out).metadata.get("embedded")
    src = sidecar["input"]["path"]
    pixels = tifffile.imread(out)
    match = next((k for k, (_, ref) in refs.items() if np.array_equal(pixels, ref)), None)
    if embedded != sidecar:
        problems["mismatch"] = "embedded provenance differs from the sidecar"
    elif match is None or str(refs[match][0]) != src:
        problems["mismatch"] = f"pixels of {match}, sidecar names {src}"
    elif sidecar["input"]["sha256"] != _sha(Path(src)):
        problems["mismatch"] = "the sidecar's input SHA-256 is not its input's"
    if match is not None:
        # every winner without --overwrite must find its own result; with it, the last one
        winners = {"ab"[i] for i in wins}
        if not overwrite and winners and match not in winners:
            problems["data loss"] = f"run(s) {winners} said done, the file is {match}'s"
        if overwrite and match not in winners:
            problems["data loss"] = f"the file is {match}'s, which failed"
        if not overwrite and len(wins) == 2:
            problems["data loss"] = "both said done, one result replaced the other"
    left = _leftovers(out.parent, {out.name, side.name})
    if left:
        problems["left behind"] = ", ".join(left)
    return problems


def _seed(card: dict):
    return card.get("training", {}).get("seed")


def _check_model(results, folder: Path, name: str, overwrite: bool, cli: bool) -> dict:
    """Problems of one train/save round (empty: right)."""
    problems: dict[str, str] = {}
    wins = [i for i, r in enumerate(results) if r[0] == 0]
    for i, r in enumerate(results):
        if r[0] not in (0, 2):
            problems["crash"] = f"run {i} exit {r[0]}: {r[2][-300:]}"
        elif r[0] == 2 and not _one_line(r[2]):
            problems["unclear"] = f"run {i}: {r[2][-300:]}"
    owners = []  # runs whose weights are now under the name asked for
    for i, (rc, out, _, recorded) in enumerate(results):
        if rc != 0:
            continue
        if cli:
            said = SAVED.search(out)
            if said is None or not recorded:
                problems["unclear"] = f"run {i} exited 0 without saying where it saved"
                continue
            card_path, mine = Path(said["path"]), recorded[-1]
        else:
            card_path, mine = folder / f"{name}.json", out.strip().splitlines()[0]
        weights = card_path.with_suffix(".safetensors")
        if not card_path.exists() or not weights.exists():
            problems["data loss"] = f"run {i} said saved, {card_path.name} or weights missing"
            continue
        card = json.loads(card_path.read_text())
        on_disk = _sha(weights)
        if card["weights"]["sha256"] != on_disk:
            problems["wrong sha"] = f"{card_path.name}: card SHA-256 is not its weights'"
        if on_disk != mine:
            if overwrite and not cli:
                continue  # replaced by the other run, as asked: checked below
            problems["data loss"] = f"run {i} said saved {card_path.name}, the weights are not its"
        elif card_path.stem == name:
            owners.append(i)
    card_path = folder / f"{name}.json"
    weights = card_path.with_suffix(".safetensors")
    if card_path.exists() and weights.exists():
        card, on_disk = json.loads(card_path.read_text()), _sha(weights)
        if card["weights"]["sha256"] != on_disk:
            problems["wrong sha"] = f"{card_path.name}: card SHA-256 is not its weights'"
        for i, (rc, out, _, recorded) in enumerate(results):  # seed i + 1 made run i
            mine = (recorded[-1] if recorded else None) if cli else out.strip().splitlines()[0]
            if rc == 0 and mine == on_disk and _seed(card) != i + 1:
                problems["mismatch"] = f"weights of run {i}, card of seed {_seed(card)}"
    if not overwrite and len(owners) != 1:
        problems["not one owner"] = f"{len(owners)} runs hold '{name}'"
    if overwrite and not wins:
        problems["no winner"] = "no run exited 0"
    junk = [p.name for p in folder.rglob("*") if p.name.startswith(".") and p.is_file()]
    if junk:
        problems["left behind"] = ", ".join(sorted(junk))
    return problems


# --- rounds ----------------------------------------------------------------------------------


def _setup(work: Path) -> dict:
    """Two different tiny inputs and their reference results; a tiny noisy training image."""
    import tifffile

    from napari_denoise import cli

    rng = np.random.default_rng(0)
    refs = {}
    for key in "ab":
        src = work / f"in_{key}.tif"
        tifffile.imwrite(src, rng.integers(0, 4000, (48, 64)).astype(np.uint16))
        ref = work / f"ref_{key}.tif"
        with contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(_denoise_argv(src, ref, False)) == 0
        refs[key] = (src, tifffile.imread(ref))
    noisy = work / "noisy.tif"
    tifffile.imwrite(noisy, rng.poisson(50, (96, 96)).astype(np.uint16))
    return {"refs": refs, "noisy": noisy}


def _denoise_argv(src: Path, out: Path, overwrite: bool) -> list[str]:
    argv = ["denoise", str(src), "-o", str(out), "--method", "gaussian"]
    return [*argv, "--param", "sigma=1", "--quiet"] + (["--overwrite"] if overwrite else [])


def _train_argv(noisy: Path, name: str, folder: Path, seed: int) -> list[str]:
    return [
        "train", str(noisy), "--mode", "n2v", "--start", "new:unet", "--name", name,
        "--steps", "2", "--seed", str(seed), "--patch", "32", "--batch-size", "2",
        "--threads", "1", "--out-dir", str(folder), "--quiet",
    ]  # fmt: skip


def run_kind(pair: Pair, kind: str, rounds: int, work: Path, setup: dict) -> dict:
    failures: dict[str, int] = {}
    examples: dict[str, str] = {}
    winners = {"a": 0, "b": 0, "both": 0, "none": 0}
    wrong = 0
    refusals: dict[str, str] = {}
    causes: dict[str, int] = {}
    start = time.perf_counter()
    base = work / kind
    base.mkdir()
    for k in range(rounds):
        folder = base / f"r{k}"
        folder.mkdir()
        if kind.startswith("denoise"):
            overwrite = kind == "denoise-overwrite"
            out = folder / "out.tif"
            if overwrite:  # an earlier result, to be replaced
                for name in ("out.tif", "out.tif.json"):
                    shutil.copy(
                        work / "ref_a.tif" if name == "out.tif" else work / "seed.json",
                        folder / name,
                    )
            jobs = [
                {"kind": "cli", "argv": _denoise_argv(setup["refs"][key][0], out, overwrite)}
                for key in "ab"
            ]
            results = pair.race(*jobs)
            problems = _check_denoise(results, out, setup["refs"], overwrite)
        elif kind == "train":
            name = f"m{k}"
            jobs = [
                {"kind": "cli", "argv": _train_argv(setup["noisy"], name, folder, seed)}
                for seed in (1, 2)
            ]
            results = pair.race(*jobs)
            problems = _check_model(results, folder, name, False, cli=True)
        else:
            overwrite = kind == "save-overwrite"
            name = "net"
            jobs = [
                {
                    "kind": "save",
                    "seed": seed,
                    "name": name,
                    "path": str(folder / f"{name}.safetensors"),
                    "overwrite": overwrite,
                }
                for seed in (1, 2)
            ]
            results = pair.race(*jobs)
            problems = _check_model(results, folder, name, overwrite, cli=False)
        ok = [r[0] == 0 for r in results]
        for rc, _, err, _ in results:  # refusals by cause; one as the user reads it
            if rc == 2:
                line = err.strip().splitlines()[-1]
                refusals.setdefault("refused", line)
                cause = next((c for k, c in CAUSES if k in line), "other")
                causes[cause] = causes.get(cause, 0) + 1
        winners["both" if all(ok) else "a" if ok[0] else "b" if ok[1] else "none"] += 1
        wrong += bool(problems)
        for what, detail in problems.items():
            failures[what] = failures.get(what, 0) + 1
            examples.setdefault(what, f"round {k}: {detail}")
        shutil.rmtree(folder)
    return {
        "kind": kind,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - start, 1),
        "exit 0": winners,
        "wrong rounds": wrong,
        "failures": failures,
        "examples": examples,
        "refusals": causes,
        "refusal": refusals.get("refused"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS)
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds: {', '.join(unknown)}")
    import napari_denoise

    print(f"napari-denoise from {Path(napari_denoise.__file__).parent}", file=sys.stderr)
    report = []
    with tempfile.TemporaryDirectory(prefix="nd-race-") as tmp:
        work = Path(tmp)
        setup = _setup(work)
        (work / "seed.json").write_text('{"input": {"path": "earlier"}}\n')
        pair = Pair()
        try:
            for kind in kinds:
                result = run_kind(pair, kind, args.rounds, work, setup)
                report.append(result)
                print(
                    f"{kind:18s} {args.rounds} rounds in {result['seconds']:.0f} s: exit 0 by "
                    f"{result['exit 0']}; {result['wrong rounds']} wrong round(s): "
                    f"{result['failures'] or 'none'}",
                    flush=True,
                )
                for what, example in result["examples"].items():
                    print(f"    {what}: {example}")
                if result["refusal"]:
                    print(f"    refusals by cause: {result['refusals']}")
                    print(f"    a refusal: {result['refusal']}")
        finally:
            pair.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r["failures"] for r in report) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Hostile model packages and model folders: each is refused, quickly, in bounded memory.

Builds, from a real package (``napari-denoise export unet-fluo``), the hostile cases of
issue 22 section 1 and runs ``napari-denoise import`` (or ``list`` for the model folder)
on each in a fresh process, which reports its exit code, its first line of error, its
wall time and its peak resident memory (``VmHWM``, from ``/proc/self/status``). The
child's data segment is limited (``RLIMIT_DATA``, :data:`SAFETY_DATA_BYTES`) so that a
version without the bounds fails instead of taking the machine, and it is killed after
:data:`TIMEOUT_S` (the target: every command answers within 90 s, peak below 1.5 GB).

The child inherits ``PYTHONPATH``, so another checkout's ``src`` measures that version::

    PYTHONPATH=src python benchmarks/hostile_packages.py
    PYTHONPATH=/elsewhere/src python benchmarks/hostile_packages.py --label before

``tests/test_hostile_packages.py`` uses the same builders and runner.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

TIMEOUT_S = 90
PEAK_LIMIT_MB = 1536
SAFETY_DATA_BYTES = 4 << 30

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from napari_denoise.cli import main
try:
    rc = main(sys.argv[2:])
except SystemExit as stop:
    rc = stop.code
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
with open(sys.argv[1], "w") as out:
    json.dump({"rc": rc, "seconds": time.perf_counter() - t0, "peak_mb": hwm()}, out)
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (SAFETY_DATA_BYTES, SAFETY_DATA_BYTES))


def run_cli(args: list[str], model_dir: Path, timeout: float = TIMEOUT_S) -> dict:
    """``napari-denoise ARGS`` in a fresh, memory-limited process: rc, stderr, seconds,
    peak_mb (``rc`` None and ``timed_out`` True when it did not answer in time)."""
    report = Path(tempfile.mkstemp(suffix=".json")[1])
    env = {**os.environ, "NAPARI_DENOISE_MODEL_DIR": str(model_dir), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(report), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=_limit,
        )
    except subprocess.TimeoutExpired:
        report.unlink(missing_ok=True)
        return {"rc": None, "timed_out": True, "seconds": time.perf_counter() - start}
    try:
        result = json.loads(report.read_text() or "{}")
    except ValueError:
        result = {}
    report.unlink(missing_ok=True)
    result.setdefault("rc", proc.returncode)
    result.update(stderr=proc.stderr, stdout=proc.stdout, timed_out=False)
    return result


# --- builders: each takes the unpacked real package ``base`` and a scratch folder ------------


def _rdf(folder: Path) -> dict:
    import yaml

    return yaml.safe_load((folder / "rdf.yaml").read_text())


def _write_rdf(folder: Path, data: dict) -> Path:
    import yaml

    (folder / "rdf.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "rdf.yaml"


def _copy(base: Path, work: Path, name: str) -> Path:
    folder = work / name
    shutil.copytree(base, folder)
    return folder


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    return out


def billion_laughs(base: Path, work: Path) -> Path:
    """A zip whose 4 kB rdf.yaml has ten levels of nine-fold aliases (9**10 strings)."""
    folder = _copy(base, work, "laughs")
    text = (folder / "rdf.yaml").read_text()
    laughs = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        laughs.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    text += "\n".join(laughs) + "\nlaughs: *l9\n"
    (folder / "rdf.yaml").write_text(text)
    return _zip(folder, work / "laughs.zip")


def zip_bomb(base: Path, work: Path, *, lie: bool = False) -> Path:
    """A zip whose test input unpacks to 1 GB of zeros (about 1 MB compressed); with
    ``lie``, its declared size says 1 kB."""
    folder = _copy(base, work, "bomb-lie" if lie else "bomb")
    out = work / ("bomb-lie.zip" if lie else "bomb.zip")
    size = 1 << 30
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(folder.iterdir()):
            if f.name != "test_input.npy":
                z.write(f, f.name)
        info = zipfile.ZipInfo("test_input.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as dst:
            zero = bytes(16 << 20)
            for _ in range(size // len(zero)):
                dst.write(zero)
    if lie:
        _declare(out, "test_input.npy", 1024)
    return out


def _declare(path: Path, name: str, size: int) -> None:
    """Patch the uncompressed size declared for ``name`` (local and central headers)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(name).header_offset
    data[local + 22 : local + 26] = size.to_bytes(4, "little")
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + n] == name.encode():
            data[at + 24 : at + 28] = size.to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def _torchscript_only(base: Path, work: Path, name: str, module) -> Path:
    import torch

    folder = _copy(base, work, name)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    (folder / "evil.pt").write_bytes(buffer.getvalue())
    data = _rdf(folder)
    del data["weights"]["pytorch_state_dict"]
    data["weights"]["torchscript"].pop("parent", None)
    data["weights"]["torchscript"].pop("sha256", None)
    data["weights"]["torchscript"]["source"] = "evil.pt"
    return _write_rdf(folder, data)


def torchscript_save(base: Path, work: Path, marker: Path) -> Path:
    """TorchScript whose forward writes ``marker`` with ``torch.save`` (aten::save)."""
    import torch

    target = str(marker)

    class Save(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.target = target

        def forward(self, x):
            torch.save(x, self.target)
            return x

    return _torchscript_only(base, work, "ts-save", Save())


def torchscript_setstate(base: Path, work: Path, marker: Path) -> Path:
    """TorchScript whose ``__setstate__`` (run by ``torch.jit.load``) writes ``marker``."""
    import torch

    target = str(marker)

    class Load(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.target = target

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training, self.target)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool, str]):
            self.w = state[0]
            self.training = state[1]
            self.target = state[2]
            torch.save(state[0], self.target)

    return _torchscript_only(base, work, "ts-setstate", Load())


def torchscript_loop(base: Path, work: Path) -> Path:
    """TorchScript whose forward never ends."""
    import torch

    class Loop(torch.nn.Module):
        def forward(self, x):
            while bool(x.sum() > -1.0):
                x = x + 1.0
            return x

    return _torchscript_only(base, work, "ts-loop", Loop())


def _state_dict_only(base: Path, work: Path, name: str) -> tuple[Path, dict]:
    folder = _copy(base, work, name)
    data = _rdf(folder)
    del data["weights"]["torchscript"]
    return folder, data


def weights_outside(base: Path, work: Path, *, absolute: bool = False) -> Path:
    """State-dict weights named by ``../`` (or an absolute path) outside the package."""
    folder, data = _state_dict_only(base, work, "abs" if absolute else "dotdot")
    entry = data["weights"]["pytorch_state_dict"]
    outside = work / f"outside-{folder.name}.pt"
    shutil.copy(folder / entry["source"], outside)
    (folder / entry["source"]).unlink()
    entry["source"] = str(outside) if absolute else f"../{outside.name}"
    entry.pop("sha256", None)
    return _write_rdf(folder, data)


def weights_missing(base: Path, work: Path) -> Path:
    folder, data = _state_dict_only(base, work, "missing")
    (folder / data["weights"]["pytorch_state_dict"]["source"]).unlink()
    return _write_rdf(folder, data)


def weights_checksum(base: Path, work: Path) -> Path:
    folder, data = _state_dict_only(base, work, "checksum")
    data["weights"]["pytorch_state_dict"]["sha256"] = "0" * 64
    return _write_rdf(folder, data)


def huge_config(base: Path, work: Path) -> Path:
    """A napari-denoise U-Net state dict whose config asks for 10**6 base channels."""
    folder, data = _state_dict_only(base, work, "huge-config")
    data["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["config"]["base"] = 10**6
    return _write_rdf(folder, data)


def huge_halo(base: Path, work: Path) -> Path:
    folder, data = _state_dict_only(base, work, "huge-halo")
    for axis in data["outputs"][0]["axes"]:
        if "halo" in axis:
            axis["halo"] = 10**9
    return _write_rdf(folder, data)


def fifo_rdf(base: Path, work: Path) -> Path:
    """A package folder whose rdf.yaml is a named pipe (opening it would block)."""
    folder = _copy(base, work, "fifo")
    (folder / "rdf.yaml").unlink()
    os.mkfifo(folder / "rdf.yaml")
    return folder / "rdf.yaml"


def hostile_model_folder(folder: Path, shipped_card: Path) -> dict[str, str]:
    """A user model folder of hostile entries; returns {file name: what it is}."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe.json")
    os.symlink("/dev/zero", folder / "zeros.json")
    os.mkfifo(folder / "piped-target")
    os.symlink(folder / "piped-target", folder / "link-to-pipe.json")
    with open(folder / "huge.json", "wb") as f:  # 200 MB of JSON-ish text, sparse
        f.write(b'{"name": "huge", "pad": "')
        f.truncate(200 << 20)
    card = json.loads(shipped_card.read_text())
    shutil.copy(
        shipped_card.with_suffix(".safetensors"), folder / f"{shipped_card.stem}.safetensors"
    )
    (folder / shipped_card.name).write_text(json.dumps(card))
    outside = dict(card, name="outside")
    outside["weights"] = dict(card["weights"], file="../../etc/passwd", format="torchscript")
    (folder / "outside.json").write_text(json.dumps(outside))
    padded = dict(card, name="padded", architecture="torchscript")
    padded["config"] = {"step": 10**9, "min": 10**9}
    padded["weights"] = dict(card["weights"], file="padded.pt", format="torchscript")
    (folder / "padded.json").write_text(json.dumps(padded))
    return {
        "padded.json": "a TorchScript card that pads every image to 10**9 pixels",
        "pipe.json": "a named pipe",
        "zeros.json": "a link to /dev/zero",
        "link-to-pipe.json": "a link to a named pipe",
        "huge.json": "a 200 MB card",
        shipped_card.name: "a card named like a shipped model",
        "outside.json": "a card whose weights are ../../etc/passwd",
    }


def base_package(work: Path) -> Path:
    """The real package of the shipped U-Net, unpacked."""
    package = work / "unet-fluo.zip"
    subprocess.run(
        [sys.executable, "-m", "napari_denoise.cli", "export", "unet-fluo", "-o", str(package)],
        check=True,
        capture_output=True,
    )
    folder = work / "base"
    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    rows = []
    try:
        base = base_package(work)
        models = work / "models"
        marker = work / "written-by-package"
        cases = {
            "honest package (for reference: imported, rc 0)": (base / "rdf.yaml", []),
            "billion laughs rdf.yaml (zip)": (billion_laughs(base, work), []),
            "zip bomb, 1 GB member": (zip_bomb(base, work), []),
            "zip bomb, sizes declared 1 kB": (zip_bomb(base, work, lie=True), []),
            "TorchScript aten::save": (torchscript_save(base, work, marker), ["--allow-code"]),
            "TorchScript __setstate__": (
                torchscript_setstate(base, work, marker),
                ["--allow-code"],
            ),
            "TorchScript while loop": (torchscript_loop(base, work), ["--allow-code"]),
            "TorchScript without --allow-code": (torchscript_save(base, work / "x", marker), []),
            "weights ../ outside": (weights_outside(base, work), []),
            "weights absolute path": (weights_outside(base, work, absolute=True), []),
            "weights missing": (weights_missing(base, work), []),
            "weights checksum mismatch": (weights_checksum(base, work), []),
            "architecture config base=10**6": (huge_config(base, work), []),
            "halo 10**9": (huge_halo(base, work), []),
            "rdf.yaml is a FIFO": (fifo_rdf(base, work), []),
        }
        for name, (path, extra) in cases.items():
            r = run_cli(["import", str(path), "--name", "hostile", *extra], models / name[:20])
            r["case"] = name
            r["file_written"] = marker.exists()
            marker.unlink(missing_ok=True)
            rows.append(r)
        from napari_denoise.engine.models.store import SHIPPED_DIR

        hostile_model_folder(work / "folder", SHIPPED_DIR / "unet-fluo.json")
        r = run_cli(["list"], work / "folder")
        r["case"] = "model folder: FIFO, /dev/zero, 200 MB card, shipped name, ../ weights"
        r["file_written"] = False
        rows.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"# hostile packages ({args.label}); target: exit 2, < {TIMEOUT_S} s, < {PEAK_LIMIT_MB} MB"
    )
    print(f"{'case':<70} {'rc':>4} {'s':>6} {'peak MB':>8}  first line")
    for r in rows:
        first = (r.get("stderr") or "").strip().splitlines()[:1]
        line = "TIMED OUT" if r["timed_out"] else (first[0][:110] if first else "")
        if r.get("file_written"):
            line = "FILE WRITTEN BY PACKAGE CODE; " + line
        print(
            f"{r['case']:<70} {r['rc']!s:>4} {r['seconds']:6.1f} "
            f"{r.get('peak_mb', float('nan')):8.0f}  {line}"
        )
    if args.json:
        args.json.write_text(json.dumps({"label": args.label, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

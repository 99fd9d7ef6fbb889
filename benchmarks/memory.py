#!/usr/bin/env python
"""Peak memory of a file-to-file run (``denoise_file``, as the CLI runs it) against the
number of planes and the plane size.

Each case runs in a fresh process that reports its own peak resident set size (``VmHWM``
in ``/proc/self/status``, memory-mapped pages it touched included; not ``ru_maxrss``,
which a child inherits from its parent's peak across fork and exec) and its resident
size just before the run, after the imports and a warm-up on a small image that loads
the model: *extra* is the difference, what the run itself costs beyond the model.
Inputs are uint16 ImageJ TIFFs (memory-mappable) of Poisson noise over a smooth pattern,
written plane by plane by another process into a scratch folder, deleted afterwards. One case runs with
the process's data segment limited (``RLIMIT_DATA``, the anonymous memory it may
allocate) to less than the stack's size: a stack larger than the memory allowed.

The child inherits ``PYTHONPATH``, so another checkout's ``src`` measures that version::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/memory.py --json docs/benchmarks_memory.json
    OMP_NUM_THREADS=1 PYTHONPATH=/elsewhere/src python benchmarks/memory.py --label before

``--quick`` runs small sizes only (a check that the script works).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MB = 2**20
# (name, method or None for the default model, planes, side, data limit in MB or None)
CASES = [
    ("stack", "gaussian", 20, 2048, None),
    ("stack", "gaussian", 60, 2048, None),
    ("stack", None, 20, 512, None),
    ("stack", None, 60, 512, None),
    ("plane", "gaussian", 1, 4096, None),
    ("plane", "gaussian", 1, 8192, None),
    ("plane", None, 1, 2048, None),
    ("limit", "gaussian", 256, 2048, 1024),  # 2 GiB stack, 1 GiB of anonymous memory
]
QUICK = [
    ("stack", "gaussian", 4, 256, None),
    ("stack", "gaussian", 12, 256, None),
    ("plane", "gaussian", 1, 1024, None),
    ("limit", "gaussian", 64, 512, 400),
]


def write_stack(path: Path, planes: int, side: int) -> None:
    """A uint16 ImageJ stack of Poisson noise, written one plane at a time."""
    import tifffile

    rng = np.random.default_rng(0)
    y = np.arange(side, dtype=np.float32)
    base = 200 + 150 * np.sin(y / 37.0)[:, None] * np.cos(y / 23.0)[None, :]
    noisy = rng.poisson(np.clip(base, 1, None)).astype(np.uint16)

    def pages():
        for k in range(planes):  # shifted copies: planes differ, nothing is generated twice
            yield np.roll(noisy, 7 * k, axis=1)

    axes = "TYX" if planes > 1 else "YX"
    shape = (planes, side, side) if planes > 1 else (side, side)
    tifffile.imwrite(
        path, pages(), shape=shape, dtype=np.uint16, imagej=True, metadata={"axes": axes}
    )


def _status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(src: str, dst: str, method: str | None, limit_mb: int | None) -> dict:
    """One case in this process: warm up, then denoise ``src`` into ``dst``."""
    if limit_mb:
        limit = limit_mb * MB
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import napari_denoise as nd
    from napari_denoise.engine.methods import default_method
    from napari_denoise.files import denoise_file

    name = method or default_method().name
    nd.denoise(np.random.default_rng(1).poisson(100, (96, 96)).astype(np.uint16), name)
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    try:
        denoise_file(src, dst, name)
        outcome = "done"
    except MemoryError:
        outcome = "MemoryError"
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    return {
        "method": name,
        "outcome": outcome,
        "baseline_mb": before,
        "peak_mb": peak,
        "seconds": seconds,
    }


def run_case(case, folder: Path) -> dict:
    kind, method, planes, side, limit = case
    src, dst = folder / f"in_{planes}x{side}.tif", folder / "out.tif"
    make = [sys.executable, __file__, "--make", str(src), str(planes), str(side)]
    subprocess.run(make, check=True)
    dst.unlink(missing_ok=True)
    # the provenance sidecar of a previous case (``out.tif.json``): left there, it made the
    # next case refuse to run ("Nothing was computed: ... exists")
    dst.with_name(dst.name + ".json").unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--child", str(src), str(dst), method or "", str(limit or 0)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        row = {"method": method or "default", "outcome": f"failed: {tail[0][:80]}"}
    else:
        row = json.loads(lines[-1])
    stack_mb = planes * side * side * 2 / MB
    row.update(kind=kind, planes=planes, side=side, stack_mb=stack_mb, limit_mb=limit)
    if "peak_mb" in row:
        row["extra_mb"] = row["peak_mb"] - row["baseline_mb"]
        row["extra_per_plane"] = row["extra_mb"] / (side * side * 2 / MB)
    dst.unlink(missing_ok=True)
    dst.with_name(dst.name + ".json").unlink(missing_ok=True)
    src.unlink(missing_ok=True)
    return row


def table(rows: list[dict], label: str) -> str:
    out = [
        f"| case ({label}) | method | planes x size | stack MB | peak RSS MB | extra MB | "
        "extra / plane size | s | outcome |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        case = r["kind"] + (f" (data limit {r['limit_mb']} MB)" if r.get("limit_mb") else "")
        peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "-"
        extra = f"{r['extra_mb']:.0f}" if "extra_mb" in r else "-"
        ratio = f"{r['extra_per_plane']:.1f}x" if "extra_per_plane" in r else "-"
        secs = f"{r['seconds']:.0f}" if "seconds" in r else "-"
        out.append(
            f"| {case} | {r['method']} | {r['planes']} x {r['side']}^2 | {r['stack_mb']:.0f} | "
            f"{peak} | {extra} | {ratio} | {secs} | {r['outcome']} |"
        )
    return "\n".join(out)


SECTION = "## Memory: long stacks and big planes (benchmarks/memory.py)"


def section(data: dict, before: str, after: str) -> str:
    """The Markdown section comparing the runs labelled ``before`` and ``after``."""
    old = {_key(r): r for r in data[before]["rows"]}
    lines = [
        SECTION,
        "",
        f"`denoise_file` (what `napari-denoise denoise` runs) from a uint16 ImageJ TIFF "
        "(memory-mapped) to a TIFF, automatic parameters, one process per case; peak RSS is "
        "`VmHWM` (memory-mapped pages the process touched included), *extra* is the peak "
        "minus the resident size after the imports and a warm-up that loads the model. "
        f"*{before}* is {data[before].get('source') or 'the code before'}, *{after}* is "
        f"{data[after].get('source') or 'this version'}; measured {data[after]['date']} on "
        "this 2-core machine, shared with other work, `OMP_NUM_THREADS=1` "
        "(timings are indicative only). The limited case runs under "
        "`setrlimit(RLIMIT_DATA)`: the process may allocate half the stack's size.",
        "",
        f"| case | method | planes x size | stack MB | peak RSS MB, {before} | peak RSS MB, "
        f"{after} | extra / plane size, {before} | extra / plane size, {after} |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in data[after]["rows"]:
        o = old.get(_key(r), {})
        case = r["kind"] + (f" (data limit {r['limit_mb']} MB)" if r.get("limit_mb") else "")
        lines.append(
            f"| {case} | {r['method']} | {r['planes']} x {r['side']}^2 | {r['stack_mb']:.0f} | "
            f"{_peak_text(o)} | {_peak_text(r)} | {_ratio_text(o)} | {_ratio_text(r)} |"
        )
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "How: a TIFF output is written as the blocks are done (`io.write_tiff_planes` feeds "
    "tifffile the pages from an iterator, into the hidden part file that is renamed at the "
    "end), the pages of the memory-mapped input are handed back to the system after each "
    "block (`madvise(MADV_DONTNEED)`), and `run_tiled` keeps one float32 weighted sum per "
    "block, normalised in place a band at a time (no image-sized weight sum, no divided "
    "copy, no stored weights per tile). A plane then costs its float32 sum (2x a uint16 "
    "plane) and its output (1x) plus small slabs. The stack rows' constant part is the "
    "automatic parameters' sample planes (up to 4, as float32) and, for the model, the "
    "network's activations for one tile.",
    "",
    "Rows with the model move by several percent between runs of the same code (torch's "
    "allocator and threads); compare a stack's rows within one version.",
    "",
    "Not counted above: pages of the input and output files in the system's page cache, "
    "which the system reclaims as it needs (the limited case shows the process itself "
    "needs only its blocks).",
]


def _key(row: dict) -> tuple:
    return row["kind"], row["method"], row["planes"], row["side"]


def _peak_text(row: dict) -> str:
    if "peak_mb" not in row:
        return "-"
    text = f"{row['peak_mb']:.0f}"
    return text if row.get("outcome") == "done" else f"{text} ({row['outcome']})"


def _ratio_text(row: dict) -> str:
    if "extra_per_plane" not in row or row.get("outcome") != "done":
        return "-"
    return f"{row['extra_per_plane']:.1f}x"


def _parse_case(text: str) -> tuple:
    kind, method, planes, side, *limit = text.split(":")
    return (
        kind,
        None if method == "default" else method,
        int(planes),
        int(side),
        int(limit[0]) if limit else None,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--only", help="run only the cases of this kind (stack, plane, limit)")
    parser.add_argument(
        "--case",
        action="append",
        metavar="KIND:METHOD:PLANES:SIDE[:LIMIT_MB]",
        help="run this case instead (METHOD 'default' for the default model); repeatable",
    )
    parser.add_argument("--label", default="this version", help="names the version measured")
    parser.add_argument("--json", type=Path, help="add the rows under --label to this JSON file")
    parser.add_argument("--source", help="what the measured code is (stored with --json)")
    parser.add_argument(
        "--tables", type=Path, help="print the tables of this JSON file, run nothing"
    )
    parser.add_argument(
        "--docs",
        nargs=4,
        metavar=("JSON", "BEFORE", "AFTER", "DOC"),
        help="write the section comparing two labels of JSON into DOC (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    if args.docs:
        data, before, after, doc = args.docs
        from report import write_section

        write_section(
            Path(doc), "memory", section(json.loads(Path(data).read_text()), before, after)
        )
        return 0
    if args.tables:
        for label, entry in json.loads(args.tables.read_text()).items():
            print(f"{table(entry['rows'], label)}\n")
        return 0
    if args.make:
        write_stack(Path(args.make[0]), int(args.make[1]), int(args.make[2]))
        return 0
    if args.child:
        src, dst, method, limit = args.child
        print(json.dumps(child(src, dst, method or None, int(limit) or None)), flush=True)
        return 0
    cases = QUICK if args.quick else CASES
    if args.case:
        cases = [_parse_case(text) for text in args.case]
    if args.only:
        cases = [c for c in cases if c[0] == args.only]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nd-memory-", dir=os.environ.get("TMPDIR")) as tmp:
        for case in cases:
            row = run_case(case, Path(tmp))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows, args.label))
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.exists() else {}
        data[args.label] = {
            "rows": rows,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "source": args.source or "",
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

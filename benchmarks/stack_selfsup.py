"""Self-supervised training from a noisy stack alone (issue 24, point 4): "n2n-frames".

For each of the FMD Confocal_BPAE_B training fields 5, 10, 15 and 20 (held out of every
shipped model's training, allowed for validation), its 10 real captures are one noisy
10-frame time series. The default model (``unet-fluo``) denoises it with its neighbours
on and off; then ``napari-denoise train --mode n2n-frames`` (Noise2Noise between
neighbouring frames, from the shipped model, a time budget of ``--minutes`` CPU minutes
on ``--threads`` threads, everything else default) tunes it on that stack alone, and the
tuned model denoises the stack the same two ways. The ground truth (the average of all
50 captures) is used ONLY to score: PSNR per frame (data range 255), averaged over the 10
frames. The no-ground-truth guard's verdict (the tuned model against its start, on the
held-out stripes) is reported beside it.

``--motion`` adds, for the first field, the same stack moved by an integer drift of 2
px/frame (each frame a crop of the capture, the real noise never interpolated; the
ground truth cropped alike) and the stack cut to another field (fields' next in the list)
after frame 5 (scored on frames 0-4, whose truth is this field's): motion the training
must survive without being taught wrong pairs.

Run: ``python benchmarks/stack_selfsup.py [--minutes 3] [--threads 1] [--fields 5 10 15 20]
[--motion]``; each stack is cached in build/stack_selfsup/<name>.json. Writes
docs/benchmarks_stack_selfsup.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

MODEL = "unet-fluo"
FIELDS = (5, 10, 15, 20)
CACHE = REPO / "build" / "stack_selfsup"


def field_stack(data: Path, f: int) -> tuple[np.ndarray, np.ndarray]:
    """The 10 captures of field ``f`` (uint8, T x Y x X) and its ground truth (float32)."""
    from napari_denoise.engine.training.datasets import load_image

    root = data / "FMD_Confocal_BPAE_B_train"
    caps = sorted((root / "raw" / str(f)).glob("*.png"))[:10]
    stack = np.stack([load_image(p) for p in caps]).astype(np.uint8)
    return stack, load_image(root / "gt" / str(f) / "avg50.png").astype(np.float32)


def mean_psnr(method: str, stack, truths, neighbours: str, frames=None) -> float:
    """Mean PSNR (data range 255) of ``method`` on ``stack`` against each frame's truth,
    over ``frames`` (all when None)."""
    import napari_denoise as nd
    from napari_denoise.engine.metrics import psnr

    out = np.asarray(
        nd.denoise(stack, method, axes="TYX", output_dtype="float32", neighbours=neighbours)
    )
    keep = range(len(out)) if frames is None else frames
    return float(np.mean([psnr(truths[k], out[k], data_range=255.0) for k in keep]))


def stacks(data: Path, fields, motion: bool):
    """(name, stack, per-frame truths, frames scored) of each benchmark stack."""
    for f in fields:
        stack, gt = field_stack(data, f)
        yield f"field{f}", stack, np.stack([gt] * len(stack)), None
    if motion:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from stack_fmd import drifted

        f = fields[0]
        stack, gt = field_stack(data, f)
        moved, crops = drifted(stack, 2, 1)
        yield f"field{f}-drift2", moved, np.stack([gt[c] for c in crops]), None
        other, _ = field_stack(data, FIELDS[(FIELDS.index(f) + 1) % len(FIELDS)])
        cut = stack.copy()
        cut[5:] = other[5:]
        yield f"field{f}-cut", cut, np.stack([gt] * len(stack)), list(range(5))


def run_field(name: str, stack, truths, frames, minutes: float, threads: int) -> dict:
    from napari_denoise.engine.denoise.pipeline import drain
    from napari_denoise.engine.training.config import FinetuneSpec
    from napari_denoise.engine.training.finetune import finetune_iter, prepare

    row: dict = {"field": name}
    for nb in ("on", "off"):
        row[f"start_{nb}"] = mean_psnr(MODEL, stack, truths, nb, frames)
    spec = FinetuneSpec(mode="n2n-frames", minutes=minutes, threads=threads, name=f"n2n-{name}")
    t0 = time.perf_counter()
    prepared = prepare(spec, stack, axes="TYX")
    result = drain(finetune_iter(prepared))
    row["train_s"] = round(time.perf_counter() - t0, 1)
    training = result.card["training"]
    row["steps"] = training["steps"]
    row["kept_share"] = training["frame_pairs"]["consistency"]["kept_share"]
    row["best_step"] = result.card["validation"]["best_step"]
    check = training.get("selfcheck") or {}
    row["guard"] = check.get("better")
    row["guard_start_mse"] = check.get("start_mse")
    row["guard_new_mse"] = check.get("new_mse")
    for nb in ("on", "off"):
        row[f"tuned_{nb}"] = mean_psnr(result.name, stack, truths, nb, frames)
    # What a user who follows the guard gets: the tuned model only when it says "new".
    for nb in ("on", "off"):
        row[f"guarded_{nb}"] = row[f"tuned_{nb}"] if row["guard"] == "new" else row[f"start_{nb}"]
    return row


def table(rows: list[dict], args) -> str:
    lines = [
        "# Self-supervised training from a noisy stack alone (n2n-frames)",
        "",
        "Noise2Noise between neighbouring frames (`--mode n2n-frames`), from the shipped "
        f"`{MODEL}`, {args.minutes:g} CPU-minute time budget, {args.threads} thread(s), every "
        "other setting default, on each FMD Confocal_BPAE_B training field's 10 real captures "
        "as a time series (fields 5, 10, 15, 20: held out of every shipped model's training). "
        "The ground truth (average of 50 captures) only scores: mean PSNR per frame, dB, data "
        "range 255. *on*: each plane fused with its matching neighbours before the network "
        "(the default for stacks); *off*: frame by frame. *guard*: the no-ground-truth check "
        "(held-out neighbour loss of the tuned model against its start; `new` = tuned is "
        "better); *guarded*: the model the guard recommends.",
        "",
        "| field | start on | tuned on | gain on | start off | tuned off | gain off | guard | "
        "guarded gain on | steps | kept patches |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {str(r['field']).removeprefix('field')} | {r['start_on']:.2f} | {r['tuned_on']:.2f} | "
            f"{r['tuned_on'] - r['start_on']:+.2f} | {r['start_off']:.2f} | "
            f"{r['tuned_off']:.2f} | {r['tuned_off'] - r['start_off']:+.2f} | {r['guard']} | "
            f"{r['guarded_on'] - r['start_on']:+.2f} | {r['steps']} | "
            f"{100 * r['kept_share']:.0f}% |"
        )
    still = [r for r in rows if "-" not in str(r["field"])]
    if still:
        m = {
            k: float(np.mean([r[k] for r in still]))
            for k in still[0]
            if k.endswith(("_on", "_off"))
        }
        lines.append(
            f"| mean | {m['start_on']:.2f} | {m['tuned_on']:.2f} | "
            f"{m['tuned_on'] - m['start_on']:+.2f} | {m['start_off']:.2f} | "
            f"{m['tuned_off']:.2f} | {m['tuned_off'] - m['start_off']:+.2f} | | "
            f"{m['guarded_on'] - m['start_on']:+.2f} | | |"
        )
    lines += [
        "",
        "The mean is over the still fields; `-drift2` is the first field moved 2 px/frame, "
        "`-cut` the first field cut to the next field after frame 5 (scored on frames 0-4). "
        "*steps*: what the time budget allowed (fewer when the machine was shared; the "
        "motion rows ran beside the test suite). *kept patches*: the share of random "
        "patches the consistency test keeps (weight averaged).",
    ]
    lines += [
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}.",
        "",
        "Command: `python benchmarks/stack_selfsup.py --minutes "
        f"{args.minutes:g} --threads {args.threads}{' --motion' if args.motion else ''}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fields", type=int, nargs="*", default=list(FIELDS))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks_stack_selfsup.md"))
    ap.add_argument("--motion", action="store_true", help="also a drifting and a cut stack")
    ap.add_argument("--fresh", action="store_true", help="ignore the cache")
    args = ap.parse_args()
    os.environ["NAPARI_DENOISE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    # The tuned models go to a throw-away model folder, registered as methods there.
    os.environ["NAPARI_DENOISE_MODEL_DIR"] = tempfile.mkdtemp(prefix="n2n-bench-")
    CACHE.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    if not (data / "FMD_Confocal_BPAE_B_train").is_dir():
        data = Path("/work/shared/data")
    rows = []
    for name, stack, truths, frames in stacks(data, args.fields, args.motion):
        cached = CACHE / f"{name}.json"
        if cached.exists() and not args.fresh:
            rows.append(json.loads(cached.read_text()))
        else:
            row = run_field(name, stack, truths, frames, args.minutes, args.threads)
            cached.write_text(json.dumps(row, indent=1))
            rows.append(row)
        print(json.dumps(rows[-1]), flush=True)
    text = table(rows, args)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

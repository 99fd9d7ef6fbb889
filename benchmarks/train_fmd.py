#!/usr/bin/env python
"""Training on the user's own data, measured on FMD test_mix (issue: Train widget).

Two benchmarks, each pinned to what one CPU core does in the stated time:

``finetune``
    For each of the 12 FMD microscope/sample types: the 4 raw captures of its field of
    view against its ground truth are the pairs; the default model is fine-tuned on the
    **left half** of each capture only (its validation stripe is cut from that half too),
    for at most ``--minutes`` (2) minutes, and both the default model and the fine-tuned
    one then denoise the **right half** alone (a 512 x 256 crop: no pixel of the left
    half is seen). PSNR against the ground truth's right half, data range 255.

``n2v``
    For each type: Noise2Void (N2V2 by default) on ONE raw capture alone (``_1``), from a
    fresh U-Net, for at most ``--minutes`` (5) minutes; the trained model denoises that
    same capture, scored against its ground truth. Self-supervised training on the image
    being denoised is what the method prescribes (and what shared/data/README.md allows
    for FMD).

Results go to docs/benchmarks_training.json and the "Training on your own data" section
of docs/benchmarks.md (``bench.rewrite_markdown``). Every model is written to a
temporary model folder, never to the user's. ``--dry-run`` prints without saving. Run::

    taskset -c 0 python benchmarks/train_fmd.py finetune      # ~25 min
    taskset -c 0 python benchmarks/train_fmd.py finetune --minutes 10 --types ...  # beside it
    taskset -c 1 python benchmarks/train_fmd.py n2v --minutes 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# Every model trained here goes to a temporary model folder (registered as a method while
# this runs), never to the user's own.
_TMP = tempfile.TemporaryDirectory(prefix="napari-denoise-bench-")
os.environ["NAPARI_DENOISE_MODEL_DIR"] = _TMP.name

from napari_denoise import denoise  # noqa: E402
from napari_denoise.bench import rewrite_markdown  # noqa: E402
from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.methods import default_method  # noqa: E402
from napari_denoise.engine.metrics import psnr  # noqa: E402
from napari_denoise.engine.training.datasets import load_image  # noqa: E402
from napari_denoise.engine.training.finetune import FinetuneSpec, finetune_iter, prepare  # noqa: E402

OUT = REPO / "docs" / "benchmarks_training.json"
# The size of the shipped U-Nets: deep and narrow, about 3x cheaper per pixel than CARE's.
N2V_CONFIG = {"base": 16, "depth": 3}
# The fine-tuning benchmark's protocol; other budgets are recorded as "finetune_longer".
PROTOCOL_MINUTES = 2.0


def fmd_types(root: Path) -> list[str]:
    return sorted({p.stem.rsplit("_", 1)[0] for p in (root / "raw").glob("*.png")})


def run(gen):
    """Drain a finetune generator; return its result and the last progress tick."""
    ticks = []
    result = drain(gen, ticks.append)
    ticks = [t for t in ticks if hasattr(t, "step")]  # not the phases before and after
    return result, ticks[-1] if ticks else None


def score(method: str, noisy: np.ndarray, gt: np.ndarray) -> float:
    out = denoise(noisy, method, output_dtype="float32")
    return psnr(gt, out, data_range=255.0)


def finetune_halves(
    raw: np.ndarray,
    gt: np.ndarray,
    start: str,
    minutes: float,
    name: str,
    extra: np.ndarray | None = None,
    **spec_kw,
) -> dict:
    """Fine-tune ``start`` on the left halves of the captures ``raw`` (k, y, x) against
    ``gt``; score it and ``start`` on the right halves, each denoised alone.

    ``extra`` (m, y, x): more captures of the same ground truth whose left halves are
    trained on too (an experiment on the proxy: does more noise data help?); never scored.
    """
    half = raw.shape[-1] // 2
    spec = FinetuneSpec(mode="supervised", start=start, minutes=minutes, name=name, **spec_kw)
    train = raw if extra is None else np.concatenate([raw, extra])
    prepared = prepare(
        spec, train, np.stack([gt] * len(train)), regions=[(0, 0, raw.shape[-2], half)]
    )
    t0 = time.perf_counter()
    result, tick = run(finetune_iter(prepared))
    seconds = time.perf_counter() - t0
    right_gt = gt[:, half:]
    before = [score(start, r[:, half:], right_gt) for r in raw]
    after = [score(result.name, r[:, half:], right_gt) for r in raw]
    noisy = [psnr(right_gt, r[:, half:], data_range=255.0) for r in raw]
    return {
        "noisy": float(np.mean(noisy)),
        "default": float(np.mean(before)),
        "finetuned": float(np.mean(after)),
        "gain": float(np.mean(after) - np.mean(before)),
        "steps": tick.step if tick else 0,
        "seconds": round(seconds, 1),
        "best_val_psnr": result.card.get("validation", {}).get("best_val_psnr"),
    }


def finetune(root: Path, types: list[str], minutes: float, start: str, **spec_kw) -> dict:
    rows = {}
    for t in types:
        raw = np.stack([load_image(root / "raw" / f"{t}_{k}.png") for k in range(1, 5)])
        gt = load_image(root / "gt" / f"{t}_1.png")
        rows[t] = r = finetune_halves(raw, gt, start, minutes, f"ft-{t}", **spec_kw)
        print(
            f"{t:18s} noisy {r['noisy']:.2f}  {start} {r['default']:.2f}  "
            f"fine-tuned {r['finetuned']:.2f}  ({r['gain']:+.2f} dB, {r['steps']} steps, "
            f"{r['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def n2v(
    root: Path,
    types: list[str],
    minutes: float,
    mode: str,
    radius: int | None,
    start: str = "new:unet",
) -> dict:
    rows = {}
    for t in types:
        noisy = load_image(root / "raw" / f"{t}_1.png")
        gt = load_image(root / "gt" / f"{t}_1.png")
        spec = FinetuneSpec(
            mode=mode,
            start=start,
            minutes=minutes,
            name=f"n2v-{t}",
            config=N2V_CONFIG if start.startswith("new:") else None,
            blind_radius=radius,
        )
        prepared = prepare(spec, noisy)
        t0 = time.perf_counter()
        result, tick = run(finetune_iter(prepared))
        seconds = time.perf_counter() - t0
        rows[t] = {
            "noisy": psnr(gt, noisy, data_range=255.0),
            "n2v": score(result.name, noisy, gt),
            "gaussian": score("gaussian", noisy, gt),
            **({} if start.startswith("new:") else {"start": score(start, noisy, gt)}),
            "steps": tick.step if tick else 0,
            "seconds": round(seconds, 1),
            "blind_radius": result.card["training"]["blind_spot"]["radius"],
        }
        r = rows[t]
        print(
            f"{t:18s} noisy {r['noisy']:.2f}  {mode} {r['n2v']:.2f}  gaussian {r['gaussian']:.2f}"
            + (f"  {start} {r['start']:.2f}" if "start" in r else "")
            + f"  (blind radius {r['blind_radius']}, {r['steps']} steps, {r['seconds']:.0f} s)",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=("finetune", "n2v"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, default=None, help="per type (2 / 5)")
    parser.add_argument(
        "--start",
        default=None,
        help="finetune: model to fine-tune (default: the default); n2v: where Noise2Void "
        "starts (default: new:unet; a trained model is recorded as 'n2v_from_start')",
    )
    parser.add_argument("--mode", default="n2v2", choices=("n2v", "n2v2"))
    parser.add_argument("--types", nargs="*", default=None)
    parser.add_argument(
        "--blind-radius", default="auto", choices=("auto", "0", "1", "2", "3"), help="n2v only"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="print, do not save")
    args = parser.parse_args(argv)
    os.environ["NAPARI_DENOISE_THREADS"] = str(args.threads)
    root = args.data / "FMD_test_mix"
    types = args.types or fmd_types(root)
    which = args.which  # the JSON entry
    if args.which == "finetune":
        default = default_method()
        start = args.start or (default.name if default.kind == "model" else "unet-fluo")
        minutes = args.minutes or PROTOCOL_MINUTES
        rows = finetune(root, types, minutes, start)
        record = {"start": start, "minutes_per_type": minutes, "rows": rows}
        if minutes != PROTOCOL_MINUTES:  # a diagnostic beside the protocol's table
            which = "finetune_longer"
    else:
        minutes = args.minutes or 5.0
        radius = None if args.blind_radius == "auto" else int(args.blind_radius)
        start = args.start or "new:unet"
        rows = n2v(root, types, minutes, args.mode, radius, start)
        if not start.startswith("new:"):
            which = "n2v_from_start"
        record = {
            "mode": args.mode,
            "start": start,
            "config": N2V_CONFIG if start.startswith("new:") else None,
            "minutes_per_type": minutes,
            "rows": rows,
        }
    record.update(
        threads=args.threads,
        date=time.strftime("%Y-%m-%d %H:%M"),
        command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    )
    if args.dry_run:
        return 0
    saved = json.loads(OUT.read_text()) if OUT.is_file() else {}
    previous = saved.get(which)
    if args.types and previous:
        # Some types re-run: keep the other rows, and say which rows come from which run.
        kept = {t: r for t, r in previous["rows"].items() if t not in rows}
        for r in kept.values():
            r.setdefault("run", previous.get("date"))
        for r in rows.values():
            r["run"] = record["date"]
        record["rows"] = dict(sorted({**kept, **rows}.items()))
        record["command"] = f"{previous.get('command')}; then {record['command']}"
    saved[which] = record
    OUT.write_text(json.dumps(saved, indent=2) + "\n")
    rewrite_markdown(REPO / "docs" / "benchmarks.json")
    print(f"wrote {OUT} and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

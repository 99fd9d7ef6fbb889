#!/usr/bin/env python
"""How often the no-ground-truth check ranks the default with its neighbours against the
default frame by frame as the ground truth does (issue 24, point 3).

On every stack of ``stack_fusion.py``'s validation (allowed data: held-out FMD confocal
training fields with real noise, W2S clean images with synthetic noise, made-up beads)
and its time-lapse and z-stack checks (BioImageAnalysisNotebooks stacks with synthetic
noise), never FMD test_mix: on up to 3 scored planes, spread over the stack, SURE
(:func:`~napari_denoise.engine.denoise.selfcheck.better`) of each result of the centre
plane, the fused result's divergence taken by perturbing the centre plane only (its
neighbours are independent of its noise, so SURE stays unbiased), each mode's automatic
settings chosen once on the stack. The check's choice (the lower summed estimate) is
compared with the one whose summed squared error against the ground truth is lower.
Stacks whose two results are within ``--tie`` dB of each other are counted apart.

Run: ``python benchmarks/fusion_selfcheck.py --out docs/fusion_selfcheck.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack_fusion import MODEL, part_timelapse_z, part_val  # noqa: E402

from napari_denoise.engine.denoise.plan import make_plan  # noqa: E402
from napari_denoise.engine.denoise.selfcheck import better  # noqa: E402
from napari_denoise.engine.methods import get_method  # noqa: E402

SAMPLES = 3


def chosen(stack: np.ndarray, mode: str):
    """The default's plan on ``stack`` with ``neighbours=mode``, its settings chosen."""
    m = get_method(MODEL)
    plan = make_plan(m, "TYX", stack.shape, stack.dtype, params={"neighbours": mode})
    for _ in plan.choose(stack):
        pass
    params = {k: v for k, v in plan.params[0].items() if k != "vst" and k not in m.combine_keys}
    return m, plan, params


def one_stack(stack, truths, frames) -> dict:
    stack = np.asarray(stack, np.float32)
    scored = list(range(len(stack)) if frames is None else frames)
    picks = [
        scored[k] for k in np.unique(np.linspace(0, len(scored) - 1, SAMPLES).round().astype(int))
    ]
    m, on_plan, on_params = chosen(stack, "on")
    _, _, off_params = chosen(stack, "off")
    est = {"on": 0.0, "off": 0.0}
    err = {"on": 0.0, "off": 0.0}
    for i in picks:
        positions = on_plan.window((i,))
        window = stack[[p[0] for p in positions]]
        middle = len(window) // 2

        def with_neighbours(y, window=window, i=i, middle=middle):
            w = window.copy()
            w[middle] = y
            return m.fn(on_plan.fused((i,), w), **on_params)

        def alone(y):
            return m.fn(y, **off_params)

        fns = {"on": with_neighbours, "off": alone}
        _, scores = better(stack[i], fns, seed=i)
        for mode, fn in fns.items():
            est[mode] += scores[mode]
            out = np.asarray(fn(stack[i]), np.float64)
            err[mode] += float(np.mean((out - np.asarray(truths[i], np.float64)) ** 2))
    return {"estimate": est, "error": err, "planes": picks}


def summary(rows: dict, tie: float) -> dict:
    agree = disagree = ties = 0
    wrong = []
    for key, r in rows.items():
        gap_db = 10 * np.log10(r["error"]["off"] / r["error"]["on"])  # > 0: on is better
        if abs(gap_db) < tie:
            ties += 1
            continue
        truth_on = r["error"]["on"] < r["error"]["off"]
        check_on = r["estimate"]["on"] < r["estimate"]["off"]
        if truth_on == check_on:
            agree += 1
        else:
            disagree += 1
            wrong.append((key, round(float(gap_db), 3)))
    decided = agree + disagree
    groups: dict[str, list[int]] = {}
    for key, r in rows.items():
        group = key.split("/")[0]
        truth_on = r["error"]["on"] < r["error"]["off"]
        check_on = r["estimate"]["on"] < r["estimate"]["off"]
        groups.setdefault(group, []).append(int(truth_on == check_on))
    return {
        "by_group (agree, stacks; ties included)": {g: (sum(v), len(v)) for g, v in groups.items()},
        "stacks": len(rows),
        "ties": ties,
        "agree": agree,
        "disagree": disagree,
        "agreement": round(agree / decided, 4) if decided else None,
        "disagreements (stack, true gain of neighbours in dB)": wrong,
        "true_on_better": sum(r["error"]["on"] < r["error"]["off"] for r in rows.values()),
        "check_on_better": sum(r["estimate"]["on"] < r["estimate"]["off"] for r in rows.values()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tie", type=float, default=0.05)
    ap.add_argument(
        "--summary", type=Path, default=None, help="only summarise a saved --out file again"
    )
    args = ap.parse_args(argv)
    if args.summary is not None:
        saved = json.loads(args.summary.read_text())
        saved["summary"] = summary(saved["rows"], saved["tie_db"])
        args.summary.write_text(json.dumps(saved, indent=1) + "\n")
        print(json.dumps(saved["summary"], indent=1))
        return 0
    rows = {}
    t0 = time.time()
    gens = [
        part_val(args.data),
        part_timelapse_z(args.data, "timelapse"),
        part_timelapse_z(args.data, "z"),
    ]
    for gen in gens:
        for key, (stack, truths, _, frames) in gen:
            rows[key] = one_stack(stack, np.asarray(truths, np.float32), frames)
            r = rows[key]
            print(
                key,
                {k: round(v, 4) for k, v in r["estimate"].items()},
                {k: round(v, 4) for k, v in r["error"].items()},
                flush=True,
            )
    result = {
        "summary": summary(rows, args.tie),
        "tie_db": args.tie,
        "seconds": round(time.time() - t0),
        "rows": rows,
    }
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

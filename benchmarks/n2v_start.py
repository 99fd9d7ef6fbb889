#!/usr/bin/env python
"""Where should Noise2Void start: a new network, or the shipped default? (chosen off FMD)

Noise2Void trains on the noisy image it denoises. It can start from a freshly built U-Net
(N2V2, as ``train_fmd.py n2v`` measures) or from a trained model such as the shipped
default (plain N2V: N2V2's median blind spot cannot train a network that adds its input
to its output). This script compares, on images no shipped model trained on and that FMD
never sees, the held-out W2S fields of view 009-010 (one channel each by default):

- the start model as shipped (no training on the image),
- N2V2 from a new U-Net,
- N2V from the start model,

each for ``--minutes`` on one CPU thread, scored with the range-invariant PSNR against
the 400-frame average (W2S images were stretched to 8 bits one by one). Results print and
go to docs/benchmarks_training.json under "n2v_start". Run::

    taskset -c 1 python benchmarks/n2v_start.py --minutes 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_fmd  # sets a temporary model folder

from napari_denoise import denoise
from napari_denoise.engine.methods import default_method
from napari_denoise.engine.metrics import psnr_range_invariant
from napari_denoise.engine.training.datasets import load_image
from napari_denoise.engine.training.finetune import FinetuneSpec, finetune_iter, prepare

REPO = Path(__file__).resolve().parents[1]
IMAGES = ((9, 0), (10, 1), (9, 2))  # held-out W2S fields of view and channels


def w2s(data: Path, fov: int, channel: int) -> tuple[np.ndarray, np.ndarray]:
    root = data / "W2S_8bit_subset"
    noisy = load_image(root / "images_avg1_8bit" / f"input_avg1_{fov:03d}_{channel}.tif")
    clean = load_image(root / "images_avg400_8bit" / f"target_avg400_{fov:03d}_{channel}.tif")
    return noisy, clean


def trained(spec: FinetuneSpec, noisy: np.ndarray) -> tuple[str, int, int]:
    """(method name, steps, blind radius) of the model trained on ``noisy``."""
    result, tick = train_fmd.run(finetune_iter(prepare(spec, noisy)))
    radius = result.card["training"]["blind_spot"]["radius"]
    return result.name, (tick.step if tick else 0), radius


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--start", default=None, help="trained model (default: the default)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("NAPARI_DENOISE_THREADS", "1")
    start = args.start or default_method().name
    rows = {}
    for fov, channel in IMAGES:
        noisy, clean = w2s(args.data, fov, channel)

        def score(method: str, noisy=noisy, clean=clean) -> float:
            out = denoise(noisy, method, output_dtype="float32")
            return psnr_range_invariant(clean, out, data_range=255.0)

        key = f"w2s{fov:03d}_{channel}"
        fresh = FinetuneSpec(
            mode="n2v2",
            start="new:unet",
            minutes=args.minutes,
            name=f"n2v2-{key}",
            config=train_fmd.N2V_CONFIG,
        )
        warm = FinetuneSpec(mode="n2v", start=start, minutes=args.minutes, name=f"n2v-{key}")
        fresh_name, fresh_steps, radius = trained(fresh, noisy)
        warm_name, warm_steps, _ = trained(warm, noisy)
        rows[key] = r = {
            "noisy": psnr_range_invariant(clean, noisy, data_range=255.0),
            "start": score(start),
            "n2v2_new": score(fresh_name),
            "n2v_from_start": score(warm_name),
            "steps": [fresh_steps, warm_steps],
            "blind_radius": radius,
        }
        print(
            f"{key}: noisy {r['noisy']:.2f}  {start} {r['start']:.2f}  N2V2 new "
            f"{r['n2v2_new']:.2f}  N2V from {start} {r['n2v_from_start']:.2f}  "
            f"(blind radius {radius}, steps {fresh_steps}/{warm_steps})",
            flush=True,
        )
    means = {
        k: float(np.mean([r[k] for r in rows.values()]))
        for k in ("noisy", "start", "n2v2_new", "n2v_from_start")
    }
    print("mean:", {k: round(v, 2) for k, v in means.items()}, flush=True)
    if args.dry_run:
        return 0
    saved = json.loads(train_fmd.OUT.read_text()) if train_fmd.OUT.is_file() else {}
    saved["n2v_start"] = {
        "start": start,
        "minutes": args.minutes,
        "rows": rows,
        "mean": means,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    train_fmd.OUT.write_text(json.dumps(saved, indent=2) + "\n")
    train_fmd.rewrite_markdown(REPO / "docs" / "benchmarks.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Choose the fine-tuning recipe on data the benchmark never scores (a proxy for FMD).

FMD test_mix is test only: no hyper-parameter of ours may be chosen on it. The
fine-tuning benchmark (``train_fmd.py finetune``) fine-tunes the default model on the
left half of 4 captures of one field of view and scores the right half; this script runs
the very same protocol on *proxy types* built from images that no shipped model saw in
training: the 3 channels of ``hela-cells.tif`` (BioImageAnalysisNotebooks, 12-bit,
nearly noise-free at this scale), each degraded 4 times with independent synthetic noise
in one of three regimes that mimic FMD's microscopes:

``shot``  confocal-like: Poisson-limited, peak ~40 photons, little read noise, dark
          background;
``low``   two-photon-like: peak ~30 photons;
``wf``    widefield-like: high background, ~150 photons, part of the noise spatially
          correlated (Gaussian kernel, sigma 0.8 px), as in FMD's and W2S's widefield
          captures.

All are quantised to 8 bits like FMD's PNGs. Each ``--variant`` (``key=value`` pairs of
:class:`FinetuneSpec`, e.g. ``lr=1e-3,patch=96``) is run on every proxy type; the table
printed at the end (and kept in docs/benchmarks_training.json, shown in
docs/benchmarks.md) gives the gain over the start model per type, its mean and minimum. Run one variant per core::

    taskset -c 0 python benchmarks/finetune_proxy.py lr=3e-4 lr=1e-3
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_fmd

from napari_denoise.engine.methods import default_method

REPO = Path(__file__).resolve().parents[1]
HELA = Path("BioImageAnalysisNotebooks_stacks") / "hela-cells.tif"
# (name, channel, regime): every channel in two regimes, every regime twice.
TYPES = (
    ("hela0-shot", 0, "shot"),
    ("hela1-low", 1, "low"),
    ("hela2-wf", 2, "wf"),
    ("hela0-wf", 0, "wf"),
    ("hela1-shot", 1, "shot"),
    ("hela2-low", 2, "low"),
)
REGIMES = {
    # peak photons, background (0..1 of the 8-bit range), read noise (8-bit units),
    # share of the noise variance that is spatially correlated
    "shot": dict(photons=40.0, background=0.03, read=1.0, correlated=0.0),
    "low": dict(photons=30.0, background=0.05, read=1.5, correlated=0.0),
    "wf": dict(photons=150.0, background=0.45, read=2.0, correlated=0.6),
}


def _blur(noise: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(noise, sigma)
    return out * (noise.std() / max(out.std(), 1e-12))


@functools.cache
def _hela(data: Path) -> np.ndarray:
    """hela-cells.tif cropped to 512 x 512 (Y, X, channel), read once."""
    import tifffile

    return tifffile.imread(data / HELA)[:, 80:592]


def proxy_type(
    data: Path, channel: int, regime: str, seed: int, captures: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """``captures`` 8-bit noisy captures (k, 512, 512) and their float ground truth (0..255)."""
    image = _hela(data)[..., channel].astype(np.float64)
    lo, hi = np.percentile(image, (0.5, 99.9))
    signal = np.clip((image - lo) / (hi - lo), 0, 1)
    r = REGIMES[regime]
    span = 255.0 * (0.9 - r["background"])
    clean = 255.0 * r["background"] + span * signal
    gain = span / r["photons"]  # 8-bit units per photon at the peak
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(captures):
        shot = gain * rng.poisson(clean / gain) - clean
        noise = shot + rng.normal(0, r["read"], clean.shape)
        if r["correlated"]:
            c = r["correlated"]
            noise = np.sqrt(1 - c) * noise + np.sqrt(c) * _blur(noise, 0.8)
        out.append(np.clip(np.round(clean + noise), 0, 255).astype(np.uint8))
    return np.stack(out), np.clip(clean, 0, 255)


def parse_variant(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        key, value = part.split("=")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value  # e.g. loss=l2
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="key=value[,key=value] FinetuneSpec fields")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--start", default=None)
    parser.add_argument("--types", nargs="*", default=None)
    parser.add_argument(
        "--captures",
        type=int,
        default=4,
        help="noisy captures trained on (the first 4 are scored; more test whether more "
        "noise realisations help)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=train_fmd.OUT,
        help="JSON file whose 'finetune_proxy' entry gets the results (default: "
        "docs/benchmarks_training.json, then docs/benchmarks.md is rewritten)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print, do not save")
    args = parser.parse_args(argv)
    import os

    os.environ.setdefault("NAPARI_DENOISE_THREADS", "1")
    start = args.start or default_method().name
    types = [t for t in TYPES if not args.types or t[0] in args.types]
    results = {}
    for v, variant in enumerate(args.variants):
        spec_kw = parse_variant(variant)
        label = variant
        if args.minutes != 2.0:
            label += f" ({args.minutes:g} min)"
        if args.captures != 4:
            label += f" ({args.captures} captures)"
        rows = {}
        for i, (name, channel, regime) in enumerate(types):
            raw, gt = proxy_type(args.data, channel, regime, seed=100 + i)
            extra = None
            if args.captures > 4:  # other noise realisations of the same ground truth
                extra, _ = proxy_type(
                    args.data, channel, regime, seed=1000 + i, captures=args.captures - 4
                )
            rows[name] = r = train_fmd.finetune_halves(
                raw, gt, start, args.minutes, f"proxy{v}-{name}", extra=extra, **spec_kw
            )
            print(
                f"[{label}] {name:11s} noisy {r['noisy']:.2f}  {start} {r['default']:.2f}  "
                f"fine-tuned {r['finetuned']:.2f} ({r['gain']:+.2f} dB, {r['steps']} steps)",
                flush=True,
            )
        gains = [r["gain"] for r in rows.values()]
        results[label] = {
            "rows": rows,
            "mean_gain": float(np.mean(gains)),
            "min_gain": float(np.min(gains)),
        }
        print(
            f"[{label}] mean gain {np.mean(gains):+.2f} dB, min {np.min(gains):+.2f} dB",
            flush=True,
        )
    if args.dry_run:
        return 0
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    entry = saved.setdefault("finetune_proxy", {})
    for variant, record in results.items():
        record.update(
            start=start,
            minutes=args.minutes,
            captures=args.captures,
            date=time.strftime("%Y-%m-%d %H:%M"),
        )
        entry[variant] = record
    args.out.write_text(json.dumps(saved, indent=2) + "\n")
    if args.out == train_fmd.OUT:
        train_fmd.rewrite_markdown(REPO / "docs" / "benchmarks.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

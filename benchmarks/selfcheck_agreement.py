#!/usr/bin/env python
"""How often the no-ground-truth check ranks two results as the ground truth does.

On images whose ground truth we may use (never FMD): W2S FOVs 001-010 (real noisy /
400-frame-average pairs, 3 channels each) and the hela proxy (``hela-cells.tif`` with
synthetic confocal-, two-photon- and widefield-like noise, ``finetune_proxy.py``). Each
image is denoised by several methods and strengths; for every pair of results, the one
with the lower SURE estimate (:mod:`napari_denoise.engine.denoise.selfcheck`) is compared
with the one closer to the ground truth. W2S images were stretched to 0-255 one by one,
so the ground truth is first fitted (least squares, ``a * gt + b``) to the noisy image:
the scale the check works in. Pairs whose two results differ by less than ``--tie`` dB
against the ground truth are counted apart (a coin toss either way). Run::

    python benchmarks/selfcheck_agreement.py --out docs/selfcheck_agreement.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.denoise.pipeline import choose_params  # noqa: E402
from napari_denoise.engine.denoise.selfcheck import estimate_noise_covariance, risk  # noqa: E402
from napari_denoise.engine.methods import get_method  # noqa: E402


def fixed(method: str, image: np.ndarray, **override):
    """``method`` with its automatic parameters chosen once on ``image`` (a perturbed copy
    must not re-choose them), then ``override`` applied."""
    m = get_method(method)
    base = {p.name: p.default for p in m.params}
    params, _ = choose_params(m, base, [np.asarray(image, np.float32)])
    params.update(override)
    params = {k: v for k, v in params.items() if k != "device"}
    return lambda im: nd.denoise(im, method, output_dtype="float32", **params)


def blended(fn, w):
    return lambda im: w * fn(im) + (1 - w) * np.asarray(im, np.float32)


def candidates(image: np.ndarray) -> dict:
    g = fixed("gaussian", image)
    sigma = get_sigma(image)
    unet = fixed("unet-fluo", image)
    return {
        "gaussian": g,
        "gaussian x0.5": fixed("gaussian", image, sigma=0.5 * sigma),
        "gaussian x2": fixed("gaussian", image, sigma=2.0 * sigma),
        "unet-fluo": unet,
        "unet-fluo-nm": fixed("unet-fluo-nm", image),
        "unet-fluo-nm x2": fixed("unet-fluo-nm", image, strength=2.0),
        "unet-fluo blend 0.7": blended(unet, 0.7),
    }


def get_sigma(image):
    m = get_method("gaussian")
    base = {p.name: p.default for p in m.params}
    params, _ = choose_params(m, base, [np.asarray(image, np.float32)])
    return float(params["sigma"])


def w2s_images(data: Path, fovs):
    import tifffile

    root = data / "W2S_8bit_subset"
    for fov in fovs:
        for c in range(3):
            noisy = tifffile.imread(root / "images_avg1_8bit" / f"input_avg1_{fov:03d}_{c}.tif")
            gt = tifffile.imread(root / "images_avg400_8bit" / f"target_avg400_{fov:03d}_{c}.tif")
            yield f"w2s{fov:03d}_{c}", noisy.astype(np.float32), gt.astype(np.float64)


def hela_images(data: Path):
    import finetune_proxy

    for name, channel, regime in finetune_proxy.TYPES:
        noisy, clean = finetune_proxy.proxy_type(data, channel, regime, seed=7, captures=1)
        yield name, noisy[0].astype(np.float32), clean.astype(np.float64)


def matched(gt: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """The ground truth in the noisy image's scale (least-squares ``a * gt + b``)."""
    a, b = np.polyfit(gt.ravel(), noisy.astype(np.float64).ravel(), 1)
    return a * gt + b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--fovs", type=int, nargs="*", default=list(range(1, 11)))
    parser.add_argument("--tie", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    images = itertools.chain(w2s_images(args.data, args.fovs), hela_images(args.data))
    for name, noisy, gt in images:
        t = time.perf_counter()
        gt = matched(gt, noisy)
        peak = float(np.ptp(gt))
        noise = estimate_noise_covariance(noisy)
        per = {}
        for label, fn in candidates(noisy).items():
            out = fn(noisy)
            true_mse = float(np.mean((out - gt) ** 2))
            est = risk(noisy, fn, result=out, noise=noise)
            per[label] = {
                "psnr": 10 * np.log10(peak**2 / true_mse),
                "true_mse": true_mse,
                "sure_mse": est,
            }
        rows.append({"image": name, "results": per})
        print(
            f"{name}: "
            + ", ".join(
                f"{k} {v['psnr']:.2f}/{v['sure_mse']:.1f}~{v['true_mse']:.1f}"
                for k, v in per.items()
            )
            + f" ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    summary = summarise(rows, args.tie)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0


def summarise(rows, tie: float) -> dict:
    out = {}
    for group in ("w2s", "hela", ""):
        agree = total = ties = tie_agree = 0
        for row in rows:
            if not row["image"].startswith(group):
                continue
            for (_, a), (_, b) in itertools.combinations(row["results"].items(), 2):
                same = (a["sure_mse"] < b["sure_mse"]) == (a["true_mse"] < b["true_mse"])
                if abs(a["psnr"] - b["psnr"]) < tie:
                    ties += 1
                    tie_agree += same
                    continue
                total += 1
                agree += same
        out[group or "all"] = {
            "pairs": total,
            "agree": agree,
            "rate": agree / max(total, 1),
            "near_ties": ties,
            "near_ties_agree": tie_agree,
        }
    return out


if __name__ == "__main__":
    raise SystemExit(main())

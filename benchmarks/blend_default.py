#!/usr/bin/env python
"""Per-image blend of the default network with its input, weight chosen without ground
truth (SURE, :func:`~napari_denoise.engine.denoise.selfcheck.blend_weight`), measured on
data we may choose on (never FMD): held-out W2S FOVs 009-010 (real pairs), and the
hela proxy and W2S ground truths with synthetic Poisson-Gaussian noise across the SNR
range (``photons`` at the brightest pixel: 10 = very noisy ... 3000 = a clean confocal
image). Prints PSNR against the ground truth (fitted to the noisy image's scale) for the
network, the Gaussian, the SURE blend and the best blend in hindsight (oracle)::

    python benchmarks/blend_default.py --out docs/blend_default.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from selfcheck_agreement import fixed, matched, w2s_images  # noqa: E402

from napari_denoise.engine.denoise.selfcheck import blend_weight  # noqa: E402

PHOTONS = (10, 100, 1000, 3000)


def synthetic(data: Path):
    import finetune_proxy
    import tifffile

    rng = np.random.default_rng(11)
    hela = finetune_proxy._hela(data).astype(np.float64)
    w2s = data / "W2S_8bit_subset" / "images_avg400_8bit"
    cleans = {
        "hela0": hela[..., 0],
        "hela2": hela[..., 2],
        "w2s009_1": tifffile.imread(w2s / "target_avg400_009_1.tif").astype(np.float64),
        "w2s010_0": tifffile.imread(w2s / "target_avg400_010_0.tif").astype(np.float64),
    }
    for name, image in cleans.items():
        lo, hi = np.percentile(image, (0.5, 99.9))
        clean = 255 * (0.05 + 0.85 * np.clip((image - lo) / (hi - lo), 0, 1))
        for photons in PHOTONS:
            gain = 255.0 / photons
            noisy = gain * rng.poisson(clean / gain) + rng.normal(0, 1.0, clean.shape)
            noisy = np.clip(np.round(noisy), 0, 255).astype(np.float32)
            yield f"{name}-p{photons}", noisy, clean


def psnr(out, gt):
    return float(10 * np.log10(np.ptp(gt) ** 2 / np.mean((out - gt) ** 2)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--method", default="unet-fluo")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    images = list(w2s_images(args.data, (9, 10))) + list(synthetic(args.data))
    for name, noisy, gt in images:
        gt = matched(gt, noisy)
        net = fixed(args.method, noisy)
        out = net(noisy)
        w = blend_weight(noisy, net, result=out)
        blended = w * out + (1 - w) * noisy
        ws = np.round(np.linspace(0, 1, 101), 2)
        curve = [psnr(v * out + (1 - v) * noisy, gt) for v in ws]
        oracle = float(ws[int(np.argmax(curve))])
        g = fixed("gaussian", noisy)(noisy)
        row = {
            "image": name,
            "noisy": psnr(noisy, gt),
            "gaussian": psnr(g, gt),
            "network": psnr(out, gt),
            "sure_blend": psnr(blended, gt),
            "w": w,
            "oracle_w": float(oracle),
            "oracle_blend": psnr(oracle * out + (1 - oracle) * noisy, gt),
            "psnr_by_w": curve,  # w = 0.00, 0.01, ..., 1.00
        }
        rows.append(row)
        print(
            f"{name:16s} noisy {row['noisy']:.2f} gauss {row['gaussian']:.2f} net {row['network']:.2f} "
            f"blend {row['sure_blend']:.2f} (w {w:.2f}) oracle {row['oracle_blend']:.2f} (w {oracle:.2f})",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

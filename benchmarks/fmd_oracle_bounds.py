#!/usr/bin/env python
"""Diagnostic on FMD test_mix: how far per-image post-processing of the default network
could go, each family's parameters chosen WITH the ground truth (an oracle). It chooses
nothing that ships and tunes nothing: it bounds what any rule without ground truth could
reach within each family, to tell whether a target needs a better network. Columns (PSNR
dB, data range 255, 48 raw captures)::

    network      unet-fluo alone (detail 0)
    shipped      unet-fluo as users get it (its detail restoration, chosen without GT)
    gaussian     the self-calibrated Gaussian
    mix oracle   best w * network + (1 - w) * gaussian per image (w in 0, 0.05, ..., 1)
    detail oracle  best network + alpha * G_s(input - network) per image
                 (alpha in 0, 0.05, ..., 1; s in the card's widths)
    LS oracle    least-squares combination of network, gaussian, input, G_0.9/1.3/2 of
                 the input and a constant, fitted to the ground truth per image

Run::

    python benchmarks/fmd_oracle_bounds.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from selfcheck_agreement import fixed  # noqa: E402

from napari_denoise.engine.denoise.selfcheck import DETAIL_WIDTHS, put_back, smooth  # noqa: E402

COLUMNS = ("network", "shipped", "gaussian", "mix oracle", "detail oracle", "LS oracle")


def psnr(out, gt) -> float:
    return float(10 * np.log10(255**2 / np.mean((np.asarray(out, np.float64) - gt) ** 2)))


def scores(noisy: np.ndarray, gt: np.ndarray) -> tuple[float, ...]:
    net = np.asarray(fixed("unet-fluo", noisy, detail=0.0)(noisy), np.float64)
    shipped = fixed("unet-fluo", noisy)(noisy)
    g = np.asarray(fixed("gaussian", noisy)(noisy), np.float64)
    y = noisy.astype(np.float64)
    mix = max(psnr(w * net + (1 - w) * g, gt) for w in np.linspace(0, 1, 21))
    detail = max(
        psnr(put_back(net, noisy, a, s), gt) for a in np.linspace(0, 1, 21) for s in DETAIL_WIDTHS
    )
    bases = [net, g, y, smooth(y, 0.9), smooth(y, 1.3), smooth(y, 2.0), np.ones_like(y)]
    f = np.stack([b.ravel() for b in bases], 1)
    coef = np.linalg.lstsq(f, gt.ravel(), rcond=None)[0]
    ls = psnr((f @ coef).reshape(y.shape), gt)
    return psnr(net, gt), psnr(shipped, gt), psnr(g, gt), mix, detail, ls


def main(argv=None) -> int:
    from PIL import Image

    data = REPO.parent / "shared" / "data" / "FMD_test_mix"
    rows: dict[str, list] = {}
    for path in sorted((data / "raw").glob("*.png")):
        kind = path.stem.rsplit("_", 1)[0]
        noisy = np.array(Image.open(path)).astype(np.float32)
        gt = np.array(Image.open(data / "gt" / path.name)).astype(np.float64)
        rows.setdefault(kind, []).append(scores(noisy, gt))
        print(path.stem, " ".join(f"{v:.2f}" for v in rows[kind][-1]), flush=True)
    print("\n| type | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for kind, v in rows.items():
        print(f"| {kind} | " + " | ".join(f"{x:.2f}" for x in np.mean(v, 0)) + " |")
    every = np.array([r for v in rows.values() for r in v])
    print("| **all** | " + " | ".join(f"**{x:.2f}**" for x in every.mean(0)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""The default's time with and without the choice of the Gaussian, interleaved in one run
(allowed images only): the W2S 009-010 frames (512 x 512, where choosing the settings is a
large part of the work) and one 2048 x 2048 frame tiled from them. Each repeat runs both
in turn; the best of the repeats counts (a shared machine's load comes and goes)::

    python benchmarks/gauss_fallback_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from select_default import held_out

    import napari_denoise as nd

    frames = [z for z, _ in held_out(args.data)]
    big = np.tile(frames[0], (4, 4))
    sets = {"W2S 009-010, 6 x 512 x 512": frames, "one 2048 x 2048": [big]}
    variants = {"default now": {}, "without the Gaussian": {"gaussian_share": 0.0}}
    nd.denoise(frames[0][:128, :128], "unet-fluo")  # load the weights, measure precision
    for label, images in sets.items():
        best = {v: np.inf for v in variants}
        for _ in range(args.repeats):
            for v, params in variants.items():
                t = time.perf_counter()
                for z in images:
                    nd.denoise(z, "unet-fluo", **params)
                best[v] = min(best[v], time.perf_counter() - t)
        mp = sum(z.size for z in images) / 1e6
        ratio = best["default now"] / best["without the Gaussian"]
        print(
            f"{label}: "
            + ", ".join(f"{v} {1000 * s / mp:.0f} ms/MP" for v, s in best.items())
            + f": {ratio:.3f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

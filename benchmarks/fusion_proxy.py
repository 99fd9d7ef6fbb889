"""How robust the stack fusion is to an error in its noise model: a fast proxy (issue 24).

The fusion (engine/denoise/fusion.py) weighs each neighbour by tests against the plane's
fitted noise model. This measures, on the validation stacks of ``stack_fusion.py --parts
val`` (allowed data only; the correlated-noise cases left out, their path does not use
the model's scale), the PSNR gain of the fused plane itself over the single frame, before
any network, with the fitted model as it is and with its variance multiplied by each
``--errors`` factor (0.6: the model understates the noise by 40 %). Every other plane
of each stack is scored. A network-free proxy: ~20 s per factor on 2 cores, so a design
can be screened before the network-level validation (which alone decides: more
averaging of slightly different z-planes reads well here and costs after the network).

Measured 2026-12-07 with the third run's design, mean/worst gain in dB per kind of case:
factor 1.0 still +6.18/+5.68, z1.2 +5.19/+3.42, 50-photon beads +1.59; factor 0.6 still
+0.20/+0.05 (nearly every neighbour dropped), factor 1.6 still +5.23/+1.92.
Measured 2026-12-08 with the fourth (the noise level read on the differences, the focus
test): factor 1.0 still +6.29/+6.03, z1.2 +4.60/+3.26, 50-photon beads +4.22; factor 0.6
still +5.76/+5.32, factor 1.6 still +5.99/+4.92; W2S still stacks (20 photons) +5.99 at
every factor. (More averaging of z-planes reads well here; the network-level validation
decides.)

Run: ``python benchmarks/fusion_proxy.py [--errors 1 0.6 1.6]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from stack_fusion import part_val  # noqa: E402

from napari_denoise.engine.denoise import fusion  # noqa: E402
from napari_denoise.engine.denoise.tiling import reflect  # noqa: E402
from napari_denoise.engine.metrics import psnr  # noqa: E402


def gains(cases, error: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    reach = fusion.FUSION_REACH
    for key, (stack, truth, data_range, frames) in cases:
        stack = np.asarray(stack, np.float32)
        n = len(stack)
        scored = list(range(n) if frames is None else frames)[::2]
        fused_psnr, single_psnr = [], []
        for i in scored:
            at = [reflect(j, n) for j in range(i - reach, i + reach + 1)]
            model = fusion.plane_noise(stack[i])
            if model is None:  # no noise seen: the plane alone, as combine gives it
                fused = stack[i]
            else:
                gain, sigma, offset = model
                noise = (gain * error, sigma * np.sqrt(error), offset)
                slots = fusion.window_neighbours([(k,) for k in at])
                fused = fusion.fuse(stack[at], slots, noise=noise)
            fused_psnr.append(psnr(truth[i], fused, data_range=data_range))
            single_psnr.append(psnr(truth[i], stack[i], data_range=data_range))
        kind = key.rsplit("/", 1)[-1]
        out.setdefault(kind, []).append(float(np.mean(fused_psnr) - np.mean(single_psnr)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--errors", type=float, nargs="+", default=[1.0, 0.6, 1.6])
    args = parser.parse_args(argv)
    cases = [c for c in part_val(args.data) if not c[0].startswith("correlated/")]
    for error in args.errors:
        t0 = time.perf_counter()
        found = gains(cases, error)
        text = " ".join(f"{k} {np.mean(v):+.2f}/{min(v):+.2f}" for k, v in found.items())
        print(f"model variance x{error:g}: {text} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

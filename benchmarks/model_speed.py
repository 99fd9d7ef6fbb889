#!/usr/bin/env python
"""Re-measure only the network speed section of docs/benchmarks.md (both CPU precisions,
matmul peaks in the same run) without re-running the image benchmarks::

    NAPARI_DENOISE_THREADS=2 python benchmarks/model_speed.py unet-fluo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_denoise import bench  # noqa: E402
from napari_denoise.engine.models.registry import register_models  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks.json")
    args = parser.parse_args(argv)
    register_models()
    results = json.loads(args.json.read_text())
    peak = {
        "fp32": bench.matmul_peak_gflops(),
        "bf16": bench.matmul_peak_gflops(dtype="bfloat16"),
    }
    print(f"matmul 2048^3: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    for v in bench._variants(args.methods):
        s = bench.model_speed(v, peak=peak)
        results.setdefault("model_speed", {})[v.label] = s
        print(
            f"{v.label}: fp32 {s['ms_per_mp_fp32']:.0f} ms/MP, bf16 {s['ms_per_mp_bf16']:.0f} "
            f"ms/MP, chosen {s['precision']} ({s['megapixels_per_s']:.2f} MP/s, "
            f"{100 * s['peak_fraction']:.0f}% of the matmul peak)"
        )
    from napari_denoise.io import write_json

    write_json(args.json, results)
    bench.rewrite_markdown(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

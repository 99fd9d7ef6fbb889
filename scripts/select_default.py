#!/usr/bin/env python
"""Choose the default method among the shipped models and the classical default, on
held-out W2S data only (never FMD, the test set).

Every shipped model and the classical default (``gaussian``, automatic strength)
denoises the 6 held-out W2S pairs (FOVs 009-010, whole 512 x 512 images; no shipped
model trained on them), scored with range-invariant PSNR (W2S images were stretched to
0-255 one by one). Each method runs as users get it: automatic parameters (for the
default's card, its per-image blend with the input, chosen without ground truth) and the
CPU precision this machine's probe chooses (``NAPARI_DENOISE_PRECISION`` overrides it).
If a model beats the classical default, the best one gets
``default_rank`` 1 in its card (and every other shipped card ``null``), so it becomes
the method used when none is named. ``--write`` saves that; without it the script only
prints. Run::

    python scripts/select_default.py            # print the table
    python scripts/select_default.py --write    # and update the shipped cards
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_denoise import denoise  # noqa: E402
from napari_denoise.engine.metrics import compare  # noqa: E402
from napari_denoise.engine.models.store import read_card  # noqa: E402
from napari_denoise.engine.training.datasets import load_image  # noqa: E402

CLASSICAL = "gaussian"
HELD_OUT = (9, 10)
SHIPPED = REPO / "src" / "napari_denoise" / "zoo"


def held_out(data: Path):
    root = data / "W2S_8bit_subset"
    for fov in HELD_OUT:
        for c in range(3):
            noisy = load_image(root / "images_avg1_8bit" / f"input_avg1_{fov:03d}_{c}.tif")
            clean = load_image(root / "images_avg400_8bit" / f"target_avg400_{fov:03d}_{c}.tif")
            yield noisy, clean


def score(method: str, pairs) -> float:
    return float(
        np.mean(
            [
                compare(c, denoise(z, method, output_dtype="float32"), data_range=255)["psnr_ri"]
                for z, c in pairs
            ]
        )
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--write", action="store_true", help="update the shipped cards")
    args = parser.parse_args(argv)
    pairs = list(held_out(args.data))
    cards = sorted(SHIPPED.glob("*.json"))
    scores = {CLASSICAL: score(CLASSICAL, pairs)}
    for path in cards:
        scores[read_card(path)["name"]] = score(read_card(path)["name"], pairs)
    for name, value in sorted(scores.items(), key=lambda kv: -kv[1]):
        print(f"{name:16s} W2S FOV 009-010 PSNR* {value:.2f} dB")
    best = max(scores, key=scores.get)
    print(f"default: {best}")
    if args.write:
        for path in cards:
            card = json.loads(path.read_text(encoding="utf-8"))
            card["default_rank"] = 1 if card["name"] == best else None
            card["default_selection"] = {
                "rule": "highest mean range-invariant PSNR on held-out W2S FOVs 009-010 "
                "(whole images, automatic parameters, this machine's precision), against the "
                "classical default; never FMD",
                "scores_db": {k: round(v, 3) for k, v in scores.items()},
                "command": "python scripts/select_default.py --write",
            }
            path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

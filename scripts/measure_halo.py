#!/usr/bin/env python
"""Measure how far each shipped network really looks, and record it as the tiling halo.

A network's receptive ``reach`` (in its card: 51 pixels for the depth-3 U-Nets) bounds
how far an input pixel can change an output pixel: with a halo of the reach, tiles are
exact by construction. The weights learnt may use less of it, and a smaller halo means
less overlap (less work computed twice). This script finds the smallest halo that keeps
tiling invisible by the **largest error anywhere**, not an average (a 60 dB PSNR
criterion once hid seams of 28 grey levels):

For each model, every W2S held-out field of view (009-010, the noisy inputs: data the
models were never trained on; FMD is test only) is denoised whole and then cut by many
seams (128-pixel tiles, down to 1.5 discarded margins) for increasing halos up to the
reach; the smallest halo whose tiled result differs from the whole one by at most
``--max-error`` grey levels (default 0.1, a tenth of the 1-level target; in units of
1/255 of the whole result's range) on every pixel of every image is written into the
card as ``halo``, with how it was measured. A network that misses the criterion even at
its full reach has an operation over the whole image (channel or transposed attention):
its card gets ``"tileable": false`` and it runs whole planes (up to
``whole_plane_max_pixels``). ``--dry-run`` prints only.

    NAPARI_DENOISE_THREADS=2 python scripts/measure_halo.py [--models unet-fluo ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_denoise import denoise  # noqa: E402
from napari_denoise.engine import methods  # noqa: E402
from napari_denoise.engine.denoise import tiling  # noqa: E402
from napari_denoise.engine.models.store import SHIPPED_DIR  # noqa: E402
from napari_denoise.engine.training.datasets import load_image  # noqa: E402

HALOS = (16, 24, 32, 40, 48, 64)
TILE = 128
FOVS = ("009", "010")
WHOLE = 4096
# The largest plane a network with global attention runs whole, written into its card
# unless the card has a limit already (set from its measured memory: restormer-fluo
# needs about 0.9 GB per megapixel, ridnet-fluo 0.4 GB).
WHOLE_PLANE_MAX_PIXELS = 2048 * 2048


def max_error(name: str, images, wholes, halo: int) -> float:
    """Largest |tiled - whole| over ``images``, in grey levels of a 0-255 range."""
    method = methods.get_method(name)
    patched = dataclasses.replace(method, halo=lambda p, _h=halo: _h, tile=TILE)
    methods.register(patched, replace=True)
    tiling.MIN_TILE_PER_MARGIN, saved = 1.5, tiling.MIN_TILE_PER_MARGIN
    try:
        worst = 0.0
        for img, whole in zip(images, wholes, strict=True):
            tiled = denoise(img, name, tile=TILE, output_dtype="float32")
            span = float(whole.max() - whole.min()) or 1.0
            worst = max(worst, float(np.abs(tiled - whole).max()) * 255.0 / span)
        return worst
    finally:
        tiling.MIN_TILE_PER_MARGIN = saved
        methods.register(method, replace=True)


def find_halo(name: str, reach: int, images, wholes, limit: float):
    """The smallest halo within ``limit`` grey levels (None: no halo is), and the trail.

    First whether any halo will do: the reach, or a little past it (a stated reach may
    miss a small local operation, e.g. the noise map's 5x5 mean); a network with an
    operation over the whole image fails both. Then the smallest below it that does.
    """
    trail = []

    def passes(halo: int) -> bool:
        err = max_error(name, images, wholes, halo)
        trail.append({"halo": halo, "max_error_grey_levels": round(err, 4)})
        print(f"{name:16s} halo {halo:3d}: max |tiled - whole| {err:8.4f} grey levels")
        return err <= limit

    found = reach if passes(reach) else (reach + 16 if passes(reach + 16) else None)
    if found is not None:
        found = next((h for h in HALOS if h < found and passes(h)), found)
    return found, trail


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--max-error", type=float, default=0.1, help="grey levels (of 255)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    folder = args.data / "W2S_8bit_subset" / "images_avg1_8bit"
    images = [load_image(p) for fov in FOVS for p in sorted(folder.glob(f"input_avg1_{fov}_*.tif"))]
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        card = json.loads(path.read_text())
        name = card["name"]
        if args.models and name not in args.models:
            continue
        reach = int(card["reach"])
        # The reference: one tile holds the whole image.
        wholes = [denoise(img, name, tile=WHOLE, output_dtype="float32") for img in images]
        found, trail = find_halo(name, reach, images, wholes, args.max_error)
        verdict = f"halo {found}" if found is not None else "not tileable"
        print(f"{name:16s} reach {reach} -> {verdict}", flush=True)
        if args.dry_run:
            continue
        for key in ("halo", "halo_measured", "halo_basis", "tileable"):
            card.pop(key, None)
        measured = {
            "criterion": f"max |tiled - whole| <= {args.max_error:g} grey levels (of 255), "
            f"{TILE}-pixel tiles down to 1.5 discarded margins",
            "data": f"W2S noisy inputs, FOVs {', '.join(FOVS)} (held out from training)",
            "trail": trail,
            "date": time.strftime("%Y-%m-%d"),
            "command": "python scripts/measure_halo.py",
        }
        if found is None:  # a limit already in the card (set from memory use) stays
            card["tileable"] = False
            card.setdefault("whole_plane_max_pixels", WHOLE_PLANE_MAX_PIXELS)
            card.setdefault("tileable_reason", "no halo up to its reach tiles it exactly")
        else:
            card["halo"] = found
            for key in ("whole_plane_max_pixels", "tileable_reason"):
                card.pop(key, None)
        card["halo_measured"] = measured
        path.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Do tiles show? Every shipped model, tiled at several tile sizes, against one whole pass.

A 1000 x 1000 uint8 mosaic of four real FMD test_mix raw captures (four microscopes,
500 x 500 crops; FMD is used here only to *measure*, never to choose anything) is
denoised by each shipped model once in one tile (the reference) and once per tile size;
the table gives the largest absolute difference in grey levels (uint8 input, float32
output) and the share of pixels off by more than one level. The target is a maximum of
1 level everywhere. ``--write`` replaces the "Tiles against one whole pass" section of
docs/benchmarks.md (between its markers) with the table and the command line.

    NAPARI_DENOISE_THREADS=2 python benchmarks/tile_seams.py [--models ...] [--tiles ...] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_denoise import denoise  # noqa: E402
from napari_denoise.engine.denoise.pipeline import DEFAULT_TILE, _geometry  # noqa: E402
from napari_denoise.engine.denoise.tiling import plan_tiles  # noqa: E402
from napari_denoise.engine.methods import get_method  # noqa: E402
from napari_denoise.engine.models.store import SHIPPED_DIR  # noqa: E402
from napari_denoise.errors import DenoiseError  # noqa: E402

CAPTURES = ("Confocal_MICE_1", "WideField_BPAE_B_1", "TwoPhoton_MICE_1", "Confocal_FISH_1")
TILES = ("default", 16, 128, 256, 512)  # 1024 and up: one tile for the mosaic
WHOLE = 4096  # one tile holds the whole mosaic


def mosaic(data: Path) -> np.ndarray:
    """1000 x 1000 uint8: four 500 x 500 crops of real captures, side by side."""
    from PIL import Image

    crops = [
        np.array(Image.open(data / "FMD_test_mix" / "raw" / f"{name}.png"))[6:506, 6:506]
        for name in CAPTURES
    ]
    return np.block([[crops[0], crops[1]], [crops[2], crops[3]]])


def measure(name: str, image: np.ndarray, tiles) -> list[dict]:
    """Max |tiled - whole| (grey levels) and the share of pixels off by > 1, per tile."""
    t0 = time.perf_counter()
    whole = denoise(image, name, tile=WHOLE, output_dtype="float32")
    rows = [{"tile": "whole", "seconds": time.perf_counter() - t0}]
    for tile in tiles:
        t0 = time.perf_counter()
        try:
            size = None if tile == "default" else int(tile)
            tiled = denoise(image, name, tile=size, output_dtype="float32")
        except DenoiseError as err:
            rows.append({"tile": tile, "refused": str(err).split(".")[0]})
            continue
        err = np.abs(tiled.astype(np.float64) - whole)
        method = get_method(name)
        asked = method.tile or DEFAULT_TILE if size is None else size
        plan = plan_tiles(image.shape, (asked, asked), **_geometry(method, {}, image.shape))
        rows.append(
            {
                "tile": tile,
                "max": float(err.max()),
                "over1": float(np.mean(err > 1.0)),
                "tiles": len(plan),
                "seconds": time.perf_counter() - t0,
            }
        )
    return rows


def table(results: dict[str, list[dict]], tiles) -> str:
    head = "| model | default tile | " + " | ".join(f"tile {t}" for t in tiles) + " |"
    lines = [head, "|" + "---|" * (len(tiles) + 2)]
    for name, rows in results.items():
        method = get_method(name)
        cells = []
        for row in rows[1:]:
            if "refused" in row:
                cells.append("refused")
            else:
                share = f", {100 * row['over1']:.1f}% > 1" if row["over1"] else ""
                cells.append(f"{row['max']:.1e} ({row.get('tiles', '?')} tiles{share})")
        default = method.tile or "whole plane"
        lines.append(f"| {name} | {default} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--tiles", nargs="*", default=list(TILES), help='sizes, or "default"')
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    image = mosaic(args.data)
    names = [p.stem for p in sorted(SHIPPED_DIR.glob("*.json"))]
    results = {}
    for name in names:
        if args.models and name not in args.models:
            continue
        results[name] = measure(name, image, args.tiles)
        for row in results[name]:
            print(name, row, flush=True)
    text = table(results, args.tiles)
    print(text)
    if args.write:
        section = (
            "## Tiles against one whole pass (benchmarks/tile_seams.py)\n\n"
            "Largest absolute difference, in grey levels, between a model's output tiled at "
            "the given tile size and one whole-image pass, on a 1000 x 1000 uint8 mosaic of "
            f"four real FMD raw captures ({', '.join(CAPTURES)}; 500 x 500 crops); in "
            "brackets the number of tiles (a tile smaller than four times the margin it "
            "discards grows to that; a network with global attention runs whole planes) "
            "and the share of pixels off by more than one level. Target: at most 1 "
            "level for every model and tile size. Output float32, CPU, "
            f"{os.environ.get('NAPARI_DENOISE_THREADS', 'all')} torch threads.\n\n"
            f"{text}\n\n"
            "Command: `NAPARI_DENOISE_THREADS=2 python benchmarks/tile_seams.py --write`"
        )
        from report import write_section

        write_section(REPO / "docs" / "benchmarks.md", "tile_seams", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

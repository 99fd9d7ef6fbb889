#!/usr/bin/env python
"""The default, the self-calibrated Gaussian and candidate models on the confocal
validation fields and on W2S FOVs 009-010 (allowed data only; never FMD test_mix).

Confocal: the validation fields of ``scripts/train_shipped.py`` (FMD Confocal_BPAE_B
FOVs 5, 10, 15, 20; no shipped or candidate model trained on them), every one of their
10 single captures against the field's 50-capture average, plain PSNR with data range
255 as FMD is scored. W2S: the 6 held-out pairs, range-invariant PSNR* (as
``scripts/select_default.py``). Every method runs as users get it: ``napari_denoise.denoise``
with automatic parameters. A candidate that is not shipped is read from ``--model-dir``
and given the shipped default's detail-restoration rule (``"detail"`` of its card), so it
runs as it would if it replaced the default. Run::

    python benchmarks/confocal_val.py --model-dir build/zoo-cand --candidates unet-fluo-conf \\
        --out docs/confocal_val.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

CAPTURES = range(10)


def install_candidates(model_dir: Path, names: list[str], into: Path) -> None:
    """Copy each candidate's weights and card into ``into`` with the default's detail rule."""
    zoo = REPO / "src" / "napari_denoise" / "zoo"
    default = json.loads((zoo / "unet-fluo.json").read_text(encoding="utf-8"))
    for name in names:
        card = json.loads((model_dir / f"{name}.json").read_text(encoding="utf-8"))
        for key in ("detail", "halo", "halo_basis"):
            if key in default and key not in card:
                card[key] = default[key]
        card["default_rank"] = None
        shutil.copyfile(model_dir / card["weights"]["file"], into / card["weights"]["file"])
        (into / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model-dir", type=Path, help="folder of candidate cards and weights")
    parser.add_argument("--candidates", nargs="*", default=[], help="candidate model names")
    parser.add_argument("--methods", nargs="*", default=[], help="other methods to score")
    parser.add_argument("--no-w2s", action="store_true", help="skip W2S 009-010")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip the default and the Gaussian"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="confocal-val-"))
    try:
        if args.candidates:
            if args.model_dir is None:
                parser.error("--candidates needs --model-dir")
            install_candidates(args.model_dir, args.candidates, tmp)
        os.environ["NAPARI_DENOISE_MODEL_DIR"] = str(tmp)
        return run(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args) -> int:
    from select_default import held_out, score
    from train_shipped import CONFOCAL_VAL_FOVS, confocal_pairs

    import napari_denoise as nd
    from napari_denoise.engine.methods import default_method
    from napari_denoise.engine.metrics import psnr

    default = default_method().name
    methods = {}
    if not args.no_baselines:
        methods = {f"default ({default}, as shipped)": None, "gaussian (automatic)": "gaussian"}
    methods.update({m: m for m in args.methods})
    methods.update({c: c for c in args.candidates})
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "confocal_fields": list(CONFOCAL_VAL_FOVS),
        "captures": list(CAPTURES),
        "confocal_psnr_db": {},
        "w2s_009_010_psnr_ri_db": {},
    }
    fields = {fov: confocal_pairs(args.data, [fov], CAPTURES) for fov in CONFOCAL_VAL_FOVS}
    results["confocal_psnr_db"]["noisy input"] = {
        str(fov): float(np.mean([psnr(c, z, data_range=255.0) for z, c in pairs]))
        for fov, pairs in fields.items()
    }
    w2s = [] if args.no_w2s else list(held_out(args.data))
    for label, method in methods.items():
        t = time.perf_counter()
        per_field = {}
        for fov, pairs in fields.items():
            per_field[str(fov)] = float(
                np.mean(
                    [
                        psnr(c, nd.denoise(z, method, output_dtype="float32"), data_range=255.0)
                        for z, c in pairs
                    ]
                )
            )
        per_field["mean"] = float(np.mean([per_field[str(f)] for f in fields]))
        results["confocal_psnr_db"][label] = per_field
        if w2s:
            results["w2s_009_010_psnr_ri_db"][label] = score(method or default, w2s)
        w = results["w2s_009_010_psnr_ri_db"].get(label)
        print(
            f"{label:36s} confocal "
            + "  ".join(f"{k} {v:.3f}" for k, v in per_field.items())
            + (f" | W2S* {w:.3f}" if w is not None else "")
            + f" ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    noisy = results["confocal_psnr_db"]["noisy input"]
    noisy["mean"] = float(np.mean(list(noisy.values())))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

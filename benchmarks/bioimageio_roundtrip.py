"""Round trip of every shipped blind model through the bioimage.io format, measured.

For each model: export a package, validate it offline and run ``bioimageio.core``'s
``test_model``, then on the shipped real image (FMD confocal capture, 512 x 512):

- agreement: range-invariant PSNR between ``bioimageio.core``'s prediction (TorchScript
  weights, its own pre-processing, padding and cropping) and napari-denoise's output with
  the original model (the package's output is in normalised units, an affine map of ours);
- the imported package run through napari-denoise's engine against the original model
  (max absolute difference, grey levels) and tiled (tiles just larger than the overlap
  the measured halo needs) against whole;
- speed: best of ``--repeats`` runs, one thread, through our engine (original and
  imported) and through ``bioimageio.core``.

Everything runs with the network blocked (any connection attempt fails at once and is
counted). Prints a Markdown table for docs/benchmarks.md.

    python benchmarks/bioimageio_roundtrip.py [--models unet-fluo ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NAPARI_DENOISE_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

BLIND = ["unet-fluo", "dncnn-fluo", "msred-fluo", "restormer-fluo", "ridnet-fluo"]


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=BLIND)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bmz-bench-"))
    os.environ["NAPARI_DENOISE_MODEL_DIR"] = str(work / "models")

    import torch
    from bioimageio.core import create_prediction_pipeline, predict, test_model
    from bioimageio.spec import load_description, settings

    import napari_denoise as nd
    from napari_denoise.bioimageio.common import block_network, offline_validation, sample_image
    from napari_denoise.engine.metrics import compare

    torch.set_num_threads(1)
    settings.cache_path = work / "cache"
    image = sample_image()
    mp = image.size / 1e6
    rows = []
    with block_network() as attempts:
        for model in args.models:
            t_export, package = best_of(
                lambda m=model: nd.export_model(m, work / f"{m}.zip", overwrite=True), 1
            )
            with offline_validation():
                descr = load_description(package)
            t_test, summary = best_of(lambda p=package: test_model(p), 1)
            t_ours, ours = best_of(lambda m=model: nd.denoise(image, m), args.repeats)
            pp = create_prediction_pipeline(descr, weight_format="torchscript")
            t_core, sample = best_of(
                lambda p=pp: predict(model=p, inputs=image[None, None]), args.repeats
            )
            theirs = sample.members["output"].data.values[0, 0]
            agree = compare(ours, theirs, data_range=float(np.ptp(ours)))["psnr_ri"]
            name = nd.import_model(package, name=f"{model}-bmz", overwrite=True)
            t_imp, imported = best_of(lambda n=name: nd.denoise(image, n), args.repeats)
            halo = nd.get_method(name).halo({})
            tiled = nd.denoise(image, name, tile=2 * halo + 8 + 32)  # many seams
            rows.append(
                f"| {model} | {descr.validation_summary.status}, test_model {summary.status} "
                f"({t_export:.0f} s + {t_test:.0f} s) | {agree:.1f} | "
                f"{np.abs(imported - ours).max():.2g} | {np.abs(tiled - imported).max():.2g} (halo {halo}) | "
                f"{1e3 * t_ours / mp:.0f} | {1e3 * t_imp / mp:.0f} | {1e3 * t_core / mp:.0f} |"
            )
            print(rows[-1], flush=True)
    print()
    print(
        "| model | package: validation (offline), test_model (export + test time) | "
        "core vs ours PSNR* dB | imported vs original, max abs (grey levels) | "
        "imported tiled vs whole, max abs | ours ms/MP | imported, ours ms/MP | "
        "bioimageio.core ms/MP |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nnetwork connection attempts: {len(attempts)}; torch {torch.__version__}, 1 thread")


if __name__ == "__main__":
    main()

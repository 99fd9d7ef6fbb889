"""``napari-denoise bench``: every method on the real data sets, written to docs/benchmarks.md.

* FMD test_mix (Zhang et al. 2019): 48 single raw captures (12 microscope/sample types)
  against their 50-frame averages, data range 255, plain PSNR/SSIM as in the paper.
* W2S subset (Zhou et al. 2020): 30 widefield pairs; each image was stretched to 0-255
  on its own, so only the range-invariant metrics (prediction affinely fitted to the
  ground truth) are meaningful there.

Every number is measured in the run that writes the file; nothing is copied in except
the published anchors, which are labelled as such.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["find_data", "run_bench"]

# Zhang et al. CVPR 2019, Table 2, test_mix, 1 frame (PSNR dB, data range 255).
FMD_ANCHORS = {
    "noisy input (paper)": 27.22,
    "VST+NLM (paper)": 31.25,
    "PURE-LET (paper)": 31.95,
    "VST+BM3D (paper)": 32.71,
    "DnCNN, trained on FMD (paper)": 34.0,
    "Noise2Noise U-Net, trained on FMD (paper)": 35.5,
}
# Written by benchmarks/train_fmd.py beside benchmarks.json; its section is added if present.
TRAINING_JSON = "benchmarks_training.json"
REFERENCE = "bm3d+vst"  # speed reference: VST + BM3D from the bm3d package


@dataclass(frozen=True)
class Variant:
    """A method with fixed parameters, as it appears in the tables."""

    label: str
    method: str
    params: tuple[tuple[str, object], ...] = ()


def find_data(data: str | os.PathLike | None = None) -> Path:
    """The shared real-data folder: ``data``, $NAPARI_DENOISE_SHARED_DATA, or ../shared/data."""
    candidates = [data, os.environ.get("NAPARI_DENOISE_SHARED_DATA")]
    here = Path(__file__).resolve()
    candidates += [Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    candidates += [parent.parent / "shared" / "data" for parent in here.parents]
    for c in candidates:
        if c and (Path(c) / "FMD_test_mix").is_dir():
            return Path(c)
    raise FileNotFoundError(
        "The real data sets were not found; pass --data PATH (the folder holding FMD_test_mix)."
    )


def _variants(names: list[str] | None) -> list[Variant]:
    """Each available 2-D method with its defaults (labelled "+vst" when that is on), plus
    the Gaussian in the stabilised domain and the default model's self-ensemble of 8
    ("+ens8"); ``names`` (labels) restricts the list."""
    from .engine.methods import default_method, list_methods

    default = default_method()
    out = []
    for m in list_methods(include_unavailable=False):
        if m.ndim != 2:  # the benchmark images are single 2-D frames
            continue
        vst = next((p for p in m.params if p.name == "vst"), None)
        out.append(Variant(m.name + ("+vst" if vst and vst.default else ""), m.name))
        if m.name == "gaussian":
            out.append(Variant("gaussian+vst", "gaussian", (("vst", True),)))
        if m.name == default.name and any(p.name == "ensemble" for p in m.params):
            out.append(Variant(m.name + "+ens8", m.name, (("ensemble", 8),)))
    # A method's name selects its variants too, but not the 8x slower self-ensemble.
    return [
        v
        for v in out
        if not names or v.label in names or (v.method in names and not v.label.endswith("+ens8"))
    ]


def _fmd_pairs(root: Path, quick: bool):
    from PIL import Image

    raw = sorted((root / "FMD_test_mix" / "raw").glob("*.png"))
    if quick:
        raw = [p for p in raw if p.stem.endswith("_1")]
    for p in raw:
        kind = p.stem.rsplit("_", 1)[0]
        yield kind, np.array(Image.open(p)), np.array(Image.open(p.parent.parent / "gt" / p.name))


def _w2s_pairs(root: Path, quick: bool):
    import tifffile

    noisy = sorted((root / "W2S_8bit_subset" / "images_avg1_8bit").glob("*.tif"))
    if quick:
        noisy = noisy[::5]
    for p in noisy:
        gt = p.parent.parent / "images_avg400_8bit" / p.name.replace("input_avg1", "target_avg400")
        yield p.stem, tifffile.imread(p), tifffile.imread(gt)


def fmd_brightness(pairs) -> dict:
    """How far each FMD capture's brightness is from its ground truth's, per type.

    A capture is regressed on its ground truth (``raw ~ a * gt + b``): noise has zero mean,
    so ``a`` is the capture's brightness relative to the 50-frame average (laser power and
    bleaching vary between captures). A perfect denoiser returns the noise-free scene at
    the capture's own brightness, ``a * gt + b``, and no better can be known from one
    frame: its PSNR against the ground truth bounds every method's (plain PSNR only;
    range-invariant PSNR* fits the brightness away).
    """
    from .engine.metrics import affine_fit, psnr

    rows = defaultdict(list)
    for kind, noisy, gt in pairs:
        g = np.asarray(gt, np.float64)
        a, b = affine_fit(noisy, g)  # a * gt + b ~ the capture
        scene = np.clip(a * g + b, 0, 255)
        rows[kind].append({"slope": a, "bound_psnr": psnr(g, scene, data_range=255.0)})
    out = {
        kind: {
            "slope_min": min(r["slope"] for r in v),
            "slope_max": max(r["slope"] for r in v),
            "bound_psnr": float(np.mean([r["bound_psnr"] for r in v])),
            "bound_psnr_min": min(r["bound_psnr"] for r in v),
        }
        for kind, v in sorted(rows.items())
    }
    out["all"] = {"bound_psnr": float(np.mean([r["bound_psnr"] for v in rows.values() for r in v]))}
    return out


def _run(variant: Variant, noisy: np.ndarray) -> tuple[np.ndarray, float]:
    from .engine.denoise.pipeline import denoise_iter, drain

    t = time.perf_counter()
    result = drain(denoise_iter(noisy, variant.method, params=dict(variant.params)))
    return result.data, time.perf_counter() - t


def run_bench(
    *,
    out: Path,
    quick: bool = False,
    methods: list[str] | None = None,
    data=None,
    update: bool = False,
    log=print,
) -> dict:
    """Run the benchmark and write ``out`` (Markdown) plus ``out`` with suffix .json.

    With ``update=True`` the rows of the methods run now replace or join those already in
    ``out``'s JSON (the other rows, and the date of each run, are kept and listed).
    """
    from .engine.metrics import compare

    root = find_data(data)
    variants = _variants(methods)
    fmd = list(_fmd_pairs(root, quick))
    w2s = list(_w2s_pairs(root, quick))
    results: dict = {"fmd": {}, "w2s": {}, "speed_ms_per_mp": {}}
    previous = Path(out).with_suffix(".json")
    if update and previous.is_file():
        results = json.loads(previous.read_text())
        if results.get("meta", {}).get("quick") != quick:
            raise ValueError("--update must use the same --quick setting as the saved run")

    noisy_rows = defaultdict(list)
    for kind, noisy, gt in fmd:
        noisy_rows[kind].append(compare(gt, noisy, data_range=255))
    results["fmd"]["noisy input"] = _summarise(noisy_rows)
    results["fmd_brightness"] = fmd_brightness(fmd)
    results["w2s"]["noisy input"] = _mean([compare(gt, n, data_range=255) for _, n, gt in w2s])

    for v in variants:
        per_kind = defaultdict(list)
        seconds = megapixels = 0.0
        for kind, noisy, gt in fmd:
            pred, dt = _run(v, noisy)
            per_kind[kind].append(compare(gt, pred, data_range=255))
            seconds += dt
            megapixels += noisy.size / 1e6
        results["fmd"][v.label] = _summarise(per_kind)
        w = []
        for _, noisy, gt in w2s:
            pred, dt = _run(v, noisy)
            w.append(compare(gt, pred, data_range=255))
            seconds += dt
            megapixels += noisy.size / 1e6
        results["w2s"][v.label] = _mean(w)
        results["speed_ms_per_mp"][v.label] = 1000 * seconds / megapixels
        log(
            f"{v.label:14s} FMD {results['fmd'][v.label]['all']['psnr']:.2f} dB  "
            f"W2S* {results['w2s'][v.label]['psnr_ri']:.2f} dB  "
            f"{results['speed_ms_per_mp'][v.label]:.0f} ms/MP"
        )

    models = [v for v in variants if _is_model(v.method)]
    if models:
        peak = {"fp32": matmul_peak_gflops(), "bf16": matmul_peak_gflops(dtype="bfloat16")}
        for v in models:
            results.setdefault("model_speed", {})[v.label] = model_speed(v, peak=peak)
            s = results["model_speed"][v.label]
            log(
                f"{v.label:14s} 2048x2048: fp32 {s['ms_per_mp_fp32']:.0f} ms/MP, "
                f"bf16 {s['ms_per_mp_bf16']:.0f} ms/MP; chosen {s['precision']}: "
                f"{s['gflops']:.1f} GFLOP/s = {100 * s['peak_fraction']:.0f}% of matmul peak"
            )

    runs = results.get("meta", {}).get("runs", [])
    runs.append({"date": time.strftime("%Y-%m-%d %H:%M"), "methods": [v.label for v in variants]})
    results["meta"] = {
        "runs": runs,
        "quick": quick,
        "fmd_images": len(fmd),
        "w2s_images": len(w2s),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from .io import write_json

    write_json(out.with_suffix(".json"), results)
    report = _report_module(out)
    if report is None:
        log(
            f"wrote {out.with_suffix('.json')} (the Markdown report is benchmarks/report.py, in a checkout)"
        )
    else:
        report.rewrite_markdown(out.with_suffix(".json"))
        log(f"wrote {out}")
    return results


def _report_module(out: Path):
    """``benchmarks/report.py`` of the checkout that holds ``out`` (or this package)."""
    import importlib.util

    for root in (Path(out).resolve().parents[1], Path(__file__).resolve().parents[2]):
        path = root / "benchmarks" / "report.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("napari_denoise_bench_report", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


def rewrite_markdown(json_path: Path) -> None:
    """Rewrite the Markdown beside ``json_path`` with ``benchmarks/report.py``."""
    report = _report_module(Path(json_path).with_suffix(".md"))
    if report is None:
        raise FileNotFoundError("benchmarks/report.py (the report) is only in a checkout")
    report.rewrite_markdown(Path(json_path))


def _is_model(method: str) -> bool:
    from .engine.methods import get_method

    return get_method(method).kind == "model"


def matmul_peak_gflops(size: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """This machine's matrix-multiply rate (GFLOP/s, best of ``repeats``), torch, in
    ``dtype`` (``"float32"`` or ``"bfloat16"``)."""
    import torch

    from .engine.models.inference import set_threads

    set_threads()
    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


SPEED_REPEATS = 5  # the best of several runs: this shared machine's runs spread up to 1.7x


def model_speed(
    variant: Variant, *, peak: float | dict, side: int = 2048, repeats: int = SPEED_REPEATS
) -> dict:
    """A network's speed on one ``side`` x ``side`` frame through the whole engine.

    Timed in each CPU precision (``NAPARI_DENOISE_PRECISION`` set to fp32, then bf16):
    ms per megapixel (best of ``repeats``, after a warm-up on a small image) both ways,
    the precision this machine's probe chooses (:func:`~.engine.models.inference.cpu_precision`)
    and, for that choice, MP/s, the network's multiply-accumulates per pixel, the achieved
    GFLOP/s (2 FLOPs per MAC, the convolutions only) and that rate as a fraction of the
    matmul ``peak`` in the same precision (``{"fp32": ..., "bf16": ...}``).
    """
    from .engine.methods import get_method
    from .engine.models import macs_per_pixel
    from .engine.models.inference import PRECISION_ENV, cpu_precision, loaded

    peaks = peak if isinstance(peak, dict) else {"fp32": peak, "bf16": peak}
    method = get_method(variant.method)
    model, card = loaded(method.model.card, "cpu")
    macs = macs_per_pixel(model) * int(dict(variant.params).get("ensemble", 1))
    rng = np.random.default_rng(0)
    frame = rng.poisson(50.0 + 40.0 * np.sin(np.arange(side) / 9.0)[:, None], (side, side))
    frame = frame.astype(np.float32)
    mp = side * side / 1e6
    before = os.environ.get(PRECISION_ENV)
    ms: dict[str, float] = {}
    try:
        for precision in ("fp32", "bf16"):
            os.environ[PRECISION_ENV] = precision
            _run(variant, frame[:256, :256])  # load the weights, set up the kernels
            ms[precision] = 1000 * min(_run(variant, frame)[1] for _ in range(repeats)) / mp
        os.environ[PRECISION_ENV] = "auto"
        chosen = cpu_precision(model, card["weights"]["sha256"])
    finally:
        if before is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = before
    gflops = 2 * macs * 1e6 / (ms[chosen] / 1000) / 1e9
    return {
        "side": side,
        "precision": chosen,
        "ms_per_mp": ms[chosen],
        "ms_per_mp_fp32": ms["fp32"],
        "ms_per_mp_bf16": ms["bf16"],
        "megapixels_per_s": 1000 / ms[chosen],
        "macs_per_pixel": macs,
        "gflops": gflops,
        "peak_gflops": peaks[chosen],
        "peak_gflops_fp32": peaks["fp32"],
        "peak_gflops_bf16": peaks["bf16"],
        "peak_fraction": gflops / peaks[chosen],
        "repeats": repeats,
    }


def _mean(rows: list[dict]) -> dict:
    keys = ("psnr", "ssim", "psnr_ri", "ssim_ri")
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"n": len(rows)}


def _summarise(per_kind: dict[str, list[dict]]) -> dict:
    summary = {kind: _mean(rows) for kind, rows in sorted(per_kind.items())}
    summary["all"] = _mean([r for rows in per_kind.values() for r in rows])
    return summary


def main() -> None:  # pragma: no cover - convenience for `python -m napari_denoise.bench`
    run_bench(out=Path("docs/benchmarks.md"))


if __name__ == "__main__":  # pragma: no cover
    main()

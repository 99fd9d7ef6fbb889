#!/usr/bin/env python
"""The default network against the self-calibrated Gaussian, per image, without ground
truth: Stein's unbiased risk estimate (SURE) of each, on allowed data only (never FMD).

For every image: the default's output as shipped (network + its detail put back, chosen
by SURE), the self-calibrated Gaussian, and the terms from which SURE of the blend
``a * default + (1 - a) * gaussian`` follows for any ``a`` and any scale ``k`` of the
estimated noise (:func:`~napari_denoise.engine.denoise.selfcheck.blend_terms`), with the
true squared errors against the ground truth. Rules are then compared offline: which
``(margin, k)`` never lets the result fall clearly below the better of the two.

Sets (all allowed):

- confocal: FMD_Confocal_BPAE_B_train validation fields 5, 10, 15, 20, all 10 captures
  (plain PSNR, data range 255, as FMD is scored);
- W2S FOVs 001-010 real pairs (ground truth fitted to the noisy image's scale);
- the hela proxy and the SNR ladder of ``benchmarks/detail_default.py``;
- mitochondria-like: thin winding tubules (hela channel 1, which is mitochondria, and
  drawn tubules) under confocal-like photon noise (3-12 grey levels per photon);
- smooth: broad blobs under strong noise (where a linear filter is near optimal);
- BSD: natural images with Poisson-Gaussian noise.

Run::

    python benchmarks/gauss_fallback.py --out build/gauss_fallback.json
    python benchmarks/gauss_fallback.py --rows build/gauss_fallback.json   # rules only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "scripts"))

MARGINS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2)
SCALES = (1.0, 1.05, 1.1, 1.15)


# --- images ---------------------------------------------------------------------------------


def confocal_images(data: Path):
    from train_shipped import CONFOCAL_VAL_FOVS, confocal_pairs

    for fov in CONFOCAL_VAL_FOVS:
        for k, (noisy, clean) in enumerate(confocal_pairs(data, [fov], range(10))):
            yield f"conf{fov:02d}_{k}", noisy.astype(np.float32), clean.astype(np.float64), 255.0


def _tubules(rng, shape=(512, 512), n=70):
    """Thin winding tubules (mitochondria-like network), 0..1."""
    from scipy.ndimage import gaussian_filter

    img = np.zeros(shape)
    for _ in range(n):
        p = rng.uniform(40, shape[0] - 40, 2)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.uniform(40, 200))):
            angle += rng.normal(0, 0.15)
            p = p + 0.7 * np.array([np.sin(angle), np.cos(angle)])
            i, j = int(p[0]), int(p[1])
            if 0 <= i < shape[0] and 0 <= j < shape[1]:
                img[i, j] += 1.0
    cells = gaussian_filter((rng.uniform(size=shape) < 0.0004).astype(float), 40)
    img = gaussian_filter(img, 1.1) + 0.3 * cells / max(cells.max(), 1e-9) * img.max() * 0.02
    return np.clip(img / np.percentile(img, 99.9), 0, 1)


def _photon_noise(rng, clean, gain, read=0.5):
    noisy = gain * rng.poisson(np.maximum(clean, 0) / gain) + rng.normal(0, read, clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.float32)


def mito_images(data: Path):
    import finetune_proxy

    rng = np.random.default_rng(23)
    hela1 = finetune_proxy._hela(data)[..., 1].astype(np.float64)
    lo, hi = np.percentile(hela1, (0.5, 99.9))
    structures = {
        "hela1": np.clip((hela1 - lo) / (hi - lo), 0, 1),
        "tub-a": _tubules(np.random.default_rng(1)),
        "tub-b": _tubules(np.random.default_rng(2), n=140),
    }
    for name, signal in structures.items():
        for peak, gain in ((60, 3.0), (120, 6.0), (200, 12.0)):
            clean = 4.0 + peak * signal
            yield f"mito-{name}-g{gain:g}-p{peak}", _photon_noise(rng, clean, gain), clean, None


def pmt_images(data: Path):
    """Confocal photomultiplier-like noise: Poisson photons, each of a gamma-distributed
    amplitude (excess noise), on hela channels and drawn tubules."""
    import finetune_proxy

    rng = np.random.default_rng(31)
    hela = finetune_proxy._hela(data).astype(np.float64)
    structures = {f"hela{c}": hela[..., c] for c in range(3)}
    structures["tub-a"] = _tubules(np.random.default_rng(1))
    for name, image in structures.items():
        lo, hi = np.percentile(image, (0.5, 99.9))
        signal = np.clip((image - lo) / (hi - lo), 0, 1)
        for gain, shape in ((4.0, 2.0), (10.0, 1.0)):
            clean = 5.0 + 150.0 * signal
            photons = rng.poisson(clean / gain)
            amp = rng.gamma(np.maximum(photons, 1) * shape, gain / shape) * (photons > 0)
            noisy = np.clip(np.round(amp + rng.normal(0, 0.5, clean.shape)), 0, 255)
            yield f"pmt-{name}-g{gain:g}-k{shape:g}", noisy.astype(np.float32), clean, None


def smooth_images():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    for k, (photons, width) in enumerate(
        ((5, 25), (10, 40), (3, 60), (20, 25), (50, 25), (200, 25), (30, 12), (100, 12), (1000, 40))
    ):
        seeds = (rng.uniform(size=(512, 512)) < 0.0006).astype(float)
        s = gaussian_filter(seeds, width)
        s = s / s.max()
        clean = 20 + 200 * s
        gain = 200.0 / photons
        yield f"smooth{k}-p{photons}", _photon_noise(rng, clean, gain, read=1.0), clean, None


def bsd_images(data: Path):
    from PIL import Image

    rng = np.random.default_rng(9)
    files = sorted((data / "BSD_Train400_natural" / "Train400").glob("*.png"))[::50]
    for path in files:
        image = np.array(Image.open(path)).astype(np.float64)
        for photons in (20, 200):
            clean = 10 + 0.9 * image
            gain = 240.0 / photons
            noisy = _photon_noise(rng, clean, gain, read=1.0)
            yield f"bsd-{path.stem}-p{photons}", noisy, clean, None


def all_images(data: Path, groups):
    from detail_default import synthetic
    from selfcheck_agreement import hela_images, matched, w2s_images

    if "confocal" in groups:
        yield from confocal_images(data)
    if "w2s" in groups:
        for name, noisy, gt in w2s_images(data, range(1, 11)):
            yield name, noisy, matched(gt, noisy), None
    if "hela" in groups:
        for name, noisy, gt in hela_images(data):
            yield name, noisy, gt, None
    if "ladder" in groups:
        for name, noisy, gt in synthetic(data):
            yield f"ladder-{name}", noisy, gt, None
    if "mito" in groups:
        yield from mito_images(data)
    if "smooth" in groups:
        yield from smooth_images()
    if "pmt" in groups:
        yield from pmt_images(data)
    if "bsd" in groups:
        yield from bsd_images(data)


def group_of(name: str) -> str:
    for prefix, group in (
        ("conf", "confocal val"),
        ("w2s", "W2S 001-010"),
        ("hela", "hela proxy"),
        ("ladder", "ladder"),
        ("mito", "mito-like"),
        ("smooth", "smooth"),
        ("pmt", "PMT-like"),
        ("bsd", "BSD"),
    ):
        if name.startswith(prefix):
            return group
    return "other"


# --- measurement ----------------------------------------------------------------------------


def terms_row(name, noisy, gt, peak, method) -> dict:
    from napari_denoise.engine.denoise.pipeline import choose_params
    from napari_denoise.engine.denoise.selfcheck import (
        EPSILON,
        detail_choice,
        estimate_noise_covariance,
        put_back,
    )
    from napari_denoise.engine.denoise.selfcheck import _trace_of_smoothing as trace_of_smoothing
    from napari_denoise.engine.methods import get_method

    m = get_method(method)
    base = {p.name: p.default for p in m.params}
    base["detail"] = 0.0
    for key in ("gaussian_share", "gaussian_sigma"):
        if key in base:
            base[key] = 1.0 if key == "gaussian_share" else None
    params, _ = choose_params(m, base, [noisy])
    fixed = {k: v for k, v in params.items() if k not in ("detail", "detail_width")}
    fixed.pop("gaussian_share", None)
    fixed.pop("gaussian_sigma", None)

    def net(im):
        return m.fn(im, detail=0.0, **fixed)

    y = noisy.astype(np.float64)
    noise = estimate_noise_covariance(noisy)
    z = noise.sample(np.random.default_rng(0))
    h = np.asarray(net(noisy), np.float64)
    moved = np.asarray(net((noisy + EPSILON * z).astype(np.float32)), np.float64)

    def cached(im):
        return moved

    card_rule = m.model and __import__("json").loads(Path(m.model.card).read_text())["detail"]
    widths = tuple(card_rule["widths"])
    alpha, width = detail_choice(
        noisy, cached, result=h, noise=noise, widths=widths, margin=card_rule["margin"]
    )
    from napari_denoise.engine.denoise.selfcheck import smooth

    f = np.asarray(put_back(h, noisy, alpha, width), np.float64)
    response = (moved - h) / EPSILON
    div_h = float(np.sum(z * response))
    t = trace_of_smoothing(noise, width) - float(np.sum(smooth(z, width) * response))
    div_f = div_h + alpha * t
    gm = get_method("gaussian")
    gp, _ = choose_params(gm, {p.name: p.default for p in gm.params}, [noisy])
    sigma = float(gp["sigma"])
    g = np.asarray(gm.fn(noisy, sigma=sigma), np.float64)
    div_g = trace_of_smoothing(noise, sigma)
    n = y.size
    peak = float(np.ptp(gt)) if peak is None else peak
    d = f - g
    return {
        "image": name,
        "peak": peak,
        "V": float(np.sum(noise.variance)) / n,
        "Rf": float(np.sum((f - y) ** 2)) / n,
        "Rg": float(np.sum((g - y) ** 2)) / n,
        "Df": div_f / n,
        "Dg": div_g / n,
        "dd": float(np.sum(d * d)) / n,
        "dgy": float(np.sum(d * (g - y))) / n,
        "Ef": float(np.mean((f - gt) ** 2)),
        "Eg": float(np.mean((g - gt) ** 2)),
        "Efg": float(np.mean((f - gt) * (g - gt))),
        "En": float(np.mean((y - gt) ** 2)),
        "alpha": alpha,
        "width": width,
        "sigma": sigma,
    }


# --- rules (offline) ------------------------------------------------------------------------


def db(peak, mse):
    return float(10 * np.log10(peak**2 / max(mse, 1e-12)))


def true_mse(r, a):
    return a * a * r["Ef"] + (1 - a) ** 2 * r["Eg"] + 2 * a * (1 - a) * r["Efg"]


def sure_gain(r, k):
    """SURE(default) - SURE(gaussian) per pixel, in units of the noise variance."""
    return (r["Rf"] - r["Rg"] + 2 * k * (r["Df"] - r["Dg"])) / r["V"]


def best_share(r, k):
    """The share of the default in the SURE-optimal blend, and SURE(default) - SURE(blend)
    in units of the noise variance."""
    lin = r["dgy"] + k * (r["Df"] - r["Dg"])
    a = 1.0 if r["dd"] <= 0 else float(np.clip(-lin / r["dd"], 0.0, 1.0))
    sure_f = r["dd"] + 2 * lin  # SURE(a=1) - SURE(gaussian)
    sure_a = a * a * r["dd"] + 2 * a * lin
    return a, (sure_f - sure_a) / r["V"]


def rule_share(r, kind, margin, k):
    if kind == "switch":
        return 0.0 if sure_gain(r, k) > margin else 1.0
    a, gain = best_share(r, k)
    return a if gain > margin else 1.0


def evaluate(rows, kind, margin, k):
    out = {}
    for r in rows:
        a = rule_share(r, kind, margin, k)
        out[r["image"]] = (a, db(r["peak"], true_mse(r, a)))
    return out


def table(rows):
    groups = sorted({group_of(r["image"]) for r in rows})
    lines = []
    head = "| rule | " + " | ".join(groups) + " | worst vs gauss | worst vs default | switched |"
    lines += [head, "|---|" + "---:|" * (len(groups) + 3)]

    def line(label, psnr_of):
        cells = []
        for grp in groups:
            rs = [r for r in rows if group_of(r["image"]) == grp]
            cells.append(f"{np.mean([psnr_of(r) for r in rs]):.3f}")
        return cells

    net = {r["image"]: db(r["peak"], r["Ef"]) for r in rows}
    gau = {r["image"]: db(r["peak"], r["Eg"]) for r in rows}
    lines.append("| default | " + " | ".join(line("", lambda r: net[r["image"]])) + " | | | |")
    lines.append("| gaussian | " + " | ".join(line("", lambda r: gau[r["image"]])) + " | | | |")
    orc = {
        r["image"]: max(db(r["peak"], true_mse(r, a)) for a in np.linspace(0, 1, 101)) for r in rows
    }
    lines.append("| mix oracle | " + " | ".join(line("", lambda r: orc[r["image"]])) + " | | | |")
    for kind in ("switch", "blend"):
        for k in SCALES:
            for margin in MARGINS:
                ev = evaluate(rows, kind, margin, k)
                worst_g = min(ev[i][1] - gau[i] for i in ev)
                worst_n = min(ev[i][1] - net[i] for i in ev)
                moved = sum(ev[i][0] < 1 for i in ev)
                lines.append(
                    f"| {kind} k={k:g} m={margin:g} | "
                    + " | ".join(line("", lambda r: ev[r["image"]][1]))
                    + f" | {worst_g:+.2f} | {worst_n:+.2f} | {moved} |"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--method", default="unet-fluo")
    parser.add_argument(
        "--groups",
        nargs="*",
        default=["confocal", "w2s", "hela", "ladder", "mito", "smooth", "bsd"],
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rows", type=Path, help="evaluate the rules on a saved run")
    args = parser.parse_args(argv)
    if args.rows:
        rows = json.loads(args.rows.read_text())["rows"]
        print(table(rows))
        return 0
    rows = []
    for name, noisy, gt, peak in all_images(args.data, set(args.groups)):
        t = time.perf_counter()
        r = terms_row(name, noisy, gt, peak, args.method)
        rows.append(r)
        a, gain = best_share(r, 1.0)
        print(
            f"{name:24s} default {db(r['peak'], r['Ef']):.2f} gauss {db(r['peak'], r['Eg']):.2f}"
            f" | SURE f-g {sure_gain(r, 1.0):+.3f} V (true {(r['Ef'] - r['Eg']) / r['V']:+.3f})"
            f" | blend a={a:.2f} gain {gain:.3f} V -> {db(r['peak'], true_mse(r, a)):.2f}"
            f" ({time.perf_counter() - t:.1f} s)",
            flush=True,
        )
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

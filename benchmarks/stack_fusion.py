"""Stacks denoised with their neighbours by the default (issue 24): fusion + the U-Net.

The default model (``unet-fluo``) fuses each plane of a time-lapse or z-stack with the
parts of up to 6 neighbouring planes that match it (engine/denoise/fusion.py) before the
network sees it. This measures it against the same model frame by frame
(``neighbours="off"``), in the same process, on real data:

- ``val`` (allowed data; the fusion's thresholds were chosen here): FMD Confocal_BPAE_B
  training fields 5, 10, 15, 20 (held out of every training), their 10 real captures as a
  time series, still, with integer drift of 1, 2 and 4 px/frame, with a cell-sized region
  moving on its own, and with a cut to another field after frame 5; W2S FOVs 009-010 (the
  three channels' clean images, central 256 x 256) as z-stacks (defocus 0.6 and 1.2 px per
  plane) and with sub-pixel jitter, under synthetic Poisson-Gaussian noise.
- ``fmd`` (TEST ONLY, run once for the fixed design): FMD test_mix as 12 real 4-frame
  stacks (captures 1-4 of each type), with the mean of the 4 + Gaussian and the default
  on the mean of the 4 for reference.
- ``motion``: the same 12 stacks with drift of 1, 2 and 4 px/frame and a region moving on
  its own (benchmarks/stack_fmd.py's constructions: integer, the real noise never
  interpolated).
- ``timelapse`` and ``z``: the cancer-cell time-lapse and the bead z-stack as truth under
  synthetic noise; a W2S z-stack made by defocus.
- ``seams``: tiled = whole, for several tile sizes.
- ``speed``: a 10-plane 512 x 512 stack, on against off, alternating, best of 3; megapixels
  of stack per second.

Run: ``python benchmarks/stack_fusion.py [--parts val fmd ...]``; each part is cached in
build/stack_fusion/<part>.json. Writes docs/benchmarks_stack_fusion.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from stack_fmd import (  # noqa: E402
    DRIFTS,
    REGION_RADIUS,
    REGION_SPEED,
    TYPES,
    apply_region,
    drifted,
    fmd_stack,
    moving_region,
    part_timelapse,
    part_z,
)

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.metrics import psnr  # noqa: E402
from napari_denoise.engine.training.datasets import load_image  # noqa: E402

MODEL = "unet-fluo"
PARTS = ("val", "val4", "fmd", "motion", "timelapse", "z", "seams", "speed")
VAL_FIELDS = (5, 10, 15, 20)
CACHE = REPO / "build" / "stack_fusion"


def scores(truths, preds, data_range) -> list[float]:
    return [float(psnr(t, p, data_range=data_range)) for t, p in zip(truths, preds, strict=True)]


def on_off(stack, truths, data_range, *, frames=None, extra=False) -> dict:
    """Mean PSNR per frame with the neighbours on and off (only ``frames`` scored, if given)."""
    stack = np.asarray(stack)
    keep = list(range(len(stack))) if frames is None else list(frames)
    row = {}
    for mode in ("off", "on"):
        out = nd.denoise(stack, MODEL, axes="TYX", output_dtype="float32", neighbours=mode)
        row[mode] = float(np.mean(scores(truths[keep], np.asarray(out)[keep], data_range)))
    row["noisy"] = float(
        np.mean(scores(truths[keep], np.asarray(stack, np.float32)[keep], data_range))
    )
    if extra:
        mean = np.mean(np.asarray(stack, np.float32), axis=0)
        for name, method in (("mean_gaussian", "gaussian"), ("mean_unet", MODEL)):
            out = np.asarray(nd.denoise(mean, method, output_dtype="float32"))
            row[name] = float(np.mean(scores(truths[keep], [out] * len(keep), data_range)))
    row["gain"] = row["on"] - row["off"]
    return {k: round(v, 3) for k, v in row.items()}


# --- validation (allowed data) --------------------------------------------------------------


def confocal_field(data: Path, f: int) -> tuple[np.ndarray, np.ndarray]:
    root = data / "FMD_Confocal_BPAE_B_train"
    caps = sorted((root / "raw" / str(f)).glob("*.png"))[:10]
    return np.stack([load_image(p) for p in caps]).astype(np.uint8), load_image(
        root / "gt" / str(f) / "avg50.png"
    ).astype(np.float32)


def part_val(data: Path):
    for f in VAL_FIELDS:
        frames, gt = confocal_field(data, f)
        yield f"confocal/field{f}/still", (frames, np.stack([gt] * 10), 255.0, None)
        for d in DRIFTS:
            st, crops = drifted(frames, d, 1)
            yield f"confocal/field{f}/drift{d}", (st, np.stack([gt[c] for c in crops]), 255.0, None)
        st, how = moving_region(frames, REGION_RADIUS, REGION_SPEED, seed=f)
        yield f"confocal/field{f}/region", (st, apply_region(gt, how), 255.0, None)
        other, _ = confocal_field(data, VAL_FIELDS[(VAL_FIELDS.index(f) + 1) % len(VAL_FIELDS)])
        cut = frames.copy()
        cut[5:] = other[5:]
        # scored on the frames of this field only (the others' truth is another field)
        yield f"confocal/field{f}/cut", (cut, np.stack([gt] * 10), 255.0, range(5))
        # a lamp's flicker: each capture's brightness above black off by up to 8 %
        gains = np.random.default_rng(f).uniform(0.92, 1.08, len(frames))[:, None, None]
        flicker = (frames.astype(np.float32) - 3.0) * gains.astype(np.float32) + 3.0
        truth = (gt[None] - 3.0) * gains.astype(np.float32) + 3.0  # each frame's own
        yield f"confocal/field{f}/flicker", (flicker, truth, 255.0, None)
    yield from synthetic_val(data)
    yield from synthetic_motion_val(data)
    yield from correlated_val(data)
    yield from still_val(data)


def still_val(data: Path):
    """Still 4-frame stacks (as FMD test_mix's) of W2S clean images (FOVs 009-010, central
    256 x 256) under synthetic noise: Poisson at 20 and 200 photons at 255 plus Gaussian
    read noise of 2 grey levels, and Poisson at 60 photons smoothed by a Gaussian of 0.5
    px (mild correlation, below what ``noise_is_correlated`` calls correlated) brought back
    to its variance. Added in the fourth run: the fitted noise model understated such
    noise by 10-40% on some images and the fusion kept too few neighbours."""

    rng = np.random.default_rng(11)
    for fov in (9, 10):
        for ch in (0, 1, 2):
            img = w2s_clean(data, fov, ch)[128:384, 128:384]
            for name, noisy in (
                ("still20", lambda c: poisson_read(rng, c, 20.0)),
                ("still200", lambda c: poisson_read(rng, c, 200.0)),
                ("still-mild-correlation", lambda c: smoothed_poisson(rng, c, 60.0, 0.5)),
            ):
                stack = np.stack([noisy(img) for _ in range(4)])
                yield f"w2s/fov{fov:03d}_{ch}/{name}", (stack, np.stack([img] * 4), 255.0, None)


def w2s_clean(data: Path, fov: int, ch: int) -> np.ndarray:
    """A W2S ground truth (400-frame average, 512 x 512, 0-255) as float32."""
    root = data / "W2S_8bit_subset" / "images_avg400_8bit"
    return load_image(root / f"target_avg400_{fov:03d}_{ch}.tif").astype(np.float32)


def poisson(rng, clean: np.ndarray, photons: float) -> np.ndarray:
    """``clean`` (0-255) under Poisson noise of ``photons`` at 255."""
    return rng.poisson(np.clip(clean, 0, None) / 255 * photons) / photons * 255


def poisson_read(rng, clean: np.ndarray, photons: float) -> np.ndarray:
    """:func:`poisson` plus Gaussian read noise of 2 grey levels, float32."""
    return (poisson(rng, clean, photons) + rng.normal(0, 2, clean.shape)).astype(np.float32)


def smoothed_poisson(rng, clean: np.ndarray, photons: float, width: float) -> np.ndarray:
    """``clean`` (0-255) under Poisson noise of ``photons`` at 255, the noise smoothed by a
    Gaussian of ``width`` px (shared between neighbouring pixels) and brought back to its
    variance."""
    from scipy.ndimage import gaussian_filter

    n = poisson(rng, clean, photons) - clean
    m = gaussian_filter(n, width)
    return (clean + m * (np.std(n) / np.std(m))).astype(np.float32)


def part_val4(data: Path):
    """The held-out confocal fields as 4-frame still stacks (captures 0-3), as FMD
    test_mix's: how far the default with neighbours is from the plain mean of the 4
    frames + the network, the most a fusion can give on a still sample."""
    for f in VAL_FIELDS:
        frames, gt = confocal_field(data, f)
        yield f"confocal/field{f}/4frames", (frames[:4], np.stack([gt] * 4), 255.0, None)


def correlated_val(data: Path):
    """Noise shared between neighbouring pixels (as a camera image that was binned or
    smoothed; FMD's widefield captures measure so from the noisy image alone): W2S FOVs
    009-010 (clean images, central 256 x 256) as 7-frame stacks, still, drifting 2 px per
    frame, as a z-stack (defocus 0.6 px per plane) and with a cut to another channel after
    frame 4, under Poisson noise (60 photons at 255) smoothed by a Gaussian of 1 px and
    brought back to its variance."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(7)

    def noisy(clean):
        return smoothed_poisson(rng, clean, 60.0, 1.0)

    for fov in (9, 10):
        for ch in (0, 1, 2):
            full = w2s_clean(data, fov, ch)
            img = full[128:384, 128:384]
            other = w2s_clean(data, fov, (ch + 1) % 3)[128:384, 128:384]
            cases = {
                "still": np.stack([img] * 7),
                "drift2": np.stack([full[122 + 2 * t : 378 + 2 * t, 128:384] for t in range(7)]),
                "z0.6": np.stack(
                    [gaussian_filter(img, 0.6 * abs(z - 3)) if z != 3 else img for z in range(7)]
                ),
            }
            for name, clean in cases.items():
                stack = np.stack([noisy(c) for c in clean])
                yield f"correlated/fov{fov:03d}_{ch}/{name}", (stack, clean, 255.0, None)
            clean = np.stack([img] * 4 + [other] * 3)
            stack = np.stack([noisy(c) for c in clean])
            # scored on the frames of this channel only
            yield f"correlated/fov{fov:03d}_{ch}/cut", (stack, clean, 255.0, range(4))


def synthetic_motion_val(data: Path):
    """Low-light time-lapses with cells moving on their own (W2S clean images, three disks
    pasted moving 2-4 px/frame) and a bead z-stack (points under a PSF that widens away
    from focus), under synthetic Poisson noise: the checks' kinds of stack, on allowed or
    made-up images."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:256, :256]
    for fov in (9, 10):
        img = w2s_clean(data, fov, 1)
        img = img[128:384, 128:384] / 255.0
        cells = [
            (rng.uniform(60, 196, 2), rng.uniform(0, 2 * np.pi), rng.uniform(2, 4))
            for _ in range(3)
        ]
        frames = []
        for t in range(9):
            frame = img.copy()
            for (cy, cx), angle, speed in cells:
                dy, dx = speed * (t - 4) * np.sin(angle), speed * (t - 4) * np.cos(angle)
                mask = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= 18**2
                frame[mask] = np.roll(img, (round(dy), round(dx)), axis=(0, 1))[mask] + 0.3
            frames.append(gaussian_filter(frame, 0.7))
        clean = np.stack(frames)
        for photons in (20.0, 100.0):
            noisy = (rng.poisson(clean * photons) / photons).astype(np.float32)
            yield (
                f"w2s/fov{fov:03d}_cells/{photons:g}photons",
                (noisy, clean, float(clean.max()), None),
            )
    beads = np.zeros((256, 256), np.float32)
    spots = rng.integers(8, 248, (60, 2))
    beads[spots[:, 0], spots[:, 1]] = rng.uniform(0.5, 1.0, 60)
    clean = np.stack([gaussian_filter(beads, 1.0 + 0.6 * abs(z - 6)) * 40 for z in range(13)])
    clean = clean / clean.max() + 0.02
    for photons in (50.0, 200.0):
        noisy = (rng.poisson(clean * photons) / photons).astype(np.float32)
        yield f"synthetic/beads_z/{photons:g}photons", (noisy, clean, float(clean.max()), None)


def synthetic_val(data: Path):
    from scipy.ndimage import fourier_shift, gaussian_filter

    rng = np.random.default_rng(0)
    for fov in (9, 10):
        for ch in (0, 1, 2):
            img = w2s_clean(data, fov, ch)[128:384, 128:384]
            cases = {}
            for sigma in (0.6, 1.2):
                cases[f"z{sigma:g}"] = np.stack(
                    [gaussian_filter(img, sigma * abs(z - 4)) if z != 4 else img for z in range(9)]
                )
            shifts = rng.uniform(-0.5, 0.5, (9, 2))
            cases["jitter"] = np.stack(
                [np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(img), s))) for s in shifts]
            )
            for name, clean in cases.items():
                noisy = poisson_read(rng, clean, 120.0)
                yield f"w2s/fov{fov:03d}_{ch}/{name}", (noisy, clean, 255.0, None)


# --- test (FMD test_mix) and the other checks -------------------------------------------------


def part_fmd(data: Path):
    for kind in TYPES:
        frames, gt = fmd_stack(data, kind)
        yield kind, (frames, np.stack([gt] * 4), 255.0, None)


def part_motion(data: Path):
    for kind in TYPES:
        frames, gt = fmd_stack(data, kind)
        for d in DRIFTS:
            st, crops = drifted(frames, d, 1)
            yield f"{kind}/drift{d}", (st, np.stack([gt[c] for c in crops]), 255.0, None)
        st, how = moving_region(frames, REGION_RADIUS, REGION_SPEED, seed=TYPES.index(kind))
        yield f"{kind}/region", (st, apply_region(gt, how), 255.0, None)


def run_part(name: str, gen, extra=False) -> dict:
    path = CACHE / f"{name}.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for key, (stack, truths, data_range, frames) in gen:
        if key in done:
            continue
        done[key] = on_off(
            stack, np.asarray(truths, np.float32), data_range, frames=frames, extra=extra
        )
        print(name, key, done[key], flush=True)
        path.write_text(json.dumps(done, indent=1))
    return done


def part_timelapse_z(data: Path, which: str):
    gen = part_timelapse(data) if which == "timelapse" else part_z(data)
    for key, (noisy, truth, data_range, _) in gen:
        yield key, (noisy, truth, data_range, None)


def part_seams(data: Path) -> dict:
    frames, _ = confocal_field(data, VAL_FIELDS[0])
    stack = frames[:5, :300, :280]
    whole = np.asarray(nd.denoise(stack, MODEL, axes="TYX", output_dtype="float32"))
    out = {}
    for tile in (64, 96, 160, 256):
        tiled = np.asarray(nd.denoise(stack, MODEL, axes="TYX", output_dtype="float32", tile=tile))
        out[str(tile)] = float(np.abs(tiled - whole).max())
    return {"max_abs_difference_grey_levels": out, "shape": list(stack.shape)}


def part_speed(data: Path) -> dict:
    frames, _ = confocal_field(data, VAL_FIELDS[0])
    stack = frames[:10]
    mp = stack.size / 1e6
    best = {"off": np.inf, "on": np.inf}
    nd.denoise(stack[:2], MODEL, axes="TYX")  # load the model, measure precision once
    for _ in range(3):  # alternating, best of 3: a shared machine's load hurts both alike
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            nd.denoise(stack, MODEL, axes="TYX", neighbours=mode)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    # what one more plane costs, without the settings chosen once per run: a 30-plane
    # stack (the 10 captures three times) against the 10-plane one, best of 2
    long = np.concatenate([stack] * 3)
    best_long = {"off": np.inf, "on": np.inf}
    for _ in range(2):
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            nd.denoise(long, MODEL, axes="TYX", neighbours=mode)
            best_long[mode] = min(best_long[mode], time.perf_counter() - t0)
    extra = {k: (best_long[k] - best[k]) / (len(long) - len(stack)) for k in best}
    return {
        "stack_shape": list(stack.shape),
        "seconds_per_plane": {k: round(v / len(stack), 3) for k, v in best.items()},
        "mp_per_second": {k: round(mp / v, 3) for k, v in best.items()},
        "ratio_on_to_off": round(best["on"] / best["off"], 3),
        "seconds_per_extra_plane": {k: round(v, 4) for k, v in extra.items()},
        "ratio_per_extra_plane": round(extra["on"] / extra["off"], 3),
        "threads": os.environ.get("NAPARI_DENOISE_THREADS", "all"),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


# --- summary ---------------------------------------------------------------------------------


def table(rows: dict, extra=False) -> list[str]:
    head = "| stack | noisy | frame by frame | with neighbours | gain |"
    rule = "|---|---:|---:|---:|---:|"
    if extra:
        head += " mean of 4 + Gaussian | mean of 4 + U-Net |"
        rule += "---:|---:|"
    lines = [head, rule]
    for key, r in rows.items():
        line = f"| {key} | {r['noisy']:.2f} | {r['off']:.2f} | {r['on']:.2f} | {r['gain']:+.2f} |"
        if extra:
            line += f" {r['mean_gaussian']:.2f} | {r['mean_unet']:.2f} |"
        lines.append(line)
    if rows:
        on = np.mean([r["on"] for r in rows.values()])
        off = np.mean([r["off"] for r in rows.values()])
        worst = min(r["gain"] for r in rows.values())
        lines.append(
            f"| **mean** | | {off:.2f} | {on:.2f} | {on - off:+.2f} (worst {worst:+.2f}) |"
        )
    return lines


def by_case(rows: dict) -> dict:
    """Mean gain per kind of case (the last part of the key: still, drift1, ...; the
    correlated-noise cases apart, as "correlated still", ...)."""
    groups: dict[str, list[float]] = {}
    for key, r in rows.items():
        kind = key.rsplit("/", 1)[-1]
        if key.startswith("correlated/"):
            kind = f"correlated {kind}"
        groups.setdefault(kind, []).append(r["gain"])
    return {k: (round(float(np.mean(v)), 3), round(float(min(v)), 3)) for k, v in groups.items()}


def markdown(results: dict) -> str:
    out = [
        "# Stacks with their neighbours: fusion + the default U-Net (issue 24)",
        "",
        "Made by `python benchmarks/stack_fusion.py` (see its docstring). PSNR in dB, mean "
        "per frame; *frame by frame* is the same default model with `neighbours=off`, "
        "*with neighbours* the default (`neighbours=on`), both in the same run.",
        "",
    ]
    if "val" in results:
        out += ["## Validation (allowed data; thresholds chosen here)", ""]
        out += [
            "Mean and worst gain per kind of case: "
            + ", ".join(
                f"{k} {m:+.2f} (worst {w:+.2f})" for k, (m, w) in by_case(results["val"]).items()
            ),
            "",
        ]
        out += [*table(results["val"]), ""]
    if "val4" in results:
        out += ["## Validation: held-out confocal fields as 4-frame still stacks", ""]
        out += [*table(results["val4"], extra=True), ""]
    if "fmd" in results:
        rows = results["fmd"]
        out += ["## FMD test_mix as 12 real 4-frame stacks (test only)", ""]
        out += [
            "Confocal_BPAE_B is partly in-domain (other fields of that type trained the "
            "default, issue 23).",
            "",
        ]
        out += [*table(rows, extra=True), ""]
        wins = sum(r["on"] >= r["mean_gaussian"] for r in rows.values())
        out += [f"With neighbours >= mean of 4 + Gaussian on {wins} of {len(rows)} types.", ""]
    if "motion" in results:
        out += ["## Motion (FMD stacks moved; integer, the real noise kept)", ""]
        out += [
            "Mean and worst gain per motion: "
            + ", ".join(
                f"{k} {m:+.2f} (worst {w:+.2f})" for k, (m, w) in by_case(results["motion"]).items()
            ),
            "",
        ]
        out += [*table(results["motion"]), ""]
    for part, title in (("timelapse", "Time-lapse (synthetic noise)"), ("z", "z-stacks")):
        if part in results:
            out += [f"## {title}", "", *table(results[part]), ""]
    if "seams" in results:
        out += [
            "## Seams",
            "",
            f"Tiled against whole, max |difference| in grey levels: "
            f"{results['seams']['max_abs_difference_grey_levels']} "
            f"(stack {results['seams']['shape']}).",
            "",
        ]
    if "speed" in results:
        s = results["speed"]
        out += [
            "## Speed",
            "",
            f"{s['stack_shape']} uint8, {s['machine']}, {s['cpus']} CPUs, "
            f"threads {s['threads']}: seconds per plane {s['seconds_per_plane']}, "
            f"MP/s {s['mp_per_second']}; with neighbours / frame by frame = "
            f"**{s['ratio_on_to_off']}x** (same run, alternating, best of 3).",
            "",
        ]
        if "ratio_per_extra_plane" in s:
            out += [
                "What one more plane costs once the settings are chosen (a 30-plane stack "
                f"against the 10-plane one, best of 2): {s['seconds_per_extra_plane']} s, "
                f"**{s['ratio_per_extra_plane']}x**.",
                "",
            ]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    docs = REPO / "docs" / "benchmarks_stack_fusion.json"
    results = json.loads(docs.read_text()) if docs.exists() else {}
    for part in args.parts:
        if part == "val":
            results["val"] = run_part("val", part_val(args.data))
        elif part == "val4":
            results["val4"] = run_part("val4", part_val4(args.data), extra=True)
        elif part == "fmd":
            results["fmd"] = run_part("fmd", part_fmd(args.data), extra=True)
        elif part == "motion":
            results["motion"] = run_part("motion", part_motion(args.data))
        elif part in ("timelapse", "z"):
            results[part] = run_part(part, part_timelapse_z(args.data, part))
        elif part == "seams":
            results["seams"] = part_seams(args.data)
        elif part == "speed":
            results["speed"] = part_speed(args.data)
        docs.write_text(json.dumps(results, indent=1))
        (REPO / "docs" / "benchmarks_stack_fusion.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

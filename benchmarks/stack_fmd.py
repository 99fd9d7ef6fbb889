"""Stacks denoised with their neighbours (issue 24): the multi-frame model against frame by frame.

Parts (each cached in build/stack_bench/<part>.json, so an interrupted run resumes):

- ``val``: the no-ground-truth check on the *validation* stacks (held-out confocal fields
  5, 10, 15, 20, captures 0-4, central 256 x 256; still, drift 1/2/4 px/frame, a region
  moving on its own, a cut to another field; W2S FOVs 009-010 with synthetic noise, still
  and drifting): how often the check's choice (neighbours or frame by frame) agrees with
  the ground-truth ranking, and what each costs.
- ``fmd``: FMD test_mix as 12 real 4-frame stacks (captures 1-4 of each type; TEST ONLY, run
  once for a design fixed on validation): mean PSNR per frame of the multi-frame model
  (automatic: check + detail), the frame-by-frame default, the mean of the 4 frames +
  Gaussian (automatic width) and the default U-Net on the mean of the 4.
- ``motion``: the same 12 stacks with the sample moved by integer drift of 1, 2 and 4
  px/frame (frames cropped at moving offsets: real noise, no interpolation; each frame
  scored against its own crop of the ground truth) and with one cell-sized region (a disk,
  radius 24 px) moving 3 px/frame on its own (pasted from the frame itself, moved).
- ``timelapse``: the cancer cell time-lapse (48 frames) as truth with synthetic
  Poisson-Gaussian noise (two levels).
- ``z``: the bead z-stack (41 planes) as truth with synthetic noise, and a z-stack made from
  W2S FOV 009-010 clean images (9 planes defocused by 0.6 px per plane from the centre)
  with synthetic noise.
- ``speed``: seconds per 512 x 512 plane of a 10-plane stack, the multi-frame model (check
  and detail included, and the network alone) against the single-frame default in the
  same run; megapixels of stack per second.

Run: ``NAPARI_DENOISE_THREADS=1 python benchmarks/stack_fmd.py`` (``--parts`` to choose).
Writes docs/benchmarks_stack.json and docs/benchmarks_stack.md.
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

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.denoise.stack_stream import denoise_stack  # noqa: E402
from napari_denoise.engine.metrics import psnr  # noqa: E402
from napari_denoise.engine.training.datasets import load_image  # noqa: E402

MODEL = "unet-fluo-stack"
SINGLE = "unet-fluo"
TYPES = (
    "Confocal_BPAE_B",
    "Confocal_BPAE_G",
    "Confocal_BPAE_R",
    "Confocal_FISH",
    "Confocal_MICE",
    "TwoPhoton_BPAE_B",
    "TwoPhoton_BPAE_G",
    "TwoPhoton_BPAE_R",
    "TwoPhoton_MICE",
    "WideField_BPAE_B",
    "WideField_BPAE_G",
    "WideField_BPAE_R",
)
DRIFTS = (1, 2, 4)
REGION_RADIUS, REGION_SPEED = 24, 3
PARTS = ("val", "fmd", "motion", "timelapse", "z", "speed")


# --- stacks with motion (integer: the real noise is never interpolated) ----------------------


def drifted(frames: np.ndarray, d: int, axis: int) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """Frame t cropped at offset ``d * t`` along ``axis``: the sample moves ``d`` px/frame.
    Returns the stack and each frame's crop (to cut its ground truth the same way)."""
    n, ny, nx = frames.shape
    span = d * (n - 1)
    crops = []
    for t in range(n):
        off = d * t
        if axis == 0:
            crops.append((slice(off, off + ny - span), slice(0, nx)))
        else:
            crops.append((slice(0, ny), slice(off, off + nx - span)))
    return np.stack([f[c] for f, c in zip(frames, crops, strict=True)]), crops


def moving_region(
    frames: np.ndarray, radius: int, speed: int, seed: int = 0
) -> tuple[np.ndarray, list]:
    """One disk of each frame replaced by the frame's own content moved ``speed * t`` px
    (a cell moving on its own; hard edge, so the noise stays real). Returns the stack and,
    per frame, the (mask, shift) to apply to its ground truth."""
    n, ny, nx = frames.shape
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(ny // 3, 2 * ny // 3), rng.integers(nx // 3, 2 * nx // 3)
    angle = rng.uniform(0, 2 * np.pi)
    out, how = [], []
    yy, xx = np.mgrid[:ny, :nx]
    for t in range(n):
        dy, dx = round(float(speed * t * np.sin(angle))), round(float(speed * t * np.cos(angle)))
        mask = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= radius**2
        moved = np.roll(frames[t], (dy, dx), axis=(0, 1))
        out.append(np.where(mask, moved, frames[t]))
        how.append((mask, (dy, dx)))
    return np.stack(out), how


def apply_region(gt: np.ndarray, how) -> np.ndarray:
    return np.stack([np.where(m, np.roll(gt, s, axis=(0, 1)), gt) for m, s in how])


# --- methods ---------------------------------------------------------------------------------


def frame_scores(truths, preds, data_range) -> list[float]:
    return [float(psnr(t, p, data_range=data_range)) for t, p in zip(truths, preds, strict=True)]


def run_frames(stack: np.ndarray, truths: np.ndarray, data_range: float, *, extra=True) -> dict:
    """The baselines on one stack: the frame-by-frame default, and (``extra``) the mean of
    the frames + Gaussian and + unet-fluo; mean PSNR per frame."""
    out: dict = {}
    t0 = time.perf_counter()
    single = nd.denoise(stack, SINGLE, axes="TYX", output_dtype="float32")
    out["frames_seconds"] = round(time.perf_counter() - t0, 2)
    out["frames"] = float(np.mean(frame_scores(truths, single, data_range)))
    out["frames_per_frame"] = [round(v, 3) for v in frame_scores(truths, single, data_range)]
    if extra:
        mean = np.mean(np.asarray(stack, np.float32), axis=0)
        gauss = nd.denoise(mean, "gaussian", output_dtype="float32")
        out["mean_gaussian"] = float(
            np.mean(frame_scores(truths, [gauss] * len(stack), data_range))
        )
        unet_mean = nd.denoise(mean, SINGLE, output_dtype="float32")
        out["mean_unet"] = float(
            np.mean(frame_scores(truths, [unet_mean] * len(stack), data_range))
        )
    out["noisy"] = float(np.mean(frame_scores(truths, np.asarray(stack, np.float32), data_range)))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def run_stack(stack: np.ndarray, truths: np.ndarray, data_range: float) -> dict:
    """The multi-frame network on one stack (neighbours on, detail by SURE), and the risks
    the check without ground truth estimates for it and for frame by frame. What the
    default (``neighbours="auto"``) gives follows: this result where the check keeps the
    neighbours, else exactly the frame-by-frame default (the same code and samples)."""
    from napari_denoise.engine.denoise.stack import neighbours_help
    from napari_denoise.engine.methods import get_method

    out: dict = {}
    t0 = time.perf_counter()
    res = denoise_stack(stack, model=MODEL, axes="TYX", neighbours="on")
    out["on_seconds"] = round(time.perf_counter() - t0, 2)
    out["on"] = float(np.mean(frame_scores(truths, res.data, data_range)))
    out["on_per_frame"] = [round(v, 3) for v in frame_scores(truths, res.data, data_range)]
    params = res.provenance["params"]
    out["detail"] = [params.get("detail"), params.get("detail_width")]
    _, risks = neighbours_help(
        np.asarray(stack),
        card_path=get_method(MODEL).model.card,
        low=params["norm_low"],
        high=params["norm_high"],
    )
    out["risks"] = {k: round(v, 6) for k, v in risks.items()}
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def merged(frames: dict, stack: dict, margin: float) -> dict:
    """One case's row: baselines, the network on, and what auto gives with ``margin``."""
    row = dict(frames)
    if stack:
        row.update(stack)
        from napari_denoise.engine.denoise.stack import prefer_neighbours

        row["neighbours_used"] = prefer_neighbours(stack["risks"], margin)
        row["stack"] = stack["on"] if row["neighbours_used"] else frames["frames"]
    return row


# --- parts -----------------------------------------------------------------------------------


def fmd_stack(data: Path, kind: str):
    root = data / "FMD_test_mix"
    frames = np.stack([load_image(root / "raw" / f"{kind}_{k}.png") for k in range(1, 5)])
    gt = load_image(root / "gt" / f"{kind}_1.png")
    return frames.astype(np.uint8), gt


def part_fmd(data: Path):
    for kind in TYPES:
        frames, gt = fmd_stack(data, kind)
        yield kind, (frames, np.stack([gt] * 4), 255.0, True)


def part_motion(data: Path):
    for kind_i, kind in enumerate(TYPES):
        frames, gt = fmd_stack(data, kind)
        for d in DRIFTS:
            key = f"drift{d}/{kind}"
            stack, crops = drifted(frames, d, kind_i % 2)
            truths = np.stack([gt[c] for c in crops])
            yield key, (stack, truths, 255.0, False)
        stack, how = moving_region(frames, REGION_RADIUS, REGION_SPEED, seed=kind_i)
        yield f"region/{kind}", (stack, apply_region(gt, how), 255.0, False)


def noisy_copy(clean: np.ndarray, photons: float, read: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(clean, [0.1, 99.9])
    x = np.clip((clean - lo) / (hi - lo), 0, None)
    signal = 0.02 + 0.9 * x
    return (rng.poisson(signal * photons) / photons + read * rng.standard_normal(x.shape)).astype(
        np.float32
    ), signal.astype(np.float32)


def part_timelapse(data: Path):
    import tifffile

    path = data / "BioImageAnalysisNotebooks_stacks" / "cancer_cell_migration_crop.tif"
    clean = tifffile.imread(path).astype(np.float32)
    for photons in (20.0, 100.0):
        key = f"cancer_cell_migration/{photons:g}photons"
        noisy, truth = noisy_copy(clean, photons, 0.01, seed=int(photons))
        yield key, (noisy, truth, 0.9, False)


def part_z(data: Path):
    import tifffile
    from scipy.ndimage import gaussian_filter

    path = data / "BioImageAnalysisNotebooks_stacks" / "Bead_Image1_crop.tif"
    clean = tifffile.imread(path).astype(np.float32)
    noisy, truth = noisy_copy(clean, 50.0, 0.01, seed=5)
    yield "bead_zstack/50photons", (noisy, truth, 0.9, False)
    root = data / "W2S_8bit_subset" / "images_avg400_8bit"
    for fov in (9, 10):
        key = f"w2s_defocus_zstack/fov{fov:03d}"
        img = load_image(root / f"target_avg400_{fov:03d}_0.tif")[128:384, 128:384]
        planes = np.stack(
            [gaussian_filter(img, 0.6 * abs(z - 4)) if z != 4 else img for z in range(9)]
        )
        noisy, truth = noisy_copy(planes, 60.0, 0.01, seed=fov)
        yield key, (noisy, truth, 0.9, False)


def part_val(data: Path):
    """The check's agreement with the truth on validation stacks (never FMD_test_mix)."""
    root = data / "FMD_Confocal_BPAE_B_train"
    fields = (5, 10, 15, 20)
    crop = (slice(128, 384), slice(128, 384))
    for i, f in enumerate(fields):
        caps = np.stack(
            [load_image(root / "raw" / str(f) / f"HV110_P05005100{k:02d}.png") for k in range(5)]
        ).astype(np.uint8)
        gt = load_image(root / "gt" / str(f) / "avg50.png")
        other = np.stack(
            [
                load_image(root / "raw" / str(fields[(i + 1) % 4]) / f"HV110_P05005100{k:02d}.png")
                for k in range(5)
            ]
        ).astype(np.uint8)
        cases = {"still": (caps[:, crop[0], crop[1]], np.stack([gt[crop]] * 5))}
        for d in DRIFTS:
            big = caps[:, 64:448, 64:448]
            stack, crops = drifted(big, d, i % 2)
            truths = np.stack([gt[64:448, 64:448][c] for c in crops])
            cases[f"drift{d}"] = (stack[:, :256, :256], truths[:, :256, :256])
        stack, how = moving_region(caps[:, crop[0], crop[1]], REGION_RADIUS, REGION_SPEED, seed=i)
        cases["region"] = (stack, apply_region(gt[crop], how))
        # every other frame from another field: the neighbours of the centre do not match
        mixed = caps.copy()
        mixed[1::2] = other[1::2]
        truth_mixed = np.stack(
            [
                gt
                if k % 2 == 0
                else load_image(root / "gt" / str(fields[(i + 1) % 4]) / "avg50.png")
                for k in range(5)
            ]
        )
        cases["alternating_fields"] = (mixed[:, crop[0], crop[1]], truth_mixed[:, crop[0], crop[1]])
        for name, (stack, truths) in cases.items():
            key = f"confocal_field{f}/{name}"
            yield key, (stack, truths, 255.0, False)
    w2s = data / "W2S_8bit_subset" / "images_avg400_8bit"
    for fov in (9, 10):
        for name, d in (("still", 0), ("drift2", 2), ("drift4", 4)):
            key = f"w2s_fov{fov:03d}/{name}"
            img = load_image(w2s / f"target_avg400_{fov:03d}_1.tif")
            planes = np.stack([img] * 5)
            if d:
                planes, crops = drifted(planes, d, fov % 2)
            planes = planes[:, :256, :256]
            noisy, truth = noisy_copy(planes, 40.0, 0.01, seed=fov + d)
            yield key, (noisy, truth, 0.9, False)


def part_speed(data: Path, cache: dict) -> None:
    root = data / "FMD_Confocal_BPAE_B_train" / "raw" / "5"
    stack = np.stack([load_image(root / f"HV110_P05005100{k:02d}.png") for k in range(10)]).astype(
        np.uint8
    )
    mp = stack.size / 1e6
    times = {}
    for _rep in range(2):  # alternate, best of two: a shared machine's load hurts both alike
        for name, fn in (
            ("frames_default", lambda: nd.denoise(stack, SINGLE, axes="TYX")),
            ("frames_network_only", lambda: nd.denoise(stack, SINGLE, axes="TYX", detail=0.0)),
            ("stack_auto", lambda: denoise_stack(stack, model=MODEL, axes="TYX")),
            (
                "stack_network_only",
                lambda: denoise_stack(stack, model=MODEL, axes="TYX", neighbours="on", detail=0.0),
            ),
        ):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            times[name] = min(times.get(name, np.inf), dt)
    cache["speed"] = {
        "stack_shape": list(stack.shape),
        "seconds_per_plane": {k: round(v / len(stack), 3) for k, v in times.items()},
        "mp_per_second": {k: round(mp / v, 3) for k, v in times.items()},
        "ratio_stack_to_frames": round(times["stack_auto"] / times["frames_default"], 3),
        "ratio_network_only": round(times["stack_network_only"] / times["frames_network_only"], 3),
        "threads": os.environ.get("NAPARI_DENOISE_THREADS", "all"),
        "machine": platform.processor() or platform.machine(),
    }
    print("speed", cache["speed"], flush=True)


# --- summary ---------------------------------------------------------------------------------


MARGINS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
WORST_ALLOWED_DB = -0.1


def margin_table(frames: dict, stacks: dict) -> list[dict]:
    """For each candidate margin of the check, on validation stacks: agreement with the
    ground-truth ranking, mean and worst auto - frames (dB)."""
    table = []
    for m in MARGINS:
        rows = [merged(frames[k], stacks[k], m) for k in frames if k in stacks]
        if not rows:
            continue
        diffs = [r["stack"] - r["frames"] for r in rows]
        agree = sum(int(r["neighbours_used"] == (r["on"] > r["frames"])) for r in rows)
        table.append(
            {
                "margin": m,
                "agree": agree,
                "stacks": len(rows),
                "mean_gain_db": round(float(np.mean(diffs)), 3),
                "worst_db": round(float(np.min(diffs)), 3),
            }
        )
    return table


def choose_margin(table: list[dict]) -> float:
    """The rule, fixed before the validation numbers were seen: the smallest margin with
    which no validation stack's automatic result is more than 0.1 dB below frame by frame
    (if none, the one with the best worst case)."""
    ok = [r for r in table if r["worst_db"] >= WORST_ALLOWED_DB]
    if ok:
        return ok[0]["margin"]
    return max(table, key=lambda r: r["worst_db"])["margin"]


def summarise(results: dict) -> dict:
    out: dict = {}
    fmd = results.get("fmd", {})
    if fmd:
        rows = [fmd[k] for k in TYPES if k in fmd]
        out["fmd_mean"] = {
            m: round(float(np.mean([r[m] for r in rows])), 3)
            for m in ("stack", "on", "frames", "mean_gaussian", "mean_unet", "noisy")
            if all(m in r for r in rows)
        }
        if "stack" not in out["fmd_mean"]:
            return out
        out["fmd_types_below_mean_gaussian"] = [
            k for k in TYPES if k in fmd and fmd[k]["stack"] < fmd[k]["mean_gaussian"]
        ]
    motion = results.get("motion", {})
    for cond in [f"drift{d}" for d in DRIFTS] + ["region"]:
        rows = {k.split("/")[1]: v for k, v in motion.items() if k.startswith(cond + "/")}
        if rows:
            gains = [v["stack"] - v["frames"] for v in rows.values()]
            out[f"motion_{cond}"] = {
                "stack": round(float(np.mean([v["stack"] for v in rows.values()])), 3),
                "frames": round(float(np.mean([v["frames"] for v in rows.values()])), 3),
                "mean_gain": round(float(np.mean(gains)), 3),
                "worst_gain": round(float(np.min(gains)), 3),
                "types": len(rows),
            }
    for part in ("fmd", "motion", "timelapse", "z"):  # informs; the margin was chosen on val
        rows = [v for v in results.get(part, {}).values() if "on" in v]
        if rows:
            out[f"check_agreement_{part}"] = {
                "agree": sum(int(v["neighbours_used"] == (v["on"] > v["frames"])) for v in rows),
                "stacks": len(rows),
            }
    val = results.get("val", {})
    if val:
        agree, total, rows = 0, 0, []
        for key, v in val.items():
            if "on" not in v:
                continue
            truth_better = v["on"] > v["frames"]
            chose = v["neighbours_used"]
            total += 1
            agree += int(truth_better == chose)
            rows.append(
                {
                    "stack": key,
                    "gain_if_on_db": round(v["on"] - v["frames"], 3),
                    "chose_neighbours": chose,
                    "auto_minus_frames_db": round(v["stack"] - v["frames"], 3),
                }
            )
        out["check_agreement_validation"] = {
            "agree": agree,
            "stacks": total,
            "share": round(agree / total, 3),
            "worst_auto_minus_frames_db": round(min(r["auto_minus_frames_db"] for r in rows), 3),
        }
    return out


def markdown(results: dict, summary: dict) -> str:
    lines = ["## Stacks: neighbouring frames (benchmarks/stack_fmd.py)", ""]
    lines.append(
        "Model: `unet-fluo-stack` (src/napari_denoise/zoo/unet-fluo-stack.json): unet-fluo "
        "made multi-frame (a window of 5 frames as input channels, the centre frame's residual; "
        "at step 0 exactly unet-fluo), fine-tuned 1200 steps on one CPU thread (best at 900 by "
        "validation) on real confocal series (FMD Confocal_BPAE_B fields other than 5, 10, 15, "
        "20) and W2S 001-008 / BSD clean images with synthetic noise, all with synthetic "
        "motion. Engine: engine/denoise/stack.py (windows reflected at the stack's ends; tiled "
        "= whole; streaming holds a window of planes; a check without ground truth falls back "
        "to frame by frame)."
    )
    lines.append("")
    lines.append(
        "Mean PSNR per frame (dB). `stack`: unet-fluo-stack as it runs by default (the check "
        "without ground truth decides whether the neighbours are used, the detail put back is "
        "chosen by SURE); `on`: the multi-frame network forced on; `frames`: the frame-by-frame "
        "default (unet-fluo); `mean+gauss`: the mean of the frames, Gaussian with automatic "
        "width; `mean+unet`: unet-fluo on the mean. CPU, "
        "1 torch thread (NAPARI_DENOISE_THREADS=1); the multi-frame network ran in fp32 for "
        "the PSNR tables (before its bf16 probe existed; the frame-by-frame default in the "
        "precision this machine decides, bf16), both in bf16 for the speed row."
    )
    lines.append("")
    fmd = results.get("fmd", {})
    if fmd:
        lines += [
            "### FMD test_mix as 12 real 4-frame stacks (captures 1-4; test only, run once)",
            "",
            "| type | noisy | frames | mean+gauss | mean+unet | on | stack | neighbours used |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for k in TYPES:
            if k in fmd:
                r = fmd[k]
                lines.append(
                    f"| {k} | {r['noisy']:.2f} | {r['frames']:.2f} | {r['mean_gaussian']:.2f} | "
                    f"{r['mean_unet']:.2f} | {r['on']:.2f} | **{r['stack']:.2f}** | "
                    f"{'yes' if r['neighbours_used'] else 'no'} |"
                )
        m = summary["fmd_mean"]
        lines.append(
            f"| **mean** | {m['noisy']:.2f} | {m['frames']:.2f} | {m['mean_gaussian']:.2f} | "
            f"{m['mean_unet']:.2f} | {m['on']:.2f} | **{m['stack']:.2f}** | |"
        )
        lines.append("")
    motion = results.get("motion", {})
    if motion:
        conds = [f"drift{d}" for d in DRIFTS] + ["region"]
        lines += [
            "### The same stacks with motion (stack - frames, dB; frames in brackets)",
            "",
            "Drift: frame t cropped at offset d*t (integer, real noise), each frame scored "
            "against its own crop of the ground truth. Region: a disk of radius "
            f"{REGION_RADIUS} px moving {REGION_SPEED} px/frame on its own.",
            "",
            "| type | " + " | ".join(conds) + " |",
            "|---|" + "---|" * len(conds),
        ]
        for k in TYPES:
            cells = []
            for c in conds:
                v = motion.get(f"{c}/{k}")
                cells.append(
                    "" if v is None else f"{v['stack'] - v['frames']:+.2f} ({v['frames']:.2f})"
                )
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        cells = []
        for c in conds:
            s = summary.get(f"motion_{c}")
            cells.append(
                "" if s is None else f"{s['mean_gain']:+.2f} (worst {s['worst_gain']:+.2f})"
            )
        lines.append("| **mean** | " + " | ".join(cells) + " |")
        lines.append("")
    for part, title in (
        ("timelapse", "Real time-lapse with synthetic noise (its frames as truth)"),
        ("z", "z-stacks with synthetic noise (their planes as truth)"),
    ):
        rows = results.get(part, {})
        if rows:
            lines += [
                f"### {title}",
                "",
                "| stack | noisy | frames | on | stack | gain |",
                "|---|---|---|---|---|---|",
            ]
            for k, v in rows.items():
                lines.append(
                    f"| {k} | {v['noisy']:.2f} | {v['frames']:.2f} | {v['on']:.2f} | "
                    f"**{v['stack']:.2f}** | {v['stack'] - v['frames']:+.2f} |"
                )
            lines.append("")
    val = results.get("val", {})
    if val:
        a = summary["check_agreement_validation"]
        lines += [
            "### The check without ground truth, on validation stacks (never FMD)",
            "",
            f"Agreement of the check's choice with the ground-truth ranking (multi-frame "
            f"network on vs frame by frame): {a['agree']} of {a['stacks']} "
            f"({100 * a['share']:.0f}%); worst auto - frames: {a['worst_auto_minus_frames_db']:+.2f} dB.",
            "",
            "| stack | frames | on | auto | used |",
            "|---|---|---|---|---|",
        ]
        for k, v in val.items():
            lines.append(
                f"| {k} | {v['frames']:.2f} | {v['on']:.2f} | {v['stack']:.2f} | "
                f"{'yes' if v['neighbours_used'] else 'no'} |"
            )
        lines.append("")
    sp = results.get("speed", {}).get("speed")
    if sp:
        lines += [
            "### Speed (same run, best of two, alternating)",
            "",
            f"Stack {sp['stack_shape']}: seconds per plane {sp['seconds_per_plane']}; megapixels "
            f"of stack per second {sp['mp_per_second']}; multi-frame / frame-by-frame time: "
            f"{sp['ratio_stack_to_frames']} (with the check and detail choice), "
            f"{sp['ratio_network_only']} (networks alone).",
            "",
        ]
    lines.append("Command: `NAPARI_DENOISE_THREADS=1 python benchmarks/stack_fmd.py`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from napari_denoise.engine.denoise.stack import CHECK_MARGIN

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    p.add_argument("--run", choices=("frames", "stack", "both", "none"), default="both")
    p.add_argument("--margin", type=float, default=CHECK_MARGIN, help="the check's margin")
    p.add_argument("--cache", type=Path, default=REPO / "build" / "stack_bench")
    p.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks_stack.json")
    p.add_argument("--md", type=Path, default=REPO / "docs" / "benchmarks_stack.md")
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    cases = {
        "val": part_val,
        "fmd": part_fmd,
        "motion": part_motion,
        "timelapse": part_timelapse,
        "z": part_z,
    }
    results: dict = {}
    check_margin: dict = {}
    for part in PARTS:
        if part == "speed":
            path = args.cache / "speed.json"
            cache = json.loads(path.read_text()) if path.exists() else {}
            if part in args.parts and args.run in ("stack", "both") and "speed" not in cache:
                part_speed(args.data, cache)
                path.write_text(json.dumps(cache, indent=1))
            if cache:
                results["speed"] = cache
            continue
        paths = {w: args.cache / f"{part}_{w}.json" for w in ("frames", "stack")}
        caches = {w: json.loads(q.read_text()) if q.exists() else {} for w, q in paths.items()}
        if part in args.parts and args.run != "none":
            for key, (stack, truths, rng, extra) in cases[part](args.data):
                for what in ("frames", "stack"):
                    if args.run not in (what, "both") or key in caches[what]:
                        continue
                    if what == "frames":
                        caches[what][key] = run_frames(stack, truths, rng, extra=extra)
                    else:
                        caches[what][key] = run_stack(stack, truths, rng)
                    paths[what].write_text(json.dumps(caches[what], indent=1))
                    row = caches[what][key]
                    print(
                        part,
                        what,
                        key,
                        {k: row.get(k) for k in ("frames", "on", "risks")},
                        flush=True,
                    )
        if part == "val" and caches["stack"]:
            table = margin_table(caches["frames"], caches["stack"])
            check_margin = {"table": table, "chosen": choose_margin(table)}
            print("check margin on validation:", json.dumps(check_margin), flush=True)
        rows = {
            k: merged(v, caches["stack"].get(k, {}), args.margin)
            for k, v in caches["frames"].items()
        }
        if rows:
            results[part] = rows
    from napari_denoise.engine.models.store import SHIPPED_DIR, read_card

    card = read_card(SHIPPED_DIR / f"{MODEL}.json")
    summary = summarise(results)
    doc = {
        "model": MODEL,
        "sha256": card["weights"]["sha256"],
        "check_margin": args.margin,
        "check_margin_on_validation": check_margin,
        "command": "NAPARI_DENOISE_THREADS=1 python benchmarks/stack_fmd.py",
        "summary": summary,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(results, summary)
    if check_margin:
        rows = "\n".join(
            f"| {r['margin']:g} | {r['agree']} of {r['stacks']} | {r['mean_gain_db']:+.3f} | "
            f"{r['worst_db']:+.3f} |"
            for r in check_margin["table"]
        )
        text += (
            "\n### Choosing the check's margin (validation stacks only)\n\n"
            "The multi-frame result is kept where its SURE is lower than frame by frame's by "
            "at least `margin` times the noise variance. Rule fixed before the numbers were "
            "seen: the smallest margin with which no validation stack's automatic result is "
            f"more than 0.1 dB below frame by frame. Chosen: **{check_margin['chosen']:g}** "
            f"(used: {args.margin:g}).\n\n"
            "| margin | agreement with the truth | mean auto - frames (dB) | worst (dB) |\n"
            "|---|---|---|---|\n" + rows + "\n"
        )
    args.md.write_text(text)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

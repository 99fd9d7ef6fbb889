"""Train the shipped multi-frame denoiser ``unet-fluo-stack`` (issue 24).

The network (:class:`napari_denoise.engine.models.unet_stack.UNetStack`) sees a window of
5 neighbouring frames and restores the centre one. It starts as the shipped single-frame
default ``unet-fluo`` exactly (neighbour channels of its first layer zero), so at step 0
it is frame-by-frame denoising; fine-tuning teaches it to use the neighbours.

Training data (shared/data README, "Splits"):
- real confocal time series: FMD Confocal_BPAE_B training fields (10 captures of a still
  sample each, truth the 50-capture average), split by whole field with the same
  validation fields as ``scripts/train_shipped.py`` (5, 10, 15, 20), training on the other
  14; windows of 5 distinct captures, with synthetic motion of the noisy neighbours;
- W2S FOVs 001-008 clean (avg400) images and BSD Train400 with synthetic Poisson-Gaussian
  noise drawn per frame, after synthetic motion of the clean image (drift 0-4 px/frame
  sub-pixel, jitter, a region moving on its own, a cut to another image, z-like
  defocus/structure change, flicker; stack ends reflected).
Validation (selection): the held-out confocal fields as real 5-frame windows (captures 0-4
and 5-9), still, with integer drift of 1, 2 and 4 px/frame and with a cut to another
field; W2S FOVs 009-010 clean images with synthetic noise per frame, still and drifting
2 px/frame. FMD_test_mix is never read.

Reproduce: python scripts/train_stack.py --minutes 60 --threads 1 --seed 0
(``--resume`` continues from build/train_stack/ckpt.*; ``--write`` writes the zoo files
from the best weights of the checkpoint).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_denoise.engine.metrics import psnr  # noqa: E402
from napari_denoise.engine.models.store import load_model, save_model  # noqa: E402
from napari_denoise.engine.models.unet_stack import UNetStack  # noqa: E402
from napari_denoise.engine.training.datasets import NoiseRecipe, load_image  # noqa: E402
from napari_denoise.engine.training.stack_data import (  # noqa: E402
    MixedWindows,
    MotionRecipe,
    RealSeriesWindows,
    SyntheticWindows,
)

FRAMES = 5
CONFOCAL_FOVS = (*range(2, 19), 20)
CONFOCAL_VAL_FOVS = (5, 10, 15, 20)  # as scripts/train_shipped.py (every fifth field)
CONFOCAL_TRAIN_FOVS = tuple(f for f in CONFOCAL_FOVS if f not in CONFOCAL_VAL_FOVS)
W2S_TRAIN, W2S_VAL = range(1, 9), (9, 10)
# Confocal-like synthetic noise (as measured for scripts/train_shipped.py on the training
# fields: 29-50 photons at the 99.9th percentile, white, low background), widened.
CONFOCAL_RECIPE = NoiseRecipe(
    photons=(5.0, 300.0),
    read_noise=(0.0005, 0.005),
    background=(0.0, 0.05),
    contrast=(0.4, 1.0),
    psf_sigma=(0.0, 1.5),
    gamma=(0.6, 2.5),
    correlated=0.0,
    scale=(0.5, 1.0),
)
VAL_CROP = 384  # central crop of the confocal validation images
VAL_DRIFTS = (0, 1, 2, 4)
VAL_SEED = 1234
MIX = {"real_confocal": 0.4, "synthetic_w2s": 0.3, "synthetic_bsd": 0.3}
RECIPE = {
    "batch_size": 16,
    "patch": 64,
    "lr": 3e-4,
    "warmup": 100,
    "loss": "l1",
    "optimizer": "Adam, linear warm-up, cosine decay to 1%, gradient clipping 1.0",
}


def confocal_field(data: Path, fov: int):
    root = data / "FMD_Confocal_BPAE_B_train"
    caps = [load_image(root / "raw" / str(fov) / f"HV110_P05005100{i:02d}.png") for i in range(10)]
    return caps, load_image(root / "gt" / str(fov) / "avg50.png")


def w2s_clean(data: Path, fov: int, ch: int) -> np.ndarray:
    root = data / "W2S_8bit_subset" / "images_avg400_8bit"
    return load_image(root / f"target_avg400_{fov:03d}_{ch}.tif")


def training_data(data: Path):
    real = RealSeriesWindows(
        [confocal_field(data, f) for f in CONFOCAL_TRAIN_FOVS],
        MotionRecipe(zlike=0.0),
        frames=FRAMES,
    )
    w2s = [w2s_clean(data, f, c) for f in W2S_TRAIN for c in range(3)]
    bsd = [
        load_image(p) for p in sorted((data / "BSD_Train400_natural" / "Train400").glob("*.png"))
    ]
    mixed_recipe = [(NoiseRecipe(), 0.5), (CONFOCAL_RECIPE, 0.5)]
    sources = [(real, MIX["real_confocal"])]
    for images, share in ((w2s, MIX["synthetic_w2s"]), (bsd, MIX["synthetic_bsd"])):
        for recipe, part in mixed_recipe:
            sources.append(
                (SyntheticWindows(images, recipe, MotionRecipe(), frames=FRAMES), share * part)
            )
    return MixedWindows(sources)


# --- validation -----------------------------------------------------------------------------


def drift_window(frames: list[np.ndarray], d: int, axis: int, crop: int):
    """The central ``crop`` of each frame, frame j moved by ``d * (j - c)`` pixels along
    ``axis`` (integer: exact, no interpolation): a still sample drifting ``d`` px/frame."""
    c = len(frames) // 2
    ny, nx = frames[0].shape
    y0, x0 = (ny - crop) // 2, (nx - crop) // 2
    out = []
    for j, f in enumerate(frames):
        off = d * (j - c)
        dy, dx = (off, 0) if axis == 0 else (0, off)
        out.append(f[y0 + dy : y0 + dy + crop, x0 + dx : x0 + dx + crop])
    return np.stack(out)


def validation_sets(data: Path, frames: int = FRAMES):
    """{name: [(window (frames, H, W), truth (H, W), data_range)]}: fixed, seeded."""
    c = frames // 2
    sets: dict[str, list] = {}
    fields = {f: confocal_field(data, f) for f in CONFOCAL_VAL_FOVS}
    for d in VAL_DRIFTS:
        items = []
        for k, (caps, gt) in enumerate(fields.values()):
            for w, start in enumerate((0, 5)):
                win = caps[start : start + frames]
                axis = (k + w) % 2
                truth = drift_window([gt] * frames, d, axis, VAL_CROP)[c]
                items.append((drift_window(win, d, axis, VAL_CROP), truth, 255.0))
        sets[f"confocal_drift{d}"] = items
    # a cut: the neighbours after the centre show another held-out field
    items = []
    keys = list(fields)
    for k, f in enumerate(keys):
        caps, gt = fields[f]
        other = fields[keys[(k + 1) % len(keys)]][0]
        win = caps[:frames]
        win = [*win[: c + 1], *other[c + 1 : frames]]
        items.append(
            (drift_window(win, 0, 0, VAL_CROP), drift_window([gt], 0, 0, VAL_CROP)[0], 255.0)
        )
    sets["confocal_cut"] = items
    rng = np.random.default_rng(VAL_SEED)
    for name, d in (("w2s_synthetic_still", 0), ("w2s_synthetic_drift2", 2)):
        items = []
        for f in W2S_VAL:
            for ch in range(3):
                clean = w2s_clean(data, f, ch)
                lo, hi = np.percentile(clean, [0.1, 99.9])
                clean = np.clip((clean - lo) / (hi - lo), 0, 1)
                signal = 0.02 + 0.9 * clean
                moved = drift_window([signal] * frames, d, ch % 2, 256)
                photons = 60.0
                noisy = rng.poisson(moved * photons) / photons + 0.003 * rng.standard_normal(
                    moved.shape
                )
                items.append((noisy.astype(np.float32), moved[c].astype(np.float32), 0.9))
        sets[name] = items
    return sets


def run_window(model, window: np.ndarray) -> np.ndarray:
    """Denoise the centre of a window, normalised by the centre frame's percentiles."""
    c = window.shape[0] // 2
    lo, hi = np.percentile(window[c], [0.1, 99.9])
    span = float(hi - lo) if hi > lo else 1.0
    x = torch.from_numpy(((window - lo) / span).astype(np.float32))[None]
    with torch.inference_mode():
        y = model(x)[0, 0].numpy()
    return y * span + lo


def evaluate(model, sets) -> dict[str, float]:
    was = model.training
    model.eval()
    try:
        out = {}
        for name, items in sets.items():
            scores = [psnr(t, run_window(model, w), data_range=r) for w, t, r in items]
            out[name] = round(float(np.mean(scores)), 4)
    finally:
        model.train(was)
    return out


def score(metrics: dict[str, float]) -> float:
    """What selects the weights: the mean PSNR over every validation set."""
    return float(np.mean(list(metrics.values())))


# --- checkpoints ------------------------------------------------------------------------------


def save_checkpoint(path: Path, model, best, optimizer, generator, info):
    from safetensors.torch import save

    from napari_denoise.atomic import atomic_write

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().contiguous() for k, v in best.items()})
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optim.{i}.{name}"] = torch.as_tensor(value).detach().contiguous()
    tensors["rng"] = generator.get_state()
    atomic_write(
        path.with_suffix(".safetensors"), lambda fh: fh.write(save(tensors)), make_parents=True
    )
    text = json.dumps(info, indent=1) + "\n"
    atomic_write(path.with_suffix(".json"), lambda fh: fh.write(text.encode()), make_parents=True)


def load_checkpoint(path: Path, model, optimizer, generator):
    from safetensors.torch import load_file

    tensors = load_file(path.with_suffix(".safetensors"))
    info = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    if optimizer is not None:
        state = optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, i, name = key.split(".", 2)
                state["state"].setdefault(int(i), {})[name] = value
        optimizer.load_state_dict(state)
    if generator is not None:
        generator.set_state(tensors["rng"])
    return info, best


def lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


def start_model():
    single, card = load_model("unet-fluo")
    single = single.float().to(memory_format=torch.contiguous_format)
    return UNetStack.from_single(single, FRAMES), card


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ckpt = args.checkpoints / "ckpt"
    model, _ = start_model()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"])
    generator = torch.Generator().manual_seed(args.seed)
    print("loading data ...", flush=True)
    data = training_data(args.data)
    sets = validation_sets(args.data)
    if args.resume and ckpt.with_suffix(".json").exists():
        info, best = load_checkpoint(ckpt, model, optimizer, generator)
        print(f"resumed at step {info['step']}", flush=True)
    else:
        start = evaluate(model, sets)
        base = start  # at step 0 the network is unet-fluo, frame by frame, exactly
        info = {
            "step": 0,
            "steps": args.steps,
            "seconds": 0.0,
            "single_frame": base,
            "history": [{"step": 0, **start, "score": score(start)}],
            "best_step": 0,
            "best_score": score(start),
            "best": start,
            "seed": args.seed,
            "threads": args.threads,
        }
        best = copy.deepcopy(model.state_dict())
        print(f"single-frame: {base}\nstep 0: {start}", flush=True)
    steps, step = info["steps"], info["step"]
    t0 = time.perf_counter() - info["seconds"]
    deadline = time.perf_counter() + 60 * args.minutes if args.minutes else None
    losses = []
    while step < steps:
        for group in optimizer.param_groups:
            group["lr"] = RECIPE["lr"] * lr_factor(step, steps, RECIPE["warmup"])
        noisy, clean = data.batch(RECIPE["batch_size"], RECIPE["patch"], generator)
        loss = torch.nn.functional.l1_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        last = step == steps or (deadline is not None and time.perf_counter() > deadline)
        if step % args.val_every == 0 or last:
            metrics = evaluate(model, sets)
            s = score(metrics)
            info["history"].append(
                {"step": step, **metrics, "score": s, "loss": float(np.mean(losses))}
            )
            losses = []
            if s > info["best_score"]:
                info.update(best_step=step, best_score=s, best=metrics)
                best = copy.deepcopy(model.state_dict())
            info.update(step=step, seconds=time.perf_counter() - t0)
            save_checkpoint(ckpt, model, best, optimizer, generator, info)
            rate = step / max(info["seconds"], 1e-9)
            print(
                f"step {step}/{steps} {rate:.2f} steps/s loss {info['history'][-1]['loss']:.4f} "
                f"score {s:.3f} (best {info['best_score']:.3f} @ {info['best_step']}) {metrics}",
                flush=True,
            )
        if last:
            break
    print("done", flush=True)


def write(args) -> None:
    """The zoo files from the checkpoint's best weights, with the card."""
    import platform

    import napari_denoise

    ckpt = args.checkpoints / "ckpt"
    model, single_card = start_model()
    info, best = load_checkpoint(ckpt, model, None, None)
    model.load_state_dict(best)
    model.eval()
    card = {
        "name": "unet-fluo-stack",
        "title": "U-Net, 5 frames (fluorescence stacks, motion-robust)",
        "description": (
            "Multi-frame U-Net for time-lapses and z-stacks: restores each frame from a window "
            "of 5 (the frame and 2 neighbours on each side; reflected at the stack's ends), "
            "trained with synthetic drift, jitter, a region moving on its own, cuts and z-like "
            "change so it learns when a neighbour is not to be trusted. Starts from, and falls "
            "back to, the single-frame unet-fluo."
        ),
        "normalisation": {"kind": "percentile", "low": 0.1, "high": 99.9},
        "window": {
            "frames": FRAMES,
            "axes": "T or Z (the planes of a stack, in order)",
            "ends": "reflect (numpy 'reflect': frame -1 is frame 1)",
            "normalisation": "all frames of a window with the image's normalisation",
            "fallback": "unet-fluo (frame by frame) for a 2-D image or a stack of fewer than 3 planes",
        },
        "noise_model": {"kind": "blind", "from": "unet-fluo"},
        "training": {
            "initialised_from": {
                "model": "unet-fluo",
                "sha256": single_card["weights"]["sha256"],
                "how": "centre channel of the first layer: unet-fluo's weights; neighbours: zero",
            },
            "data": [
                f"FMD_Confocal_BPAE_B_train fields {', '.join(map(str, CONFOCAL_TRAIN_FOVS))}: real "
                "10-capture series of still samples (windows of 5 distinct captures), truth avg50, "
                "with synthetic motion of the noisy neighbours",
                "W2S_8bit_subset FOVs 001-008 clean (avg400) images with synthetic motion and "
                "synthetic Poisson-Gaussian noise per frame",
                "BSD_Train400_natural: 400 images with synthetic motion and noise",
            ],
            "split": {
                "confocal_train_fields": list(CONFOCAL_TRAIN_FOVS),
                "confocal_validation_fields": list(CONFOCAL_VAL_FOVS),
                "w2s_train_fovs": list(W2S_TRAIN),
                "w2s_validation_fovs": list(W2S_VAL),
                "rule": "by whole field; confocal validation fields as scripts/train_shipped.py",
            },
            "validation_data": (
                "confocal fields 5, 10, 15, 20: windows of captures 0-4 and 5-9, central "
                f"{VAL_CROP}x{VAL_CROP}, still, integer drift 1, 2, 4 px/frame, and a cut to "
                "another field after the centre; W2S FOVs 009-010 clean images with Poisson-"
                "Gaussian noise (60 photons) per frame, still and 2 px/frame drift (seed 1234)"
            ),
            "not_used": "FMD_test_mix (test only)",
            "mix": MIX,
            "motion": MotionRecipe().__dict__,
            "synthetic_noise": {
                "default": NoiseRecipe().__dict__,
                "confocal": CONFOCAL_RECIPE.__dict__,
            },
            "recipe": dict(RECIPE, augmentation="flips and 90-degree turns of whole windows"),
            "selection": "best mean validation PSNR over every validation set",
            "seed": info["seed"],
            "steps": info["step"],
            "best_step": info["best_step"],
            "seconds": round(info["seconds"], 1),
            "threads": info["threads"],
            "machine": platform.machine(),
            "command": f"python scripts/train_stack.py --steps {info['steps']} --seed {info['seed']} "
            f"--threads {info['threads']} --val-every {args.val_every} && python scripts/train_stack.py "
            f"--write --val-every {args.val_every}",
            "napari_denoise": napari_denoise.__version__,
        },
        "validation": {
            "psnr_db": info["best"],
            "single_frame_psnr_db": info["single_frame"],
            "gain_db": {
                k: round(info["best"][k] - info["single_frame"][k], 3) for k in info["best"]
            },
            "data_range": "confocal: 255; W2S synthetic: the signal's span (0.9)",
        },
        # The single-frame default's detail restoration rule (widths, noise margin), applied
        # by the engine to this network's result (engine/denoise/stack.py stack_detail).
        "detail": dict(
            widths=(single_card.get("detail") or {}).get("widths", [0.0]),
            margin=(single_card.get("detail") or {}).get("margin", 0.0),
            chosen_on="unet-fluo's widths and margin, taken over, not tuned again",
            rule="as unet-fluo's: per stack, network + detail * G_width(input - network), "
            "(detail, width) of lowest SURE, the divergence taken on the centre frame only "
            "(engine/denoise/stack.py stack_detail)",
        ),
        "neighbours_check": {
            "rule": "per stack, without ground truth: SURE of the centre frame's result on 3 "
            "sample planes (central 256 x 256), divergence w.r.t. the centre frame only; the "
            "neighbours are used where the multi-frame SURE is lower than frame by frame's by "
            "at least margin x the noise variance (engine/denoise/stack.py prefer_neighbours)",
            "margin": 0.005,
            "chosen_on": "30 validation stacks (confocal fields 5, 10, 15, 20: still, drift 1/2/4, "
            "a moving region, alternating fields; W2S 009-010 synthetic, still and drifting): the "
            "smallest margin with no stack more than 0.1 dB below frame by frame; agreement with "
            "the ground-truth ranking 20 of 30, mean +0.47 dB, worst -0.07 dB",
            "command": "python benchmarks/stack_fmd.py --parts val",
        },
        "halo": int(model.reach),
        "halo_basis": "the network's receptive reach in Y and X (exact by construction)",
        "default_rank": None,
        "experimental": False,
    }
    out = save_model(model, card, args.out / "unet-fluo-stack")
    print(json.dumps(out["validation"], indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "src" / "napari_denoise" / "zoo")
    p.add_argument("--checkpoints", type=Path, default=REPO / "build" / "train_stack")
    p.add_argument("--steps", type=int, default=4000, help="steps of the cosine schedule")
    p.add_argument("--minutes", type=float, default=None, help="stop after this time (resumable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--write", action="store_true", help="write the zoo files from the checkpoint")
    args = p.parse_args(argv)
    if args.write:
        write(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

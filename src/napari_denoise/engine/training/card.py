"""The model card of a model trained by :mod:`.finetune`: what it started from, the data,
the recipe, the validation numbers and the command that reproduces it.

The zoo (:func:`~..models.store.save_model`) adds the architecture, config, parameter count and the
SHA-256 of the weights; everything about how the model came to be is written here.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from ..._version import __version__
from .options import BLIND_MODES, FRAME_MODES, MODE_LABELS
from .split import MIN_VAL_STRIPE

__all__ = ["MODE_LABELS", "reproduce_command", "training_card"]


def reproduce_command(prepared, name: str, steps: int, threads: int | None) -> str | None:
    """The ``napari-denoise train`` command that reproduces the model, for data from files."""
    spec = prepared.spec
    names = prepared.data.get("names") or []
    if not names or not names[0] or not Path(names[0]).is_file():
        return None
    args = ["napari-denoise", "train", names[0]]
    if len(names) > 1 and names[1]:
        args += ["--clean", names[1]]
    args += ["--mode", spec.mode, "--start", spec.start, "--name", name]
    if spec.config:
        args += ["--config", json.dumps(spec.config, separators=(",", ":"))]
    args += ["--steps", str(steps), "--seed", str(spec.seed), "--loss", spec.loss]
    args += [
        "--lr",
        f"{prepared.lr:g}",
        "--batch-size",
        str(spec.batch_size),
        "--patch",
        str(spec.patch),
    ]
    args += ["--val-fraction", f"{spec.val_fraction:g}"]
    if spec.patience:
        args += ["--patience", str(spec.patience)]
    if spec.mode in BLIND_MODES:
        args += ["--mask-fraction", f"{spec.mask_fraction:g}"]
        args += ["--blind-radius", str(prepared.blind_radius)]
    if spec.mode == "n2v-psf":
        args += ["--psf-sigma", f"{spec.psf_sigma:g}", "--positivity", f"{spec.positivity:g}"]
    for r in prepared.data.get("regions") or []:
        args += ["--region", ",".join(str(v) for v in r)]
    if prepared.data.get("axes") not in (None, "YX"):
        args += ["--axes", prepared.data["axes"]]
    if threads:
        args += ["--threads", str(threads)]
    return shlex.join(args)


def training_card(
    prepared,
    outcome,
    *,
    name: str,
    steps: int,
    seconds: float,
    reason: str,
    stopped: bool,
    checkpoint: Path,
    threads: int,
) -> dict[str, Any]:
    from ..models import count_parameters

    spec, data = prepared.spec, prepared.data
    start = prepared.start_card or {}
    started = prepared.started_from
    label = MODE_LABELS[spec.mode]
    source = (data.get("names") or [None])[0] or "the user's image"
    n = data["training_crops"]
    what = f"{n} noisy/clean pair(s)" if spec.mode == "supervised" else f"{n} noisy image area(s)"
    if spec.mode in FRAME_MODES:
        what = f"{data['pairs']} pair(s) of aligned neighbouring planes"
    origin = (
        f"a new {started['architecture']} network"
        if started["sha256"] is None
        else f"'{started['name']}'"
    )
    description = (
        f"{'Fine-tuned' if spec.mode == 'supervised' else 'Trained with ' + label} from "
        f"{origin} on {what} of {source} ({'x'.join(map(str, data['shape']))}, axes "
        f"{data['axes']}): {outcome.steps_done} steps, seed {spec.seed}."
    )
    if spec.mode == "n2v-psf":
        description += f" Returns the denoised image (network output blurred by a Gaussian PSF of sigma {spec.psf_sigma:g} px)."
    start_title = start.get("title") or started["name"]
    validation: dict[str, Any] = {
        "kind": data["validation"]["kind"],
        "data": (
            f"spatially disjoint stripes (the last {spec.val_fraction:g} of each region along its "
            f"longer side, at least {MIN_VAL_STRIPE} px) of {data['validation']['slices']} slice(s)"
            if data["validation"]["kind"]
            else "none"
        ),
        "best_step": int(outcome.best_step),
        "history": list(outcome.validations),
    }
    if outcome.best_val_psnr is not None:
        validation["psnr"] = round(float(outcome.best_val_psnr), 4)
        validation["data_range"] = "span of each clean stripe"
    if outcome.best_val_loss is not None and spec.mode in FRAME_MODES:
        validation["neighbour_loss"] = round(float(outcome.best_val_loss), 6)
    elif outcome.best_val_loss is not None:
        validation["masked_loss"] = round(float(outcome.best_val_loss), 6)
    loop = spec.loop_changes()  # set in Python only: the command would not repeat them
    clip = f"gradient clipping {spec.grad_clip}" if spec.grad_clip else "no gradient clipping"
    training: dict[str, Any] = {
        "mode": spec.mode,
        "data": [
            f"{source}: {data['slices']} slice(s) of {data['shape'][-2]}x{data['shape'][-1]}"
            + (f", regions {data['regions']}" if data["regions"] else ", whole plane")
            + (", with a clean image" if data["clean"] else "")
        ],
        "data_details": data,
        "steps": int(outcome.steps_done),
        "steps_planned": int(steps),
        "seconds": round(seconds, 1),
        "seed": spec.seed,
        "loss": spec.loss,
        "lr": prepared.lr,
        "batch_size": spec.batch_size,
        "patch": spec.patch,
        "optimizer": f"Adam, linear warm-up, cosine decay to 1%, {clip}",
        "augmentation": "flips and 90-degree rotations",
        "selection": "best validation" if data["validation"]["kind"] else "last step",
        "stopped_early": bool(stopped),
        "stop_reason": reason,
        "time_budget_minutes": spec.minutes if spec.steps is None else None,
        "threads": threads,
        "checkpoint": str(checkpoint),
        "command": None if loop else reproduce_command(prepared, name, steps, threads),
        "napari_denoise": __version__,
    }
    if "frame_pairs" in data:
        training["frame_pairs"] = {
            **data["frame_pairs"],
            "pairing": "each plane and its neighbour (t-1, t+1) along "
            f"{data['frame_pairs']['neighbour_axis']}, aligned by whole-pixel "
            "cross-correlation; patches only where both are valid",
            "reference": "Lehtinen et al., Noise2Noise: learning image restoration without "
            "clean data, ICML 2018",
        }
    if spec.mode in BLIND_MODES:
        r = prepared.blind_radius
        side = 2 * r + 1
        around = "the 5x5 window without the centre" if not r else "the 2-pixel ring around it"
        training["blind_spot"] = {
            "mask_fraction": spec.mask_fraction,
            "radius": r,
            "hidden": f"{side}x{side} block, loss on its centre" if r else "one pixel",
            "radius_chosen": "given" if spec.blind_radius is not None else "from the noise",
            "replacement": f"median of {around}"
            if spec.mode == "n2v2"
            else f"random pixel of {around}",
        }
    if loop:
        training["loop_settings"] = loop
    if prepared.notes:
        training["notes"] = list(prepared.notes)
    card: dict[str, Any] = {
        "name": name,
        "title": f"{start_title}, {label}"
        if started["sha256"]
        else f"{started['architecture']} ({label})",
        "description": description,
        "started_from": started,
        "normalisation": start.get(
            "normalisation", {"kind": "percentile", "low": 0.1, "high": 99.9}
        ),
        "training": training,
        "validation": validation,
        "default_rank": None,
    }
    if "noise_model" in start:
        card["noise_model"] = start["noise_model"]
    if start.get("fuse_neighbours"):  # the same single-frame network: a stack's planes
        card["fuse_neighbours"] = True  # are fused with their matching neighbours first
    if spec.mode in FRAME_MODES:
        card["noise_model"] = {
            "kind": "self-supervised between frames: zero-mean noise, independent from frame "
            "to frame",
            **({"started_from": start["noise_model"]} if "noise_model" in start else {}),
        }
    elif spec.mode != "supervised":
        card["noise_model"] = {
            "kind": "self-supervised blind spot: pixel-wise independent, zero-mean noise",
            **({"started_from": start["noise_model"]} if "noise_model" in start else {}),
        }
    if spec.mode == "n2v-psf":
        card["psf"] = {
            "kind": "gaussian",
            "sigma": spec.psf_sigma,
            "positivity": spec.positivity,
            "output": "denoised",
            "deconvolved_model": f"{name}-deconvolved",
            "reference": "Goncharova et al., Improving blind spot denoising for microscopy, ECCV-W 2020",
        }
    card["training"]["parameters"] = count_parameters(outcome.model)
    return card

"""Stacks denoised with their neighbouring planes: a multi-frame network, window by window.

A multi-frame model (a card with a ``"window"``, e.g. ``unet-fluo-stack``) restores plane
``t`` of a ``(T or Z, Y, X)`` stack from the window of planes ``t - k .. t + k``
(``frames = 2k + 1``); at the stack's ends the missing planes are reflected (numpy's
``reflect``: plane -1 is plane 1), as in training, so the first and last frames get a
window of real frames, not a jump to frame-by-frame quality. All planes of a window are
normalised with the image's normalisation (one black and white level for the stack, as
the single-frame default uses), so the window is not rescaled frame by frame.

Two ways in, one arithmetic:

- :func:`stack_method` makes the card a registry method of ``ndim = 3`` (the driver hands
  it ``(T, Y, X)`` blocks, tiled in Y and X with the network's reach as halo and along the
  stack with at least that; the window never leaves a block's kept planes, so any tiling
  gives the whole-image result);
- :func:`denoise_stack` streams: it holds ``frames`` planes of the input (an array, a
  memory map, any object whose ``[t]`` gives a plane) and writes each output plane as it is
  done, so memory holds a window of planes, not the stack.

A 2-D image, or a stack of fewer than 3 planes, falls back to the single-frame model
(the card's ``window.fallback``), and says so. Whether the neighbours help is decided per
stack without ground truth (:func:`neighbours_help`): Stein's unbiased risk estimate of
the centre frame's result, with the divergence taken with respect to the centre frame
only (its noise is independent of the neighbours', so Stein's lemma holds conditionally on
them), for the multi-frame and the single-frame result on a few sample planes; the
multi-frame result is used where it is not estimated worse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from .tiling import plan_tiles
from .tiling import reflect as reflect_index

__all__ = [
    "NEIGHBOURS_CHOICES",
    "neighbours_help",
    "reflect_index",
    "stack_method",
    "window_indices",
]

MIN_PLANES = 3  # fewer: frame by frame
NEIGHBOURS_CHOICES = ("auto", "on", "off")
RAMP = 8  # as the driver: overlap = 2 * halo + RAMP
CHECK_PLANES = 3  # sample planes the no-ground-truth check looks at
CHECK_CROP = 256  # ... their central crop
# The multi-frame result must win SURE by this share of the noise variance
# (prefer_neighbours); chosen on validation stacks (benchmarks/stack_fmd.py val).
CHECK_MARGIN = 0.005


def window_indices(t: int, n: int, frames: int) -> list[int]:
    """The planes of the window centred on plane ``t`` of ``n``, reflected at the ends."""
    k = frames // 2
    return [reflect_index(t + j, n) for j in range(-k, k + 1)]


# --- the network on one window ----------------------------------------------------------------


def run_window(
    model,
    window: np.ndarray,
    *,
    low: float,
    high: float,
    ensemble: int = 1,
    bf16: bool = False,
) -> np.ndarray:
    """The centre plane of ``window`` (frames, Y, X) restored, in the image's units.

    Every plane is normalised with ``low``/``high``; the window is reflect-padded to the
    network's multiple; ``ensemble`` flips/turns the whole window alike and averages.
    """
    import torch
    import torch.nn.functional as F

    from ..models.inference import _ENSEMBLE_ORDER, ENSEMBLE_CHOICES

    if ensemble not in ENSEMBLE_CHOICES:
        raise ParameterError(f"ensemble must be one of {ENSEMBLE_CHOICES}, not {ensemble!r}")
    device = next(model.parameters()).device.type
    span = float(high - low) if high > low else 1.0
    x = torch.from_numpy((np.asarray(window, np.float32) - np.float32(low)) / np.float32(span))
    ny, nx = x.shape[-2:]
    m = int(getattr(model, "multiple", 1))
    py, px = (-ny) % m, (-nx) % m
    x = x[None]
    if py or px:
        mode = "reflect" if py < ny and px < nx else "replicate"
        x = F.pad(x, (0, px, 0, py), mode=mode)
    x = x.to(device)
    if device == "cuda":
        gpu = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        precision = torch.autocast("cuda", gpu)
    else:
        precision = torch.autocast("cpu", torch.bfloat16, enabled=bf16 and device == "cpu")
    with torch.inference_mode(), precision:
        y = None
        for transpose, flips in _ENSEMBLE_ORDER[:ensemble]:
            t = x.transpose(-2, -1) if transpose else x
            t = t.flip(flips) if flips else t
            # channels-last, as the model is loaded (a plain layout would convert every layer)
            layout = torch.channels_last if device != "mps" else torch.contiguous_format
            out = model(t.contiguous(memory_format=layout)).float()
            out = out.flip(flips) if flips else out
            out = out.transpose(-2, -1) if transpose else out
            y = out if y is None else y + out
        y = y / ensemble if ensemble > 1 else y
    y = y[0, 0, :ny, :nx].cpu().numpy()
    return (y * np.float32(span) + np.float32(low)).astype(np.float32)


def tiled_window(
    fn: Callable[[np.ndarray], np.ndarray],
    window: np.ndarray,
    *,
    halo: int,
    tile: int | None,
    multiple: int,
) -> np.ndarray:
    """``fn`` (window -> centre plane) over ``window`` (frames, Y, X), tiled in Y and X with
    ``halo`` (the network's reach: exact, tiled = whole) and blended as the driver blends."""
    ny, nx = window.shape[-2:]
    if tile is None or (ny <= tile and nx <= tile):
        return np.asarray(fn(window), np.float32)
    overlap = 2 * halo + RAMP
    tiles = plan_tiles((ny, nx), (tile, tile), (overlap, overlap), (halo, halo), multiple=multiple)
    acc = np.zeros((ny, nx), np.float32)
    norm = np.zeros((ny, nx), np.float32)
    for t in tiles:
        region = (slice(None), *t.region)
        w = t.weight
        acc[t.region] += np.asarray(fn(np.ascontiguousarray(window[region])), np.float32) * w
        norm[t.region] += w
    return acc / norm


# --- the card as a method -----------------------------------------------------------------


def _loaded(card_path: str, device: str):
    from ..models.inference import loaded, set_threads

    set_threads()
    return loaded(card_path, device)


def fallback_card(card_path: str | Path) -> str:
    """The single-frame model's card beside a multi-frame card (its ``window.fallback``)."""
    from ..models.store import read_card

    card_path = Path(card_path)
    card = read_card(card_path)
    name = str(card.get("window", {}).get("fallback_model", "unet-fluo"))
    beside = card_path.with_name(f"{name}.json")
    if beside.exists():
        return str(beside)
    from ..models.store import _paths

    return str(_paths(name)[0])


def probe_window_precision(model, *, repeats: int = 3, timer=time.perf_counter) -> dict:
    """:func:`~..models.inference.probe_precision` for a multi-frame network: fp32 against
    bf16 autocast on the CPU, on a window made of the shipped probe image (its frames
    shifted by a pixel each), timed alternately, best of ``repeats``; the decision by the
    same bounds (:func:`~..models.inference.decide_precision`)."""
    from ..models.inference import precision_record, probe_image

    image = probe_image()
    k = int(model.frames) // 2
    window = np.stack([np.roll(image, j, axis=-1) for j in range(-k, k + 1)])
    lo, hi = (float(v) for v in np.percentile(image, [0.1, 99.9]))
    hi = hi if hi > lo else lo + 1.0
    best = {"fp32": float("inf"), "bf16": float("inf")}
    outputs: dict[str, np.ndarray] = {}
    for i in range(repeats + 1):
        for label in ("fp32", "bf16"):
            start = timer()
            outputs[label] = run_window(model, window, low=lo, high=hi, bf16=label == "bf16")
            if i:
                best[label] = min(best[label], timer() - start)
    return precision_record(best, outputs, pixels=image.size, span=hi - lo)


def _bf16(model, card) -> bool:
    """bf16 autocast on the CPU where measured faster and harmless on this machine (as the
    single-frame models: decided once per machine and weights, kept in the user cache)."""
    from ..models.inference import cpu_precision

    if next(model.parameters()).device.type != "cpu":
        return False
    return cpu_precision(model, card["weights"]["sha256"], probe=probe_window_precision) == "bf16"


def _single_method(card_path: str):
    """The registry method of the single-frame fallback model (the frame-by-frame default)."""
    from ..method_base import registered

    return registered(Path(fallback_card(card_path)).stem)


def _detail_params(params) -> dict:
    return {
        "detail": params.get("detail"),
        "detail_width": params.get("detail_width"),
    }


def _infer_stack(
    block,
    *,
    card_path,
    norm_low=None,
    norm_high=None,
    device="auto",
    ensemble=1,
    neighbours="on",
    detail=None,
    detail_width=None,
):
    """A ``(T, Y, X)`` block (a tile of the stack): every plane restored from its window
    inside the block (reflected at the block's ends; the driver's halo along the stack
    discards the planes whose window was cut by a tile's edge), then the chosen share of
    the smoothed residual put back (the single-frame default's detail restoration).
    With ``neighbours="off"`` (or a block of fewer than 3 planes, or a lone plane) each
    plane goes through the single-frame default, exactly as frame by frame."""
    from .selfcheck import DETAIL_MAX_WIDTH, put_back

    block = np.asarray(block, np.float32)
    squeeze = block.ndim == 2
    if squeeze:
        block = block[None]
    if norm_low is None or norm_high is None:
        norm_low, norm_high = (float(v) for v in np.percentile(block, [0.1, 99.9]))
    n = block.shape[0]
    out = np.empty(block.shape, np.float32)
    if neighbours == "off" or n < MIN_PLANES:
        single = _single_method(card_path)
        for t in range(n):
            out[t] = single.fn(
                block[t],
                norm_low=norm_low,
                norm_high=norm_high,
                device=device,
                ensemble=int(ensemble),
                detail=detail,
                detail_width=detail_width,
            )
        return out[0] if squeeze else out
    model, card = _loaded(card_path, device)
    bf16 = _bf16(model, card)
    frames = int(model.frames)
    amount = float(detail or 0.0)
    width = min(float(detail_width or 0.0), DETAIL_MAX_WIDTH)
    for t in range(n):
        window = block[window_indices(t, n, frames)]
        y = run_window(
            model, window, low=norm_low, high=norm_high, ensemble=int(ensemble), bf16=bf16
        )
        out[t] = put_back(y, block[t], amount, width) if amount > 0 else y
    return out[0] if squeeze else out


def _percentiles(planes: list[np.ndarray], card: dict) -> tuple[float, float]:
    norm = card.get("normalisation", {})
    lo_q, hi_q = float(norm.get("low", 0.1)), float(norm.get("high", 99.9))
    values = np.concatenate([np.asarray(p, np.float32).ravel() for p in planes])
    lo, hi = (float(v) for v in np.percentile(values, [lo_q, hi_q], overwrite_input=True))
    return lo, (hi if hi > lo else lo + 1.0)


def _sample_indices(n: int, k: int = 4) -> list[int]:
    """``k`` planes spread evenly (as the driver's sample planes for automatic parameters)."""
    return [int(i) for i in np.unique(np.linspace(0, n - 1, k).round().astype(int))]


def choose_stack_params(stack: Any, params: dict, *, card: dict, card_path: str) -> dict:
    """Fill the automatic parameters of the multi-frame method for one stack.

    ``stack`` is anything of ``len`` n whose ``[t]`` is a plane. The normalisation is the
    single-frame default's (percentiles of 4 planes spread over the stack); with
    ``neighbours="auto"`` the no-ground-truth check decides (:func:`neighbours_help`);
    the detail put back is then chosen by SURE, for the multi-frame result as the
    single-frame default chooses it for its own (the card's ``detail`` rule); frame by
    frame, by the single-frame default's own rule, on the same sample planes.
    """
    n = len(stack)
    samples = [np.asarray(stack[i], np.float32) for i in _sample_indices(n)]
    if params.get("norm_low") is None or params.get("norm_high") is None:
        lo, hi = _percentiles(samples, card)
        params["norm_low"] = lo if params.get("norm_low") is None else params["norm_low"]
        params["norm_high"] = hi if params.get("norm_high") is None else params["norm_high"]
    low, high = params["norm_low"], params["norm_high"]
    device = params.get("device", "auto")
    if n < MIN_PLANES:
        params["neighbours"] = "off"
    elif params.get("neighbours", "auto") == "auto":
        use, risks = neighbours_help(stack, card_path=card_path, low=low, high=high, device=device)
        params["neighbours"] = "on" if use else "off"
        params["_check"] = risks
    amount, width = params.get("detail"), params.get("detail_width")
    if amount is not None and width is not None:
        return params
    if amount is not None and float(amount) <= 0.0:
        params["detail_width"] = 0.0 if width is None else width
        return params
    if params["neighbours"] == "off":
        single = _single_method(card_path)
        chosen = dict(
            norm_low=low,
            norm_high=high,
            device=device,
            ensemble=params.get("ensemble", 1),
            detail=amount,
            detail_width=width,
        )
        chosen = single.auto(samples, chosen) if single.auto is not None else chosen
        params["detail"], params["detail_width"] = chosen.get("detail"), chosen.get("detail_width")
        return params
    rule = card.get("detail")
    if not rule:
        params["detail"], params["detail_width"] = 0.0, 0.0
        return params
    best = stack_detail(
        stack,
        card_path=card_path,
        rule=rule,
        low=low,
        high=high,
        device=device,
        amount=amount,
        width=width,
    )
    params["detail"] = best[0] if amount is None else amount
    params["detail_width"] = best[1] if width is None else width
    return params


def _stack_auto(samples, params, *, card, card_path):
    """The driver's ``auto`` hook: ``samples`` are ``(T, Y, X)`` blocks (or lone planes)."""
    volume = np.asarray(samples[0], np.float32)
    stack = volume if volume.ndim == 3 else [np.asarray(s, np.float32) for s in samples]
    if volume.ndim != 3:  # lone planes: frame by frame, whatever was asked
        params["neighbours"] = "off"
    params = choose_stack_params(stack, params, card=card, card_path=card_path)
    params.pop("_check", None)
    return params


def _stack_halo(params, *, network: int) -> int:
    """The network's reach plus the reach of the detail put back (as the single-frame models)."""
    from ..models.reach import _halo

    return _halo(params, network=network)


def stack_method(card_path: Path, card: dict):
    """The registry :class:`~..methods.Method` of a multi-frame card (``ndim = 3``)."""
    from ..device import DEVICE_LABELS, DEVICES
    from ..method_base import Method, ModelInfo, Param
    from ..models.inference import ENSEMBLE_CHOICES
    from ..models.store import SHIPPED_DIR

    window = card.get("window") or {}
    frames = int(window.get("frames", 5))
    if frames < 1 or frames % 2 == 0:
        raise ParameterError(f"window.frames must be a positive odd number, not {frames}")
    halo = int(card.get("halo", card.get("reach", 32)))
    params = (
        Param(
            "neighbours",
            str,
            "auto",
            "Use the neighbouring frames or planes (auto: where a check without ground truth "
            "finds they help; off: frame by frame with the single-frame model)",
            choices=NEIGHBOURS_CHOICES,
            label="Use neighbouring frames",
            choice_labels=(
                "Auto (checked)",
                f"On ({frames - 1} neighbours)",
                "Off (frame by frame)",
            ),
        ),
        Param(
            "norm_low",
            float,
            None,
            "Intensity the network sees as black (auto: the stack's 0.1th percentile)",
            label="Black level",
        ),
        Param(
            "norm_high",
            float,
            None,
            "Intensity the network sees as white (auto: the stack's 99.9th percentile)",
            label="White level",
        ),
        Param(
            "ensemble",
            int,
            1,
            "The network also sees the window flipped and turned by 90 degrees, and the "
            "outputs are turned back and averaged (self-ensemble)",
            choices=ENSEMBLE_CHOICES,
            label="Flip-and-turn averaging",
            choice_labels=tuple(
                "Off (1 pass)" if n == 1 else f"{n} passes ({n}× slower)" for n in ENSEMBLE_CHOICES
            ),
        ),
        Param(
            "detail",
            float,
            None,
            "Share of what the network removed that is put back, smoothed (0: the network "
            "alone; auto: chosen per stack without ground truth, by SURE)",
            0.0,
            1.0,
            label="Detail put back",
            start=0.0,
        ),
        Param(
            "detail_width",
            float,
            None,
            "Blur width of the detail put back (0: unsmoothed; auto: chosen with the amount)",
            0.0,
            4.0,
            label="Detail blur (pixels)",
            start=1.3,
        ),
        Param(
            "device",
            str,
            "auto",
            "Where the network runs (auto: a GPU when there is one)",
            choices=DEVICES,
            label="Compute device",
            choice_labels=DEVICE_LABELS,
        ),
    )
    shipped = Path(card_path).resolve().parent == SHIPPED_DIR
    rank = card.get("default_rank") if shipped else None
    from ..models.reach import MODEL_TILE, TILE_PER_OVERLAP

    tile = max(MODEL_TILE, -(-TILE_PER_OVERLAP * (2 * halo + 8) // 64) * 64)
    return Method(
        card["name"],
        partial(_infer_stack, card_path=str(card_path)),
        params,
        kind="model",
        ndim=3,
        # Y and X: the network's reach; along the stack the driver uses the same number,
        # more than the window's k planes, so the kept planes never see a cut window.
        halo=partial(_stack_halo, network=halo),
        auto=partial(_stack_auto, card=card, card_path=str(card_path)),
        title=card.get("title") or card["name"],
        description=card.get("description") or "Multi-frame network.",
        default_rank=None if rank is None else int(rank),
        model=ModelInfo(
            name=card["name"],
            architecture=card["architecture"],
            sha256=card["weights"]["sha256"],
            parameters=card.get("parameters"),
            config=card.get("config") or {},
            card=str(card_path),
        ),
        tile=tile,
        multiple=int(card.get("multiple", 1)),
        experimental=bool(card.get("experimental", False)),
        planes_fallback=True,
    )


# --- the no-ground-truth check ------------------------------------------------------------


def _crop(a: np.ndarray, size: int) -> tuple[slice, slice]:
    ny, nx = a.shape[-2:]
    sy, sx = min(size, ny), min(size, nx)
    y0, x0 = (ny - sy) // 2, (nx - sx) // 2
    return slice(y0, y0 + sy), slice(x0, x0 + sx)


def neighbours_help(
    stack: Any,
    *,
    card_path: str,
    low: float,
    high: float,
    device: str = "auto",
    planes: int = CHECK_PLANES,
    crop: int = CHECK_CROP,
    margin: float = CHECK_MARGIN,
    seed: int = 0,
) -> tuple[bool, dict[str, float]]:
    """Whether the multi-frame network beats frame by frame on this stack, without truth.

    On ``planes`` sample planes (spread over the stack, their central ``crop``), SURE
    (:func:`~.selfcheck.risk`) of the multi-frame result, its divergence taken by
    perturbing the centre frame only, against SURE of the single-frame result. Returns
    (use the neighbours, the summed risks ``{"stack": ..., "frames": ...}``).
    """
    from ..models.inference import run_model
    from .selfcheck import EPSILON, estimate_noise_covariance

    n = len(stack)
    if n < MIN_PLANES:
        return False, {}
    model, _ = _loaded(card_path, device)
    single, _ = _loaded(fallback_card(card_path), device)
    frames = int(model.frames)
    parts = {"fit_stack": 0.0, "div_stack": 0.0, "fit_frames": 0.0, "div_frames": 0.0}
    trace = 0.0
    cy, cx = _crop(np.asarray(stack[0]), crop)
    for t in _check_indices(n, planes):
        win = np.stack(
            [np.asarray(stack[i], np.float32)[cy, cx] for i in window_indices(t, n, frames)]
        )
        centre = win[frames // 2]
        noise = estimate_noise_covariance(centre)
        z = noise.sample(np.random.default_rng(seed + t))
        moved_win = win.copy()
        moved_win[frames // 2] = (centre + EPSILON * z).astype(np.float32)
        y = centre.astype(np.float64)
        for name, h, h_moved in (
            (
                "stack",
                run_window(model, win, low=low, high=high),
                run_window(model, moved_win, low=low, high=high),
            ),
            (
                "frames",
                run_model(single, centre, low=low, high=high),
                run_model(single, moved_win[frames // 2], low=low, high=high),
            ),
        ):
            h = np.asarray(h, np.float64)
            parts[f"fit_{name}"] += float(np.sum((h - y) ** 2)) / y.size
            parts[f"div_{name}"] += (
                float(np.sum(z * (np.asarray(h_moved, np.float64) - h)) / EPSILON) / y.size
            )
        trace += float(np.sum(noise.variance)) / y.size
    risks = {
        "stack": parts["fit_stack"] - trace + 2 * parts["div_stack"],
        "frames": parts["fit_frames"] - trace + 2 * parts["div_frames"],
        "noise": trace,
        **parts,
    }
    return prefer_neighbours(risks, margin), risks


def prefer_neighbours(risks: dict[str, float], margin: float = CHECK_MARGIN) -> bool:
    """The decision of :func:`neighbours_help` from its estimates: the multi-frame result
    where its SURE is lower than frame by frame's by at least ``margin`` times the noise
    variance (``risks["noise"]``, the same units: a scale-free margin).

    Measured on W2S with synthetic Poisson noise: SURE of both results reads about half
    the true error (a noise level estimated 3% high shifts SURE by as much as the whole
    error), and the difference of two SURE estimates is off by some 0.5% of the noise
    variance, more than what separates two good denoisers; the margin keeps the
    neighbours only where they clearly help, and is chosen on validation stacks.
    """
    if not risks:
        return False
    return bool(risks["stack"] - risks["frames"] <= -float(margin) * risks["noise"])


def stack_detail(
    stack: Any,
    *,
    card_path: str,
    rule: dict,
    low: float,
    high: float,
    device: str = "auto",
    amount: float | None = None,
    width: float | None = None,
    planes: int = CHECK_PLANES,
    seed: int = 0,
) -> tuple[float, float]:
    """The detail restoration ``(amount, width)`` for the multi-frame result, chosen as
    :func:`~.selfcheck.detail_choice` chooses it for a single-frame network (the card's
    rule: widths and noise margin), on the central crop of sample planes, the network's
    divergence taken with respect to the centre frame only."""
    from ..models.reach import DETAIL_CROP
    from .selfcheck import DETAIL_MAX_WIDTH, _detail_terms, combine_detail_terms

    n = len(stack)
    model, _ = _loaded(card_path, device)
    frames = int(model.frames)
    if width is not None:
        widths = (min(float(width), DETAIL_MAX_WIDTH),)
    else:
        widths = tuple(float(w) for w in rule.get("widths", (0.0,)) if w <= DETAIL_MAX_WIDTH) or (
            0.0,
        )
    margin = float(rule.get("margin", 0.0))
    cy, cx = _crop(np.asarray(stack[0]), DETAIL_CROP)
    per_plane = []
    for t in _check_indices(n, planes):
        win = np.stack(
            [np.asarray(stack[i], np.float32)[cy, cx] for i in window_indices(t, n, frames)]
        )
        if min(win.shape[-2:]) < 32:
            return 0.0, 0.0

        def multi(image, _win=win):
            w = _win.copy()
            w[frames // 2] = image
            return run_window(model, w, low=low, high=high)

        per_plane.append(_detail_terms(win[frames // 2], multi, None, None, widths, margin, seed))
    return combine_detail_terms(per_plane, widths, amount)  # as detail_choice combines


def _check_indices(n: int, planes: int) -> list[int]:
    """``planes`` planes spread over the stack, away from its ends."""
    return [int(t) for t in np.unique(np.linspace(0, n - 1, planes + 2).round().astype(int)[1:-1])]


__all__ += [
    "choose_stack_params",
    "fallback_card",
    "run_window",
    "stack_detail",
    "tiled_window",
]

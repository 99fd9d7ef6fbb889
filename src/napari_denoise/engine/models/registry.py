"""Every model card found becomes a :class:`~..methods.Method` of kind ``"model"``.

Registration reads the JSON cards alone: torch is imported only when a model first
runs. A card that cannot be read is registered as unavailable, with the reason, so one
bad file never hides the other methods.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import ModelFileError
from ..device import DEVICES
from ..methods import (
    Method,
    ModelInfo,
    Param,
    is_registered,
    load_builtin,
    register,
    unregister,
)
from .inference import (
    ENSEMBLE_CHOICES,
    clear_cache,
    cpu_precision,
    loaded,
    noise_coefficients_of,
    noise_level_of,
    run_model,
    set_threads,
    tile_batch,
)
from .store import find_model_files, read_card

__all__ = ["MAX_HALO", "MODEL_TILE", "register_models"]

MODEL_TILE = 512  # default tile: fits any machine's memory, large enough to amortise the halo
MAX_HALO = 32  # measured: a trained U-Net's output changes < 0.05 grey levels beyond it


def _infer_batch(blocks: list[np.ndarray], **params) -> list[np.ndarray]:
    """:func:`_infer` on several same-sized blocks at once (one forward pass)."""
    return list(_infer(np.stack(blocks), **params))


def _infer(
    block,
    *,
    card_path,
    norm_low,
    norm_high,
    device="auto",
    strength=None,
    noise_gain=None,
    noise_floor=None,
    ensemble=1,
    blend=None,
):
    set_threads()
    model, card = loaded(card_path, device)
    # bf16 or fp32 on the CPU: measured on this machine at first use, not read from the
    # card (a card written on one CPU is wrong on another).
    on_cpu = next(model.parameters()).device.type == "cpu"
    bf16 = on_cpu and cpu_precision(model, card["weights"]["sha256"]) == "bf16"
    if norm_low is None or norm_high is None:  # called directly on one block
        norm_low, norm_high = np.percentile(block, [0.1, 99.9])
    level = strength
    if card.get("noise_input") == "poisson-gaussian":
        if noise_gain is None or noise_floor is None:  # called directly on one block
            span = max(float(norm_high - norm_low), 1e-12)
            noise_gain, noise_floor = noise_coefficients_of([(block - norm_low) / span])
        s2 = float(1.0 if strength is None else strength) ** 2  # strength scales the std
        level = (noise_gain * s2, noise_floor * s2)
    out = run_model(
        model,
        block,
        low=norm_low,
        high=norm_high,
        bf16=bf16,
        noise_level=level,
        ensemble=int(ensemble),
    )
    if blend is not None and float(blend) < 1.0:  # pixel by pixel: tiles stay seamless
        w = np.float32(blend)
        out = w * out + (np.float32(1) - w) * np.asarray(block, np.float32)
    return out


BLEND_CROP = 512  # the blend weight is chosen on the central crop of one sample plane


def choose_blend(samples, params, *, card_path, rule) -> float:
    """The share of the network's output in ``w * output + (1 - w) * input`` for this image,
    chosen without ground truth: the SURE-optimal ``w``
    (:func:`~..denoise.selfcheck.blend_weight`) on the central crop of the middle sample,
    moved towards 1 by the card's ``deadband`` (SURE-optimal weights just below 1 were
    noise on real low-SNR images; only clear over-smoothing is backed off)."""
    from ..denoise.calibrate import center_crop
    from ..denoise.selfcheck import blend_weight

    plane = center_crop(np.asarray(samples[len(samples) // 2], np.float32), BLEND_CROP)
    if plane.ndim != 2 or min(plane.shape) < 32:
        return 1.0
    fixed = {k: v for k, v in params.items() if k != "blend"}

    def net(image):
        return _infer(image, card_path=card_path, **fixed)

    w = blend_weight(plane, net)
    deadband = float(rule.get("deadband", 0.0))
    return float(min(1.0, w + deadband))


def _auto(samples, params, *, card, card_path=None):
    norm = card.get("normalisation", {})
    lo_q, hi_q = float(norm.get("low", 0.1)), float(norm.get("high", 99.9))
    values = np.concatenate([np.asarray(s, np.float32).ravel() for s in samples])
    lo, hi = (float(v) for v in np.percentile(values, [lo_q, hi_q]))
    if not hi > lo:
        hi = lo + 1.0
    if params.get("norm_low") is None:
        params["norm_low"] = lo
    if params.get("norm_high") is None:
        params["norm_high"] = hi
    if card.get("noise_input") == "poisson-gaussian":
        if params.get("noise_gain") is None or params.get("noise_floor") is None:
            span = params["norm_high"] - params["norm_low"]
            a, b = noise_coefficients_of(
                [(np.asarray(s, np.float32) - params["norm_low"]) / span for s in samples]
            )
            params["noise_gain"] = a if params.get("noise_gain") is None else params["noise_gain"]
            params["noise_floor"] = (
                b if params.get("noise_floor") is None else params["noise_floor"]
            )
    elif "strength" in params and params["strength"] is None:
        span = params["norm_high"] - params["norm_low"]
        params["strength"] = noise_level_of(
            [(np.asarray(s, np.float32) - params["norm_low"]) / span for s in samples]
        )
    rule = card.get("blend")
    if rule and card_path is not None and params.get("blend") is None:
        params["blend"] = choose_blend(samples, params, card_path=card_path, rule=rule)
    return params


def _method_for(card_path: Path) -> Method:
    try:
        card = read_card(card_path)
    except ModelFileError as err:
        return Method(
            card_path.stem,
            lambda block, **_: block,
            kind="model",
            title=card_path.stem,
            description="Model file that cannot be used.",
            available=False,
            unavailable_reason=str(err),
        )
    params = [
        Param("norm_low", float, None, "Intensity mapped to 0 for the network (0.1th percentile)"),
        Param(
            "norm_high", float, None, "Intensity mapped to 1 for the network (99.9th percentile)"
        ),
    ]
    if card.get("noise_input") == "poisson-gaussian":
        params += [
            Param(
                "strength",
                float,
                1.0,
                "Multiplies the noise the network is told (1: as estimated); larger smooths more",
                0.0,
                4.0,
            ),
            Param(
                "noise_gain",
                float,
                None,
                "Poisson part a of the noise variance a*x+b, normalised units (estimated)",
                0.0,
                None,
            ),
            Param(
                "noise_floor",
                float,
                None,
                "Constant part b of the noise variance a*x+b, normalised units (estimated)",
                None,
                None,
            ),
        ]
    elif card.get("takes_noise_level"):
        params.append(
            Param(
                "strength",
                float,
                None,
                "Noise level the network assumes, in normalised units (estimated); larger smooths more",
                0.0,
                1.0,
            )
        )
    params.append(
        Param(
            "ensemble",
            int,
            1,
            "Passes averaged (self-ensemble): the network also sees the image flipped "
            "and rotated by 90 degrees, each output turned back; 1 (off), 2, 4 or 8 "
            "(every symmetry: about 0.1 dB better, 8 times slower)",
            choices=ENSEMBLE_CHOICES,
        )
    )
    if card.get("blend"):
        params.append(
            Param(
                "blend",
                float,
                None,
                "Share of the network's output mixed with the input (1: the network alone); "
                "chosen per image without ground truth (SURE) when unset",
                0.0,
                1.0,
            )
        )
    params.append(Param("device", str, "auto", "Compute device", choices=DEVICES))
    # The halo measured on held-out data (scripts/measure_halo.py), else the reach capped.
    reach = int(card.get("halo", min(int(card.get("reach", MAX_HALO)), MAX_HALO)))
    training = card.get("training", {})
    return Method(
        card["name"],
        partial(_infer, card_path=str(card_path)),
        tuple(params),
        kind="model",
        halo=lambda p, _r=reach: _r,
        auto=partial(_auto, card=card, card_path=str(card_path)),
        title=card.get("title", card["name"]),
        description=card.get("description", "")
        or f"{card['architecture']} network trained on {', '.join(training.get('data', [])) or 'unknown data'}.",
        default_rank=card.get("default_rank"),
        model=ModelInfo(
            name=card["name"],
            architecture=card["architecture"],
            sha256=card["weights"]["sha256"],
            parameters=card.get("parameters"),
            config=card.get("config") or {},
            card=str(card_path),
        ),
        tile=MODEL_TILE,
        tile_batch=tile_batch,
        batch_fn=partial(_infer_batch, card_path=str(card_path)),
        # Tiles should start at multiples of this (the network's downsampling factor):
        # a U-Net is only equivariant to such shifts.
        multiple=int(card.get("multiple", 1)),
    )


_registered: set[str] = set()


def register_models() -> list[Method]:
    """(Re-)register every card found, dropping models whose files are gone.

    A user model never replaces a shipped one, nor a classical filter of the same name
    (it is skipped with a warning).
    """
    load_builtin()  # the classical filters first: a model never shadows one
    for name in _registered:
        unregister(name)
    _registered.clear()
    registered = []
    for path in find_model_files():
        method = _method_for(path)
        if method.name in _registered:
            continue
        if is_registered(method.name):
            warnings.warn(
                f"Model {path} is not registered: a method named '{method.name}' exists; "
                "rename the model's files.",
                stacklevel=2,
            )
            continue
        _registered.add(method.name)
        registered.append(register(method))
    clear_cache()
    return registered

"""Every model card found becomes a :class:`~..methods.Method` of kind ``"model"``.

Registration reads the JSON cards alone: torch is imported only when a model first
runs. A card that cannot be read, or whose fields have the wrong type or range
(:func:`.store.card_problems`), is registered as unavailable, with the reason, so one
bad file never hides the other methods.

Which model is the default: only the shipped cards' ``default_rank`` counts (a user
card's is ignored), unless the user names one with the environment variable
``NAPARI_DENOISE_DEFAULT_MODEL`` (a shipped or user model).

Tiling: a network whose output depends only on inputs within ``halo`` pixels (the card's
measured ``halo``, else its receptive ``reach``) tiles exactly with that halo. A network
with operations over the whole image (channel attention, transposed attention) cannot be
tiled exactly: its card says ``"tileable": false`` and it runs each plane whole, up to
``whole_plane_max_pixels``; larger planes are refused with a message.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import ModelFileError, ParameterError
from ..denoise.filters import FILTERS
from ..denoise.fusion import FUSION_REACH, NEIGHBOURS_CHOICES, fusion_reach
from ..denoise.fusion import combine as combine_window
from ..denoise.selfcheck import (
    DETAIL_MAX_WIDTH,
    detail_from_probes,
    gaussian_choice,
    probe_planes,
    put_back,
    smooth,
)
from ..device import DEVICE_LABELS, DEVICES
from ..method_base import Method, ModelInfo, Param, is_registered, register, unregister
from ..notes import say
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
from .reach import DETAIL_CROP, MODEL_TILE, TILE_PER_OVERLAP, _halo
from .store import SHIPPED_DIR, find_model_files, read_card

__all__ = ["DEFAULT_MODEL_ENV", "MAX_HALO", "MODEL_TILE", "WHOLE_PLANE", "register_models"]

# Default tile: large enough that the overlap two tiles share is a small part of each
# (fewer seams, less work computed twice), small enough for any machine's memory; a
# network with a long reach gets a tile of at least TILE_PER_OVERLAP times its overlap.
MAX_HALO = 32  # halo of a card that states neither its halo nor its reach
# The halo of a network that must see the whole plane: far more than any plane, so the
# tiling (which makes a tile several times its overlap) always puts a plane in one tile.
WHOLE_PLANE = 1 << 24
WHOLE_PLANE_MAX_PIXELS = 2048 * 2048  # a non-tileable card without its own limit
DEFAULT_MODEL_ENV = "NAPARI_DENOISE_DEFAULT_MODEL"
USER_DEFAULT_RANK = 1_000_000  # the model the user names in DEFAULT_MODEL_ENV


def _infer_batch(blocks: list[np.ndarray], **params) -> list[np.ndarray]:
    """:func:`_infer` on several same-sized blocks at once (one forward pass)."""
    return list(_infer(np.stack(blocks), **params))


def _infer(
    block,
    *,
    card_path,
    name="",
    whole_plane_max_pixels=None,
    norm_low,
    norm_high,
    device="auto",
    strength=None,
    noise_gain=None,
    noise_floor=None,
    ensemble=1,
    detail=None,
    detail_width=None,
    gaussian_share=None,
    gaussian_sigma=None,
):
    share = float(gaussian_share or 0.0)
    if share >= 1.0:  # the Gaussian alone: the network need not run
        return _gaussian_of(block, gaussian_sigma)
    limit = whole_plane_max_pixels
    if limit is not None and np.shape(block)[-2] * np.shape(block)[-1] > limit:
        ny, nx = np.shape(block)[-2:]
        raise ParameterError(
            f"Model '{name}' cannot be tiled (its attention spans the whole image), so it "
            f"runs each plane whole, up to {limit / 1e6:.1f} megapixels; this plane is "
            f"{ny}x{nx} ({ny * nx / 1e6:.1f} megapixels). Crop the image, or choose a "
            "tileable model."
        )
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
    if detail is not None and float(detail) > 0.0:
        # The tiles' halo grows by the Gaussian's reach (_halo), so the tiles stay as
        # exact as the network's own output.
        width = min(float(detail_width or 0.0), DETAIL_MAX_WIDTH)
        out = put_back(out, block, float(detail), width)
    if share > 0.0:  # the Gaussian mixed in; the tiles' halo covers its reach (_halo)
        gauss = _gaussian_of(block, gaussian_sigma)
        out = np.float32(1.0 - share) * np.asarray(out, np.float32) + np.float32(share) * gauss
    return out


def _gaussian_of(block, sigma) -> np.ndarray:
    """The self-calibrated Gaussian's blur of ``block`` (each plane), in float32."""
    if sigma is None or float(sigma) <= 0:
        raise ParameterError("A Gaussian share needs its blur width (gaussian_sigma > 0).")
    return smooth(np.asarray(block, np.float32), float(sigma)).astype(np.float32, copy=False)


def choose_detail(
    samples, params, *, card_path, rule, amount=None, width=None
) -> tuple[float, float]:
    """How much of the image's own detail to put back into the network's output, and how
    smoothed (:func:`choose_additions` without the Gaussian)."""
    chosen = choose_additions(
        samples, params, card_path=card_path, rule=rule, amount=amount, width=width
    )
    return chosen["detail"], chosen["detail_width"]


def choose_additions(
    samples, params, *, card_path, rule, amount=None, width=None, fallback=None
) -> dict:
    """What to add to the network's output for this image, from one SURE probe of the
    network on the central crop of each sample plane (a stack's planes share one setting):

    - ``detail``, ``detail_width``: how much of the image's own detail to put back, and how
      smoothed, ``output + detail * G_width(input - output)``, of lowest estimated error
      (SURE under a noise ``1 + margin`` times the estimated one,
      :func:`~..denoise.selfcheck.detail_choice`; none may find it harmful). A given
      ``amount`` or ``width`` is kept, the other chosen for it.
    - with the card's ``gaussian_fallback`` rule (``fallback``) and ``gaussian_share`` not
      given: the share of the self-calibrated Gaussian mixed into that result, by SURE of
      the blend against SURE of the result (:func:`~..denoise.selfcheck.gaussian_choice`),
      only where the Gaussian is estimated better by the rule's margin; its blur width
      ``gaussian_sigma`` is the Gaussian filter's own automatic one.

    Returns the chosen values (and ``_gaussian_gain``: how much lower SURE of the best blend
    is than SURE of the result, in units of the noise variance)."""
    from ..denoise.calibrate import center_crop

    planes = [center_crop(np.asarray(s, np.float32), DETAIL_CROP) for s in samples]
    if not planes or any(p.ndim != 2 or min(p.shape) < 32 for p in planes):
        return {"detail": 0.0, "detail_width": 0.0, **({"gaussian_share": 0.0} if fallback else {})}
    # what the network takes (not what is chosen here, nor the fusion of neighbours)
    skip = ("detail", "detail_width", "gaussian_share", "gaussian_sigma", "neighbours")
    fixed = {k: v for k, v in params.items() if k not in skip}

    def net(image):
        return _infer(image, card_path=card_path, **fixed)

    probes = probe_planes(planes, net)
    if amount is not None and float(amount) <= 0.0:  # the network alone: no width
        chosen = {"detail": 0.0, "detail_width": 0.0 if width is None else float(width)}
    else:
        rule = rule or {}
        if width is not None:
            widths = (min(float(width), DETAIL_MAX_WIDTH),)
        else:
            widths = tuple(float(w) for w in rule.get("widths", (0.0,)))
            widths = tuple(w for w in widths if w <= DETAIL_MAX_WIDTH) or (0.0,)
        margin = float(rule.get("margin", 0.0))
        if rule or amount is not None:
            best = detail_from_probes(probes, widths=widths, margin=margin, amount=amount)
        else:  # no detail rule: the network alone
            best = (0.0, 0.0)
        chosen = {"detail": best[0], "detail_width": best[1]}
    if fallback:
        sigma = params.get("gaussian_sigma")
        if sigma is None:
            sigma = gaussian_width(samples)
        choice = gaussian_choice(
            probes,
            sigma=float(sigma),
            detail=float(chosen["detail"]),
            width=min(float(chosen["detail_width"] or 0.0), DETAIL_MAX_WIDTH),
            margin=float(fallback.get("margin", 0.0)),
        )
        chosen.update(
            gaussian_share=choice.share, gaussian_sigma=float(sigma), _gaussian_gain=choice.gain
        )
    return chosen


def gaussian_width(samples) -> float:
    """The blur width the self-calibrated Gaussian chooses for these sample planes (its own
    automatic choice, as users get it)."""
    gaussian = next(f for f in FILTERS if f.name == "gaussian")
    return float(gaussian.auto(list(samples), {"sigma": None})["sigma"])


def gaussian_words(share: float) -> str:
    """The choice in words ("" where none of the Gaussian is mixed in)."""
    if share >= 1.0:
        return (
            "The Gaussian was estimated better on this image (by SURE, without ground truth): "
            "the result is the self-calibrated Gaussian."
        )
    if share > 0.0:
        return (
            "The Gaussian was estimated better on this image (by SURE, without ground truth): "
            f"{100 * share:.0f}% of the self-calibrated Gaussian is mixed into the network's result."
        )
    return ""


def _auto(samples, params, *, card, card_path=None):
    norm = card.get("normalisation", {})
    kind = norm.get("kind", "percentile")
    values = np.concatenate([np.asarray(s, np.float32).ravel() for s in samples])
    if kind == "fixed":  # fixed intensities (imported bioimage.io models)
        lo, hi = float(norm["low"]), float(norm["high"])
    elif kind == "mean_std":  # per-image mean and standard deviation (imported models)
        lo = float(values.mean())
        hi = lo + float(values.std()) + float(norm.get("eps", 0.0))
    else:
        lo_q, hi_q = float(norm.get("low", 0.1)), float(norm.get("high", 99.9))
        # values is a fresh copy: percentile may sort it in place (no second copy)
        lo, hi = (float(v) for v in np.percentile(values, [lo_q, hi_q], overwrite_input=True))
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
    rule, fallback = card.get("detail"), card.get("gaussian_fallback")
    if card_path is None or not (rule or fallback):
        return params
    amount, width = params.get("detail"), params.get("detail_width")
    share = params.get("gaussian_share")
    if fallback and share is not None and float(share) > 0 and params.get("gaussian_sigma") is None:
        params["gaussian_sigma"] = gaussian_width(samples)  # a share given, not its width
    detail_known = amount is not None and (width is not None or float(amount) <= 0.0)
    if detail_known and (not fallback or share is not None):
        if width is None:  # the network alone: no width
            params["detail_width"] = 0.0
        return params
    chosen = choose_additions(
        samples,
        params,
        card_path=card_path,
        rule=rule,
        amount=amount,
        width=width,
        fallback=fallback if share is None else None,
    )
    chosen.pop("_gaussian_gain", None)  # SURE's estimate (benchmarks/gauss_fallback.py)
    for key, value in chosen.items():
        if key in params and params[key] is None:
            params[key] = value
    words = gaussian_words(float(params.get("gaussian_share") or 0.0))
    if words and share is None:
        say(words, 1, 1, short="Gaussian chosen")
    return params


def _method_for(card_path: Path) -> Method:
    try:
        card = read_card(card_path)
    except ModelFileError as err:
        return _unavailable(card_path, str(err))
    if card.get("window"):  # a multi-frame network: a method on (T or Z, Y, X) blocks
        from ..denoise.stack import stack_method

        try:
            return stack_method(card_path, card)
        except ParameterError as err:
            return _unavailable(card_path, str(err))
    params = [
        Param(
            "norm_low",
            float,
            None,
            "Intensity the network sees as black (auto: the image's 0.1th percentile)",
            label="Black level",
        ),
        Param(
            "norm_high",
            float,
            None,
            "Intensity the network sees as white (auto: the image's 99.9th percentile)",
            label="White level",
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
                label="Strength (1: as estimated)",
            ),
            Param(
                "noise_gain",
                float,
                None,
                "Shot-noise part a of the noise variance a·x + b, which grows with brightness "
                "(black to white = 0 to 1; auto: estimated from the image)",
                0.0,
                None,
                label="Shot noise",
            ),
            Param(
                "noise_floor",
                float,
                None,
                "Constant part b of the noise variance a·x + b, e.g. camera read noise "
                "(black to white = 0 to 1; auto: estimated from the image)",
                None,
                None,
                label="Constant noise",
            ),
        ]
    elif card.get("takes_noise_level"):
        params.append(
            Param(
                "strength",
                float,
                None,
                "Noise level the network assumes (black to white = 0 to 1; auto: estimated "
                "from the image); larger smooths more",
                0.0,
                1.0,
                label="Strength (assumed noise level)",
            )
        )
    params.append(
        Param(
            "ensemble",
            int,
            1,
            "The network also sees the image flipped and turned by 90 degrees, and the "
            "outputs are turned back and averaged (self-ensemble): 1 pass (off), 2, 4 or 8 "
            "(every flip and turn: about 0.1 dB better, 8 times slower)",
            choices=ENSEMBLE_CHOICES,
            label="Flip-and-turn averaging",
            choice_labels=tuple(
                "Off (1 pass)" if n == 1 else f"{n} passes ({n}× slower)" for n in ENSEMBLE_CHOICES
            ),
        )
    )
    if card.get("detail"):
        params += [
            Param(
                "detail",
                float,
                None,
                "Share of what the network removed that is put back, smoothed (0: the "
                "network alone; 1: all of it; auto: chosen per image without ground truth, "
                "by SURE, so a clean image is not over-smoothed)",
                0.0,
                1.0,
                label="Detail put back",
                start=0.0,  # the network alone, not "all of it"
            ),
            Param(
                "detail_width",
                float,
                None,
                "Blur width of the detail put back (0: unsmoothed, like mixing in the "
                "input; auto: chosen per image with the amount put back, or for the amount given; "
                f"at most {DETAIL_MAX_WIDTH:g})",
                0.0,
                DETAIL_MAX_WIDTH,
                label="Detail blur (pixels)",
                start=1.3,
            ),
        ]
    if card.get("gaussian_fallback"):
        params += [
            Param(
                "gaussian_share",
                float,
                None,
                "Share of the self-calibrated Gaussian mixed into the result (0: the network "
                "alone; 1: the Gaussian alone; auto: chosen per image without ground truth, "
                "by SURE, and above 0 only where the Gaussian is estimated better by a margin)",
                0.0,
                1.0,
                label="Gaussian mixed in",
                start=0.0,  # the network alone
            ),
            Param(
                "gaussian_sigma",
                float,
                None,
                "Blur width of the Gaussian mixed in (pixels; auto: the self-calibrated "
                "Gaussian's own width for this image)",
                0.1,
                20.0,
                label="Gaussian blur (pixels)",
                start=1.0,
            ),
        ]
    fuses = bool(card.get("fuse_neighbours")) and not card.get("noise_input")
    if fuses:  # a stack's planes: each fused with its matching neighbours first
        params.append(
            Param(
                "neighbours",
                str,
                "on",
                "On a time-lapse or z-stack, each plane is first averaged with the parts of "
                f"up to {2 * FUSION_REACH} neighbouring planes that match it (aligned, and "
                "tested against the noise pixel by pixel: what moved or changed is not "
                "averaged); off: every plane alone",
                choices=NEIGHBOURS_CHOICES,
                label="Use neighbouring frames",
                choice_labels=("On (where they match)", "Off (frame by frame)"),
            )
        )
    params.append(
        Param(
            "device",
            str,
            "auto",
            "Where the network runs (auto: a GPU when there is one)",
            choices=DEVICES,
            label="Compute device",
            choice_labels=DEVICE_LABELS,
        )
    )
    name = card["name"]
    multiple = int(card.get("multiple", 1))
    tileable = card.get("tileable", True)
    if tileable:
        # The halo measured with the max-error criterion (scripts/measure_halo.py), else
        # the network's whole receptive reach (exact by construction).
        halo = int(card.get("halo", card.get("reach", MAX_HALO)))
        overlap = 2 * halo + 8
        tile = max(MODEL_TILE, -(-TILE_PER_OVERLAP * overlap // 64) * 64)
        limit = None
    else:
        halo, tile = WHOLE_PLANE, None
        limit = int(card.get("whole_plane_max_pixels", WHOLE_PLANE_MAX_PIXELS))
    title = card.get("title") or name
    description = card.get("description") or (
        f"{card['architecture']} network trained on "
        f"{', '.join(map(str, (card.get('training') or {}).get('data', []))) or 'unknown data'}."
    )
    if not tileable:
        title += " (whole planes only)"
        description += (
            f" Not tileable: it attends over the whole image, so each plane runs in one "
            f"piece, whatever the tile size (up to {limit / 1e6:.0f} megapixels)."
        )
    # Only a shipped card ranks itself as the default; the user's choice is the env var.
    shipped = card_path.resolve().parent == SHIPPED_DIR
    rank = card.get("default_rank") if shipped else None
    fn_args = {"card_path": str(card_path), "name": name, "whole_plane_max_pixels": limit}
    return Method(
        name,
        partial(_infer, **fn_args),
        tuple(params),
        kind="model",
        halo=partial(_halo, network=halo),
        auto=partial(_auto, card=card, card_path=str(card_path)),
        title=title,
        description=description,
        default_rank=None if rank is None else int(rank),
        model=ModelInfo(
            name=name,
            architecture=card["architecture"],
            sha256=card["weights"]["sha256"],
            parameters=card.get("parameters"),
            config=card.get("config") or {},
            card=str(card_path),
            # id, version and weights hash of a model imported from bioimage.io
            imported_from=card.get("imported_from"),
        ),
        tile=tile,
        tile_batch=tile_batch,
        batch_fn=partial(_infer_batch, **fn_args),
        # Tiles should start at multiples of this (the network's downsampling factor):
        # a U-Net is only equivariant to such shifts.
        multiple=multiple,
        experimental=bool(card.get("experimental", False)),
        plane_reach=fusion_reach if fuses else 0,
        combine=combine_window if fuses else None,
        combine_keys=("neighbours",) if fuses else (),
    )


def _unavailable(card_path: Path, reason: str, name: str | None = None) -> Method:
    return Method(
        name or card_path.stem,
        lambda block, **_: block,
        kind="model",
        title=card_path.stem,
        description="Model file that cannot be used.",
        available=False,
        unavailable_reason=reason,
    )


_registered: set[str] = set()


def register_models() -> list[Method]:
    """(Re-)register every card found, dropping models whose files are gone.

    A user model never replaces a shipped one, nor a classical filter of the same name
    (it is skipped with a warning), whether the filters are registered yet or not.
    """
    filters = {f.name for f in FILTERS}
    for name in _registered:
        unregister(name)
    _registered.clear()
    registered = []
    for path in find_model_files():
        method = _method_for(path)
        if method.name in _registered or is_registered(method.name) or method.name in filters:
            # Shown, not hidden: listed under its file name as unavailable, with the reason.
            if (SHIPPED_DIR / f"{method.name}.json").is_file():
                taken = "a shipped model"
            elif method.name in _registered:
                taken = "another model"
            else:
                taken = "a classical filter"
            reason = (
                f"The model card {path} is not used: a method named '{method.name}' exists "
                f'({taken}). Rename its files and the card\'s "name".'
            )
            method = _unavailable(path, reason, name=path.name)
            if method.name in _registered or is_registered(method.name):
                continue
            warnings.warn(reason, stacklevel=2)
        _registered.add(method.name)
        registered.append(register(method))
    chosen = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if chosen:
        match = [m for m in registered if m.name == chosen and m.available]
        if match:
            registered[registered.index(match[0])] = register(
                dataclasses.replace(match[0], default_rank=USER_DEFAULT_RANK), replace=True
            )
        else:
            warnings.warn(
                f"{DEFAULT_MODEL_ENV}={chosen} names no usable model; the shipped default is used.",
                stacklevel=2,
            )
    clear_cache()
    return registered

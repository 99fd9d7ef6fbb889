"""Shipped and user models: safetensors weights plus a JSON model card, as methods.

A model is two files side by side: ``<name>.safetensors`` (the weights; never a pickle)
and ``<name>.json`` (its card: architecture and config, normalisation, the training
data, recipe, seed, steps and time, the parameter count, validation metrics, the
inference precision decision and the SHA-256 of the weights). Shipped models live in
the package's ``zoo/`` folder; user models in :func:`user_model_dir`.

Importing this module registers every card found as a :class:`~.methods.Method` of
kind ``"model"`` from the JSON alone: torch is imported only when a model first runs.
A card that cannot be read is registered as unavailable, with the reason, so one bad
file never hides the other methods.

Inference (:func:`run_model`) normalises a tile with the image's 0.1/99.9 percentiles
(chosen once per image by the method's ``auto`` hook, so all tiles share them), pads it
by reflection to a multiple of the network's downsampling factor, runs the network in
``torch.inference_mode`` with channels-last memory (and bf16 autocast on the CPU only
where the card records that it was measured faster and within 0.05 dB), and maps the
result back to the image's units.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError
from .device import DEVICES
from .methods import Method, Param, register

__all__ = [
    "CARD_FORMAT",
    "SHIPPED_DIR",
    "choose_cpu_precision",
    "find_model_files",
    "load_model",
    "read_card",
    "register_models",
    "run_model",
    "save_model",
    "sha256_file",
    "user_model_dir",
]

CARD_FORMAT = "napari-denoise-model/1"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "zoo"
MODEL_TILE = 512  # default tile: fits any machine's memory, large enough to amortise the halo
MAX_HALO = 32  # measured: a trained U-Net's output changes < 0.05 grey levels beyond it
GPU_TILE_BATCH = 8  # tiles per forward pass on a GPU (8 x 512^2 x 16 channels: ~130 MB a map)
BF16_MAX_PSNR_LOSS_DB = 0.05


# --- where models live ----------------------------------------------------------------------


def user_model_dir() -> Path:
    """The per-user model folder (``NAPARI_DENOISE_MODEL_DIR`` overrides it).

    Linux: ``$XDG_DATA_HOME/napari-denoise/models`` (``~/.local/share/...``); macOS:
    ``~/Library/Application Support/napari-denoise/models``; Windows:
    ``%LOCALAPPDATA%\\napari-denoise\\models``.
    """
    env = os.environ.get("NAPARI_DENOISE_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "napari-denoise" / "models"


def find_model_files() -> list[Path]:
    """Card files of the shipped models, then of the user's models, each sorted by name."""
    cards: list[Path] = []
    for folder in (SHIPPED_DIR, user_model_dir()):
        if folder.is_dir():
            cards += sorted(folder.glob("*.json"))
    return cards


def _paths(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """(card, weights) for a registered name, a card, a weights file or a path stem."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".json", ".safetensors") or os.sep in text or "/" in text
    if not looks_like_path:
        for card in find_model_files():
            if card.stem == text:
                return card, card.with_suffix(".safetensors")
        known = ", ".join(sorted({c.stem for c in find_model_files()})) or "none installed"
        raise ModelFileError(
            f"There is no model named '{text}'. Installed models: {known}. "
            f"User models go in {user_model_dir()}."
        )
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".json"), stem.with_suffix(".safetensors")


# --- cards ----------------------------------------------------------------------------------


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """A model card, checked for the fields inference needs (ModelFileError otherwise)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(f"The model card {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"The model card {path} cannot be read ({err}).") from None
    try:
        card = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFileError(
            f"The model card {path} is not valid JSON (line {err.lineno}: {err.msg}); "
            "the file is corrupt or was not written by napari-denoise."
        ) from None
    if not isinstance(card, dict):
        raise ModelFileError(f"The model card {path} does not hold a JSON object.")
    missing = [k for k in ("architecture", "config", "weights") if k not in card]
    weights = card.get("weights")
    if "weights" in card and not (isinstance(weights, dict) and "sha256" in weights):
        missing.append("weights.sha256")
    if missing:
        raise ModelFileError(
            f"The model card {path} lacks {', '.join(missing)}; it is incomplete or not a "
            "napari-denoise model card."
        )
    card.setdefault("name", path.stem)
    return card


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- loading and saving ---------------------------------------------------------------------


def load_model(name_or_path: str | os.PathLike, *, device: str = "cpu"):
    """A model in eval mode and its card, from a registered name or a card/weights path.

    Every way a model file can be wrong ends in :class:`ModelFileError` with a sentence
    saying which file and what is wrong: unknown name, missing or corrupt card, weights
    that are not safetensors, weights whose SHA-256 differs from the card's, an unknown
    architecture, tensors of the wrong name or shape.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from . import models

    card_path, weights_path = _paths(name_or_path)
    card = read_card(card_path)
    if card["weights"].get("format", "safetensors") == "torchscript":
        # A model imported from a bioimage.io package: its loader lives with the importer.
        from ..bioimageio.runtime import load_torchscript

        return load_torchscript(card_path, card, device=device)
    if not weights_path.exists():
        raise ModelFileError(
            f"The weights of model '{card['name']}' are missing: {weights_path} does not exist."
        )
    digest = sha256_file(weights_path)
    if digest != card["weights"]["sha256"]:
        raise ModelFileError(
            f"The weights file {weights_path} does not match its card: its SHA-256 is "
            f"{digest[:12]}..., the card expects {card['weights']['sha256'][:12]}.... "
            "The file is corrupt or was replaced; reinstall or retrain the model."
        )
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(
            f"The weights file {weights_path} is not a readable safetensors file ({err})."
        ) from None
    try:
        model = models.build(card["architecture"], card["config"])
    except KeyError as err:
        raise ModelFileError(
            f"Model '{card['name']}' needs architecture '{card['architecture']}', which this "
            f"version of napari-denoise does not have. {err.args[0]}"
        ) from None
    except (TypeError, ValueError) as err:
        raise ModelFileError(
            f"The card of model '{card['name']}' has an invalid config for "
            f"'{card['architecture']}': {err}"
        ) from None
    _check_state(model, state, card["name"], weights_path)
    model.load_state_dict(state, strict=True)
    model.eval().to(device)
    if device != "mps":  # channels-last is the fast layout for oneDNN and cuDNN
        model = model.to(memory_format=torch.channels_last)
    return model, card


def _check_state(model, state: Mapping[str, Any], name: str, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) (e.g. '{missing[0]}')")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) (e.g. '{unexpected[0]}')")
        raise ModelFileError(
            f"The weights file {path} does not fit model '{name}': {' and '.join(parts)}. "
            "Card and weights belong to different networks."
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelFileError(
                f"The weights file {path} does not fit model '{name}': tensor '{key}' has "
                f"shape {tuple(state[key].shape)}, the architecture expects {tuple(tensor.shape)}."
            )


def save_model(module, card: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """Write ``module``'s weights and its completed card atomically; return the card.

    ``path`` is the weights file, the card file or their common stem. The card gets the
    architecture, config, parameter count, receptive field, format and the SHA-256 of
    the weights as written; other fields (training record, metrics) are kept as given.
    """
    import torch
    from safetensors.torch import save_file

    from .models import config_dict, count_parameters

    card_path, weights_path = _paths(Path(path))
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    _atomic_write(weights_path, lambda tmp: save_file(state, tmp))
    out = dict(card)
    out.update(
        format=CARD_FORMAT,
        name=out.get("name") or card_path.stem,
        architecture=module.architecture,
        config=config_dict(module),
        parameters=count_parameters(module),
        multiple=int(module.multiple),
        reach=int(module.reach),
        takes_noise_level=bool(getattr(module, "takes_noise_level", False)),
        noise_input=getattr(module, "noise_input", None),
        weights={
            "file": weights_path.name,
            "sha256": sha256_file(weights_path),
            "bytes": weights_path.stat().st_size,
        },
    )
    out.setdefault("normalisation", {"kind": "percentile", "low": 0.1, "high": 99.9})
    out.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    out.setdefault("torch", torch.__version__)
    text = json.dumps(out, indent=2, sort_keys=False) + "\n"
    _atomic_write(card_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out


# --- inference ------------------------------------------------------------------------------

_threads_set = False


def _set_threads() -> None:
    # All cores by default. On a machine shared with other busy processes, threads that
    # wait for each other can be several times slower than one: NAPARI_DENOISE_THREADS=1.
    global _threads_set
    if not _threads_set:
        import torch

        torch.set_num_threads(int(os.environ.get("NAPARI_DENOISE_THREADS") or os.cpu_count() or 1))
        _threads_set = True


def run_model(
    model,
    image: np.ndarray,
    *,
    low: float,
    high: float,
    bf16: bool = False,
    noise_level: float | tuple[float, float] | None = None,
    device: str | None = None,
    ensemble: int = 1,
) -> np.ndarray:
    """Denoise a 2-D float image in its own units with a network from :mod:`.models`.

    ``(image - low) / (high - low)`` is what the network sees; the output is mapped back.
    The image is reflect-padded to a multiple of ``model.multiple``. Networks told the
    noise get ``noise_level`` in those normalised units: a standard deviation, or the
    ``(a, b)`` of ``Var = a * x + b`` for those with ``noise_input == "poisson-gaussian"``.
    A 3-D ``image`` is a batch of same-sized 2-D images (tiles) run in one forward pass,
    all with the same normalisation and noise.

    ``ensemble`` > 1 averages the outputs for that many flips and 90-degree rotations
    of the input (:data:`ENSEMBLE_CHOICES`; each output turned back first): a
    "self-ensemble" that costs ``ensemble`` forward passes.
    """
    import torch
    import torch.nn.functional as F

    if ensemble not in ENSEMBLE_CHOICES:
        raise ValueError(f"ensemble must be one of {ENSEMBLE_CHOICES}, not {ensemble!r}")

    if device is None:
        device = next(model.parameters()).device.type
    span = float(high - low) if high > low else 1.0
    x = torch.from_numpy((np.asarray(image, np.float32) - np.float32(low)) / np.float32(span))
    batched = x.dim() == 3
    ny, nx = x.shape[-2:]
    n = x.shape[0] if batched else 1
    m = int(getattr(model, "multiple", 1))
    py, px = (-ny) % m, (-nx) % m
    x = x[:, None] if batched else x[None, None]
    if py or px:
        mode = "reflect" if py < ny and px < nx else "replicate"
        x = F.pad(x, (0, px, 0, py), mode=mode)
    x = x.to(device)
    if device != "mps":
        x = x.contiguous(memory_format=torch.channels_last)
    # Mixed precision: bf16 on the CPU only where measured faster (the card says); on a
    # CUDA GPU always (bf16 where supported, else fp16), as inference there is memory bound.
    if device == "cuda":
        gpu_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        precision = torch.autocast("cuda", gpu_dtype)
    else:
        precision = torch.autocast("cpu", torch.bfloat16, enabled=bf16 and device == "cpu")
    if getattr(model, "noise_input", None) == "poisson-gaussian":
        if noise_level is None:
            raise ValueError("this network needs the noise coefficients (a, b)")
        extra = (torch.tensor([list(noise_level)] * n, dtype=torch.float32, device=device),)
    elif getattr(model, "takes_noise_level", False):
        extra = (
            torch.tensor([noise_level if noise_level is not None else 0.05] * n, device=device),
        )
    else:
        extra = ()
    with torch.inference_mode(), precision:
        y = None
        for transpose, flips in _ENSEMBLE_ORDER[:ensemble]:
            t = x.transpose(-2, -1) if transpose else x
            t = t.flip(flips) if flips else t
            if t is not x and device != "mps":
                t = t.contiguous(memory_format=torch.channels_last)
            out = model(t, *extra).float()
            out = out.flip(flips) if flips else out
            out = out.transpose(-2, -1) if transpose else out
            y = out if y is None else y + out
        y = y / ensemble if ensemble > 1 else y
    y = y[:, 0, :ny, :nx].cpu().numpy()
    y = y if batched else y[0]
    return (y * np.float32(span) + np.float32(low)).astype(np.float32)


# The self-ensemble's transforms, in the order they are added: (transpose, flipped axes).
# The first four keep a tile's shape; 2 = a mirror image, 4 = all flips, 8 = all eight
# symmetries of the square.
_ENSEMBLE_ORDER = (
    (False, ()),
    (False, (-1,)),
    (False, (-2,)),
    (False, (-2, -1)),
    (True, ()),
    (True, (-1,)),
    (True, (-2,)),
    (True, (-2, -1)),
)
ENSEMBLE_CHOICES = (1, 2, 4, 8)


def noise_for(model, normalised: np.ndarray):
    """What a network told the noise gets for one normalised image (None for blind ones):
    the ``(a, b)`` coefficients or the noise standard deviation, estimated from it."""
    if getattr(model, "noise_input", None) == "poisson-gaussian":
        return _coefficients([normalised])
    if getattr(model, "takes_noise_level", False):
        return _noise_level([normalised])
    return None


def choose_cpu_precision(
    model, pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, repeats: int = 3
) -> dict:
    """Measure bf16 autocast against fp32 on the CPU; use it only if faster and harmless.

    ``pairs`` are (noisy, clean) images in the same units. Returns the record stored in a
    card's ``inference`` field: ms per megapixel both ways, the mean PSNR change bf16
    makes, and the decision (bf16 only if faster and within 0.05 dB).
    """
    from .metrics import psnr

    model = model.to("cpu")
    result: dict[str, Any] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    pixels = sum(z.size for z, _ in pairs)
    for label, bf16 in (("fp32", False), ("bf16", True)):
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            outs = []
            for noisy, _ in pairs:
                lo, hi = np.percentile(noisy, [0.1, 99.9])
                level = noise_for(model, (noisy - lo) / max(hi - lo, 1e-12))
                outs.append(run_model(model, noisy, low=lo, high=hi, bf16=bf16, noise_level=level))
            best = min(best, time.perf_counter() - start)
        outputs[label] = outs
        result[f"{label}_ms_per_mp"] = round(1e3 * best / (pixels / 1e6), 1)
    deltas = []
    for (_, clean), a, b in zip(pairs, outputs["fp32"], outputs["bf16"], strict=True):
        rng = float(clean.max() - clean.min()) or 1.0
        deltas.append(psnr(clean, b, data_range=rng) - psnr(clean, a, data_range=rng))
    result["bf16_psnr_change_db"] = round(float(np.mean(deltas)), 4)
    result["cpu_bf16"] = bool(
        result["bf16_ms_per_mp"] < result["fp32_ms_per_mp"]
        and abs(result["bf16_psnr_change_db"]) < BF16_MAX_PSNR_LOSS_DB
    )
    return result


# --- registration as methods ----------------------------------------------------------------

_cache: dict[tuple[str, str], tuple[Any, dict]] = {}
_cache_lock = threading.Lock()


def _loaded(card_path: str, device: str):
    from .device import resolve_device

    device = resolve_device(device)
    key = (card_path, device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load_model(card_path, device=device)
        return _cache[key]


def tile_batch(params: dict) -> int:
    """How many tiles to run in one forward pass: :data:`GPU_TILE_BATCH` on a GPU (where
    one tile leaves most of it idle), 1 on the CPU (measured: batches of 2-4 tiles of
    448 pixels were no faster per pixel than one at a time; ``NAPARI_DENOISE_TILE_BATCH``
    overrides both)."""
    from .device import resolve_device

    env = os.environ.get("NAPARI_DENOISE_TILE_BATCH", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return 1 if resolve_device(params.get("device", "auto")) == "cpu" else GPU_TILE_BATCH


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
):
    _set_threads()
    model, card = _loaded(card_path, device)
    bf16 = bool(card.get("inference", {}).get("cpu_bf16", False))
    if norm_low is None or norm_high is None:  # called directly on one block
        norm_low, norm_high = np.percentile(block, [0.1, 99.9])
    level = strength
    if card.get("noise_input") == "poisson-gaussian":
        if noise_gain is None or noise_floor is None:  # called directly on one block
            span = max(float(norm_high - norm_low), 1e-12)
            noise_gain, noise_floor = _coefficients([(block - norm_low) / span])
        s2 = float(1.0 if strength is None else strength) ** 2  # strength scales the std
        level = (noise_gain * s2, noise_floor * s2)
    return run_model(
        model,
        block,
        low=norm_low,
        high=norm_high,
        bf16=bf16,
        noise_level=level,
        ensemble=int(ensemble),
    )


def _coefficients(samples: Sequence[np.ndarray]) -> tuple[float, float]:
    """Median ``(a, b)`` noise coefficients of normalised samples (planes of an image)."""
    from .calibrate import noise_coefficients

    found = [noise_coefficients(s) for s in samples if min(s.shape[-2:]) >= 32]
    if not found:
        return 1e-4, 1e-4
    a, b = np.median(np.asarray(found), axis=0)
    return float(a), float(b)


def _auto(samples, params, *, card):
    norm = card.get("normalisation", {})
    values = np.concatenate([np.asarray(s, np.float32).ravel() for s in samples])
    kind = norm.get("kind", "percentile")
    if kind == "fixed":  # fixed intensities (imported bioimage.io models)
        lo, hi = float(norm["low"]), float(norm["high"])
    elif kind == "mean_std":  # per-image mean and standard deviation (imported models)
        lo = float(values.mean())
        hi = lo + float(values.std()) + float(norm.get("eps", 0.0))
    else:
        lo_q, hi_q = float(norm.get("low", 0.1)), float(norm.get("high", 99.9))
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
            a, b = _coefficients(
                [(np.asarray(s, np.float32) - params["norm_low"]) / span for s in samples]
            )
            params["noise_gain"] = a if params.get("noise_gain") is None else params["noise_gain"]
            params["noise_floor"] = (
                b if params.get("noise_floor") is None else params["noise_floor"]
            )
    elif "strength" in params and params["strength"] is None:
        span = params["norm_high"] - params["norm_low"]
        params["strength"] = _noise_level(
            [(np.asarray(s, np.float32) - params["norm_low"]) / span for s in samples]
        )
    return params


def _noise_level(samples: Sequence[np.ndarray]) -> float:
    """Noise standard deviation of normalised samples, counting correlated noise in full.

    The wavelet estimate sees only the finest scale; noise shared between neighbours
    holds more energy than that, by the ratio :func:`noise_correlation_ratio` measures.
    """
    from .calibrate import center_crop, noise_correlation_ratio
    from .noise import estimate_sigma

    levels = []
    for s in samples:
        s = center_crop(s, 512)
        if min(s.shape) < 16:
            continue
        ratio = min(max(noise_correlation_ratio(s), 1.0), 9.0)
        levels.append(estimate_sigma(s) * np.sqrt(ratio))
    return float(np.median(levels)) if levels else 0.05


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
        auto=partial(_auto, card=card),
        title=card.get("title", card["name"]),
        description=card.get("description", "")
        or f"{card['architecture']} network trained on {', '.join(training.get('data', [])) or 'unknown data'}.",
        default_rank=card.get("default_rank"),
        extra={
            "model": {
                "name": card["name"],
                "architecture": card["architecture"],
                "sha256": card["weights"]["sha256"],
                "parameters": card.get("parameters"),
                "config": card.get("config") or {},
                "card": str(card_path),
                # id, version and weights hash of a model imported from bioimage.io
                **({"imported_from": card["imported_from"]} if "imported_from" in card else {}),
            },
            "tile": MODEL_TILE,
            # Tiles per forward pass (``tile_batch(params)``) and the batched function.
            "tile_batch": tile_batch,
            "batch_fn": partial(_infer_batch, card_path=str(card_path)),
            # Tiles should start at multiples of this (the network's downsampling factor):
            # a U-Net is only equivariant to such shifts.
            "multiple": int(card.get("multiple", 1)),
        },
    )


_registered: set[str] = set()


def register_models() -> list[Method]:
    """(Re-)register every card found, dropping models whose files are gone.

    A user model never replaces a shipped one, nor a classical filter of the same name
    (it is skipped with a warning).
    """
    from . import filters  # noqa: F401  (classical names first: a model never shadows one)
    from .methods import is_registered, unregister

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
    with _cache_lock:
        _cache.clear()
    return registered


register_models()

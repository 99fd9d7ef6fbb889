"""Running a network on an image: normalisation, padding, precision, self-ensemble.

:func:`run_model` normalises a tile with the image's 0.1/99.9 percentiles (chosen once
per image by the method's ``auto`` hook, so all tiles share them), pads it by reflection
to a multiple of the network's downsampling factor, runs the network in
``torch.inference_mode`` with channels-last memory (and bf16 autocast on the CPU only
where :func:`cpu_precision` measured it faster and harmless on this machine), and maps the
result back to the image's units. Loaded models are cached per card and device.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..notes import say
from .store import load_model

__all__ = [
    "ENSEMBLE_CHOICES",
    "choose_cpu_precision",
    "cpu_precision",
    "decide_precision",
    "loaded",
    "noise_coefficients_of",
    "noise_for",
    "noise_level_of",
    "probe_precision",
    "run_model",
    "tile_batch",
]

GPU_TILE_BATCH = 8  # tiles per forward pass on a GPU (8 x 512^2 x 16 channels: ~130 MB a map)
BF16_MAX_PSNR_LOSS_DB = 0.05


# --- inference ------------------------------------------------------------------------------

_threads_set = False


def set_threads() -> None:
    """Give torch every core once per process (``NAPARI_DENOISE_THREADS`` overrides it;
    a value that is not a whole number >= 1 raises ParameterError, see
    :func:`~napari_denoise.engine.device.env_threads`)."""
    # All cores by default. On a machine shared with other busy processes, threads that
    # wait for each other can be several times slower than one: NAPARI_DENOISE_THREADS=1.
    global _threads_set
    if not _threads_set:
        import torch

        from ..device import env_threads

        torch.set_num_threads(env_threads() or os.cpu_count() or 1)
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
    """Denoise a 2-D float image in its own units with a network from :mod:`napari_denoise.engine.models`.

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
        return noise_coefficients_of([normalised])
    if getattr(model, "takes_noise_level", False):
        return noise_level_of([normalised])
    return None


def choose_cpu_precision(
    model, pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, repeats: int = 3
) -> dict:
    """Measure bf16 autocast against fp32 on the CPU; use it only if faster and harmless.

    ``pairs`` are (noisy, clean) images in the same units. Returns the record stored in a
    card's ``inference`` field: ms per megapixel both ways, the mean PSNR change bf16
    makes, and the decision (bf16 only if faster and within 0.05 dB).
    """
    from ..metrics import psnr

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


# --- precision, decided on the machine that runs the model --------------------------------

PRECISION_ENV = "NAPARI_DENOISE_PRECISION"  # auto (default), fp32 or bf16
PRECISIONS = ("auto", "fp32", "bf16")
# bf16 must be this much faster (a shared machine's timings jitter by some percent) ...
BF16_MIN_SPEEDUP = 1.1
# ... and change the output by at most this much, in the network's normalised units (the
# image's 0.1-99.9 percentile range is 1): 0.05% of the range on average (0.13 grey levels
# of 8 bits; unet-fluo: 0.015%), 1% anywhere. A network whose output is not added to its
# input (no residual) returns bf16 numbers, rounded to 0.4% of their value: refused.
BF16_MAX_MEAN_CHANGE = 5e-4
BF16_MAX_CHANGE = 0.01
PROBE_SIDE = 512  # the engine's CPU tile (registry.MODEL_TILE): the size that is timed
PRECISION_CACHE_VERSION = 2  # bumped when the bounds change: decide again
PRECISION_CACHE_ENTRIES = 64  # the most recent decisions kept (each fine-tune is a new model)

_precision_memo: dict[str, str] = {}
_precision_lock = threading.Lock()
# How far the running probe is ([done, total]): a thread waiting for it says so too.
_probing = [0, 1]
PROBE_NOTE = (
    "Measuring this computer's speed with this model (once; the answer is kept): run {} of {}…"
)


def user_cache_dir() -> Path:
    """Where napari-denoise keeps what it measured on this machine (``NAPARI_DENOISE_CACHE_DIR``
    overrides it)."""
    env = os.environ.get("NAPARI_DENOISE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif platform.system() == "Darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "napari-denoise"


def precision_cache_path() -> Path:
    return user_cache_dir() / "precision.json"


@functools.cache  # read once per process: it is part of the key looked up for every tile
def cpu_name() -> str:
    """The processor's model string (``/proc/cpuinfo`` on Linux, else :mod:`platform`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def machine_key(weights_sha256: str) -> str:
    """What a precision decision holds for: this CPU, torch version, thread count, weights."""
    import torch

    return (
        f"{cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{weights_sha256}"
    )


def precision_override() -> str:
    """The user's choice in ``NAPARI_DENOISE_PRECISION`` (``auto`` when unset)."""
    value = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
    if value not in PRECISIONS:
        from ...errors import ParameterError

        raise ParameterError(
            f"{PRECISION_ENV} must be one of {', '.join(PRECISIONS)}, not {value!r}."
        )
    return value


def decide_precision(probe: dict) -> str:
    """``"bf16"`` if the probe found it faster by :data:`BF16_MIN_SPEEDUP` and its output
    within the bounds (mean and largest change, normalised units), else ``"fp32"``."""
    faster = probe["bf16_ms_per_mp"] * BF16_MIN_SPEEDUP <= probe["fp32_ms_per_mp"]
    close = probe["mean_change"] <= BF16_MAX_MEAN_CHANGE and probe["max_change"] <= BF16_MAX_CHANGE
    return "bf16" if faster and close else "fp32"


def conclusive(probe: dict) -> bool:
    """Whether a probe's answer may be kept for later runs: bf16 chosen, or refused for its
    output, or clearly slower. Timings within the margin of each other (both precisions
    equally slow, as on a machine whose cores are busy with other work) decide fp32 for
    this process only, and the next process probes again."""
    if decide_precision(probe) == "bf16":
        return True
    close = probe["mean_change"] <= BF16_MAX_MEAN_CHANGE and probe["max_change"] <= BF16_MAX_CHANGE
    return not close or probe["bf16_ms_per_mp"] >= probe["fp32_ms_per_mp"] * BF16_MIN_SPEEDUP


def probe_image() -> np.ndarray:
    """A real image shipped with the package (membrane time-lapse, frame 0), reflected to
    the engine's tile size: what the precision probe times and compares."""
    import tifffile

    path = Path(__file__).resolve().parents[2] / "sample_data" / "membrane_timelapse.tif"
    frame = np.asarray(tifffile.imread(path)[0], np.float32)
    py, px = max(PROBE_SIDE - frame.shape[0], 0), max(PROBE_SIDE - frame.shape[1], 0)
    frame = np.pad(frame, ((py // 2, py - py // 2), (px // 2, px - px // 2)), mode="reflect")
    return frame[:PROBE_SIDE, :PROBE_SIDE]


def probe_precision(
    model, image: np.ndarray | None = None, *, repeats: int = 3, timer=time.perf_counter
) -> dict:
    """Time a model in fp32 and with bf16 autocast on the CPU and compare the outputs.

    The two precisions alternate ``repeats`` times (after one warm-up each) and the best
    time of each counts, so a burst of load on a shared machine hurts both alike. The
    change bf16 makes is measured in the network's normalised units (the image's
    0.1-99.9 percentile range is 1). Returns ms per megapixel both ways, the mean and
    largest change, and the decision of :func:`decide_precision`.
    """
    image = probe_image() if image is None else np.asarray(image, np.float32)
    lo, hi = (float(v) for v in np.percentile(image, [0.1, 99.9]))
    hi = hi if hi > lo else lo + 1.0
    level = noise_for(model, (image - lo) / (hi - lo))
    outputs: dict[str, np.ndarray] = {}
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for i in range(repeats + 1):
        for label in ("fp32", "bf16"):
            _probing[:] = [2 * i + (label == "bf16"), 2 * (repeats + 1)]
            say(
                PROBE_NOTE.format(_probing[0] + 1, _probing[1]),
                *_probing,
                short="Measuring speed (once)",
            )
            start = timer()
            out = run_model(model, image, low=lo, high=hi, bf16=label == "bf16", noise_level=level)
            if i:  # the first pass of each is a warm-up
                best[label] = min(best[label], timer() - start)
            outputs[label] = out
    return precision_record(best, outputs, pixels=image.size, span=hi - lo)


def precision_record(best: dict, outputs: dict, *, pixels: int, span: float) -> dict:
    """The probe's record from the best fp32/bf16 times (s) and their outputs on ``pixels``
    pixels of intensity span ``span``: speed per megapixel, bf16's change, the decision."""
    change = np.abs(outputs["bf16"] - outputs["fp32"]) / span
    mp = pixels / 1e6
    record = {
        "fp32_ms_per_mp": round(1e3 * best["fp32"] / mp, 1),
        "bf16_ms_per_mp": round(1e3 * best["bf16"] / mp, 1),
        "mean_change": float(change.mean()),
        "max_change": float(change.max()),
    }
    record["precision"] = decide_precision(record)
    return record


def _read_precision_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or unreadable: probe again, and write a good one
    if not isinstance(data, dict) or data.get("version") != PRECISION_CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def cpu_precision(
    model, weights_sha256: str, *, probe: Callable[[Any], dict] = probe_precision
) -> str:
    """The precision (``"fp32"`` or ``"bf16"``) to run ``model`` in on this CPU.

    ``NAPARI_DENOISE_PRECISION=fp32|bf16`` decides if set. Otherwise the decision is
    looked up per machine and model (:func:`machine_key`: CPU model, torch version,
    thread count, weights SHA-256) in this process, then in ``precision.json`` in the
    user cache folder; if absent, :func:`probe_precision` measures it once (about a
    second) and a :func:`conclusive` answer is stored (atomically) for the next run.
    """
    chosen = precision_override()
    if chosen != "auto":
        return chosen
    key = machine_key(weights_sha256)
    # Another thread (the widget's warm-up) may be measuring it: wait, saying how far it is.
    while key not in _precision_memo and _precision_lock.locked():
        say(
            PROBE_NOTE.format(_probing[0] + 1, _probing[1]),
            *_probing,
            short="Measuring speed (once)",
        )
        time.sleep(0.25)
    with _precision_lock:
        if key in _precision_memo:
            return _precision_memo[key]
        path = precision_cache_path()
        entries = _read_precision_cache(path)
        record = entries.get(key)
        if not (isinstance(record, dict) and record.get("precision") in ("fp32", "bf16")):
            record = dict(probe(model), date=time.strftime("%Y-%m-%d %H:%M"))
            if conclusive(record):
                entries.pop(key, None)
                entries[key] = record
                entries = dict(list(entries.items())[-PRECISION_CACHE_ENTRIES:])
                text = json.dumps(
                    {"version": PRECISION_CACHE_VERSION, "entries": entries}, indent=1
                )
                try:
                    from ...atomic import atomic_write

                    atomic_write(path, lambda fh: fh.write(text.encode()), make_parents=True)
                except OSError:  # a read-only home: decide again next time, run all the same
                    pass
        _precision_memo[key] = record["precision"]
        return record["precision"]


def forget_precision() -> None:
    """Forget the decisions made in this process (not the file): tests, a new thread count."""
    with _precision_lock:
        _precision_memo.clear()


# --- loaded models, cached -----------------------------------------------------------------

_cache: dict[tuple[str, str], tuple[Any, dict]] = {}
_cache_lock = threading.Lock()


def loaded(card_path: str, device: str):
    from ..device import resolve_device

    device = resolve_device(device)
    key = (card_path, device)
    if key not in _cache:  # said before the lock: another thread may be loading it
        say("Loading the model…", short="Loading model")
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load_model(card_path, device=device)
        return _cache[key]


def warm(card_path: str, device: str = "auto") -> None:
    """Do ahead of a model's first run what it would otherwise wait for: load it, and on
    the CPU decide its precision (:func:`cpu_precision`: a measurement once per machine)."""
    set_threads()  # the precision's key counts the threads: as a run will have them
    model, card = loaded(card_path, device)
    if next(model.parameters()).device.type == "cpu":
        cpu_precision(model, card["weights"]["sha256"])


def clear_cache() -> None:
    """Forget the loaded models (after the model folders changed)."""
    with _cache_lock:
        _cache.clear()


def tile_batch(params: dict) -> int:
    """How many tiles to run in one forward pass: :data:`GPU_TILE_BATCH` on a GPU (where
    one tile leaves most of it idle), 1 on the CPU (measured: batches of 2-4 tiles of
    448 pixels were no faster per pixel than one at a time; ``NAPARI_DENOISE_TILE_BATCH``
    overrides both)."""
    from ..device import resolve_device

    env = os.environ.get("NAPARI_DENOISE_TILE_BATCH", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return 1 if resolve_device(params.get("device", "auto")) == "cpu" else GPU_TILE_BATCH


# --- noise the networks are told --------------------------------------------------------


def noise_coefficients_of(samples: Sequence[np.ndarray]) -> tuple[float, float]:
    """Median ``(a, b)`` noise coefficients of normalised samples (planes of an image)."""
    from ..denoise.calibrate import noise_coefficients

    found = [noise_coefficients(s) for s in samples if min(s.shape[-2:]) >= 32]
    if not found:
        return 1e-4, 1e-4
    a, b = np.median(np.asarray(found), axis=0)
    return float(a), float(b)


def noise_level_of(samples: Sequence[np.ndarray]) -> float:
    """Noise standard deviation of normalised samples, counting correlated noise in full.

    The wavelet estimate sees only the finest scale; noise shared between neighbours
    holds more energy than that, by the ratio :func:`noise_correlation_ratio` measures.
    """
    from ..denoise.calibrate import center_crop, noise_correlation_ratio
    from ..denoise.noise import estimate_sigma

    levels = []
    for s in samples:
        s = center_crop(s, 512)
        if min(s.shape) < 16:
            continue
        ratio = min(max(noise_correlation_ratio(s), 1.0), 9.0)
        levels.append(estimate_sigma(s) * np.sqrt(ratio))
    return float(np.median(levels)) if levels else 0.05

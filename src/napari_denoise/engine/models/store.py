"""Where models live and what they are: the model folders, cards, and safetensors I/O.

A model is two files side by side: ``<name>.safetensors`` (the weights; never a pickle)
and ``<name>.json`` (its card: architecture and config, normalisation, the training
data, recipe, seed, steps and time, the parameter count, validation metrics, the
inference precision decision and the SHA-256 of the weights). Shipped models live in
the package's ``zoo/`` folder; user models in :func:`user_model_dir`.

Running a model is :mod:`.inference`; making the cards methods is :mod:`.registry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...atomic import OutputBusy, OutputTaken, atomic_batch, atomic_write, claim
from ...errors import ModelFileError, WriteError

__all__ = [
    "CARD_FORMAT",
    "SHIPPED_DIR",
    "ModelNameBusy",
    "ModelNameTaken",
    "card_problems",
    "check_model_folder",
    "claim_model_name",
    "find_model_files",
    "load_model",
    "read_card",
    "save_model",
    "sha256_file",
    "user_model_dir",
]

CARD_FORMAT = "napari-denoise-model/1"
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "zoo"
# The model folders are read as untrusted input: a card is a few kB, weights of the
# networks napari-denoise runs are at most tens of MB; anything far larger is refused
# before it is read (peak memory of any command stays bounded).
MAX_CARD_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 512 << 20
MAX_SAFETENSORS_HEADER = 16 << 20


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


def read_regular(
    path: str | os.PathLike, limit: int, what: str, error: type[Exception] = ModelFileError
) -> bytes:
    """The bytes of the regular file ``path`` (links followed), at most ``limit`` of them.

    Never blocks and never reads without bound: a pipe, device, socket or folder (or a
    link to one) is refused before it is opened for reading, the file is opened
    non-blocking and checked again on the open descriptor (it may have been swapped), a
    file larger than ``limit`` is refused from its size, and the reading stops at
    ``limit`` + 1 bytes whatever the size said. Raises ``error`` with a sentence.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist.") from None
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror or err}).") from None
    _check_regular(st, path, limit, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror or err}).") from None
    try:
        _check_regular(os.fstat(fd), path, limit, what, error)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise error(f"{what} {path} is larger than {_size(limit)}; it is not read.")
        return b"".join(chunks)
    except OSError as err:
        raise error(f"{what} {path} cannot be read ({err.strerror or err}).") from None
    finally:
        os.close(fd)


def _check_regular(st: os.stat_result, path: Path, limit: int, what: str, error) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path} is a folder, not a file.")
    if not stat.S_ISREG(st.st_mode):
        raise error(
            f"{what} {path} is not a regular file (a pipe, device or socket); it is not read."
        )
    if st.st_size > limit:
        raise error(
            f"{what} {path} is {_size(st.st_size)}, more than the {_size(limit)} allowed; "
            "it is not read."
        )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _same_folder(path: Path, what: str) -> None:
    """Refuse a link that leads out of the folder ``path`` is listed in."""
    if path.is_symlink() and path.resolve().parent != path.parent.resolve():
        raise ModelFileError(
            f"{what} {path} is a link to {path.resolve()}, outside its folder; a model's "
            "files must lie in the model folder itself."
        )


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """A model card, checked for the fields inference needs (ModelFileError otherwise).

    The card is untrusted input: a link out of its folder, a file that is not a regular
    file, or one over :data:`MAX_CARD_BYTES` is refused before it is read.
    """
    path = Path(path)
    _same_folder(path, "The model card")
    data = read_regular(path, MAX_CARD_BYTES, "The model card")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ModelFileError(f"The model card {path} cannot be read ({err}).") from None
    try:
        card = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelFileError(
            f"The model card {path} is not valid JSON (line {err.lineno}: {err.msg}); "
            "the file is corrupt or was not written by napari-denoise."
        ) from None
    except RecursionError:
        raise ModelFileError(
            f"The model card {path} is nested too deeply; it was not written by napari-denoise."
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
    if card.get("name") is None and "name" not in card:
        card["name"] = path.stem
    problems = card_problems(card)
    if problems:
        raise ModelFileError(f"The model card {path} is invalid: {'; '.join(problems)}.")
    return card


def _is_int(value: Any) -> bool:
    """A whole number: an int, or a float with an integral value (JSON's ``1e9``); not a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def card_problems(card: Mapping[str, Any]) -> list[str]:
    """Every field of ``card`` whose type or range is wrong, as short phrases (none: valid).

    Checked when the model folders are scanned, so that a bad value ("halo": "abc",
    "name": null) makes that one model unavailable with this reason instead of failing
    later, in every command. Fields a card may lack are checked only when present.
    """
    problems = []

    def bad(field: str, want: str) -> None:
        problems.append(f"'{field}' must be {want}, not {json.dumps(card.get(field))[:40]}")

    name = card.get("name")
    if not (isinstance(name, str) and name.strip() and name.isprintable() and len(name) <= 100):
        bad("name", "a non-empty name (text)")
    for field in ("architecture",):
        if not (isinstance(card.get(field), str) and card[field]):
            bad(field, "the name of a network (text)")
    for field in ("title", "description", "format"):
        if card.get(field) is not None and not isinstance(card[field], str):
            bad(field, "text")
    if not isinstance(card.get("config"), dict):
        bad("config", "a JSON object")
    for field in ("training", "validation", "inference", "normalisation"):
        if card.get(field) is not None and not isinstance(card[field], dict):
            bad(field, "a JSON object")
    sha = card.get("weights", {}).get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        problems.append(f"'weights.sha256' must be 64 hex digits, not {json.dumps(sha)[:40]}")
    # name: (allowed range, what it means)
    whole = {
        "halo": (0, 4096, "a whole number of pixels from 0 to 4096"),
        "reach": (0, 4096, "a whole number of pixels from 0 to 4096"),
        "multiple": (1, 1024, "a whole number from 1 to 1024 (the downsampling factor)"),
        "parameters": (0, None, "a whole number >= 0"),
        "whole_plane_max_pixels": (1, None, "a whole number of pixels >= 1"),
    }
    for field, (low, high, want) in whole.items():
        value = card.get(field)
        if value is None:
            continue
        if not (_is_int(value) and value >= low and (high is None or value <= high)):
            bad(field, want)
    rank = card.get("default_rank")
    if rank is not None and not _is_int(rank):
        bad("default_rank", "a whole number or null")
    for field in ("takes_noise_level", "tileable", "experimental", "fuse_neighbours"):
        if card.get(field) is not None and not isinstance(card[field], bool):
            bad(field, "true or false")
    if card.get("noise_input") not in (None, "poisson-gaussian"):
        bad("noise_input", 'null or "poisson-gaussian"')
    norm = card.get("normalisation")
    kind = norm.get("kind", "percentile") if isinstance(norm, dict) else None
    if isinstance(norm, dict) and kind not in ("percentile", "fixed", "mean_std"):
        problems.append(
            '\'normalisation.kind\' must be "percentile", "fixed" or "mean_std", '
            f"not {json.dumps(kind)[:20]}"
        )
    elif kind == "percentile":
        low, high = norm.get("low", 0.1), norm.get("high", 99.9)
        if not (_is_number(low) and _is_number(high) and 0 <= low < high <= 100):
            problems.append(
                "'normalisation' low and high must be percentiles with 0 <= low < high <= 100, "
                f"not {json.dumps(low)[:20]} and {json.dumps(high)[:20]}"
            )
    elif kind == "fixed":  # intensities (imported bioimage.io models)
        low, high = norm.get("low"), norm.get("high")
        if not (_is_number(low) and _is_number(high) and low < high):
            problems.append(
                "'normalisation' of kind \"fixed\" needs numbers low < high, "
                f"not {json.dumps(low)[:20]} and {json.dumps(high)[:20]}"
            )
    elif kind == "mean_std" and not _is_number(norm.get("eps", 0.0)):
        problems.append("'normalisation.eps' must be a number")
    file = card.get("weights", {}).get("file")
    if file is not None and not _is_bare_name(file):
        problems.append(
            "'weights.file' must be a file name in the card's own folder, not "
            f"{json.dumps(file)[:60]}"
        )
    weights_format = card.get("weights", {}).get("format", "safetensors")
    if weights_format not in ("safetensors", "torchscript"):
        problems.append(
            f'\'weights.format\' must be "safetensors" or "torchscript", '
            f"not {json.dumps(weights_format)[:20]}"
        )
    config = card.get("config")
    if weights_format == "torchscript" and isinstance(config, dict):
        # what ForeignNetwork pads to: bounded before anything is allocated
        step, low = config.get("step"), config.get("min")
        if not (_is_int(step) and 1 <= step <= 1024 and _is_int(low) and 1 <= low <= 4096):
            problems.append(
                "'config' of a TorchScript model needs a whole 'step' from 1 to 1024 and "
                f"'min' from 1 to 4096, not {json.dumps(step)[:20]} and {json.dumps(low)[:20]}"
            )
        for field in ("input_axes", "output_axes"):
            axes = config.get(field, ["batch", "channel", "y", "x"])
            if not (
                isinstance(axes, list)
                and set(axes) <= {"batch", "channel", "y", "x"}
                and {"y", "x"} <= set(axes)
                and len(set(axes)) == len(axes)
            ):
                problems.append(f"'config.{field}' must list axes among batch, channel, y, x")
    inference = card.get("inference")
    if isinstance(inference, dict) and not isinstance(inference.get("cpu_bf16", False), bool):
        problems.append("'inference.cpu_bf16' must be true or false")
    problems += _detail_problems(card.get("detail"))
    return problems


def _is_bare_name(file: Any) -> bool:
    """A file name alone: no folder, no ``..``, not absolute, not hidden, printable."""
    return (
        isinstance(file, str)
        and 0 < len(file) <= 255
        and file.isprintable()
        and not file.startswith(".")
        and not any(sep in file for sep in ("/", "\\", ":", "\0"))
    )


def _detail_problems(rule: Any) -> list[str]:
    """What is wrong with a card's detail restoration rule (``"detail"``, read when the
    model runs: :func:`~.registry.choose_detail`)."""
    from ..denoise.selfcheck import DETAIL_MAX_WIDTH

    if rule is None:
        return []
    if not isinstance(rule, dict):
        return [f"'detail' must be a JSON object, not {json.dumps(rule)[:40]}"]
    problems = []
    widths = rule.get("widths", [0.0])
    if not (
        isinstance(widths, list)
        and widths
        and all(_is_number(w) and 0 <= w <= DETAIL_MAX_WIDTH for w in widths)
    ):
        problems.append(
            f"'detail.widths' must be a non-empty list of widths from 0 to "
            f"{DETAIL_MAX_WIDTH:g} pixels, not {json.dumps(widths)[:40]}"
        )
    margin = rule.get("margin", 0.0)
    if not (_is_number(margin) and margin >= 0):
        problems.append(f"'detail.margin' must be a number >= 0, not {json.dumps(margin)[:20]}")
    return problems


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

    from .. import models

    card_path, weights_path = _paths(name_or_path)
    card = read_card(card_path)
    torchscript = card["weights"].get("format", "safetensors") == "torchscript"
    if torchscript:  # imported from a bioimage.io package: the file the card names
        weights_path = card_path.with_name(card["weights"]["file"])
    if not weights_path.exists():
        raise ModelFileError(
            f"The weights of model '{card['name']}' are missing: {weights_path} does not exist."
        )
    _check_weights_file(weights_path)
    data = None
    if torchscript:  # read once: the bytes hashed are the bytes run
        data = read_regular(weights_path, MAX_WEIGHTS_BYTES, "The TorchScript file")
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = sha256_file(weights_path)
    if digest != card["weights"]["sha256"]:
        raise ModelFileError(
            f"The weights file {weights_path} does not match its card: its SHA-256 is "
            f"{digest[:12]}..., the card expects {card['weights']['sha256'][:12]}.... "
            "The file is corrupt or was replaced; reinstall, retrain or import the model again."
        )
    if torchscript:
        from .foreign import load_torchscript

        return load_torchscript(weights_path, data, card, device=device)
    _check_safetensors_header(weights_path)
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


def _check_weights_file(path: Path) -> None:
    """A weights file to hash and load: in its card's folder, a regular file (hashing a
    pipe would block), at most :data:`MAX_WEIGHTS_BYTES` (checked from its size)."""
    _same_folder(path, "The weights file")
    try:
        st = os.stat(path)
    except OSError as err:
        raise ModelFileError(f"The weights file {path} cannot be read ({err.strerror}).") from None
    _check_regular(st, path, MAX_WEIGHTS_BYTES, "The weights file", ModelFileError)


SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def _check_safetensors_header(path: Path) -> None:
    """Refuse a safetensors file whose header is too large or malformed, or whose tensors
    (shapes x dtypes) would add up to more than :data:`MAX_WEIGHTS_BYTES` or lie outside
    the file, before any tensor is allocated."""

    def refuse(what: str) -> ModelFileError:
        return ModelFileError(
            f"The weights file {path} is not a readable safetensors file ({what})."
        )

    size = path.stat().st_size
    with open(path, "rb") as fh:  # a regular file: _check_weights_file
        head = fh.read(8)
        if len(head) < 8:
            raise refuse("it is shorter than its header")
        n = int.from_bytes(head, "little")
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise refuse(f"its header claims {n} bytes")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, RecursionError):
            raise refuse("its header is not JSON") from None
    if not isinstance(header, dict):
        raise refuse("its header is not a JSON object")
    total = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            shape, (begin, end) = entry["shape"], entry["data_offsets"]
            itemsize = SAFETENSORS_DTYPE_BYTES[entry["dtype"]]
            count = 1
            for dim in shape:
                if not (_is_int(dim) and dim >= 0):
                    raise ValueError
                count *= int(dim)
                if count * itemsize > MAX_WEIGHTS_BYTES:
                    raise refuse(
                        f"tensor '{str(key)[:60]}' would take more than {_size(MAX_WEIGHTS_BYTES)}"
                    )
        except (KeyError, TypeError, ValueError):
            raise refuse(f"tensor '{str(key)[:60]}' is described wrongly") from None
        if not (_is_int(begin) and _is_int(end) and 0 <= begin <= end <= size - 8 - n):
            raise refuse(f"tensor '{str(key)[:60]}' lies outside the file")
        if end - begin != count * itemsize:
            raise refuse(f"tensor '{str(key)[:60]}' does not match its shape")
        total += count * itemsize
        if total > MAX_WEIGHTS_BYTES:
            raise refuse(f"its tensors take more than {_size(MAX_WEIGHTS_BYTES)}")


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


def save_model(
    module, card: Mapping[str, Any], path: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write ``module``'s weights and its completed card as one unit; return the card.

    ``path`` is the weights file, the card file or their common stem. The card gets the
    architecture, config, parameter count, receptive field, format and the SHA-256 of
    the weights as written, and whether it can be tiled; other fields (training record,
    metrics) are kept as given.

    The name is held for the whole write (:func:`~napari_denoise.atomic.claim`): weights
    and card are written completely, then renamed into place together, the card last (a
    reader never finds a card without its weights), and the card's SHA-256 is that of the
    bytes written, so card and weights are always one run's. A model of that name is
    replaced only with ``overwrite``; without it, an existing name, or one being saved by
    another run at the same moment, is refused (:class:`~napari_denoise.errors.WriteError`)
    and nothing is written.
    """
    import torch
    from safetensors.torch import save

    from . import config_dict, count_parameters

    card_path, weights_path = _paths(Path(path))
    with claim_model_name(card_path, overwrite=overwrite):
        if card_path.exists() and not overwrite:
            raise ModelNameTaken(card_path)
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        data = save(state)
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
            # False for a network with an operation over the whole image: it runs whole
            # planes. A network's own word, or the card's (an import that measured seams
            # says false).
            tileable=bool(getattr(module, "tileable", True))
            and out.get("tileable", True) is not False,
            noise_input=getattr(module, "noise_input", None),
            weights={
                "file": weights_path.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            },
        )
        out.setdefault("normalisation", {"kind": "percentile", "low": 0.1, "high": 99.9})
        out.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        out.setdefault("torch", torch.__version__)
        text = json.dumps(out, indent=2, sort_keys=False) + "\n"
        # Weights first, the card last: the card is what makes the model exist (the folder
        # is scanned for cards); weights without a card are an orphan replaced here.
        try:
            with atomic_batch():
                atomic_write(weights_path, lambda fh: fh.write(data))
                atomic_write(card_path, lambda fh: fh.write(text.encode("utf-8")))
        except OutputTaken:  # made meanwhile by a program that does not claim names
            raise ModelNameTaken(card_path) from None
    return out


class ModelNameBusy(WriteError):
    """Another run is training or saving a model of this name right now."""


class ModelNameTaken(WriteError):
    """A model of this name exists (and was not to be replaced)."""

    def __init__(self, card_path: Path) -> None:
        super().__init__(
            f"A model named '{card_path.stem}' already exists in {card_path.parent}; "
            "choose another name."
        )


@contextlib.contextmanager
def claim_model_name(card_path: str | os.PathLike, *, overwrite: bool = False):
    """Hold the model name of ``card_path`` for this run (a training holds it from before
    its first step to the save; :func:`save_model` within it is part of the same claim).

    Makes the folder if needed (it is the check that models can be saved there, before
    any training). Raises :class:`~napari_denoise.errors.WriteError` with one sentence
    when the folder cannot be written or another run holds the name right now.
    """
    card_path = Path(card_path)
    name, folder = card_path.stem, card_path.parent
    with contextlib.ExitStack() as stack:
        try:
            # The card is created exclusively (unless overwrite); weights without a card
            # are no model (an orphan of a crash) and may be replaced.
            stack.enter_context(claim(card_path, replace=overwrite, make_parents=True))
        except OutputBusy as err:
            who = f" (process {err.pid})" if err.pid else ""
            raise ModelNameBusy(
                f"Another run{who} is training or saving a model named '{name}' in {folder} "
                "right now; choose another name."
            ) from None
        except WriteError as err:
            raise WriteError(
                f"Models cannot be saved in {folder}: {_reason(err)}; choose a writable folder "
                "(--out-dir, or NAPARI_DENOISE_MODEL_DIR)."
            ) from None
        yield card_path


def _reason(err: WriteError) -> str:
    """The cause in a WriteError's sentence ("Cannot write X: cause.")."""
    text = str(err).rstrip(".")
    return text.split(": ", 1)[-1] if ": " in text else text


def check_model_folder(folder: str | os.PathLike) -> Path:
    """Check that models can be saved in ``folder`` (made if missing), before any training.

    Raises :class:`~napari_denoise.errors.WriteError` with one sentence otherwise.
    """
    folder = Path(folder)
    probe = folder / f".write-check.{os.getpid()}.{time.monotonic_ns()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        probe.unlink()
    except OSError as exc:
        raise WriteError(
            f"Models cannot be saved in {folder}: {exc.strerror or exc}; choose a writable "
            "folder (--out-dir, or NAPARI_DENOISE_MODEL_DIR)."
        ) from None
    return folder

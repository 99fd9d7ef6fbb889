"""The network a fine-tuning run starts from: a trained model of the zoo or a new one.

:func:`load_start` loads the start model named by a :class:`~.config.FinetuneSpec` (or
builds a new network from checked options), refuses what training cannot start from
(compiled TorchScript, a network that passes its input through for N2V2) and adapts
options that change no weights; :func:`start_network` gives each run its own copy,
wrapped with the PSF for "n2v-psf".
"""

from __future__ import annotations

import copy
import math
from typing import Any

from ...errors import InputError, ParameterError, UnknownMethodError
from .config import FinetuneSpec

__all__ = ["MAX_CONFIG_INT", "check_model_fits", "checked_config", "load_start", "start_network"]

MAX_CONFIG_INT = 4096  # channels, blocks, depth: anything larger cannot be meant


def checked_config(arch: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` for a new ``arch`` network, each value checked against the type of its
    field's default (whole numbers 1 to 4096 (0 allowed where the default is 0 or a
    depth), true/false, positive finite numbers, lists of whole numbers); lists become
    tuples. Unknown keys are left to :func:`~..models.build`, which names the fields."""
    import dataclasses

    from ..models import get_model_class

    fields = {f.name: f for f in dataclasses.fields(get_model_class(arch).config_class)}
    out: dict[str, Any] = {}
    for key, value in config.items():
        field = fields.get(key)
        default = field.default if field is not None else dataclasses.MISSING
        where = f"Invalid config for a new '{arch}' network: '{key}'"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ParameterError(f"{where} must be true or false, not {value!r}.")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ParameterError(f"{where} must be a whole number, not {value!r}.")
            value = int(value)
            if not (0 if key == "depth" else 1) <= value <= MAX_CONFIG_INT:
                raise ParameterError(
                    f"{where} must be between 1 and {MAX_CONFIG_INT}, not {value}."
                )
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(f"{where} must be a number, not {value!r}.")
            if not (math.isfinite(value) and 0 < value <= MAX_CONFIG_INT):
                raise ParameterError(f"{where} must be a positive finite number, not {value!r}.")
            value = float(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not value:
                raise ParameterError(f"{where} must be a list of whole numbers, not {value!r}.")
            for v in value:
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_CONFIG_INT:
                    raise ParameterError(
                        f"{where} must hold whole numbers from 1 to {MAX_CONFIG_INT}, not {v!r}."
                    )
            value = tuple(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ParameterError(f"{where} must be a text, not {value!r}.")
        out[key] = value
    return out


def load_start(spec: FinetuneSpec):
    """(model, card or None, started_from record, notes) for ``spec.start``."""
    import torch

    from ..models import build, config_dict, list_architectures, store
    from .blindspot import BLIND_MODES, blind_config, passes_input_through

    notes: list[str] = []
    if spec.start.startswith("new:"):
        arch = spec.start[4:]
        if arch not in list_architectures() or arch == "psf-wrap":
            choices = ", ".join("new:" + a for a in list_architectures() if a != "psf-wrap")
            raise UnknownMethodError(
                f"Unknown architecture '{arch}' for a new network; choose one of {choices}."
            )
        config = checked_config(arch, dict(spec.config or {}))
        if spec.mode in BLIND_MODES:
            config, missing = blind_config(spec.mode, arch, config)
            if missing:
                notes.append(
                    f"network options {missing} wanted by {spec.mode} are not available for '{arch}'"
                )
        if spec.mode == "n2v2" and passes_input_through(config):
            raise ParameterError(_N2V2_PASS_THROUGH.format(what=f"a new '{arch}' network"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(spec.seed))
            try:
                model = build(arch, config)
            except Exception as err:  # torch says it its own way (negative sizes, ...)
                raise ParameterError(f"Invalid config for a new '{arch}' network: {err}") from None
        return model, None, {"name": spec.start, "architecture": arch, "sha256": None}, notes

    model, card = store.load_model(spec.start)  # ModelFileError naming the installed models
    from .options import untrainable_reason

    refused = untrainable_reason(card.get("architecture"), card["name"])
    if refused:
        raise ParameterError(refused)
    started = {
        "name": card["name"],
        "architecture": card["architecture"],
        "sha256": card["weights"]["sha256"],
    }
    if spec.mode == "n2v2":
        if passes_input_through(config_dict(model)):
            raise ParameterError(_N2V2_PASS_THROUGH.format(what=f"model '{card['name']}'"))
        # Options that change no weights (blur-pool) can be switched on for trained weights.
        config, missing = blind_config("n2v2", model.architecture, config_dict(model))
        if config != config_dict(model):
            try:
                adapted = build(model.architecture, config)
                adapted.load_state_dict(model.state_dict())
                model = adapted
            except (RuntimeError, TypeError, ValueError):
                notes.append(
                    f"N2V2 network options not applied: the weights of '{card['name']}' do not fit {config}"
                )
        if missing:
            notes.append(
                f"N2V2 network options {missing} are not available for '{model.architecture}'"
            )
    return model, card, started, notes


_N2V2_PASS_THROUGH = (
    "N2V2 cannot train {what}: it adds its input to its output, and with N2V2's median "
    "replacement such a network learns to pass the noisy pixel through (no denoising). "
    "N2V2 needs a network built with residual=False: start from 'new:unet'."
)


def check_model_fits(model, card: dict | None, label: str) -> None:
    """InputError unless the network works on 2-D planes (all of ours do)."""
    ndim = int((card or {}).get("ndim", getattr(model, "ndim", 2)))
    if ndim != 2:
        raise InputError(
            f"The model '{label}' is a {ndim}-D network; training here works on 2-D (Y, X) "
            "planes (a stack is trained slice by slice). Start from a 2-D model or a new network."
        )


def start_network(model, spec: FinetuneSpec):
    """A fresh copy of the start network ``model``, wrapped with the PSF for "n2v-psf"."""
    model = copy.deepcopy(model)
    if spec.mode == "n2v-psf":
        from ..models.psf_wrap import PsfWrap, PsfWrapConfig, wrap

        if getattr(model, "architecture", None) == "psf-wrap":  # re-trained: new sigma, denoised
            cfg = PsfWrapConfig(model.config.architecture, model.config.config, spec.psf_sigma)
            model = PsfWrap(cfg, net=model.net)
        else:
            model = wrap(model, spec.psf_sigma)
    return model

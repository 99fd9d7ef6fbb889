"""Denoising networks: one file per architecture, and a registry like torchvision's.

Each architecture module defines a small config dataclass and an ``nn.Module`` whose
constructor takes that config, and registers the class under a name::

    @register_model("unet")
    class UNet(nn.Module):
        config_class = UNetConfig
        def __init__(self, config: UNetConfig): ...

A model file stores its architecture name and its config as plain JSON, so a network is
rebuilt with :func:`build` (``build("unet", {"base": 32})``) without any if/elif factory.

Every registered network follows one contract, which the zoo and the trainer rely on:

- ``forward(x)`` maps a ``(N, 1, H, W)`` float tensor in normalised units (about 0..1)
  to the denoised tensor of the same shape; networks that take a noise-level map
  (``takes_noise_level = True``) are called as ``forward(x, noise_level)`` with a
  ``(N,)`` tensor of noise standard deviations in the same normalised units.
- ``multiple``: H and W must be multiples of it (the zoo pads with reflection).
- ``reach``: pixels around a pixel that its output noticeably depends on (tile halo).
- ``config``: the config instance it was built from.

This module imports torch only when an architecture is looked up, so the zoo can list
model cards without it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

__all__ = [
    "ARCHITECTURE_MODULES",
    "build",
    "count_parameters",
    "get_model_class",
    "list_architectures",
    "macs_per_pixel",
    "register_model",
]

# The modules that register architectures; imported on first lookup.
ARCHITECTURE_MODULES = (
    "unet",
    "dncnn",
    "ridnet",
    "drunet",
    "msred",
    "restormer_lite",
    "psf_wrap",
    "careamics_unet",
    "unet_stack",
)

_MODELS: dict[str, type] = {}


def register_model(name: str):
    """Class decorator: register a network under ``name``.

    The class needs a ``config_class`` attribute (a dataclass) and a constructor that
    takes one instance of it.
    """

    def decorator(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"an architecture named '{name}' is already registered")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"{cls.__name__} needs a dataclass 'config_class' attribute")
        cls.architecture = name
        _MODELS[name] = cls
        return cls

    return decorator


def _load_all() -> None:
    for module in ARCHITECTURE_MODULES:
        importlib.import_module(f"{__name__}.{module}")


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_all()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    """The network class registered as ``name`` (KeyError naming the known ones)."""
    _load_all()
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS))
        raise KeyError(f"Unknown architecture '{name}'; known architectures: {known}.") from None


def build(name: str, config: dict[str, Any] | None = None):
    """A freshly initialised network ``name`` built from a config dict (defaults if None).

    Unknown config keys raise TypeError naming them (a card from a newer version, or a
    typo), rather than being silently ignored.
    """
    cls = get_model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    given = dict(config or {})
    unknown = sorted(set(given) - fields)
    if unknown:
        raise TypeError(
            f"Architecture '{name}' has no config field(s) {', '.join(unknown)}; "
            f"its fields are: {', '.join(sorted(fields))}."
        )
    return cls(cls.config_class(**given))


def config_dict(model) -> dict[str, Any]:
    """The JSON-able config a network was built from."""
    return dataclasses.asdict(model.config)


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs_per_pixel(model, size: int = 128) -> float:
    """Multiply-accumulates per input pixel of convolutions and linear layers.

    Counted with forward hooks on a ``size`` x ``size`` input; matrix products outside
    such layers (attention) are not included, and the architecture's docstring adds them.
    """
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * k * module.in_channels // module.groups
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * k * module.out_channels // module.groups
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    try:
        x = torch.zeros(1, 1, size, size)
        with torch.no_grad():
            if getattr(model, "noise_input", None) == "poisson-gaussian":
                model(x, torch.full((1, 2), 1e-3))
            elif getattr(model, "takes_noise_level", False):
                model(x, torch.zeros(1))
            else:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return total / (size * size)

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
from typing import Any

from .architecture import ARCHITECTURES, config_dict, register_model

__all__ = [
    "build",
    "config_dict",
    "count_parameters",
    "get_model_class",
    "list_architectures",
    "macs_per_pixel",
    "register_model",
]


def _load_all() -> None:
    # Imported here (torch is heavy); each registers its class with architecture.py,
    # which they import (not this package): no import loop.
    from . import (  # noqa: F401
        careamics_unet,
        dncnn,
        drunet,
        msred,
        psf_wrap,
        restormer_lite,
        ridnet,
        unet,
    )


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted."""
    _load_all()
    return sorted(ARCHITECTURES)


def get_model_class(name: str) -> type:
    """The network class registered as ``name`` (KeyError naming the known ones)."""
    _load_all()
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
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
    if hasattr(cls, "from_config"):  # a network made of others (psf-wrap) builds them
        return cls.from_config(cls.config_class(**given), build)
    return cls(cls.config_class(**given))


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

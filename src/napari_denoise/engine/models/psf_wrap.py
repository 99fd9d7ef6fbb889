"""A network followed by a fixed Gaussian PSF: blind-spot denoising with deconvolution.

Goncharova, Honigmann, Jug, Krull, "Improving blind spot denoising for microscopy",
ECCV Workshops 2020. The inner network's output is read as the *deconvolved* image (the
fluorophore density); convolving it with the microscope's point-spread function, here a
Gaussian of ``sigma`` pixels, gives the *denoised* image, which is what the blind-spot
loss compares with the noisy pixels. Both are useful: ``output="denoised"`` (the
default, what the zoo returns as the method's result) or ``output="deconvolved"``.

The PSF is not learned and not stored in the weights (it is rebuilt from ``sigma``);
the weights file holds the inner network's tensors under ``net.``. The wrapper follows
the contract of :mod:`napari_denoise.engine.models`: ``multiple`` is the inner
network's, ``reach`` adds the PSF's radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import config_dict, register_model

__all__ = ["PsfWrap", "PsfWrapConfig", "gaussian_psf", "wrap"]

OUTPUTS = ("denoised", "deconvolved")


@dataclass
class PsfWrapConfig:
    """The inner network and the PSF.

    architecture, config : the inner network (as :func:`napari_denoise.engine.models.build`
        takes them).
    sigma : standard deviation of the Gaussian PSF in pixels (> 0).
    output : ``"denoised"`` (PSF applied) or ``"deconvolved"`` (the inner output).
    """

    architecture: str = "unet"
    config: dict[str, Any] = field(default_factory=dict)
    sigma: float = 1.0
    output: str = "denoised"


def gaussian_psf(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``ceil(3 sigma)`` (the PSF is separable)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@register_model("psf-wrap")
class PsfWrap(nn.Module):
    """Inner network, then a fixed Gaussian blur; see the module docstring."""

    config_class = PsfWrapConfig

    @classmethod
    def from_config(cls, config: PsfWrapConfig, build) -> PsfWrap:
        """A new wrapper whose inner network ``build(architecture, config)`` makes (the
        registry's :func:`~napari_denoise.engine.models.build`, passed in: this module
        does not import the package that imports it)."""
        return cls(config, net=build(config.architecture, config.config))

    def __init__(self, config: PsfWrapConfig, net: nn.Module):
        super().__init__()
        if not config.sigma > 0:
            raise ValueError(f"The PSF sigma must be positive, not {config.sigma}.")
        if config.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {config.output!r}.")
        self.net = net
        # The stored config names the inner network's full config (defaults filled in).
        config.config = dict(config_dict(self.net))
        self.config = config
        self.register_buffer("psf", gaussian_psf(config.sigma), persistent=False)
        self.takes_noise_level = bool(getattr(self.net, "takes_noise_level", False))
        self.noise_input = getattr(self.net, "noise_input", None)
        self.multiple = int(self.net.multiple)
        self.tileable = bool(getattr(self.net, "tileable", True))
        self.reach = int(self.net.reach) + len(self.psf) // 2

    def blur(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` convolved with the PSF (reflecting at the borders)."""
        r = len(self.psf) // 2
        k = self.psf.to(image.dtype)
        h, w = image.shape[-2:]
        mode = "reflect" if r < min(h, w) else "replicate"
        y = F.pad(image, (r, r, r, r), mode=mode)
        y = F.conv2d(y, k.view(1, 1, 1, -1))
        return F.conv2d(y, k.view(1, 1, -1, 1))

    def deconvolved(self, x: torch.Tensor, *level) -> torch.Tensor:
        """The inner network's output: the deconvolved estimate."""
        return self.net(x, *level)

    def forward(self, x: torch.Tensor, *level) -> torch.Tensor:
        d = self.net(x, *level)
        return self.blur(d) if self.config.output == "denoised" else d


def wrap(model: nn.Module, sigma: float, *, output: str = "denoised") -> PsfWrap:
    """A :class:`PsfWrap` around an existing network (the same module, not a copy)."""
    config = PsfWrapConfig(model.architecture, config_dict(model), float(sigma), output)
    return PsfWrap(config, net=model)

"""Multi-frame U-Net: restores the centre frame of a window of neighbouring frames.

The network is the single-frame :class:`~.unet.UNet` whose first convolution takes the
``frames`` planes of a window (``frames = 2k + 1``: the centre frame and ``k`` neighbours
on each side, in order) as input channels, and whose residual adds the *centre* frame
(the neighbours only inform the correction). Motion is not compensated outside the
network: it learns from training windows with synthetic drift, jitter, a region moving
on its own, cuts to another field and z-like defocus when a neighbour is to be trusted
(in the spirit of FastDVDnet, Tassano et al. CVPR 2020, which denoises video without
optical flow).

"Never worse than frame by frame" starts by construction: :meth:`UNetStack.from_single`
copies a trained single-frame U-Net and gives the centre channel its first-layer
weights and every neighbour channel zeros, so the untrained multi-frame network computes
exactly what the single-frame one does; training only moves it where neighbours help.

``forward(x)`` takes ``(N, frames, H, W)`` and returns ``(N, 1, H, W)``. The receptive
reach in Y and X is the single-frame network's; the reach along the stack is ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .architecture import register_model
from .unet import UNet, UNetConfig

__all__ = ["UNetStack", "UNetStackConfig"]


@dataclass
class UNetStackConfig(UNetConfig):
    """:class:`~.unet.UNetConfig` plus the window: ``frames`` (odd) planes, centre restored."""

    frames: int = 5


@register_model("unet-stack")
class UNetStack(UNet):
    """U-Net over a window of ``frames`` planes; see the module docstring."""

    config_class = UNetStackConfig
    takes_noise_level = False

    def __init__(self, config: UNetStackConfig):
        if config.frames < 1 or config.frames % 2 == 0:
            raise ValueError(f"frames must be a positive odd number, not {config.frames}")
        if config.noise_map:
            raise ValueError("the multi-frame U-Net is blind: noise_map must be false")
        super().__init__(config)
        first = self.down[0][0]
        conv = nn.Conv2d(config.frames, first.out_channels, 3, padding=1)
        with torch.no_grad():  # He initialisation as the single-frame network's
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.down[0][0] = conv
        self.frames = int(config.frames)
        self.radius = self.frames // 2  # reach along the stack (planes each side)

    @classmethod
    def from_single(cls, single: UNet, frames: int = 5) -> UNetStack:
        """A multi-frame network that computes exactly what ``single`` does (neighbour
        channels of the first layer zero, the centre channel ``single``'s weights)."""
        fields = {k: getattr(single.config, k) for k in UNetConfig.__dataclass_fields__}
        net = cls(UNetStackConfig(**fields, frames=frames))
        state = single.state_dict()
        key = "down.0.0.weight"
        w = torch.zeros_like(net.state_dict()[key])
        w[:, frames // 2] = state[key][:, 0]
        state = dict(state, **{key: w})
        net.load_state_dict(state, strict=True)
        return net

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1] != self.frames:
            raise ValueError(
                f"this network takes windows of {self.frames} frames, not {x.shape[1]}"
            )
        c = self.radius
        out = self.trunk(x)
        centre = x[:, c : c + 1]
        return centre + out if self.config.residual else out

"""RIDNet: real image denoising with feature attention (scaled down for the CPU).

Anwar & Barnes, "Real image denoising with feature attention", ICCV 2019. A 3x3
feature-extraction convolution, a chain of enhancement attention modules (EAMs), a 3x3
reconstruction convolution and a global residual connection. Each EAM is:

1. merge-and-run unit: two branches of two dilated 3x3 convolutions (dilations 1, 2 and
   3, 4), concatenated and merged by a 3x3 convolution, plus a skip connection;
2. a residual block (conv, ReLU, conv, skip, ReLU);
3. an enhanced residual block (three convolutions, the last one 1x1, skip, ReLU);
4. channel attention: global average pooling, a 1x1 bottleneck (reduction 16 in the
   paper, 8 here), a sigmoid gate that rescales the channels.

The paper uses 64 channels (about 1.5 M parameters and 1.5 M MACs per pixel at full
resolution), which is slow on a CPU; the default here is ``features=32``:
375,793 parameters, about 0.37 M multiply-accumulates per pixel.
``features=64, reduction=16`` gives the paper's size: 1,497,041 parameters.
The channel attention averages over the whole input, so no overlap makes tiles exact
(issue 13 found 2% of pixels off by more than a grey level): ``tileable = False``, and
the zoo runs each plane whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._init import cat_channels, init_residual
from .architecture import register_model

__all__ = ["RIDNet", "RIDNetConfig"]


@dataclass
class RIDNetConfig:
    """Size of RIDNet: channels, number of EAMs, channel-attention reduction."""

    features: int = 32
    modules: int = 4
    reduction: int = 8


def _conv(c_in: int, c_out: int, k: int = 3, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=dilation * (k // 2), dilation=dilation)


class MergeAndRun(nn.Module):
    """Two dilated branches, concatenated, merged by a 3x3 convolution, plus the input."""

    def __init__(self, f: int):
        super().__init__()
        relu = nn.ReLU(inplace=True)
        self.left = nn.Sequential(_conv(f, f, dilation=1), relu, _conv(f, f, dilation=2), relu)
        self.right = nn.Sequential(_conv(f, f, dilation=3), relu, _conv(f, f, dilation=4), relu)
        self.merge = nn.Sequential(_conv(2 * f, f), nn.ReLU(inplace=True))

    def forward(self, x):
        return x + self.merge(cat_channels([self.left(x), self.right(x)]))


class ResidualBlock(nn.Module):
    def __init__(self, f: int):
        super().__init__()
        self.body = nn.Sequential(_conv(f, f), nn.ReLU(inplace=True), _conv(f, f))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class EnhancedResidualBlock(nn.Module):
    def __init__(self, f: int):
        super().__init__()
        relu = nn.ReLU(inplace=True)
        self.body = nn.Sequential(_conv(f, f), relu, _conv(f, f), relu, _conv(f, f, k=1))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class ChannelAttention(nn.Module):
    def __init__(self, f: int, reduction: int):
        super().__init__()
        r = max(1, f // reduction)
        self.gate = nn.Sequential(
            nn.Conv2d(f, r, 1), nn.ReLU(inplace=True), nn.Conv2d(r, f, 1), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.gate(x.mean(dim=(2, 3), keepdim=True))


class EAM(nn.Module):
    """Enhancement attention module."""

    def __init__(self, f: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            MergeAndRun(f),
            ResidualBlock(f),
            EnhancedResidualBlock(f),
            ChannelAttention(f, reduction),
        )

    def forward(self, x):
        return self.body(x)


@register_model("ridnet")
class RIDNet(nn.Module):
    """RIDNet with a global residual; see the module docstring."""

    config_class = RIDNetConfig
    takes_noise_level = False
    multiple = 1
    # Attention over the whole image: no overlap makes tiles exact (a card says so).
    tileable = False

    def __init__(self, config: RIDNetConfig):
        super().__init__()
        self.config = config
        f = config.features
        self.head = _conv(1, f)
        self.body = nn.Sequential(*(EAM(f, config.reduction) for _ in range(config.modules)))
        self.tail = _conv(f, 1)
        init_residual(self, self.tail)  # starts as the identity
        # Per EAM: dilations 1+2 / 3+4 (max 7), merge 1, two blocks of 2 convs: 12 pixels.
        self.reach = 2 + 12 * config.modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.body(self.head(x)))

"""DRUNet: a U-Net of residual blocks with a noise-level map as an extra input channel.

Zhang, Li, Zuo, Zhang, Van Gool, Timofte, "Plug-and-play image restoration with deep
denoiser prior", IEEE TPAMI 2021. The noise standard deviation (in the normalised units
of the input) is broadcast to a constant map and concatenated to the image, so one
network covers all noise levels and the level acts as a *strength* knob: a larger value
smooths more. Each scale has ``blocks`` residual blocks (conv, ReLU, conv, skip; no
batch norm, no biases, as in the paper); downsampling by 2x2 strided convolutions,
upsampling by 2x2 transposed convolutions, skips by addition. Output is residual.

The paper's size (``channels=(64, 128, 256, 512), blocks=4``: 32,638,656 parameters,
2.1 M multiply-accumulates per pixel) is far too slow for a CPU. The default here is
channels 16-32-64-128 with 2 blocks per scale: 1,063,344 parameters, about 0.068 M
multiply-accumulates per pixel; sides must be multiples of 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._init import cat_channels, init_residual
from .architecture import register_model

__all__ = ["DRUNet", "DRUNetConfig"]


@dataclass
class DRUNetConfig:
    """Channels per scale (full resolution first) and residual blocks per scale."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    blocks: int = 2

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)  # JSON gives a list


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
        )

    def forward(self, x):
        return x + self.body(x)


@register_model("drunet")
class DRUNet(nn.Module):
    """Non-blind U-Net of residual blocks; ``forward(x, noise_level)``."""

    config_class = DRUNetConfig
    takes_noise_level = True

    def __init__(self, config: DRUNetConfig):
        super().__init__()
        self.config = config
        ch, nb = config.channels, config.blocks
        self.head = nn.Conv2d(2, ch[0], 3, padding=1, bias=False)
        self.down = nn.ModuleList(
            nn.Sequential(
                *(ResBlock(ch[i]) for _ in range(nb)),
                nn.Conv2d(ch[i], ch[i + 1], 2, stride=2, bias=False),
            )
            for i in range(len(ch) - 1)
        )
        self.bottom = nn.Sequential(*(ResBlock(ch[-1]) for _ in range(nb)))
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2, bias=False),
                *(ResBlock(ch[i]) for _ in range(nb)),
            )
            for i in reversed(range(len(ch) - 1))
        )
        self.tail = nn.Conv2d(ch[0], 1, 3, padding=1, bias=False)
        init_residual(self, self.tail)  # starts as the identity
        levels = len(ch) - 1
        self.multiple = 2**levels
        self.reach = 2 + sum(4 * nb * 2**lv + 2**lv for lv in range(levels)) + 2 * nb * 2**levels

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        level = noise_level.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        h = self.head(cat_channels([x, level]))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up in self.up:
            h = up(h) + skips.pop()
        return x + self.tail(h)

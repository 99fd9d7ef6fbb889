"""DnCNN: a plain stack of 3x3 convolutions that predicts the noise.

Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian denoiser: residual learning of deep CNN
for image denoising", IEEE TIP 2017. ``depth`` convolutions of ``features`` channels: the
first with ReLU, the middle ones with batch normalisation and ReLU, the last one
predicting the noise, which is subtracted from the input.

Default config (the paper's DnCNN-S size, ``depth=17, features=64``): 556,096 parameters,
about 0.55 M multiply-accumulates per pixel at full resolution (no downsampling, so
it is the slowest of the small networks per pixel). A CPU-friendly variant
``depth=12, features=48`` has 209,232 parameters and about 0.21 M MACs per pixel.
Receptive field: ``depth`` pixels in each direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .architecture import register_model

__all__ = ["DnCNN", "DnCNNConfig"]


@dataclass
class DnCNNConfig:
    """Size of DnCNN: number of convolutions and channels; batch norm in the middle layers."""

    depth: int = 17
    features: int = 64
    batch_norm: bool = True


@register_model("dncnn")
class DnCNN(nn.Module):
    """DnCNN with residual (noise) prediction; see the module docstring."""

    config_class = DnCNNConfig
    takes_noise_level = False
    multiple = 1

    def __init__(self, config: DnCNNConfig):
        super().__init__()
        self.config = config
        f, bn = config.features, config.batch_norm
        layers: list[nn.Module] = [nn.Conv2d(1, f, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers.append(nn.Conv2d(f, f, 3, padding=1, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(f))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(f, 1, 3, padding=1, bias=False))
        nn.init.zeros_(layers[-1].weight)  # starts as the identity
        self.body = nn.Sequential(*layers)
        self.reach = config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)

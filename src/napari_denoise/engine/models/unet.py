"""U-Net denoiser in the style of CARE / Noise2Void, predicting a residual.

Weigert et al., "Content-aware image restoration", Nature Methods 2018; Krull et al.,
"Noise2Void", CVPR 2019. An encoder of ``depth`` levels (two 3x3 convolutions + ReLU,
then 2x2 max-pooling), a bottleneck, and a decoder that upsamples by 2x2 transposed
convolutions and concatenates the encoder's features at the same scale. A 1x1
convolution predicts the correction that is added to the input (residual learning:
the network only has to model the noise, and an untrained network is the identity).

No batch normalisation: the network then behaves the same on one tile as on a batch,
and on images whose statistics differ from the training patches.

Default config (``base=32, depth=2``, the CARE default size): 465,953 parameters, about
0.097 M multiply-accumulates per pixel; sides must be multiples of 4. Deeper, narrower
variants see further for the same budget: ``depth=3, base=16`` has 481,745 parameters
and costs 0.035 M MACs per pixel (about three times faster to train on a CPU);
``depth=3, base=24`` has 1,083,193 parameters and 0.079 M MACs per pixel; sides must then
be multiples of 8.

With ``noise_map=True`` the network is told the image's noise: ``forward(x, noise)``
takes, per image, the Poisson-Gaussian coefficients ``(a, b)`` of ``Var = a * mean + b``
in the normalised units of ``x``, and turns them into a per-pixel noise standard
deviation map (from a 5x5 local mean of ``x``) concatenated to the input, as DRUNet
(Zhang et al., TPAMI 2021) concatenates its noise-level map. A blind network must guess
the noise from the image; on shot-noise-limited images (a dark background with a few
bright, very noisy structures) it guesses too low where the signal is bright. The map
costs one extra input channel; the zoo estimates ``(a, b)`` from the image
(:func:`napari_denoise.engine.denoise.noise.estimate_noise_model`), and scaling it is a strength
control.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._init import cat_channels, init_residual
from .architecture import register_model

__all__ = ["UNet", "UNetConfig"]


@dataclass
class UNetConfig:
    """Size of the U-Net.

    base : channels at full resolution (doubled at every level down).
    depth : number of 2x downsamplings.
    convs : 3x3 convolutions per block.
    noise_map : take the Poisson-Gaussian noise coefficients as a second input.
    residual : add the input to the output (False: the head predicts the image itself,
        as blind-spot training needs: a residual net learns to pass the noisy pixel on).
    skip_top : concatenate the full-resolution encoder features in the decoder (N2V2,
        Höck et al. 2022, drops this skip to avoid checkerboard artefacts).
    blurpool : downsample by max-pooling with stride 1 then a 3x3 binomial blur with
        stride 2 (anti-aliased pooling, Zhang 2019; used by N2V2) instead of 2x2 max-pooling.
    """

    base: int = 32
    depth: int = 2
    convs: int = 2
    noise_map: bool = False
    residual: bool = True
    skip_top: bool = True
    blurpool: bool = False


class BlurPool(nn.Module):
    """Max-pool (2x2, stride 1) then a binomial [1, 2, 1] blur with stride 2, per channel."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer(
            "kernel", (k[:, None] * k[None, :] / 16.0)[None, None], persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
        c = x.shape[1]
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), stride=2, groups=c)


# The noise map is fed in units of 1/10 of the normalised range: about 0.1-3 for the
# noise levels met in practice, the scale of the image channel.
MAP_SCALE = 10.0


def noise_std_map(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-pixel noise std ``sqrt(a * local_mean + b)`` for ``noise`` rows ``(a, b)``."""
    mean = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    a = noise[:, 0].to(x.dtype).view(-1, 1, 1, 1)
    b = noise[:, 1].to(x.dtype).view(-1, 1, 1, 1)
    return torch.sqrt((a * mean.clamp_min(0) + b).clamp_min(1e-8))


def _block(c_in: int, c_out: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@register_model("unet")
class UNet(nn.Module):
    """CARE-style U-Net with a residual output; see the module docstring."""

    config_class = UNetConfig
    takes_noise_level = False

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.takes_noise_level = bool(config.noise_map)
        self.noise_input = "poisson-gaussian" if config.noise_map else None
        b, d = config.base, config.depth
        widths = [b * 2**i for i in range(d + 1)]
        self.down = nn.ModuleList(
            _block(
                (2 if config.noise_map else 1) if i == 0 else widths[i - 1], widths[i], config.convs
            )
            for i in range(d)
        )
        self.pool = BlurPool() if config.blurpool else nn.MaxPool2d(2)
        self.bottom = _block(widths[d - 1], widths[d], config.convs)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(d))
        )
        self.merge = nn.ModuleList(
            _block((2 if (i > 0 or config.skip_top) else 1) * widths[i], widths[i], config.convs)
            for i in reversed(range(d))
        )
        self.head = nn.Conv2d(b, 1, 1)
        if config.residual:
            init_residual(self, self.head)  # starts as the identity
        self.multiple = 2**d
        # Theoretical receptive-field radius: each 3x3 conv at level l adds 2**l pixels
        # (on the way down and up), each pooling 2**l.
        self.reach = sum(2 * config.convs * 2**lv + 2**lv for lv in range(d)) + config.convs * 2**d
        if config.blurpool:  # the blur reaches one more pixel at each level
            self.reach += sum(2**lv for lv in range(d))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        if self.config.noise_map:
            if noise is None:
                raise ValueError("this U-Net needs the noise coefficients (a, b) per image")
            h = cat_channels([x, MAP_SCALE * noise_std_map(x, noise)])
        out = self.trunk(h)
        return x + out if self.config.residual else out

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        """The encoder, decoder and head on the network's input channels ``h`` (before
        the residual): shared by the single-frame and the multi-frame U-Net."""
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottom(h)
        for level, (up, merge) in enumerate(zip(self.up, self.merge, strict=True)):
            skip = skips.pop()
            top = level == len(self.up) - 1
            h = merge(up(h) if top and not self.config.skip_top else cat_channels([up(h), skip]))
        return self.head(h)

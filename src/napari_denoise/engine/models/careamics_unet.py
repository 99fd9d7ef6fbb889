"""The 2-D U-Net that CAREamics trains and exports (N2V, N2V2, CARE, N2N), rebuilt here.

Written from the description of ``careamics.models.unet.UNet`` (its constructor arguments
and the names and shapes of its state-dict tensors), so that a ``pytorch_state_dict``
bioimage.io package exported by CAREamics loads with ``weights_only=True`` and runs
without importing CAREamics or any code from the package. The layout it must match:

- ``encoder.encoder_blocks.{2l}``: level ``l`` of the encoder (``l = 0 .. depth-1``), a
  block of two 3x3 convolutions (``conv1``, ``conv2``, zero padding 1) with batch norms
  (``batch_norm1``, ``batch_norm2``, present in the state dict whether or not they are
  used) and ReLU, ``init * 2**l`` channels; the odd entries are the pooling (2x2 max, or
  for N2V2 a stride-1 2x2 max followed by a stride-2 3x3 binomial blur), with no tensors.
- ``decoder.bottleneck``: a block from ``init * 2**(depth-1)`` channels to twice that
  (``conv1``) and back (``conv2``).
- ``decoder.decoder_blocks.{2k+1}`` (``k = 0 .. depth-1``, deepest first; the even entries
  are bilinear 2x upsampling): the upsampled features concatenated with the encoder's
  features of that level (upsampled first; N2V2 drops the skip at full resolution), then
  ``conv1`` to ``2 * out`` channels and ``conv2`` to ``out``, where ``out`` halves at each
  level up and the last block keeps ``init`` channels with no widening.
- ``final_conv``: a 1x1 convolution to ``num_classes`` channels, plus the input when
  ``residual``, then the activation.

Only the single-channel, 2-D case is built (what a blind denoiser of one
channel is); the importer refuses the others with a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import register_model

__all__ = ["CAREamicsUNet", "CAREamicsUNetConfig"]

ACTIVATIONS = {
    "None": nn.Identity,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "LeakyReLU": nn.LeakyReLU,
}


@dataclass
class CAREamicsUNetConfig:
    """The CAREamics ``UNet`` arguments that change the network.

    depth : number of 2x downsamplings.
    num_channels_init : channels of the first level (doubled at each level down).
    use_batch_norm : batch norm after each convolution.
    n2v2 : blur pooling and no full-resolution skip (N2V2, Höck et al. 2022).
    final_activation : "None", "Sigmoid", "Tanh", "ReLU" or "LeakyReLU".
    residual : add the input to the last convolution's output, before the activation
        (CAREamics 0.3.5; earlier versions had no such option).
    """

    depth: int = 2
    num_channels_init: int = 32
    use_batch_norm: bool = True
    n2v2: bool = False
    final_activation: str = "None"
    residual: bool = False


class _ConvBlock(nn.Module):
    """Two 3x3 convolutions, each optionally batch-normalised, each followed by ReLU."""

    def __init__(self, c_in: int, c_out: int, widen: int, batch_norm: bool):
        super().__init__()
        mid = c_out * widen
        self.conv1 = nn.Conv2d(c_in, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, c_out, 3, padding=1)
        # Always created: CAREamics' state dict holds them even when they are unused.
        self.batch_norm1 = nn.BatchNorm2d(mid)
        self.batch_norm2 = nn.BatchNorm2d(c_out)
        self.batch_norm = batch_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.batch_norm:
            x = self.batch_norm1(x)
        x = F.relu(x)
        x = self.conv2(x)
        if self.batch_norm:
            x = self.batch_norm2(x)
        return F.relu(x)


class _BlurPool(nn.Module):
    """N2V2's pooling: 2x2 max with stride 1 (no padding), then a normalised 3x3
    binomial blur with stride 2 and zero padding 1, per channel."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer(
            "kernel", (k[:, None] * k[None, :] / 16.0)[None, None], persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, stride=1)
        c = x.shape[1]
        return F.conv2d(
            x, self.kernel.to(x.dtype).expand(c, 1, 3, 3), stride=2, padding=1, groups=c
        )


class _Encoder(nn.Module):
    def __init__(self, config: CAREamicsUNetConfig):
        super().__init__()
        pool: nn.Module = _BlurPool() if config.n2v2 else nn.MaxPool2d(2)
        blocks: list[nn.Module] = []
        for level in range(config.depth):
            width = config.num_channels_init * 2**level
            blocks += [
                _ConvBlock(1 if level == 0 else width // 2, width, 1, config.use_batch_norm),
                pool,
            ]
        self.encoder_blocks = nn.ModuleList(blocks)


class _Decoder(nn.Module):
    def __init__(self, config: CAREamicsUNetConfig):
        super().__init__()
        d, init = config.depth, config.num_channels_init
        deepest = init * 2 ** (d - 1)
        self.bottleneck = _ConvBlock(deepest, deepest, 2, config.use_batch_norm)
        blocks: list[nn.Module] = []
        for k in range(d):
            width = init * 2 ** (d - k - 1)
            last = k == d - 1
            c_in = width if (config.n2v2 and last) else 2 * width
            blocks += [
                nn.Upsample(scale_factor=2, mode="bilinear"),
                _ConvBlock(
                    c_in, width if last else width // 2, 1 if last else 2, config.use_batch_norm
                ),
            ]
        self.decoder_blocks = nn.ModuleList(blocks)


@register_model("careamics_unet")
class CAREamicsUNet(nn.Module):
    """CAREamics' 2-D U-Net for one channel; see the module docstring."""

    config_class = CAREamicsUNetConfig
    takes_noise_level = False
    noise_input = None

    def __init__(self, config: CAREamicsUNetConfig):
        super().__init__()
        if config.final_activation not in ACTIVATIONS:
            raise ValueError(
                f"final_activation must be one of {', '.join(ACTIVATIONS)}, "
                f"not {config.final_activation!r}"
            )
        if not 1 <= config.depth <= 10:
            raise ValueError(f"depth must be between 1 and 10, not {config.depth}")
        self.config = config
        self.encoder = _Encoder(config)
        self.decoder = _Decoder(config)
        self.final_conv = nn.Conv2d(config.num_channels_init, 1, 1)
        self.final_activation = ACTIVATIONS[config.final_activation]()
        self.multiple = 2**config.depth
        # Receptive-field radius: two 3x3 convs per block at each scale, down and up, plus
        # the bottleneck's two at the coarsest scale and the pooling.
        d = config.depth
        self.reach = sum(2 * 2 * 2**lv + 2**lv for lv in range(d)) + 2 * 2**d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for module in self.encoder.encoder_blocks:
            h = module(h)
            if isinstance(module, _ConvBlock):
                skips.append(h)
        h = self.decoder.bottleneck(h)
        blocks = self.decoder.decoder_blocks
        for k in range(self.config.depth):
            h = blocks[2 * k](h)
            last = k == self.config.depth - 1
            if not (self.config.n2v2 and last):
                h = torch.cat([h, skips[-1 - k]], dim=1)
            h = blocks[2 * k + 1](h)
        out = self.final_conv(h)
        return self.final_activation(out + x if self.config.residual else out)

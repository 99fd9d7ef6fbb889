"""Restormer-lite: a small transformer-style restorer whose cost is linear in pixels.

Zamir, Arora, Khan, Hayat, Khan, Yang, "Restormer: efficient transformer for
high-resolution image restoration", CVPR 2022. A 3x3 embedding, a U-shaped stack of
transformer blocks over three scales (pixel-unshuffle down, pixel-shuffle up, skips
concatenated and reduced by 1x1 convolutions), a refinement stage, and a residual
output. Each transformer block is

- multi-Dconv head transposed attention (MDTA): queries, keys and values from a 1x1
  convolution followed by a 3x3 depth-wise convolution; attention is computed *across
  channels* (a ``C/heads`` x ``C/heads`` map per head from L2-normalised queries and
  keys, with a learnt temperature), so its cost grows linearly with the number of pixels;
- a gated-Dconv feed-forward network (GDFN): 1x1 expansion, 3x3 depth-wise convolution,
  GELU gate on one half times the other half, 1x1 projection;

each behind a channel-wise layer norm with a residual connection.

The paper's model (dim 48, 4 scales, [4, 6, 6, 8] blocks: 26 M parameters) is
impractical on a CPU (this implementation with ``dim=48, blocks=(4, 6, 6, 8),
heads=(1, 2, 4, 8), refinement=4, ffn_expansion=2.66`` has 25,435,492 parameters and
1.5 M MACs per pixel). The default here is ``dim=16``, three scales with [1, 2, 2]
blocks, one refinement block: 251,715 parameters, about 0.041 M multiply-accumulates per
pixel in convolutions plus about 0.003 M in the attention products; sides must be
multiples of 4. The attention sums over the whole input, so no overlap makes tiles exact
(issue 13 found 10% of pixels off by more than a grey level): ``tileable = False``, and
the zoo runs each plane whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._init import cat_channels
from .architecture import register_model

__all__ = ["RestormerLite", "RestormerLiteConfig"]


@dataclass
class RestormerLiteConfig:
    """Width, transformer blocks and heads per scale, refinement blocks, FFN expansion."""

    dim: int = 16
    blocks: tuple[int, ...] = (1, 2, 2)
    heads: tuple[int, ...] = (1, 2, 4)
    refinement: int = 1
    ffn_expansion: float = 2.0

    def __post_init__(self):
        self.blocks = tuple(int(b) for b in self.blocks)
        self.heads = tuple(int(h) for h in self.heads)
        if len(self.blocks) != len(self.heads):
            raise ValueError("blocks and heads need one entry per scale")


class Pointwise(nn.Conv2d):
    """1x1 convolution computed as a matrix product over channels.

    Same parameters as ``nn.Conv2d(c_in, c_out, 1)``; on channels-last tensors it runs
    as one GEMM, several times faster on a CPU than PyTorch's generic 1x1 path.
    """

    def __init__(self, c_in: int, c_out: int, bias: bool = True):
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x):
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """Layer norm over the channels of each pixel (with bias)."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        # Channels last: the permuted view is contiguous, so layer_norm needs no copy.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, 1e-5)
        return y.permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention (attention across channels)."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = Pointwise(c, 3 * c, bias=False)
        self.qkv_dw = nn.Conv2d(3 * c, 3 * c, 3, padding=1, groups=3 * c, bias=False)
        self.project = Pointwise(c, c, bias=False)

    def forward(self, x):
        n, c, h, w = x.shape
        # Pixels first, (query|key|value, head, channel) last: contiguous for channels-last input.
        qkv = self.qkv_dw(self.qkv(x)).permute(0, 2, 3, 1).reshape(n, h * w, 3, self.heads, -1)
        q, k, v = qkv.unbind(dim=2)
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)  # over the pixels
        attn = torch.einsum("nphc,nphd->nhcd", q, k) * self.temperature
        out = torch.einsum("nhcd,nphd->nphc", attn.softmax(dim=-1), v)
        return self.project(out.reshape(n, h, w, c).permute(0, 3, 1, 2))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network."""

    def __init__(self, c: int, expansion: float):
        super().__init__()
        hidden = int(c * expansion)
        self.expand = Pointwise(c, 2 * hidden, bias=False)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project = Pointwise(hidden, c, bias=False)

    def forward(self, x):
        gate, value = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.project(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    def __init__(self, c: int, heads: int, expansion: float):
        super().__init__()
        self.norm1, self.attn = ChannelNorm(c), MDTA(c, heads)
        self.norm2, self.ffn = ChannelNorm(c), GDFN(c, expansion)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def _stage(c: int, n: int, heads: int, expansion: float) -> nn.Sequential:
    return nn.Sequential(*(TransformerBlock(c, heads, expansion) for _ in range(n)))


@register_model("restormer_lite")
class RestormerLite(nn.Module):
    """Small Restormer; see the module docstring."""

    config_class = RestormerLiteConfig
    takes_noise_level = False
    # Attention over the whole image: no overlap makes tiles exact (a card says so).
    tileable = False

    def __init__(self, config: RestormerLiteConfig):
        super().__init__()
        self.config = config
        d, e = config.dim, config.ffn_expansion
        levels = len(config.blocks) - 1
        dims = [d * 2**i for i in range(levels + 1)]
        self.embed = nn.Conv2d(1, d, 3, padding=1, bias=False)
        self.encode = nn.ModuleList(
            _stage(dims[i], config.blocks[i], config.heads[i], e) for i in range(levels)
        )
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dims[i], dims[i] // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
            )
            for i in range(levels)
        )
        self.bottom = _stage(dims[-1], config.blocks[-1], config.heads[-1], e)
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dims[i + 1], dims[i + 1] * 2, 3, padding=1, bias=False),
                nn.PixelShuffle(2),
            )
            for i in reversed(range(levels))
        )
        # After each upsampling: concatenate the skip and reduce back to the scale's width.
        self.reduce = nn.ModuleList(
            Pointwise(2 * dims[i], dims[i], bias=False) for i in reversed(range(levels))
        )
        self.decode = nn.ModuleList(
            _stage(dims[i], config.blocks[i], config.heads[i], e) for i in reversed(range(levels))
        )
        self.refine = _stage(d, config.refinement, config.heads[0], e)
        self.tail = nn.Conv2d(d, 1, 3, padding=1, bias=False)
        nn.init.zeros_(self.tail.weight)  # starts as the identity
        self.multiple = 2**levels
        self.reach = 32  # local part of the receptive field; attention is global (see above)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        skips = []
        for encode, down in zip(self.encode, self.down, strict=True):
            h = encode(h)
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up, reduce, decode in zip(self.up, self.reduce, self.decode, strict=True):
            h = decode(reduce(cat_channels([up(h), skips.pop()])))
        return x + self.tail(self.refine(h))

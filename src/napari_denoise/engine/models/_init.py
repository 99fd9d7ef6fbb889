"""Weight initialisation and a tensor helper shared by the networks."""

from __future__ import annotations

import torch
from torch import nn


def init_residual(model: nn.Module, last: nn.Conv2d) -> None:
    """He initialisation for every (transposed) convolution, then a zero last layer.

    ReLU stacks initialised this way train at once; zeroing the layer that produces the
    residual makes a fresh network start as the identity (output = input).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)``, fast for channels-last (NHWC) feature maps.

    Concatenating channels-last tensors along the channel axis takes PyTorch's slow path
    (measured: 114 ms against 38 ms for two 16 x 448 x 448 maps on one core, about 13% of
    a U-Net's inference time); concatenating their NHWC views along the last axis is the
    same operation on contiguous memory and returns a channels-last result.
    """
    if all(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) for t in tensors):
        return torch.cat([t.permute(0, 2, 3, 1) for t in tensors], dim=3).permute(0, 3, 1, 2)
    return torch.cat(tensors, dim=1)

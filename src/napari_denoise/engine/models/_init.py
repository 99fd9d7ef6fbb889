"""Weight initialisation shared by the residual denoisers."""

from __future__ import annotations

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

"""A network from elsewhere (a bioimage.io package) as TorchScript, behind the engine's contract.

An imported package whose weights are TorchScript is stored in the user model folder as
``<name>.torchscript.pt`` (the package's bytes, unchanged) beside a model card whose
``weights.format`` is ``"torchscript"``. :func:`load_torchscript` is what
:func:`~.store.load_model` calls for such a card once it has checked the file's SHA-256:
it loads the archive with ``torch.jit.load`` (TorchScript code is run by the TorchScript
interpreter, not by Python: no pickled objects, no imports) and wraps it in
:class:`ForeignNetwork`, which speaks the engine's contract: ``(N, 1, H, W)`` in
normalised units, the same shape out, with ``multiple`` and ``reach``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelFileError

__all__ = ["ForeignNetwork", "load_torchscript"]

STANDARD_AXES = ("batch", "channel", "y", "x")


class ForeignNetwork(nn.Module):
    """A network described by a bioimage.io package, behind the engine's contract.

    Pads each input by reflection to a size the package accepts (``min + n * step``),
    reorders ``(N, 1, H, W)`` to the package's axis order (batch and channel axes may be
    absent) and back, and crops the output to the input's size.
    """

    takes_noise_level = False
    noise_input = None

    def __init__(
        self,
        net: nn.Module,
        *,
        step: int,
        min_size: int,
        reach: int,
        input_axes: Sequence[str] = STANDARD_AXES,
        output_axes: Sequence[str] = STANDARD_AXES,
    ):
        super().__init__()
        self.net = net
        self.multiple = int(step)
        self.min_size = int(min_size)
        self.reach = int(reach)
        self.input_axes = tuple(input_axes)
        self.output_axes = tuple(output_axes)
        # Parameters of a ScriptModule count; a weightless one still needs a device probe.
        self.register_buffer("_device_probe", torch.zeros(1), persistent=False)

    def parameters(self, recurse: bool = True):  # run_model asks the device of the first
        yield self._device_probe
        yield from super().parameters(recurse)

    def _valid(self, n: int) -> int:
        if n <= self.min_size:
            return self.min_size
        return self.min_size + -(-(n - self.min_size) // self.multiple) * self.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "batch" not in self.input_axes and x.shape[0] > 1:  # one image at a time
            return torch.cat([self(x[i : i + 1]) for i in range(x.shape[0])])
        ny, nx = x.shape[-2:]
        py, px = self._valid(ny) - ny, self._valid(nx) - nx
        if py or px:
            mode = "reflect" if py < ny and px < nx else "replicate"
            x = F.pad(x, (0, px, 0, py), mode=mode)
        x = _to_axes(x.contiguous(), self.input_axes)
        y = self.net(x)
        y = _from_axes(y, self.output_axes)
        return y[..., :ny, :nx]


def _to_axes(x: torch.Tensor, axes: Sequence[str]) -> torch.Tensor:
    """``(N, 1, H, W)`` in the order of ``axes`` (ids among batch, channel, y, x)."""
    if tuple(axes) == STANDARD_AXES:
        return x
    present = [a for a in STANDARD_AXES if a in axes]
    for gone in ("channel", "batch"):  # dropped axes have size 1
        if gone not in axes:
            x = x.squeeze(STANDARD_AXES.index(gone))
    return x.permute([present.index(a) for a in axes]).contiguous()


def _from_axes(y: torch.Tensor, axes: Sequence[str]) -> torch.Tensor:
    if tuple(axes) == STANDARD_AXES:
        return y
    present = [a for a in STANDARD_AXES if a in axes]
    y = y.permute([list(axes).index(a) for a in present])
    for gone in ("batch", "channel"):
        if gone not in axes:
            y = y.unsqueeze(STANDARD_AXES.index(gone))
    return y


def load_torchscript(weights: str | os.PathLike, card: dict[str, Any], *, device: str = "cpu"):
    """The wrapped network and its card, from TorchScript ``weights`` already checked
    against the card's SHA-256 (:func:`~.store.load_model`)."""
    try:
        net = torch.jit.load(str(weights), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as err:
        raise ModelFileError(f"The TorchScript file {weights} cannot be loaded ({err}).") from None
    config = card["config"]
    model = ForeignNetwork(
        net,
        step=int(config["step"]),
        min_size=int(config["min"]),
        reach=int(card.get("halo", config.get("halo", 0))),
        input_axes=config.get("input_axes", STANDARD_AXES),
        output_axes=config.get("output_axes", STANDARD_AXES),
    )
    return model.eval().to(device), card

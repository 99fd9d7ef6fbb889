"""Stacks streamed through a multi-frame model by name: :func:`denoise_stack` holds a
window of planes and writes each output plane as it is done (see :mod:`.stack` for the
arithmetic). Above :mod:`.stack` because it looks methods up by name."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InputError, ParameterError
from .stack import (
    MIN_PLANES,
    NEIGHBOURS_CHOICES,
    _bf16,
    _loaded,
    _single_method,
    choose_stack_params,
    run_window,
    tiled_window,
    window_indices,
)
from .tiling import Progress

__all__ = ["StackResult", "denoise_stack", "denoise_stack_iter"]


@dataclass
class StackResult:
    """A denoised stack (or where it was written) and what was done, in words and data."""

    data: Any
    method: str
    neighbours: int
    status: str
    provenance: dict[str, Any] = field(default_factory=dict)


class _Planes:
    """Planes of a stack read on demand as float32, at most ``keep`` held at a time."""

    def __init__(self, stack, keep: int):
        self.stack, self.keep = stack, keep
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0

    def __len__(self) -> int:
        return len(self.stack)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        plane = np.asarray(self.stack[i], np.float32)
        self.reads += 1
        self.cache[i] = plane
        while len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return plane


def _check_stack(stack, axes: str | None) -> str:
    shape = (
        tuple(int(n) for n in np.shape(stack))
        if not hasattr(stack, "shape")
        else tuple(int(n) for n in stack.shape)
    )
    if axes is None:
        axes = "YX" if len(shape) == 2 else ("TYX" if len(shape) == 3 else None)
    if axes is None or len(axes) != len(shape):
        raise InputError(
            f"A stack for the multi-frame model has axes TYX or ZYX (or YX for one plane); "
            f"this image has shape {shape}"
            + (f" and axes '{axes}'." if axes else ".")
            + " Give axes='TYX' or 'ZYX', or denoise each channel separately."
        )
    axes = axes.upper()
    if axes not in ("YX", "TYX", "ZYX"):
        raise InputError(
            f"The multi-frame model takes a single stack (axes TYX or ZYX, or YX), not '{axes}'."
        )
    if min(shape[-2:]) < 8:
        raise InputError(f"The planes are too small ({shape[-2]}x{shape[-1]}); at least 8x8.")
    return axes


def denoise_stack_iter(
    stack: Any,
    *,
    model: str = "unet-fluo-stack",
    axes: str | None = None,
    out: Any = None,
    tile: int | None = None,
    neighbours: str = "auto",
    device: str = "auto",
    ensemble: int = 1,
    norm_low: float | None = None,
    norm_high: float | None = None,
    detail: float | None = None,
    detail_width: float | None = None,
) -> Generator[Progress, None, StackResult]:
    """Denoise a ``(T or Z, Y, X)`` stack window by window; yields progress per plane.

    ``stack`` is anything with ``shape`` whose ``[t]`` is a plane (an array, a memory map,
    a lazy reader): ``frames`` planes are held at a time. ``out`` receives the planes as
    they are done (an array or memory map of the stack's shape; float32 by default, made
    here when not given). ``neighbours``: ``"auto"`` (use them where the no-ground-truth
    check finds they help), ``"on"`` or ``"off"`` (frame by frame). A 2-D image or a stack
    of fewer than 3 planes is denoised frame by frame, and the status says so.
    """
    from ..methods import get_method

    if neighbours not in NEIGHBOURS_CHOICES:
        raise ParameterError(
            f"neighbours must be one of {', '.join(NEIGHBOURS_CHOICES)}, not {neighbours!r}."
        )
    method = get_method(model)
    if method.ndim != 3 or method.model is None:
        raise ParameterError(f"'{model}' is not a multi-frame model.")
    card_path = method.model.card
    axes = _check_stack(stack, axes)
    two_d = axes == "YX"
    n = 1 if two_d else int(stack.shape[0])
    planes = _Planes(stack if not two_d else [stack], keep=16)
    frames = int(_loaded(card_path, device)[0].frames)
    from ..models.store import read_card
    from .selfcheck import DETAIL_MAX_WIDTH, put_back

    card = read_card(card_path)
    asked = neighbours
    params: dict[str, Any] = {
        "neighbours": neighbours if n >= MIN_PLANES else "off",
        "norm_low": norm_low,
        "norm_high": norm_high,
        "ensemble": int(ensemble),
        "device": device,
        "detail": detail,
        "detail_width": detail_width,
    }
    yield Progress(0, n, "choosing the parameters from the stack", choosing=True)
    params = choose_stack_params(planes, params, card=card, card_path=card_path)
    risks = params.pop("_check", {}) or {}
    use = params["neighbours"] == "on"
    if n < MIN_PLANES:
        reason = "a single image" if two_d else f"only {n} plane{'s' if n > 1 else ''} (at least 3)"
    elif asked == "auto" and not use:
        reason = "a check without ground truth found the neighbours do not help here"
    else:
        reason = "" if use else "frame by frame was asked for"
    planes.keep = frames + 1
    planes.cache.clear()
    shape = (n, *(stack.shape[-2:]))
    if out is None:
        out = np.empty(shape if not two_d else shape[1:], np.float32)
    halo = int(method.halo({}))  # the network's reach; the detail is put back whole-plane
    tile_size = tile if tile is not None else method.tile
    model_net, net_card = _loaded(card_path, device)
    bf16 = _bf16(model_net, net_card)
    low, high = params["norm_low"], params["norm_high"]
    amount = float(params.get("detail") or 0.0)
    width = min(float(params.get("detail_width") or 0.0), DETAIL_MAX_WIDTH)
    single = _single_method(card_path)

    def multi_fn(w):
        return run_window(model_net, w, low=low, high=high, ensemble=int(ensemble), bf16=bf16)

    def single_fn(w):
        return single.fn(
            w[0], norm_low=low, norm_high=high, device=device, ensemble=int(ensemble), detail=0.0
        )

    for t in range(n):
        if use:
            window = np.stack([planes[i] for i in window_indices(t, n, frames)])
            plane = tiled_window(
                multi_fn, window, halo=halo, tile=tile_size, multiple=method.multiple
            )
        else:
            plane = tiled_window(
                single_fn, planes[t][None], halo=halo, tile=tile_size, multiple=method.multiple
            )
        if amount > 0:
            plane = put_back(plane, planes[t], amount, width)
        if two_d:
            out[...] = plane
        else:
            out[t] = plane
        word = "frame" if axes[0] == "T" else "plane"
        yield Progress(t + 1, n, f"{method.name}: {word} {t + 1} of {n}")
    word = "frames" if axes[0] == "T" else "planes"
    if use:
        status = (
            f"Denoised {n} {word} with {method.name}, using {frames - 1} neighbouring "
            f"{word} each (reflected at the ends)."
        )
    else:
        status = f"Denoised frame by frame with the single-frame model {single.name} ({reason})."
    provenance = {
        "method": method.name,
        "model": method.model.as_dict(),
        "axes": axes,
        "neighbours": frames - 1 if use else 0,
        "window": frames if use else 1,
        "ends": "reflect",
        "fallback": None if use else {"model": single.name, "reason": reason},
        "params": {
            k: (float(f"{v:.9g}") if isinstance(v, float) else v) for k, v in params.items()
        },
        "check": {k: round(v, 6) for k, v in risks.items()} or None,
        "planes_read": planes.reads,
    }
    return StackResult(out, method.name, frames - 1 if use else 0, status, provenance)


def denoise_stack(stack: Any, **kwargs: Any) -> StackResult:
    """:func:`denoise_stack_iter` run to the end (same arguments)."""
    from .tiling import drain

    return drain(denoise_stack_iter(stack, **kwargs))

"""Blind-spot masking for self-supervised training: Noise2Void, N2V2 and the PSF variant.

Noise2Void (Krull, Buchholz, Jug, "Noise2Void - learning denoising from single noisy
images", CVPR 2019) trains a network on noisy images alone. In every patch a few pixels
are *masked*: their input value is replaced by something that carries no information
about their own noise, and the loss is computed on those pixels only, against their
original noisy value. A network cannot learn the identity that way; since the noise is
pixel-wise independent and zero-mean, the best it can do is predict the signal from the
surroundings.

- ``"n2v"``: each masked pixel takes the value of a random other pixel of its 5x5
  neighbourhood (Krull et al. 2019).
- ``"n2v2"``: each masked pixel takes the median of its 5x5 neighbourhood *without* the
  centre (Höck, Buchholz, Jug et al., "N2V2 - fixing Noise2Void checkerboard artifacts
  with modified sampling strategies and a tweaked network architecture", ECCV-W 2022).
  N2V2 also changes the U-Net (no top-level skip connection, blur-pool instead of
  max-pool); :func:`blind_config` adds those options where the architecture has them.
  The median is itself a fair estimate of the centre, so a network that adds its input
  to its output learns to pass the centre through and, at inference, keeps its noise
  (measured: no gain at all on a W2S crop, against +11 dB for a network without the
  pass-through). N2V2 therefore needs a network with ``residual=False``.
- ``"n2v-psf"``: the network's output is read as the deconvolved image and a fixed
  Gaussian PSF maps it to the denoised one before the masked loss, and negative values of
  the deconvolved image are penalised (Goncharova, Honigmann, Jug, Krull, "Improving blind
  spot denoising for microscopy", ECCV-W 2020). The PSF is part of the saved model
  (:mod:`.models.psf_wrap`).

Masked pixels lie on a jittered grid (one per ``s`` x ``s`` cell, ``s`` about
``1 / sqrt(fraction)``, shifted by a random offset per patch, wrapping around the patch)
with positions drawn so that any two are at least 3 pixels apart in Y or X. No masked
pixel therefore lies in another one's 5x5 window: the value that replaces a masked pixel
never comes from another masked pixel, and the input of the masked step does not depend
on the original value of *any* masked pixel. That is the blind spot, exactly, and the
tests check it. All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BLIND_FLAGS",
    "BLIND_MODES",
    "DEFAULT_MASK_FRACTION",
    "MODES",
    "N2V2_FLAGS",
    "blind_config",
    "blind_spot_batch",
    "grid_spacing",
    "masked_loss",
    "masked_validation_loss",
    "masked_validation_set",
    "passes_input_through",
    "positivity_penalty",
]

MODES = ("supervised", "n2v", "n2v2", "n2v-psf")
BLIND_MODES = ("n2v", "n2v2", "n2v-psf")
# 1 pixel in 64: the N2V paper's 64 blind spots per 64 x 64 patch (a grid spacing of 8).
DEFAULT_MASK_FRACTION = 1 / 64
MIN_FRACTION, MAX_FRACTION = 0.002, 0.04  # grid spacings 22 ... 5
RADIUS = 2  # the 5x5 neighbourhood
# Network options for blind-spot training from scratch, applied where the architecture
# has them. No residual (input added to the output) in any mode: with N2V2's median
# replacement a residual network keeps the noisy centre pixel at inference, and without
# the top-level skip it cannot cancel it either. N2V2 also drops the top-level skip and
# pools with blur-pool (Höck et al. 2022: both cause checkerboard artefacts).
BLIND_FLAGS = {"residual": False}
N2V2_FLAGS = {"residual": False, "skip_top": False, "blurpool": True}

# The 24 offsets of a 5x5 window without its centre, (dy, dx).
_OFFSETS = torch.tensor(
    [
        (dy, dx)
        for dy in range(-RADIUS, RADIUS + 1)
        for dx in range(-RADIUS, RADIUS + 1)
        if (dy, dx) != (0, 0)
    ]
)


def grid_spacing(fraction: float) -> int:
    """Side of the grid cell holding one masked pixel, for a masked ``fraction``."""
    if not MIN_FRACTION <= fraction <= MAX_FRACTION:
        raise ValueError(
            f"The masked fraction must lie between {MIN_FRACTION} and {MAX_FRACTION} "
            f"(0.2% to 4% of the pixels), not {fraction}."
        )
    return max(2 * RADIUS + 1, round(1 / math.sqrt(fraction)))


def _grid_positions(n: int, size: int, spacing: int, gen: torch.Generator) -> torch.Tensor:
    """(n, cells) coordinates along one axis: at least 3 apart, wrapping around ``size``.

    Cell ``k`` of sample ``i`` starts at ``offset_i + k * spacing``; the position inside
    the cell is drawn from its first ``spacing - 2`` pixels, so neighbouring cells'
    positions are at least 3 apart, also across the wrap (the last cell ends at least a
    whole spacing before the first one starts again).
    """
    cells = size // spacing
    offset = torch.randint(spacing, (n, 1), generator=gen)
    inside = torch.randint(spacing - RADIUS, (n, cells), generator=gen)
    return (offset + torch.arange(cells) * spacing + inside) % size


def _neighbour(pos: torch.Tensor, offset: torch.Tensor, size: int) -> torch.Tensor:
    """``pos + offset``, or ``pos - offset`` where that leaves ``0..size-1``.

    Reversing the offset (rather than mirroring the position at the border, which maps
    ``1 - 2`` back onto ``1``) never lands on the centre itself.
    """
    out = pos + offset
    return torch.where((out < 0) | (out >= size), pos - offset, out)


def blind_spot_batch(
    patches: torch.Tensor,
    generator: torch.Generator,
    *,
    fraction: float = DEFAULT_MASK_FRACTION,
    replace: str = "random",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask a batch for a blind-spot step: ``(input, target, mask)``.

    Parameters
    ----------
    patches : torch.Tensor
        ``(n, 1, H, W)`` noisy patches (H and W at least 5).
    generator : torch.Generator
        Source of all randomness: the same state gives the same masks.
    fraction : float
        Share of pixels masked per patch (0.002 to 0.04; default 1/64).
    replace : {"random", "median"}
        ``"random"``: a random other pixel of the 5x5 window (Noise2Void);
        ``"median"``: the median of the window without its centre (N2V2).

    Returns
    -------
    input : torch.Tensor
        The patches with the masked pixels replaced.
    target : torch.Tensor
        The original patches (the loss compares the prediction with them).
    mask : torch.Tensor
        1.0 at masked pixels, 0.0 elsewhere, same shape.

    Examples
    --------
    >>> x = torch.rand(2, 1, 32, 32)
    >>> inp, target, mask = blind_spot_batch(x, torch.Generator().manual_seed(0))
    >>> int(mask.sum()), bool(torch.equal(inp[mask == 0], x[mask == 0]))
    (32, True)
    """
    if replace not in ("random", "median"):
        raise ValueError(f"replace must be 'random' or 'median', not {replace!r}.")
    n, c, h, w = patches.shape
    if c != 1 or min(h, w) < 2 * RADIUS + 1:
        raise ValueError(
            f"blind-spot masking needs (n, 1, H, W) patches of 5 pixels or more, got {tuple(patches.shape)}."
        )
    s = grid_spacing(fraction)
    ys = _grid_positions(n, h, s, generator)  # (n, cy)
    xs = _grid_positions(n, w, s, generator)  # (n, cx)
    cy, cx = ys.shape[1], xs.shape[1]
    b = torch.arange(n).view(n, 1, 1).expand(n, cy, cx).reshape(-1)
    y = ys.view(n, cy, 1).expand(n, cy, cx).reshape(-1)
    x = xs.view(n, 1, cx).expand(n, cy, cx).reshape(-1)
    flat = patches[:, 0]
    if replace == "random":
        pick = _OFFSETS[torch.randint(len(_OFFSETS), (len(b),), generator=generator)]
        values = flat[b, _neighbour(y, pick[:, 0], h), _neighbour(x, pick[:, 1], w)]
    else:
        sy = _neighbour(y[:, None], _OFFSETS[None, :, 0], h)
        sx = _neighbour(x[:, None], _OFFSETS[None, :, 1], w)
        window = flat[b[:, None], sy, sx].sort(dim=1).values  # (m, 24)
        mid = window.shape[1] // 2
        values = 0.5 * (window[:, mid - 1] + window[:, mid])
    inputs = patches.clone()
    inputs[b, 0, y, x] = values.to(patches.dtype)
    mask = torch.zeros_like(patches)
    mask[b, 0, y, x] = 1.0
    return inputs, patches, mask


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, loss: str = "l1"):
    """Mean L1 (``"l1"``) or squared (``"l2"``) error over the masked pixels only."""
    if loss == "l1":
        err = (pred - target).abs()
    elif loss == "l2":
        err = (pred - target) ** 2
    else:
        raise ValueError(
            f"Blind-spot training compares single pixels: use loss 'l1' or 'l2', not '{loss}' "
            "(SSIM needs whole clean patches)."
        )
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def masked_validation_set(
    images: Sequence[np.ndarray],
    *,
    multiple: int = 1,
    fraction: float = DEFAULT_MASK_FRACTION,
    replace: str = "random",
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fixed ``(input, target, mask)`` triples for held-out noisy images (normalised units).

    Each image is cropped to a multiple of the network's ``multiple`` and masked once
    with its own generator (``seed``), so every validation sees the same masks and the
    training's random stream is untouched.
    """
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for img in images:
        img = np.asarray(img, np.float32)
        h = img.shape[0] - img.shape[0] % multiple
        w = img.shape[1] - img.shape[1] % multiple
        if min(h, w) < 2 * RADIUS + 1:
            continue
        x = torch.from_numpy(np.ascontiguousarray(img[:h, :w]))[None, None]
        out.append(blind_spot_batch(x, gen, fraction=fraction, replace=replace))
    return out


def masked_validation_loss(model, triples, *, loss: str = "l1") -> float:
    """Mean masked loss of ``model`` on :func:`masked_validation_set` triples.

    For a PSF-wrapped network this is the loss of the denoised (re-blurred) output, the
    same data term the training minimises (without the positivity penalty).
    """
    from .zoo import noise_for

    was_training = model.training
    model.eval()
    total = count = 0.0
    try:
        with torch.inference_mode():
            for inputs, target, mask in triples:
                noise = noise_for(model, inputs[0, 0].numpy())
                if noise is None:
                    pred = model(inputs)
                else:  # a level (N,) or coefficients (N, 2), as the zoo passes them
                    noise = np.asarray(noise, np.float32)
                    pred = model(inputs, torch.from_numpy(noise.reshape(1, *noise.shape)))
                m = float(mask.sum())
                total += float(masked_loss(pred.float(), target, mask, loss)) * m
                count += m
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


def blind_config(mode: str, architecture: str, config: dict | None = None) -> tuple[dict, dict]:
    """``config`` with the network options a blind-spot ``mode`` wants, where they exist.

    All modes want ``residual=False``; N2V2 also ``skip_top=False`` and ``blurpool=True``
    (:data:`N2V2_FLAGS`). Options given in ``config`` are kept. Returns ``(config,
    missing)``: the wanted options the architecture's config does not have (not applied;
    the model card says so).
    """
    import dataclasses

    from .models import get_model_class

    fields = {f.name for f in dataclasses.fields(get_model_class(architecture).config_class)}
    config = dict(config or {})
    missing = {}
    for key, value in (N2V2_FLAGS if mode == "n2v2" else BLIND_FLAGS).items():
        if key not in fields:
            missing[key] = value
        else:
            config.setdefault(key, value)
    return config, missing


def passes_input_through(config: dict) -> bool:
    """Whether a network built from ``config`` adds its input to its output.

    Every network of :mod:`.models` does unless its config says ``residual=False``.
    """
    return config.get("residual", True) is not False


def positivity_penalty(deconvolved: torch.Tensor) -> torch.Tensor:
    """Mean of the negative part of the deconvolved image: ``mean(relu(-x))``.

    Fluorescence is never negative; Goncharova et al. (2020) add this term so that the
    deconvolved estimate stays physically plausible and sharper structures are preferred
    to ringing.
    """
    return F.relu(-deconvolved).mean()

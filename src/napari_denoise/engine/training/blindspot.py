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
  (:mod:`..models.psf_wrap`).

Masked pixels lie on a jittered grid (one per ``s`` x ``s`` cell, ``s`` about
``1 / sqrt(fraction)``, shifted by a random offset per patch, wrapping around the patch)
with positions drawn so that any two are at least 3 pixels apart in Y or X. No masked
pixel therefore lies in another one's 5x5 window: the value that replaces a masked pixel
never comes from another masked pixel, and the input of the masked step does not depend
on the original value of *any* masked pixel. That is the blind spot, exactly, and the
tests check it. All randomness comes from the ``torch.Generator`` passed in.

Spatially correlated noise (widefield cameras: binned, interpolated or smoothed pixels)
breaks the one-pixel blind spot: a pixel's neighbours carry part of its noise, so the
network learns to copy it from them (measured: N2V2 on FMD's widefield captures gains
0 to 2 dB where a Gaussian gains 8). A *blind block* of radius ``r`` hides the whole
``(2r+1) x (2r+1)`` square around each masked pixel, every pixel of it replaced from the
ring just outside it (``r < max(|dy|, |dx|) <= r + 2``), while the loss still counts the
centre only; the centres are then kept ``2r + 3`` pixels apart so that no ring touches
another block. This is the square, isotropic form of structured Noise2Void's masks
(Broaddus, Krull, Weigert, Schmidt, Myers, "Removing structured noise with
self-supervised blind-spot networks", ISBI 2020). :func:`blind_radius_for` picks ``r``
from the noise itself: 0 for independent noise, else the reach of its autocorrelation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .options import (
    BLIND_MODES,
    DEFAULT_MASK_FRACTION,
    MAX_BLIND_RADIUS,
    MAX_FRACTION,
    MIN_FRACTION,
    MODES,
    passes_input_through,
)

__all__ = [
    "BLIND_FLAGS",
    "BLIND_MODES",
    "DEFAULT_MASK_FRACTION",
    "MODES",
    "N2V2_FLAGS",
    "blind_config",
    "blind_radius_for",
    "blind_spot_batch",
    "grid_spacing",
    "masked_loss",
    "masked_validation_loss",
    "masked_validation_set",
    "passes_input_through",
    "positivity_penalty",
]

RADIUS = 2  # the 5x5 neighbourhood
# Network options for blind-spot training from scratch, applied where the architecture
# has them. No residual (input added to the output) in any mode: with N2V2's median
# replacement a residual network keeps the noisy centre pixel at inference, and without
# the top-level skip it cannot cancel it either. N2V2 also drops the top-level skip and
# pools with blur-pool (Höck et al. 2022: both cause checkerboard artefacts).
BLIND_FLAGS = {"residual": False}
N2V2_FLAGS = {"residual": False, "skip_top": False, "blurpool": True}


def _square(r_in: int, r_out: int) -> torch.Tensor:
    """(dy, dx) offsets with ``r_in < max(|dy|, |dx|) <= r_out``, row by row."""
    return torch.tensor(
        [
            (dy, dx)
            for dy in range(-r_out, r_out + 1)
            for dx in range(-r_out, r_out + 1)
            if r_in < max(abs(dy), abs(dx)) <= r_out
        ]
    )


def _block(radius: int) -> torch.Tensor:
    """Offsets of the blind block, centre first."""
    rest = _square(0, radius) if radius else torch.zeros((0, 2), dtype=torch.long)
    return torch.cat([torch.zeros((1, 2), dtype=torch.long), rest])


def _ring(radius: int) -> torch.Tensor:
    """Offsets the blind block's values come from: the 2-pixel ring around it (for a
    one-pixel blind spot, the 24 other pixels of its 5x5 window)."""
    return _square(radius, radius + RADIUS)


def grid_spacing(fraction: float, radius: int = 0) -> int:
    """Side of the grid cell holding one masked pixel, for a masked ``fraction``.

    Never less than ``2 * radius + 2 * RADIUS + 1`` (room for a blind block of
    ``radius`` and its ring) so that the centres can stay :func:`_min_distance` apart.
    """
    if not MIN_FRACTION <= fraction <= MAX_FRACTION:
        raise ValueError(
            f"The masked fraction must lie between {MIN_FRACTION} and {MAX_FRACTION} "
            f"(0.2% to 4% of the pixels), not {fraction}."
        )
    _check_radius(radius)
    return max(2 * (radius + RADIUS) + 1, round(1 / math.sqrt(fraction)))


def _check_radius(radius: int) -> None:
    if not (isinstance(radius, int | np.integer) and 0 <= radius <= MAX_BLIND_RADIUS):
        raise ValueError(
            f"The blind-spot radius must be a whole number from 0 (one pixel) to "
            f"{MAX_BLIND_RADIUS}, not {radius!r}."
        )


def _min_distance(radius: int) -> int:
    """How far apart (in Y or X) masked centres stay: one block's ring never reaches
    into another block (for a one-pixel blind spot: 3, outside each other's 5x5 window
    of replacement values)."""
    return 2 * radius + RADIUS + 1


def _grid_positions(
    n: int, size: int, spacing: int, gen: torch.Generator, radius: int = 0
) -> torch.Tensor:
    """(n, cells) coordinates along one axis, :func:`_min_distance` apart, wrapping.

    Cell ``k`` of sample ``i`` starts at ``offset_i + k * spacing``; the position inside
    the cell is drawn from its first ``spacing - d + 1`` pixels (``d`` the minimum
    distance), so neighbouring cells' positions are at least ``d`` apart, also across the
    wrap (the last cell ends at least a whole spacing before the first one starts again).
    """
    cells = size // spacing
    offset = torch.randint(spacing, (n, 1), generator=gen)
    inside = torch.randint(spacing - _min_distance(radius) + 1, (n, cells), generator=gen)
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
    radius: int = 0,
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
    radius : int
        0: one blind pixel; ``r`` (up to 3): the ``(2r+1)``-square block around each
        masked pixel is hidden, each of its pixels replaced from the 2-pixel ring around
        the block (a random ring pixel each, or the ring's median); the loss still counts
        the centre only.

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
    _check_radius(radius)
    reach = radius + RADIUS
    if c != 1 or min(h, w) < 2 * reach + 1:
        raise ValueError(
            f"blind-spot masking (radius {radius}) needs (n, 1, H, W) patches of "
            f"{2 * reach + 1} pixels or more, got {tuple(patches.shape)}."
        )
    s = grid_spacing(fraction, radius)
    ys = _grid_positions(n, h, s, generator, radius)  # (n, cy)
    xs = _grid_positions(n, w, s, generator, radius)  # (n, cx)
    cy, cx = ys.shape[1], xs.shape[1]
    b = torch.arange(n).view(n, 1, 1).expand(n, cy, cx).reshape(-1)
    y = ys.view(n, cy, 1).expand(n, cy, cx).reshape(-1)
    x = xs.view(n, 1, cx).expand(n, cy, cx).reshape(-1)
    flat = patches[:, 0]
    block, ring = _block(radius), _ring(radius)
    m, k = len(b), len(block)
    if replace == "random":  # one ring pixel per block pixel, the centre's drawn first
        pick = ring[torch.randint(len(ring), (m * k,), generator=generator)].view(m, k, 2)
        sy = _neighbour(y[:, None], pick[..., 0], h)
        sx = _neighbour(x[:, None], pick[..., 1], w)
        values = flat[b[:, None], sy, sx]  # (m, k)
    else:
        sy = _neighbour(y[:, None], ring[None, :, 0], h)
        sx = _neighbour(x[:, None], ring[None, :, 1], w)
        window = flat[b[:, None], sy, sx].sort(dim=1).values  # (m, ring)
        mid = window.shape[1] // 2
        values = (0.5 * (window[:, mid - 1] + window[:, mid]))[:, None].expand(m, k)
    # Block pixels past the patch border do not exist; blocks never overlap (centres stay
    # 2r + 3 apart), so every pixel is written at most once.
    by = y[:, None] + block[None, :, 0]
    bx = x[:, None] + block[None, :, 1]
    inside = (by >= 0) & (by < h) & (bx >= 0) & (bx < w)
    bb = b[:, None].expand(m, k)
    inputs = patches.clone()
    inputs[bb[inside], 0, by[inside], bx[inside]] = values[inside].to(patches.dtype)
    mask = torch.zeros_like(patches)
    mask[b, 0, y, x] = 1.0
    return inputs, patches, mask


def blind_radius_for(images: Sequence[np.ndarray], threshold: float = 0.1) -> int:
    """The blind-block radius the noise of ``images`` needs (0: a one-pixel blind spot).

    Noise counts as correlated when :func:`~..denoise.calibrate.noise_correlation_ratio` says so
    (above 2; signal-rich images with independent noise measure about 1, so their
    structure is not mistaken for correlated noise). Then the radius is the smallest
    ``r`` beyond which the noise autocorrelation measured in the flat tiles
    (:func:`~..denoise.calibrate.noise_covariance`) stays below ``threshold`` in magnitude, at
    least 1 and at most :data:`MAX_BLIND_RADIUS`. The median over the images is taken.
    """
    from ..denoise.calibrate import center_crop, noise_covariance, noise_is_correlated

    radii = []
    for img in images:
        plane = center_crop(np.asarray(img, np.float32), 1024)
        if min(plane.shape[-2:]) < 64 or not noise_is_correlated(plane):
            radii.append(0)
            continue
        reach = MAX_BLIND_RADIUS + 1
        cov = noise_covariance(plane, radius=reach)
        corr = np.abs(cov / max(cov[reach, reach], 1e-12))
        yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        cheb = np.maximum(np.abs(yy), np.abs(xx))
        r = 1
        while r < MAX_BLIND_RADIUS and corr[cheb == r + 1].max() >= threshold:
            r += 1
        radii.append(r)
    return int(np.median(radii)) if radii else 0


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
    radius: int = 0,
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
        if min(h, w) < 2 * (radius + RADIUS) + 1:
            continue
        x = torch.from_numpy(np.ascontiguousarray(img[:h, :w]))[None, None]
        out.append(blind_spot_batch(x, gen, fraction=fraction, replace=replace, radius=radius))
    return out


def masked_validation_loss(model, triples, *, loss: str = "l1") -> float:
    """Mean masked loss of ``model`` on :func:`masked_validation_set` triples.

    For a PSF-wrapped network this is the loss of the denoised (re-blurred) output, the
    same data term the training minimises (without the positivity penalty).
    """
    from ..models.inference import noise_for

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

    from ..models import get_model_class

    fields = {f.name for f in dataclasses.fields(get_model_class(architecture).config_class)}
    config = dict(config or {})
    missing = {}
    for key, value in (N2V2_FLAGS if mode == "n2v2" else BLIND_FLAGS).items():
        if key not in fields:
            missing[key] = value
        else:
            config.setdefault(key, value)
    return config, missing


def positivity_penalty(deconvolved: torch.Tensor) -> torch.Tensor:
    """Mean of the negative part of the deconvolved image: ``mean(relu(-x))``.

    Fluorescence is never negative; Goncharova et al. (2020) add this term so that the
    deconvolved estimate stays physically plausible and sharper structures are preferred
    to ringing.
    """
    return F.relu(-deconvolved).mean()

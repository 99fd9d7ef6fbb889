"""Training windows for multi-frame networks: real time series and clean images, with motion.

Every sampler returns ``(noisy, clean)``: ``noisy`` is ``(n, frames, patch, patch)`` (a
window of neighbouring frames, the centre in the middle), ``clean`` is ``(n, 1, patch,
patch)``, the truth of the centre frame, both in the units the engine feeds the network:
every frame of a window divided by the span of the *centre* frame's 0.1/99.9
percentiles (:mod:`.datasets`), then moved to a random sub-range of 0..1.

Synthetic motion (:class:`MotionRecipe`) teaches the network when not to trust a
neighbour: global drift (sub-pixel, up to ``drift`` pixels per frame), jitter, one
cell-sized region moving on its own, a cut to another field (the frames beyond it show
other structures), z-like change (neighbours defocused and their structures changing
with their distance) and flicker; and the windows at the ends of a stack, whose missing
frames are reflected (the engine pads a stack the same way), and stacks of 3-4 planes.
The centre frame is never moved, so its truth stays its truth. Shifts are applied in
Fourier space (a unitary operation: white noise stays white with the same variance), to
the clean image before the synthetic noise, or to the real noisy frames.

All randomness comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..denoise.tiling import reflect as reflect_index
from .datasets import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    NoiseRecipe,
    _gaussian_kernels,
    _log_uniform,
    _smooth,
    _uniform,
    align_affine,
    percentile_range,
)

__all__ = [
    "MotionRecipe",
    "RealSeriesWindows",
    "SyntheticWindows",
    "end_slots",
    "fourier_shift",
    "reflect_index",
]

MARGIN = 16  # pixels around a patch that motion may bring in


@dataclass(frozen=True)
class MotionRecipe:
    """Probabilities and ranges of the synthetic motion of a window.

    drift : probability of a global drift; drift_speed : its pixels per frame (uniform).
    jitter : probability of random sub-pixel jitter per frame; jitter_std : its std, px.
    region : probability of one region moving on its own; region_radius (px) and
        region_speed (px per frame).
    cut : probability that the frames on one side, from one of the neighbours on, show
        another field.
    zlike : probability of z-like change (synthetic images only): neighbours blurred by
        ``zblur`` px per frame of distance, their structures mixed with another image's
        by ``zmix`` per frame of distance.
    flicker : std of a per-frame log-intensity change (bleaching, laser flicker).
    ends : probability that the window sits at an end of a stack (reflected frames).
    short : probability that the stack has only 3 planes (the window reflects twice).
    """

    drift: float = 0.45
    drift_speed: tuple[float, float] = (0.0, 4.0)
    jitter: float = 0.25
    jitter_std: tuple[float, float] = (0.0, 1.0)
    region: float = 0.25
    region_radius: tuple[float, float] = (6.0, 22.0)
    region_speed: tuple[float, float] = (1.0, 5.0)
    cut: float = 0.08
    zlike: float = 0.15
    zblur: tuple[float, float] = (0.3, 1.5)
    zmix: tuple[float, float] = (0.0, 0.4)
    flicker: float = 0.04
    ends: float = 0.15
    short: float = 0.03


def end_slots(frames: int, position: int, length: int) -> list[int]:
    """Which frame of a full window (0..frames-1, centre frames//2) fills each slot of the
    window centred on plane ``position`` of a stack of ``length`` planes (reflected)."""
    c = frames // 2
    return [reflect_index(position + j - c, length) - position + c for j in range(frames)]


def fourier_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``x`` (..., H, W) moved by ``shifts`` (..., 2) pixels (dy, dx), sub-pixel, via FFT.

    The image is reflect-padded by :data:`MARGIN` first, so the wrap-around stays outside.
    """
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    p = MARGIN
    padded = F.pad(flat, (p, p, p, p), mode="reflect")[:, 0]
    hh, ww = padded.shape[-2:]
    ky = torch.fft.fftfreq(hh).view(1, hh, 1)
    kx = torch.fft.rfftfreq(ww).view(1, 1, ww // 2 + 1)
    s = shifts.reshape(-1, 2)
    # separable phase ramp: two small complex exponentials instead of one per pixel
    phase = torch.exp(-2j * math.pi * ky * s[:, 0].view(-1, 1, 1)) * torch.exp(
        -2j * math.pi * kx * s[:, 1].view(-1, 1, 1)
    )
    out = torch.fft.irfft2(torch.fft.rfft2(padded) * phase, s=(hh, ww))
    return out[:, p : p + h, p : p + w].reshape(*lead, h, w)


def _disk(n, t, size, centre, radius, edge=2.0):
    """Soft disks (n, t, size, size) centred at ``centre`` (n, t, 2), radius (n,)."""
    yy = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
    xx = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    d = torch.sqrt((yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2)
    return torch.sigmoid((radius.view(n, 1, 1, 1) - d) / edge)


def _move(frames: torch.Tensor, recipe: MotionRecipe, g: torch.Generator) -> torch.Tensor:
    """Global drift, jitter and one region moving on its own, for every frame but the
    centre one; ``frames`` is (n, t, H, W)."""
    n, t, h, w = frames.shape
    c = t // 2
    offset = (torch.arange(t, dtype=torch.float32) - c).view(1, t, 1)
    # global drift + jitter
    angle = _uniform(n, 0.0, 2 * math.pi, g)
    speed = _uniform(n, *recipe.drift_speed, g) * (torch.rand(n, generator=g) < recipe.drift)
    v = torch.stack([speed * torch.sin(angle), speed * torch.cos(angle)], 1).view(n, 1, 2)
    jit = _uniform(n, *recipe.jitter_std, g) * (torch.rand(n, generator=g) < recipe.jitter)
    d = v * offset + jit.view(n, 1, 1) * torch.randn(n, t, 2, generator=g)
    d[:, c] = 0.0
    moved = fourier_shift(frames, d)
    # one region moving on its own
    has_region = torch.rand(n, generator=g) < recipe.region
    if bool(has_region.any()):
        angle = _uniform(n, 0.0, 2 * math.pi, g)
        speed = _uniform(n, *recipe.region_speed, g)
        u = torch.stack([speed * torch.sin(angle), speed * torch.cos(angle)], 1).view(n, 1, 2)
        e = u * offset
        e[:, c] = 0.0
        radius = _uniform(n, *recipe.region_radius, g)
        start = torch.stack(
            [_uniform(n, 0.25 * h, 0.75 * h, g), _uniform(n, 0.25 * w, 0.75 * w, g)], 1
        )
        mask = _disk(n, t, h, start.view(n, 1, 2) + e, radius) * has_region.view(n, 1, 1, 1)
        region = fourier_shift(frames, e)
        moved = moved * (1 - mask) + region * mask
    moved[:, c] = frames[:, c]
    return moved


def _cut(frames: torch.Tensor, other: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """With probability ``p``, the frames on one side from a random neighbour on show
    ``other`` (n, t, H, W) instead."""
    n, t = frames.shape[:2]
    c = t // 2
    use = (torch.rand(n, generator=g) < p).tolist()
    side = torch.randint(2, (n,), generator=g).tolist()
    first = torch.randint(1, c + 1, (n,), generator=g).tolist() if c else [1] * n
    out = frames.clone()
    for i in range(n):
        if not use[i]:
            continue
        for j in range(t):
            dist = j - c if side[i] else c - j
            if dist >= first[i]:
                out[i, j] = other[i, j]
    return out


def _slots(n: int, t: int, recipe: MotionRecipe, g: torch.Generator) -> list[list[int]]:
    """Per window, which generated frame fills each slot: mostly the identity; at the
    ends of a stack (or in a 3-plane stack) the reflected frames."""
    c = t // 2
    ends = torch.rand(n, generator=g).tolist()
    pos = torch.randint(max(c, 1), (n,), generator=g).tolist()
    flip = torch.randint(2, (n,), generator=g).tolist()
    out = []
    for i in range(n):
        slots = list(range(t))
        if ends[i] < recipe.short:
            slots = end_slots(t, 1, 3)
        elif ends[i] < recipe.short + recipe.ends:
            slots = end_slots(t, pos[i], 2 * t)
        if flip[i]:  # the other end: the mirror image of the window
            slots = [t - 1 - s for s in reversed(slots)]
        out.append(slots)
    return out


def _normalise(noisy, clean, scale_range, g):
    """Divide by the centre frame's percentile span, move to a random sub-range of 0..1."""
    n, t = noisy.shape[:2]
    c = t // 2
    flat = noisy[:, c].reshape(n, -1)
    count = flat.shape[1]
    k_lo = max(1, round(LOW_PERCENTILE / 100 * (count - 1)) + 1)
    k_hi = max(1, round(HIGH_PERCENTILE / 100 * (count - 1)) + 1)
    lo = flat.kthvalue(k_lo, dim=1).values.view(n, 1, 1, 1)
    hi = flat.kthvalue(k_hi, dim=1).values.view(n, 1, 1, 1)
    span = (hi - lo).clamp_min(1e-6)
    scale = _log_uniform(n, *scale_range, g).view(n, 1, 1, 1)
    offset = _uniform(n, 0.0, 1.0, g).view(n, 1, 1, 1) * (1 - scale)
    m = scale / span
    b = offset - lo * m
    return noisy * m + b, clean * m + b


def _cut_patch(x: torch.Tensor, patch: int) -> torch.Tensor:
    s = (x.shape[-1] - patch) // 2
    return x[..., s : s + patch, s : s + patch].contiguous()


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The same random flip / 90-degree turn for all frames of a window (n, t, H, W)."""
    k = int(torch.randint(8, (1,), generator=g))
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class SyntheticWindows:
    """Clean images made into windows of ``frames`` frames with motion, then synthetic
    Poisson-Gaussian (partly correlated) noise drawn independently per frame (the same
    noise levels for the whole window, as in one acquisition)."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        recipe: NoiseRecipe | None = None,
        motion: MotionRecipe | None = None,
        *,
        frames: int = 5,
    ):
        self.images = []
        for img in images:
            lo, hi = percentile_range(img)
            self.images.append(np.clip((np.asarray(img, np.float32) - lo) / (hi - lo), 0, 1))
        self.recipe = recipe or NoiseRecipe()
        self.motion = motion or MotionRecipe()
        self.frames = frames

    def _crops(self, n, size, g):
        picks = torch.randint(len(self.images), (n,), generator=g).tolist()
        out = np.empty((n, size, size), np.float32)
        for i, k in enumerate(picks):
            img = self.images[k]
            if min(img.shape) < size:
                py, px = max(0, size - img.shape[0]), max(0, size - img.shape[1])
                img = np.pad(img, ((0, py), (0, px)), mode="reflect")
            y = int(torch.randint(img.shape[0] - size + 1, (1,), generator=g))
            x = int(torch.randint(img.shape[1] - size + 1, (1,), generator=g))
            out[i] = img[y : y + size, x : x + size]
        x = torch.from_numpy(out)
        return _augment(x[:, None], g)[:, 0]

    def batch(self, n: int, patch: int, generator: torch.Generator):
        r, mo, g, t = self.recipe, self.motion, generator, self.frames
        c = t // 2
        size = patch + 2 * MARGIN
        base = self._crops(n, size, g)
        other = self._crops(n, size, g)
        gamma = _log_uniform(n, *r.gamma, g).view(n, 1, 1)
        psf = _gaussian_kernels(_uniform(n, *r.psf_sigma, g), 6)
        base = _smooth((base.clamp(0, 1) ** gamma)[:, None], psf)[:, 0]
        other = _smooth((other.clamp(0, 1) ** gamma)[:, None], psf)[:, 0]
        frames = _move(base[:, None].expand(n, t, size, size).contiguous(), mo, g)
        others = other[:, None].expand(n, t, size, size).contiguous()
        # z-like change: defocus and changing structures with the distance to the centre
        dist = (torch.arange(t, dtype=torch.float32) - c).abs().view(1, t)
        zl = (torch.rand(n, generator=g) < mo.zlike).float().view(n, 1)
        blur = (_uniform(n, *mo.zblur, g).view(n, 1) * dist * zl).reshape(-1)
        frames = _smooth(frames.reshape(n * t, 1, size, size), _gaussian_kernels(blur, 6))
        frames = frames.view(n, t, size, size)
        mix = (_uniform(n, *mo.zmix, g).view(n, 1) * dist * zl).clamp(max=1).view(n, t, 1, 1)
        frames = frames * (1 - mix) + others * mix
        frames = _cut(frames, others, mo.cut, g)
        contrast = _uniform(n, *r.contrast, g).view(n, 1, 1, 1)
        background = _uniform(n, *r.background, g).view(n, 1, 1, 1).clamp(max=1 - contrast)
        flick = torch.exp(mo.flicker * torch.randn(n, t, 1, 1, generator=g))
        flick[:, c] = 1.0
        signal = (background + contrast * frames.clamp(0, 1)) * flick
        photons = _log_uniform(n, *r.photons, g).view(n, 1, 1, 1)
        shot = torch.poisson(signal * photons, generator=g) / photons - signal
        read = _log_uniform(n, *r.read_noise, g).view(n, 1, 1, 1)
        white = shot + read * torch.randn(signal.shape, generator=g)
        noise = self._correlate(white, g)
        noisy = signal + noise
        clean = signal[:, c : c + 1]
        slots = _slots(n, t, mo, g)
        noisy = torch.stack([noisy[i, s] for i, s in enumerate(slots)])
        noisy, clean = _normalise(noisy, clean, r.scale, g)
        return _cut_patch(noisy, patch), _cut_patch(clean, patch)

    def _correlate(self, white, g):
        """Per window one correlation (the same for all its frames), as in one acquisition."""
        r = self.recipe
        n, t, h, w = white.shape
        sig = _uniform(n, *r.correlation_sigma, g)
        kernels = _gaussian_kernels(sig.repeat_interleave(t), 4)
        gain = 1.0 / (kernels**2).sum(dim=1)
        flat = white.reshape(n * t, 1, h, w)
        smooth = (_smooth(flat, kernels) * gain.view(-1, 1, 1, 1)).view(n, t, h, w)
        half = F.avg_pool2d(flat, 2) * 2.0
        up = F.interpolate(half, size=(h, w), mode="bilinear", align_corners=False) * 1.6
        up = up.view(n, t, h, w)
        use_up = (torch.rand(n, generator=g) < r.upsampled).view(n, 1, 1, 1)
        correlated = torch.where(use_up, up, smooth)
        keep = _uniform(n, *r.white_fraction, g).view(n, 1, 1, 1)
        mixed = torch.sqrt(keep) * white + torch.sqrt(1 - keep) * correlated
        use = (torch.rand(n, generator=g) < r.correlated).view(n, 1, 1, 1)
        return torch.where(use, mixed, white)


class RealSeriesWindows:
    """Real time series of still samples: each field's captures (noisy, any order) and
    its ground truth. A window takes ``frames`` distinct captures of one field; synthetic
    motion moves the noisy neighbours (never the centre frame, whose truth is the field's
    ground truth, aligned to that capture by a least-squares affine fit); a cut brings in
    another field's captures."""

    def __init__(
        self,
        fields: Sequence[tuple[Sequence[np.ndarray], np.ndarray]],
        motion: MotionRecipe | None = None,
        *,
        frames: int = 5,
        scale: tuple[float, float] = (0.5, 1.0),
    ):
        self.fields = []
        for captures, gt in fields:
            caps = np.stack([np.asarray(c, np.float32) for c in captures])
            truths = np.stack([align_affine(gt, cap) for cap in caps])
            self.fields.append((caps, truths))
        self.motion = motion or MotionRecipe(zlike=0.0)
        self.frames = frames
        self.scale = scale

    def _window(self, size, g, *, field=None):
        k = int(torch.randint(len(self.fields), (1,), generator=g)) if field is None else field
        caps, truths = self.fields[k]
        order = torch.randperm(len(caps), generator=g)[: self.frames].tolist()
        y = int(torch.randint(caps.shape[1] - size + 1, (1,), generator=g))
        x = int(torch.randint(caps.shape[2] - size + 1, (1,), generator=g))
        cut = (slice(y, y + size), slice(x, x + size))
        noisy = np.stack([caps[i][cut] for i in order])
        clean = truths[order[self.frames // 2]][cut]
        return k, np.concatenate([noisy, clean[None]])

    def batch(self, n: int, patch: int, generator: torch.Generator):
        g, t, mo = generator, self.frames, self.motion
        c = t // 2
        size = patch + 2 * MARGIN
        stacks, others = [], []
        for _ in range(n):
            k, win = self._window(size, g)
            stacks.append(win)
            other = int(torch.randint(len(self.fields), (1,), generator=g))
            if len(self.fields) > 1 and other == k:
                other = (other + 1) % len(self.fields)
            others.append(self._window(size, g, field=other)[1][:t])
        data = _augment(torch.from_numpy(np.stack(stacks)), g)
        noisy, clean = data[:, :t].contiguous(), data[:, t:]
        noisy = _move(noisy, mo, g)
        noisy = _cut(noisy, _augment(torch.from_numpy(np.stack(others)), g), mo.cut, g)
        flick = torch.exp(mo.flicker * torch.randn(n, t, 1, 1, generator=g))
        flick[:, c] = 1.0
        noisy = noisy * flick
        slots = _slots(n, t, mo, g)
        noisy = torch.stack([noisy[i, s] for i, s in enumerate(slots)])
        noisy, clean = _normalise(noisy, clean, self.scale, g)
        return _cut_patch(noisy, patch), _cut_patch(clean, patch)


class MixedWindows:
    """Several window samplers, each window drawn from one of them with the given weights."""

    def __init__(self, sources):
        self.sources = [s for s, _ in sources]
        self.weights = torch.tensor([float(w) for _, w in sources])

    def batch(self, n: int, patch: int, generator: torch.Generator):
        picks = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        counts = torch.bincount(picks, minlength=len(self.sources)).tolist()
        parts = [
            s.batch(k, patch, generator) for s, k in zip(self.sources, counts, strict=True) if k
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

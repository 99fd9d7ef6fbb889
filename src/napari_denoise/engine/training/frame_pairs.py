"""Noise2Noise between neighbouring frames: training pairs from a noisy stack alone.

Two neighbouring planes of a time-lapse (or of a z-stack) show nearly the same structure
under independent noise. A network trained to predict one from the other with an L2 loss
learns their common mean, the clean image (Lehtinen et al., "Noise2Noise: learning image
restoration without clean data", ICML 2018): no clean image and no blind spot needed.

- **Pairs.** Each plane ``t`` is paired with ``t - 1`` and ``t + 1`` along the stack's T
  axis (else its Z axis); the neighbour is aligned onto ``t`` by the whole-pixel shift of
  their cross-correlation (:func:`~..denoise.fusion.shift_between`, the fusion's own
  alignment: whole pixels, so the target's noise stays white and independent). A patch is
  drawn only where both planes are valid: inside the training rectangle in both, so the
  border uncovered by the shift and the validation stripes are never used.
- **Pairs that are not the same thing.** Where the aligned neighbour differs by more than
  noise (a cut to another field, a cell that moved on its own, a z-plane out of focus), the
  target's mean is not the input's clean image. Each drawn patch's mean squared difference
  is compared with twice the noise variance that the stack's Poisson-Gaussian noise model
  (:func:`~..denoise.noise.estimate_noise_model`) predicts at the patch's brightness; the
  ratio is divided by its median over many random patches (the model's scale checked on
  the data, never made more lenient than the model), and a patch is kept with probability
  1 up to :data:`ACCEPT`, 0 from :data:`REJECT`, linearly in between: a rejection sampler,
  so the loss is down-weighted exactly by that weight in expectation.
- **Validation and the guard.** Held-out stripes of a few planes, each with its aligned
  neighbour: the mean squared error between the network's output on one and the other.
  The neighbour's noise is independent of the input, so this loss is the network's mean
  squared error against the clean image plus a constant: lower is better, without ground
  truth. The same loss of the start model and the tuned one decides whether tuning helped
  (:func:`~.finetune_check.compare_with_start`).

No torch at import (the record and the widget import the mode names from :mod:`.options`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError

__all__ = [
    "ACCEPT",
    "MIN_VAL_SIDE",
    "REJECT",
    "FramePairSampler",
    "frame_pair_data",
    "frame_validation_loss",
    "neighbour_lines",
    "neighbour_pairs",
]

ACCEPT = 1.25  # difference energy / (2 x noise variance), relative to its median: kept fully
REJECT = 2.0  # ... from which a patch is never used
CALIBRATION_DRAWS = 256  # random patches that check the noise model's scale
# With fused inputs, this share of patches still shows the plane alone, so that the
# network also keeps working frame by frame (neighbours turned off, a stack's ends).
SINGLE_SHARE = 0.3
MAX_TRIES = 50  # draws per patch before the most consistent one seen is taken
MIN_ACCEPTED = 0.05  # share of patches that must look like noise, else refused
MIN_VAL_SIDE = 16  # thinner held-out overlaps say little
MAX_VAL_PAIRS = 8
MAX_PAIR_PIXELS = 64 * 2**20  # planes kept in memory, per stack (256 MB of float32)


def neighbour_lines(shape: Sequence[int], axes: str) -> tuple[str, list[list[int]]]:
    """The neighbour axis (T, else Z) and the lines of slice indices along it, of a stack
    whose non-YX axes, in ``axes`` order, have ``shape`` (as :func:`~.split.as_slices`
    flattens them; C already removed).

    Raises :class:`~napari_denoise.errors.InputError` (one sentence) without a T or Z
    axis of at least 2 planes.
    """
    rest = [a for a in axes if a not in "YX"]
    sizes = dict(zip(rest, shape, strict=True))
    axis = next((a for a in "TZ" if sizes.get(a, 0) >= 2), None)
    if axis is None:
        found = ", ".join(f"{a}={n}" for a, n in sizes.items()) or "none"
        raise InputError(
            "Training on neighbouring frames needs a stack with a T or Z axis of at least 2 "
            f"planes; this image has axes {axes} (planes: {found}): use a time-lapse or "
            "z-stack, or choose Noise2Void for a single image."
        )
    grid = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(tuple(shape))
    a = np.moveaxis(grid, rest.index(axis), -1).reshape(-1, sizes[axis])
    return axis, a.tolist()


def neighbour_pairs(shape: Sequence[int], axes: str) -> tuple[str, list[tuple[int, int]]]:
    """The neighbour axis and the ``(slice, neighbour slice)`` index pairs along it, both
    ways round (see :func:`neighbour_lines`)."""
    axis, lines = neighbour_lines(shape, axes)
    pairs = []
    for line in lines:
        for i, j in itertools.pairwise(line):
            pairs += [(i, j), (j, i)]
    return axis, pairs


def _overlap(rect, shift, patch: int):
    """Top-left corners ``(y0, y1, x0, x1)`` (half-open) of the ``patch`` squares lying
    inside ``rect`` in the input plane and, moved back by ``shift``, in the neighbour's;
    None if there is none."""
    r0, c0, r1, c1 = rect
    dy, dx = shift
    y0, y1 = max(r0, r0 + dy), min(r1, r1 + dy) - patch + 1
    x0, x1 = max(c0, c0 + dx), min(c1, c1 + dx) - patch + 1
    return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None


@dataclass
class FramePairSampler:
    """Random (input patch, aligned neighbour patch) pairs of normalised planes.

    ``planes`` maps a slice index to its normalised plane; ``pairs`` are ``(input slice,
    target slice, (dy, dx), rect)``, the target moved by ``(dy, dx)`` onto the input and
    patches drawn inside ``rect`` of both; ``inputs`` may give, per ``(input, target)``,
    the plane the network sees instead of the input slice (the input fused with its
    matching neighbours other than the target, as a network that fuses sees it; the
    consistency test still compares the two slices themselves); ``variance`` is the noise
    model ``(gain, sigma**2, offset)`` in normalised units; ``scale`` the median of the
    consistency ratio (see the module). A patch rejected :data:`MAX_TRIES` times in a row
    gives way to the most consistent one drawn. Follows the sampler protocol of :mod:`.datasets` (``batch(n,
    patch, generator)`` and, for networks told the noise, ``with_noise=True``).
    """

    planes: dict[int, np.ndarray]
    pairs: list[tuple[int, int, tuple[int, int], tuple[int, int, int, int]]]
    variance: tuple[float, float, float]
    noise: tuple[float, float] | None = None
    inputs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    scale: float = 1.0
    accepted: float = 1.0  # share of random patches the test keeps (weight averaged)
    info: dict = field(default_factory=dict)

    def ratio(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean squared difference of two patches over twice the model's noise variance."""
        gain, read, offset = self.variance
        mean = 0.5 * (float(a.mean()) + float(b.mean()))
        var = max(gain * max(mean - offset, 0.0) + read, 1e-12)
        d = a.astype(np.float64) - b
        return float(np.mean(d * d)) / (2.0 * var)

    def weight(self, a: np.ndarray, b: np.ndarray) -> float:
        """How much the pair counts: 1 where it differs by noise alone, 0 where clearly more."""
        r = self.ratio(a, b) / self.scale
        return float(np.clip((REJECT - r) / (REJECT - ACCEPT), 0.0, 1.0))

    def _sizes(self, patch: int) -> list[int]:
        """Per pair, its number of patch positions (pairs drawn in proportion)."""
        sizes = []
        for _, _, shift, rect in self.pairs:
            o = _overlap(rect, shift, patch)
            sizes.append(0 if o is None else (o[1] - o[0]) * (o[3] - o[2]))
        return sizes

    def _patch(self, k: int, patch: int, y: int, x: int):
        """The (input slice, aligned target) patches of pair ``k`` at ``(y, x)``."""
        i, j, (dy, dx), _ = self.pairs[k]
        a = self.planes[i][y : y + patch, x : x + patch]
        b = self.planes[j][y - dy : y - dy + patch, x - dx : x - dx + patch]
        return a, b

    def _input(self, k: int, patch: int, y: int, x: int, a: np.ndarray, alone: bool):
        i, j = self.pairs[k][:2]
        seen = None if alone else self.inputs.get((i, j))
        return a if seen is None else seen[y : y + patch, x : x + patch]

    def batch(self, n: int, patch: int, generator, *, with_noise: bool = False):
        import torch

        sizes = torch.tensor(self._sizes(patch), dtype=torch.float64)
        if float(sizes.sum()) <= 0:
            raise ValueError(f"no pair of neighbouring planes overlaps by a {patch}-pixel patch")
        inputs = np.empty((n, 1, patch, patch), np.float32)
        targets = np.empty_like(inputs)
        alone = (torch.rand(n, generator=generator) < SINGLE_SHARE).tolist()
        for i in range(n):
            best, best_w = None, -1.0
            for _ in range(MAX_TRIES):
                k = int(torch.multinomial(sizes, 1, generator=generator))
                y0, y1, x0, x1 = _overlap(self.pairs[k][3], self.pairs[k][2], patch)
                y = y0 + int(torch.randint(y1 - y0, (1,), generator=generator))
                x = x0 + int(torch.randint(x1 - x0, (1,), generator=generator))
                a, b = self._patch(k, patch, y, x)
                w = self.weight(a, b)
                if w > best_w:
                    best, best_w = (self._input(k, patch, y, x, a, alone[i]), b), w
                if w >= 1.0 or float(torch.rand(1, generator=generator)) < w:
                    best = (self._input(k, patch, y, x, a, alone[i]), b)
                    break
            inputs[i, 0], targets[i, 0] = best
        if not with_noise:
            return torch.from_numpy(inputs), torch.from_numpy(targets)
        if self.noise is None:
            raise ValueError("this sampler was built without the image's noise coefficients")
        coeffs = torch.tensor([self.noise] * n, dtype=torch.float32)
        return torch.from_numpy(inputs), torch.from_numpy(targets), coeffs

    def calibrate(self, patch: int, seed: int) -> None:
        """Check the noise model's scale on random patches (the median ratio, never above
        1: the test is only made stricter) and measure the share of patches kept."""
        import torch

        g = torch.Generator().manual_seed(int(seed) + 104729)
        sizes = torch.tensor(self._sizes(patch), dtype=torch.float64)
        if float(sizes.sum()) <= 0:
            return
        ratios = []
        for _ in range(CALIBRATION_DRAWS):
            k = int(torch.multinomial(sizes, 1, generator=g))
            y0, y1, x0, x1 = _overlap(self.pairs[k][3], self.pairs[k][2], patch)
            y = y0 + int(torch.randint(y1 - y0, (1,), generator=g))
            x = x0 + int(torch.randint(x1 - x0, (1,), generator=g))
            ratios.append(self.ratio(*self._patch(k, patch, y, x)))
        r = np.asarray(ratios)
        self.scale = float(min(np.median(r), 1.0)) or 1.0
        w = np.clip((REJECT - r / self.scale) / (REJECT - ACCEPT), 0.0, 1.0)
        self.accepted = float(w.mean())


def _noise_variance(planes: list[np.ndarray]) -> tuple[float, float, float]:
    """``(gain, sigma**2, offset)`` of the planes' Poisson-Gaussian model (normalised units)."""
    from ..denoise.noise import estimate_noise_model, estimate_sigma

    try:
        m = estimate_noise_model(np.stack(planes))
        return float(m.gain), float(m.sigma) ** 2, float(m.offset)
    except InputError:  # too dark or too small to fit: a Gaussian level
        return 0.0, float(estimate_sigma(np.stack(planes))) ** 2, 0.0


def frame_pair_data(
    noisy_s: np.ndarray,
    axes: str,
    shape: Sequence[int],
    normalised,
    train_rects: Sequence[tuple[int, int, int, int]],
    val_rects: Sequence[tuple[int, int, int, int]],
    *,
    patch: int,
    seed: int,
    noise: tuple[float, float] | None,
    fused: bool = False,
):
    """The sampler and the held-out pairs of Noise2Noise between neighbouring frames.

    ``noisy_s`` is the ``(slices, Y, X)`` stack of :func:`~.split.as_slices` with its
    ``axes`` and the sizes ``shape`` of its non-YX axes; ``normalised`` maps a plane to
    the units the network sees; ``train_rects`` and ``val_rects`` are the training
    rectangles and validation stripes of :func:`~.split.split_images`. With ``fused``
    (a start model whose card fuses a stack's neighbours before the network), the
    network's input is the input plane fused (:func:`~..denoise.fusion.combine`) with its
    neighbours within the fusion's reach other than the target, so it trains on what it
    will see, and the target's noise stays independent of its input.

    Returns ``(sampler, val_pairs, info)``: ``val_pairs`` are ``(2, h, w)`` arrays
    (input stripe, aligned neighbour stripe), normalised. Raises InputError without a T
    or Z axis of 2 planes, when no neighbouring planes overlap by a patch after
    alignment, or when they differ by more than noise almost everywhere.
    """
    from ..denoise.fusion import shift_between

    axis, lines = neighbour_lines(shape, axes)
    _, pairs = neighbour_pairs(shape, axes)
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in train_rects)
    # Long stacks: pairs of evenly spaced planes, up to a bounded number of pixels (two
    # planes per pair, and with fused inputs two more).
    keep = max(1, MAX_PAIR_PIXELS // max(1, (4 if fused else 2) * area))
    forward = [p for p in pairs if p[0] < p[1]]
    if len(forward) > keep:
        picks = np.unique(np.linspace(0, len(forward) - 1, keep).round().astype(int))
        forward = [forward[k] for k in picks]
    planes: dict[int, np.ndarray] = {}
    for i, j in forward:
        for k in (i, j):
            if k not in planes:
                planes[k] = np.ascontiguousarray(normalised(noisy_s[k]), np.float32)
    shifts = {(i, j): shift_between(planes[i], planes[j]) for i, j in forward}
    train = []
    for (i, j), (dy, dx) in shifts.items():
        for rect in train_rects:
            train.append((i, j, (dy, dx), tuple(rect)))  # j moved onto i
            train.append((j, i, (-dy, -dx), tuple(rect)))
    variance = _noise_variance([planes[k] for k in list(planes)[:8]])
    inputs = {}
    if fused:
        inputs = _fused_inputs(noisy_s, lines, forward, normalised)
    sampler = FramePairSampler(planes, train, variance, noise, inputs=inputs)
    if not any(_overlap(r, s, patch) for _, _, s, r in train):
        raise InputError(
            f"After aligning neighbouring planes (shifts up to "
            f"{max(max(abs(v) for v in s) for s in shifts.values())} px), no two overlap by "
            f"a {patch}-pixel patch; choose a smaller patch or a larger region."
        )
    sampler.calibrate(patch, seed)
    if sampler.accepted < MIN_ACCEPTED:
        raise InputError(
            "Neighbouring planes of this stack differ by much more than noise almost "
            f"everywhere (only {100 * sampler.accepted:.0f}% of patches look alike after "
            "alignment: fast motion, or planes far apart), so they cannot teach each other; "
            "choose Noise2Void instead."
        )
    val_pairs = []
    spaced = np.unique(np.linspace(0, len(forward) - 1, MAX_VAL_PAIRS).round().astype(int))
    for i, j in (forward[k] for k in spaced):
        dy, dx = shifts[(i, j)]
        for rect in val_rects:
            o = _overlap(rect, (dy, dx), MIN_VAL_SIDE)
            if o is None:
                continue
            y0, x0 = o[0], o[2]
            y1, x1 = o[1] + MIN_VAL_SIDE - 1, o[3] + MIN_VAL_SIDE - 1
            seen = inputs.get((i, j))
            a = seen if seen is not None else np.asarray(normalised(noisy_s[i]), np.float32)
            a = a[y0:y1, x0:x1]
            b = np.asarray(normalised(noisy_s[j]), np.float32)[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
            val_pairs.append(np.ascontiguousarray(np.stack([a, b])))
    moved = [max(abs(dy), abs(dx)) for dy, dx in shifts.values()]
    info = {
        "neighbour_axis": axis,
        "input": "the plane fused with its matching neighbours other than the target"
        if fused
        else "the plane alone",
        "pairs": len(train),
        "largest_shift_px": int(max(moved)) if moved else 0,
        "consistency": {
            "test": "patch mean squared difference / (2 x noise variance), relative to its median",
            "accept": ACCEPT,
            "reject": REJECT,
            "model_scale": round(sampler.scale, 4),
            "kept_share": round(sampler.accepted, 4),
        },
        "validation_pairs": len(val_pairs),
    }
    sampler.info = info
    return sampler, val_pairs, info


def _fused_inputs(noisy_s, lines, forward, normalised) -> dict[tuple[int, int], np.ndarray]:
    """Per ordered pair (input, target) of ``forward`` (both ways round), the input plane
    fused with its neighbours within the fusion's reach except the target."""
    from ..denoise.fusion import FUSION_REACH, combine

    where = {k: (n, p) for n, line in enumerate(lines) for p, k in enumerate(line)}
    out = {}
    for i, j in forward:
        for a, b in ((i, j), (j, i)):
            n, p = where[a]
            line = lines[n]
            near = line[max(0, p - FUSION_REACH) : p + FUSION_REACH + 1]
            others = [k for k in near if k not in (a, b)]
            h = (len(others) + 1) // 2  # the input in the middle of its window
            order = [*others[:h], a, *others[h:]]
            window = np.stack([np.asarray(normalised(noisy_s[k]), np.float32) for k in order])
            slots = [s for s in range(len(order)) if s != h]
            out[(a, b)] = np.asarray(combine(window, slots), np.float32)
    return out


def frame_validation_loss(model, pairs, *, loss: str = "l2") -> float:
    """Mean squared error of ``model`` on each held-out input stripe against its aligned
    neighbour (normalised units): the error against the clean image plus a constant."""
    from ..models.inference import run_model

    del loss  # always the mean squared error: its expectation is what N2N minimises
    was_training = model.training
    model.eval()
    total = count = 0.0
    try:
        for pair in pairs:
            a, b = pair[0], pair[1]
            pred = run_model(model, a, low=0.0, high=1.0, noise_level=_level(model, a))
            d = pred.astype(np.float64) - b
            total += float(np.sum(d * d))
            count += d.size
    finally:
        model.train(was_training)
    return total / count if count else float("nan")


def _level(model, image):
    from ..models.inference import noise_for

    return noise_for(model, image)

"""Training patches: clean images with synthetic noise, real noisy/clean pairs, noisy-only.

Every sampler has one method, ``batch(n, patch, generator) -> (noisy, clean)``, returning
two ``(n, 1, patch, patch)`` float32 tensors in the *normalised* units the zoo feeds a
network at inference: an image is divided by the span of its noisy version's 0.1 and
99.9 percentiles (:func:`percentile_range`). With ``with_noise=True`` a third ``(n, 2)``
tensor gives each sample's Poisson-Gaussian coefficients ``(a, b)`` (``Var = a * x + b``
in normalised units) for networks told the noise: the truth for synthetic noise, the
estimate the zoo would make at inference for real images. All randomness comes from the
``torch.Generator`` passed in, so a seed reproduces the batches exactly.

The synthetic noise (:class:`NoiseRecipe`) is what makes a model trained on photographs
usable on microscopes: Poisson-Gaussian noise at random levels, on signals with a random
background and contrast (dim, low-contrast regimes with a high background are common in
widefield images), and, for part of the patches, *spatially correlated* noise: the white
noise smoothed by a small random kernel or interpolated from half resolution, as camera
binning, demosaicing-like interpolation or the pixel-size of widefield systems produce.
A network that has only seen white noise treats correlated noise as structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MixedDataset",
    "NoiseRecipe",
    "NoisyOnlyDataset",
    "PairedDataset",
    "SyntheticNoiseDataset",
    "align_affine",
    "load_image",
    "percentile_range",
]

LOW_PERCENTILE, HIGH_PERCENTILE = 0.1, 99.9


def load_image(path: str | Path) -> np.ndarray:
    """A grayscale image file (PNG or TIFF) as a float32 2-D array."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
    else:
        from PIL import Image

        arr = np.array(Image.open(path))
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 3:  # colour photographs: luminance
        arr = arr[..., :3].mean(axis=-1)
    return arr


def percentile_range(image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE):
    """The (low, high) percentiles that map an image to about 0..1; high > low always."""
    lo, hi = np.percentile(np.asarray(image, np.float32), [low, high])
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def align_affine(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """``clean`` mapped by the least-squares affine fit ``a * clean + b`` onto ``noisy``.

    Real pairs are often scaled independently (W2S stretches every 8-bit image to 0..255);
    noise has zero mean, so regressing the noisy image on the clean one recovers the
    noisy image's scale without bias.
    """
    c = np.asarray(clean, np.float64).ravel()
    z = np.asarray(noisy, np.float64).ravel()
    cc = c - c.mean()
    a = float(np.dot(cc, z - z.mean()) / max(np.dot(cc, cc), 1e-12))
    b = float(z.mean() - a * c.mean())
    return (a * np.asarray(clean, np.float64) + b).astype(np.float32)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.exp(_uniform(n, math.log(lo), math.log(hi), gen))


def _random_crops(images: Sequence[np.ndarray], n: int, size: int, gen: torch.Generator):
    """``n`` random ``size`` x ``size`` crops (smaller images are reflect-padded first)."""
    picks = torch.randint(len(images), (n,), generator=gen).tolist()
    out = np.empty((n, 1, size, size), np.float32)
    for i, k in enumerate(picks):
        img = images[k]
        ny, nx = img.shape
        if ny < size or nx < size:
            img = np.pad(img, ((0, max(0, size - ny)), (0, max(0, size - nx))), mode="reflect")
            ny, nx = img.shape
        y = int(torch.randint(ny - size + 1, (1,), generator=gen))
        x = int(torch.randint(nx - size + 1, (1,), generator=gen))
        out[i, 0] = img[y : y + size, x : x + size]
    return torch.from_numpy(out)


def _gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """One normalised separable Gaussian (as a 1-D kernel) per sigma: ``(n, 2r+1)``."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x[None] / sigmas.clamp_min(1e-3)[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def _smooth(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x`` (n, 1, H, W) filtered by its own separable kernel (reflect)."""
    n, _, h, w = x.shape
    r = kernels.shape[1] // 2
    y = F.pad(x.reshape(1, n, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, kernels[:, None, None, :], groups=n)
    y = F.conv2d(y, kernels[:, None, :, None], groups=n)
    return y.reshape(n, 1, h, w)


@dataclass(frozen=True)
class NoiseRecipe:
    """Ranges of the synthetic degradation (intensities relative to a 0..1 signal).

    photons : peak photon counts (log-uniform): lower is noisier.
    read_noise : Gaussian read noise standard deviation (log-uniform), relative.
    background : offset of the signal; contrast : its span (together at most 1).
    psf_sigma : Gaussian blur of the clean image before the noise (optics), pixels.
    gamma : exponent applied to the clean image (log-uniform): sparse bright structures.
    correlated : fraction of patches whose noise is spatially correlated.
    correlation_sigma : width of the Gaussian kernel that correlates the noise, pixels.
    upsampled : fraction of the correlated patches whose noise is instead bilinearly
        interpolated from half resolution.
    white_fraction : share of the noise variance left white in a correlated patch.
    scale : the patch's final span inside the image's normalised 0..1 range (log-uniform);
        a patch rarely spans the whole range of its image.
    noise_jitter : log-normal spread of the error put on the true noise coefficients
        handed to networks that take them (an estimate from one image is never exact).
    """

    photons: tuple[float, float] = (10.0, 3000.0)
    read_noise: tuple[float, float] = (0.001, 0.04)
    background: tuple[float, float] = (0.0, 0.7)
    contrast: tuple[float, float] = (0.05, 1.0)
    psf_sigma: tuple[float, float] = (0.0, 2.5)
    gamma: tuple[float, float] = (0.6, 2.5)
    correlated: float = 0.6
    correlation_sigma: tuple[float, float] = (0.5, 1.4)
    upsampled: float = 0.3
    white_fraction: tuple[float, float] = (0.0, 0.5)
    scale: tuple[float, float] = (0.2, 1.0)
    noise_jitter: float = 0.15


class SyntheticNoiseDataset:
    """Clean images (any scale) with synthetic Poisson-Gaussian, partly correlated noise.

    Each sample is a ``region``-sized random crop, degraded by :class:`NoiseRecipe`,
    normalised by the percentiles of its noisy version (as the zoo normalises a whole
    image), moved to a random sub-range of 0..1 and cut to the central ``patch``.
    """

    def __init__(
        self, images: Sequence[np.ndarray], recipe: NoiseRecipe | None = None, *, region: int = 96
    ):
        self.images = []
        for img in images:  # each clean image to 0..1 by its own percentiles
            lo, hi = percentile_range(img)
            self.images.append(np.clip((np.asarray(img, np.float32) - lo) / (hi - lo), 0, 1))
        self.recipe = recipe or NoiseRecipe()
        self.region = region

    def batch(self, n: int, patch: int, generator: torch.Generator, *, with_noise: bool = False):
        r, g = self.recipe, generator
        size = max(self.region, patch)
        clean = _random_crops(self.images, n, size, g)
        clean = clean ** _log_uniform(n, *r.gamma, g).view(n, 1, 1, 1)
        psf = _uniform(n, *r.psf_sigma, g)
        clean = _smooth(clean, _gaussian_kernels(psf, 6))
        contrast = _uniform(n, *r.contrast, g)
        background = _uniform(n, *r.background, g).clamp(max=1 - contrast)
        signal = background.view(n, 1, 1, 1) + contrast.view(n, 1, 1, 1) * clean.clamp(0, 1)

        photons = _log_uniform(n, *r.photons, g).view(n, 1, 1, 1)
        shot = torch.poisson(signal * photons, generator=g) / photons - signal
        read = _log_uniform(n, *r.read_noise, g).view(n, 1, 1, 1)
        white = shot + read * torch.randn(signal.shape, generator=g)

        noise = self._correlate(white, g)
        noisy = signal + noise
        noisy, clean, m, c = self._normalise_and_cut(noisy, signal, patch, g)
        if not with_noise:
            return noisy, clean
        # The true Var = signal / photons + read**2 (correlating the noise keeps the
        # per-pixel variance), carried through the normalisation x -> m * x + c. A small
        # random error on both coefficients, as an estimate from one image would have,
        # keeps the network from trusting them blindly.
        gain, floor = 1.0 / photons.view(n), read.view(n) ** 2
        m, c = m.view(n), c.view(n)
        coeffs = torch.stack([m * gain, m * m * floor - m * gain * c], dim=1)
        jitter = torch.exp(r.noise_jitter * torch.randn(n, 2, generator=g))
        return noisy, clean, coeffs * jitter

    def _correlate(self, white: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        r = self.recipe
        n, _, h, w = white.shape
        kernels = _gaussian_kernels(_uniform(n, *r.correlation_sigma, g), 4)
        # Smoothing shrinks the variance of white noise by sum(k**2) per axis: undo it.
        gain = 1.0 / (kernels**2).sum(dim=1)
        smooth = _smooth(white, kernels) * gain.view(n, 1, 1, 1)
        half = F.avg_pool2d(white, 2) * 2.0  # averaging 4 pixels halves the std
        upsampled = F.interpolate(half, size=(h, w), mode="bilinear", align_corners=False)
        upsampled = upsampled * 1.6  # bilinear interpolation lowers the variance about 2.5x
        use_up = (torch.rand(n, generator=g) < r.upsampled).view(n, 1, 1, 1)
        correlated = torch.where(use_up, upsampled, smooth)
        keep = _uniform(n, *r.white_fraction, g).view(n, 1, 1, 1)
        mixed = torch.sqrt(keep) * white + torch.sqrt(1 - keep) * correlated
        use = (torch.rand(n, generator=g) < r.correlated).view(n, 1, 1, 1)
        return torch.where(use, mixed, white)

    def _normalise_and_cut(self, noisy, clean, patch, g):
        n = noisy.shape[0]
        flat = noisy.reshape(n, -1)
        count = flat.shape[1]  # order statistics: much faster than torch.quantile
        k_lo = max(1, round(LOW_PERCENTILE / 100 * (count - 1)) + 1)
        k_hi = max(1, round(HIGH_PERCENTILE / 100 * (count - 1)) + 1)
        lo = flat.kthvalue(k_lo, dim=1).values.view(n, 1, 1, 1)
        hi = flat.kthvalue(k_hi, dim=1).values.view(n, 1, 1, 1)
        span = (hi - lo).clamp_min(1e-6)
        scale = _log_uniform(n, *self.recipe.scale, g).view(n, 1, 1, 1)
        offset = _uniform(n, 0.0, 1.0, g).view(n, 1, 1, 1) * (1 - scale)
        m = scale / span  # x -> m * x + c
        c = offset - lo * m
        noisy = noisy * m + c
        clean = clean * m + c
        s = (noisy.shape[-1] - patch) // 2
        cut = (..., slice(s, s + patch), slice(s, s + patch))
        return noisy[cut].contiguous(), clean[cut].contiguous(), m, c


class PairedDataset:
    """Real noisy/clean pairs: each clean image aligned to its noisy one, both normalised.

    The normalisation is the noisy image's whole-image percentiles, exactly what the
    zoo applies at inference, so nothing about scale has to be simulated.
    """

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]):
        self.pairs = []  # (2, H, W): normalised noisy over aligned, normalised clean
        for noisy, clean in pairs:
            noisy = np.asarray(noisy, np.float32)
            lo, hi = percentile_range(noisy)
            aligned = align_affine(clean, noisy)
            self.pairs.append(np.stack([noisy - lo, aligned - lo]) / np.float32(hi - lo))
        self._coeffs: list[tuple[float, float]] | None = None

    def noise_coefficients(self) -> torch.Tensor:
        """(a, b) of each pair's noisy image, estimated as at inference (computed once)."""
        if self._coeffs is None:
            from ..denoise.calibrate import noise_coefficients

            self._coeffs = [noise_coefficients(pair[0]) for pair in self.pairs]
        return torch.tensor(self._coeffs, dtype=torch.float32)

    def batch(self, n: int, patch: int, generator: torch.Generator, *, with_noise: bool = False):
        picks = torch.randint(len(self.pairs), (n,), generator=generator).tolist()
        out = np.empty((n, 2, patch, patch), np.float32)
        for i, k in enumerate(picks):
            pair = self.pairs[k]
            y = int(torch.randint(pair.shape[1] - patch + 1, (1,), generator=generator))
            x = int(torch.randint(pair.shape[2] - patch + 1, (1,), generator=generator))
            out[i] = pair[:, y : y + patch, x : x + patch]
        out_t = torch.from_numpy(out)
        noisy, clean = out_t[:, :1].contiguous(), out_t[:, 1:].contiguous()
        if with_noise:
            return noisy, clean, self.noise_coefficients()[picks]
        return noisy, clean


class NoisyOnlyDataset:
    """Noisy images without ground truth (for self-supervised training such as Noise2Void).

    ``batch`` returns the same normalised noisy patches twice; a self-supervised loss
    masks pixels of the input and predicts them from their neighbours.
    """

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = []
        for img in images:
            lo, hi = percentile_range(img)
            self.images.append((np.asarray(img, np.float32) - lo) / (hi - lo))
        self._coeffs: list[tuple[float, float]] | None = None

    def batch(self, n: int, patch: int, generator: torch.Generator, *, with_noise: bool = False):
        if not with_noise:
            x = _random_crops(self.images, n, patch, generator)
            return x, x.clone()
        if self._coeffs is None:
            from ..denoise.calibrate import noise_coefficients

            self._coeffs = [noise_coefficients(img) for img in self.images]
        picks = torch.randint(len(self.images), (n,), generator=generator)
        x = torch.cat([_random_crops([self.images[int(k)]], 1, patch, generator) for k in picks])
        return x, x.clone(), torch.tensor(self._coeffs, dtype=torch.float32)[picks]


class MixedDataset:
    """Several samplers, each sample drawn from one of them with the given weights."""

    def __init__(self, sources: Sequence[tuple[object, float]]):
        self.sources = [s for s, _ in sources]
        self.weights = torch.tensor([float(w) for _, w in sources])

    def batch(self, n: int, patch: int, generator: torch.Generator, *, with_noise: bool = False):
        picks = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        counts = torch.bincount(picks, minlength=len(self.sources)).tolist()
        kw = {"with_noise": True} if with_noise else {}
        parts = [
            s.batch(c, patch, generator, **kw)
            for s, c in zip(self.sources, counts, strict=True)
            if c
        ]
        return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))

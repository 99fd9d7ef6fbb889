#!/usr/bin/env python
"""Recreate every shipped model from the data beside the checkout (../shared/data).

Only the splits that may train a shipped model are read (see shared/data/README.md):

- pre-training: BSD Train400 natural images with synthetic noise, and the clean (400-frame
  average) W2S images of FOVs 001-008 with the same synthetic noise;
- fine-tuning: the real W2S noisy/clean pairs of FOVs 001-008, mixed with the synthetic
  patches so that what pre-training taught about correlated noise is not forgotten;
- validation and model selection: W2S FOVs 009-010, real pairs and the same clean images
  with synthetic correlated noise (fixed seed);
- confocal (issue 23; recipes with ``confocal_mix`` / ``val_confocal``, such as the
  default unet-fluo, which fine-tunes unet-fluo-w2s's weights): the real pairs of the FMD
  Confocal_BPAE_B training fields (``CONFOCAL_TRAIN_FOVS``, every capture against the
  field's 50-capture average) and confocal-like synthetic noise (``CONFOCAL_RECIPE``) in
  the fine-tuning mixture; captures of the validation fields (``CONFOCAL_VAL_FOVS``, whole
  fields) in the selection.

FMD test_mix is never read: it is the test set.

The number of steps follows from a time budget: a short probe measures this machine's
steps per second (fp32 and bf16 autocast; the faster is used), and ``--minutes`` is
turned into steps. The card records the steps, so ``--steps N`` reproduces a model on
any machine. Examples::

    python scripts/train_shipped.py                       # every shipped model, ~25 min each
    python scripts/train_shipped.py --model msred-fluo    # a recipe not shipped (yet)
    python scripts/train_shipped.py --minutes 5 --out /tmp/zoo
    python scripts/train_shipped.py --probe                # only measure steps/s

A new card has no measured tiling halo and no default rank yet: then run
``python scripts/measure_halo.py`` and ``python scripts/select_default.py --write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from napari_denoise import __version__  # noqa: E402
from napari_denoise.engine.denoise.pipeline import drain  # noqa: E402
from napari_denoise.engine.metrics import psnr  # noqa: E402
from napari_denoise.engine.models import build, count_parameters, inference, store  # noqa: E402
from napari_denoise.engine.training.datasets import (  # noqa: E402
    MixedDataset,
    NoiseRecipe,
    PairedDataset,
    SyntheticNoiseDataset,
    align_affine,
    load_image,
)
from napari_denoise.engine.training.loop import TrainConfig, train_iter, validate  # noqa: E402

TRAIN_FOVS = range(1, 9)
# FMD Confocal_BPAE_B training fields (shared/data README section 7: FOVs 2-18 and 20; 19 is
# the test field). Split by whole field, fixed before any training: a field's 10 captures
# are all on one side. The validation fields are every fifth of the sorted list.
CONFOCAL_FOVS = (*range(2, 19), 20)
CONFOCAL_VAL_FOVS = (5, 10, 15, 20)
CONFOCAL_TRAIN_FOVS = tuple(f for f in CONFOCAL_FOVS if f not in CONFOCAL_VAL_FOVS)
CONFOCAL_CAPTURES = 10
CONFOCAL_VAL_CAPTURES = (0, 5)  # two of each validation field's captures select the weights
# Confocal-like synthetic noise, as measured on the training fields' 10 captures against
# their 50-capture average (napari-denoise 2026-12-07, in each capture's normalised units):
# Var(noise) = a * x + b with a photomultiplier gain of 3.6-4.9 grey levels per photon and
# no read noise above the dark offset (b < 0: the variance vanishes at the offset), i.e.
# 29-50 photons at the 99.9th percentile, a background at 1-2% of the range, and white
# noise (lag-1 correlation 0.05 along lines, 0.00 across). The photon range is widened to
# cover dimmer and brighter confocal frames; structures come from other clean images.
CONFOCAL_RECIPE = NoiseRecipe(
    photons=(5.0, 300.0),
    read_noise=(0.0005, 0.005),
    background=(0.0, 0.05),
    contrast=(0.4, 1.0),
    psf_sigma=(0.0, 1.5),
    gamma=(0.6, 2.5),
    correlated=0.0,
    scale=(0.5, 1.0),
)
VAL_RECIPE = NoiseRecipe(
    photons=(400.0, 400.0),
    read_noise=(0.01, 0.01),
    background=(0.3, 0.3),
    contrast=(0.5, 0.5),
    psf_sigma=(1.0, 1.0),
    gamma=(1.0, 1.0),
    correlated=1.0,
    correlation_sigma=(0.8, 0.8),
    upsampled=0.0,
    white_fraction=(0.2, 0.2),
    scale=(1.0, 1.0),
)
# High-SNR validation (specs with ``val_high_snr``): the same held-out clean images with
# white Poisson-Gaussian noise as a good confocal or two-photon frame has, so that model
# selection also sees where a network can over-smooth (fixed seed, as above).
VAL_HIGH_RECIPE = NoiseRecipe(
    photons=(2000.0, 2000.0),
    read_noise=(0.004, 0.004),
    background=(0.05, 0.05),
    contrast=(0.9, 0.9),
    psf_sigma=(0.0, 0.0),
    gamma=(1.0, 1.0),
    correlated=0.0,
    scale=(1.0, 1.0),
)
VAL_FOVS = (9, 10)
VALIDATIONS = 10  # per phase
VAL_CROP = slice(128, 384)  # validate on the central 256 x 256 of each held-out image
VAL_SEED = 1234


@dataclass(frozen=True)
class Spec:
    """How one shipped model is trained."""

    name: str
    architecture: str
    config: dict
    title: str
    description: str
    batch_size: int = 16
    patch: int = 64
    lr: float = 1e-3
    finetune_lr: float = 3e-4
    pretrain_share: float = 0.6
    loss: str = "l1"
    recipe: NoiseRecipe = field(default_factory=NoiseRecipe)
    # Sampling weights of the fine-tuning mixture: real W2S pairs, synthetic W2S, synthetic BSD.
    finetune_mix: tuple[float, float, float] = (0.4, 0.3, 0.3)
    # Shipped for trying, below the default on held-out data: the title says so.
    experimental: bool = False
    # Also select on held-out clean images with high-SNR white noise (VAL_HIGH_RECIPE).
    val_high_snr: bool = False
    # Start from another recipe's model and only fine-tune: no pre-training. The start is
    # read from --checkpoints (or the shipped zoo); if it is in neither, it is trained into
    # --checkpoints first, with ``init_steps`` steps.
    init: str | None = None
    init_steps: int | None = None
    # Added to the fine-tuning mixture: real confocal pairs (CONFOCAL_TRAIN_FOVS) and
    # confocal-like synthetic noise (CONFOCAL_RECIPE) on the synthetic sources' clean images.
    confocal_mix: tuple[float, float] = (0.0, 0.0)
    # Also select on the confocal validation fields (CONFOCAL_VAL_FOVS).
    val_confocal: bool = False
    # Weight of made-up mitochondria-like networks (tubules, see ``tubules``) under
    # confocal-like noise in the fine-tuning mixture: structures no real pair here shows.
    tubule_mix: float = 0.0


SPECS = {
    # The start of unet-fluo (shipped as unet-fluo until issue 23, weights SHA-256
    # 60c675df...): reproduce with --model unet-fluo-w2s --steps 24729 --seed 0 --bf16 off
    # --threads 1.
    "unet-fluo-w2s": Spec(
        name="unet-fluo-w2s",
        architecture="unet",
        config={"base": 16, "depth": 3},
        title="U-Net (fluorescence, blind), widefield fine-tuning only",
        description=(
            "Blind U-Net denoiser for single fluorescence frames (widefield, confocal, "
            "two-photon). Pre-trained on natural and microscopy images with synthetic "
            "Poisson-Gaussian noise, part of it spatially correlated, at random levels, "
            "backgrounds and contrasts; fine-tuned on real widefield pairs (W2S)."
        ),
    ),
    "unet-fluo-nm": Spec(
        name="unet-fluo-nm",
        architecture="unet",
        config={"base": 16, "depth": 3, "noise_map": True},
        title="U-Net told the noise (fluorescence)",
        description=(
            "U-Net denoiser for single fluorescence frames that is told the image's noise: "
            "the Poisson-Gaussian variance a·x + b estimated from the image becomes a "
            "per-pixel noise map (a second input, as in DRUNet), so it smooths bright, "
            "shot-noise-limited structures more than a dark background. Strength scales "
            "the noise it is told. Trained like unet-fluo: natural and microscopy images "
            "with synthetic Poisson-Gaussian noise (partly correlated), then real W2S pairs."
        ),
    ),
    # Not shipped: two candidates for a default that would not over-smooth clean frames
    # (2026-11-30): photon counts up to 30000 at the brightest pixel instead of 3000, selected
    # also on high-SNR held-out images; the second one also with 40% instead of 60% correlated
    # noise. On allowed data both looked better (every image of the SNR ladder of
    # benchmarks/detail_default.py at or above the Gaussian; W2S 009-010 PSNR* 34.641 and
    # 34.626 against 34.654). The first, tested once on FMD, scored 33.87 dB against the
    # shipped unet-fluo's 34.36, lower on exactly the confocal types it aimed at (Conf
    # BPAE_R 34.15 vs 35.41): the synthetic ladder does not predict real confocal frames.
    "unet-fluo-hisnr": Spec(
        name="unet-fluo-hisnr",
        architecture="unet",
        config={"base": 16, "depth": 3},
        title="U-Net (fluorescence, blind), trained up to 30000 photons",
        description=(
            "unet-fluo's recipe with photon counts up to 30000 at the brightest pixel "
            "(instead of 3000), selected also on high-SNR held-out images."
        ),
        recipe=NoiseRecipe(photons=(10.0, 30000.0)),
        val_high_snr=True,
    ),
    "unet-fluo-hisnr-white": Spec(
        name="unet-fluo-hisnr-white",
        architecture="unet",
        config={"base": 16, "depth": 3},
        title="U-Net (fluorescence, blind), up to 30000 photons, less correlated noise",
        description=(
            "unet-fluo-hisnr with 40% instead of 60% of the patches' noise spatially correlated."
        ),
        recipe=NoiseRecipe(photons=(10.0, 30000.0), correlated=0.4),
        val_high_snr=True,
    ),
    # Not shipped: the capacity probe (session 5). At 6000 steps on one core it scored
    # 34.44 dB PSNR* on held-out W2S against 34.36 for the same recipe at base 16, and runs
    # 2.25x slower. Reproduce: --model unet-fluo-wide --steps 6000 --threads 1 --out DIR.
    "unet-fluo-wide": Spec(
        name="unet-fluo-wide",
        architecture="unet",
        config={"base": 24, "depth": 3},
        title="U-Net, 1.5x wider (fluorescence, blind)",
        description=(
            "unet-fluo's recipe with 24 instead of 16 base channels (1.08M parameters): "
            "how much width buys at equal steps."
        ),
    ),
    # Issue 23: the default on confocal frames. unet-fluo's weights fine-tuned with the real
    # confocal pairs of the training fields and confocal-like synthetic noise mixed into
    # its fine-tuning recipe (so W2S and the photographs are not forgotten), selected on
    # W2S 009-010 and the confocal validation fields. Longer is not better: the same
    # recipe over 6000 steps (cosine schedule stretched) peaked at a selection PSNR of
    # 34.35 (steps 1931-2311 and 4271-4701; stopped at 4915) against 34.33 shipped.
    "unet-fluo": Spec(
        name="unet-fluo",
        architecture="unet",
        config={"base": 16, "depth": 3},
        title="U-Net (fluorescence, blind)",
        description=(
            "Blind U-Net denoiser for single fluorescence frames (widefield, confocal, two-"
            "photon). Pre-trained on natural and microscopy images with synthetic Poisson-"
            "Gaussian noise, partly correlated, and fine-tuned on real widefield pairs "
            "(W2S); then fine-tuned again with real confocal pairs (FMD confocal BPAE "
            "nuclei, 14 training fields) and confocal-like photon noise on other clean "
            "images, mixed with its earlier fine-tuning data."
        ),
        finetune_lr=2e-4,
        finetune_mix=(0.25, 0.15, 0.15),
        init="unet-fluo-w2s",
        init_steps=24729,
        confocal_mix=(0.25, 0.2),
        val_confocal=True,
    ),
    "msred-fluo": Spec(
        name="msred-fluo",
        architecture="msred",
        config={},
        title="Multiscale residual encoder/decoder (light, blind)",
        description=(
            "Light blind denoiser (122k parameters, inception-style multiscale blocks) "
            "trained over a range of Poisson-Gaussian noise levels with an L1 loss; the "
            "fastest network here. Same data and recipe as unet-fluo, shorter training."
        ),
        experimental=True,
    ),
    "drunet-fluo": Spec(
        name="drunet-fluo",
        architecture="drunet",
        config={},
        title="DRUNet, scaled down (noise level as input)",
        description=(
            "U-Net of residual blocks (DRUNet, Zhang et al. 2021, scaled down to 1.1M "
            "parameters for a CPU) told one noise standard deviation per image (estimated; "
            "the Strength setting overrides it). Pre-trained on photographs with synthetic noise, "
            "then fine-tuned on microscopy as unet-fluo; shorter training."
        ),
        experimental=True,
    ),
    "restormer-fluo": Spec(
        name="restormer-fluo",
        architecture="restormer_lite",
        config={},
        title="Restormer-style transformer (channel attention, small)",
        description=(
            "Small transformer-style restorer (attention across channels, so its cost is "
            "linear in pixels; 252k parameters, a scaled-down Restormer). Same data and "
            "recipe as unet-fluo, shorter training."
        ),
        experimental=True,
    ),
    "ridnet-fluo": Spec(
        name="ridnet-fluo",
        architecture="ridnet",
        config={"features": 16, "modules": 4, "reduction": 4},
        title="RIDNet, scaled down (feature attention, blind)",
        description=(
            "Real-image denoiser with feature attention (RIDNet, Anwar & Barnes 2019): 4 "
            "enhancement attention modules of 16 channels (the paper has 64: 95k parameters "
            "instead of 1.5M, for a CPU). Blind; same data and recipe as unet-fluo, shorter "
            "training."
        ),
        experimental=True,
    ),
    "dncnn-fluo": Spec(
        name="dncnn-fluo",
        architecture="dncnn",
        config={"depth": 17, "features": 24},
        title="DnCNN, scaled down (residual, blind)",
        description=(
            "Plain residual CNN (DnCNN, Zhang et al. 2017): the paper's 17 layers with 24 "
            "channels instead of 64 (79k parameters instead of 556k, for a CPU), batch "
            "normalisation. Blind; same data and recipe as unet-fluo, shorter training."
        ),
        experimental=True,
    ),
}

# Not shipped, issue 23 candidate (2026-12-07): unet-fluo-nm (told the noise) fine-tuned
# with the same confocal mixture as unet-fluo. Selection PSNR 33.99 at its best step
# (1750; start 33.86) against unet-fluo's 34.33: W2S 009-010 real 31.50 dB (unet-fluo
# 32.50), confocal validation fields 38.36 (unet-fluo 38.36). Never run on FMD.
# Reproduce: --model unet-fluo-nm-conf --steps 2500 --seed 0 --bf16 off --threads 1
# --out DIR.
SPECS["unet-fluo-nm-conf"] = dataclasses.replace(
    SPECS["unet-fluo"],
    name="unet-fluo-nm-conf",
    config=dict(SPECS["unet-fluo-nm"].config),
    title="U-Net told the noise (fluorescence), with confocal fine-tuning",
    description=(
        "unet-fluo-nm's weights fine-tuned like unet-fluo: real confocal pairs (FMD "
        "confocal BPAE nuclei, 14 training fields) and confocal-like photon noise on "
        "other clean images, mixed with its earlier fine-tuning data."
    ),
    init="unet-fluo-nm",
    init_steps=None,
)
# Not shipped, issue 23 candidate (2026-12-07): unet-fluo's recipe with made-up
# mitochondria-like networks (``tubules``) under confocal-like noise added to the
# fine-tuning mixture, for FMD's Confocal BPAE R type. scripts/select_default.py: W2S
# 009-010 PSNR* 34.639 (unet-fluo 34.647), confocal validation 39.643 (39.684), SNR
# ladder worst image -1.59 dB against the Gaussian (-0.07): not selected, never run on
# FMD. Reproduce: --model unet-fluo-tubules --steps 2500 --seed 0 --bf16 off --threads 1.
SPECS["unet-fluo-tubules"] = dataclasses.replace(
    SPECS["unet-fluo"],
    name="unet-fluo-tubules",
    title="U-Net (fluorescence, blind), with tubular structures",
    description=(
        "unet-fluo's recipe with made-up mitochondria-like networks under confocal-like "
        "photon noise added to its fine-tuning mixture."
    ),
    tubule_mix=0.15,
)


# Trained when no --model is given. src/napari_denoise/zoo/ also ships the experimental
# recipes (msred-fluo, drunet-fluo, restormer-fluo): train them with --model NAME.
SHIPPED = ("unet-fluo", "unet-fluo-nm")


# --- data -----------------------------------------------------------------------------------


def w2s_pair(data: Path, fov: int, channel: int) -> tuple[np.ndarray, np.ndarray]:
    root = data / "W2S_8bit_subset"
    noisy = load_image(root / "images_avg1_8bit" / f"input_avg1_{fov:03d}_{channel}.tif")
    clean = load_image(root / "images_avg400_8bit" / f"target_avg400_{fov:03d}_{channel}.tif")
    return noisy, clean


def confocal_pairs(data: Path, fovs, captures) -> list:
    """(noisy capture, 50-capture average) of FMD Confocal_BPAE_B fields ``fovs``."""
    root = data / "FMD_Confocal_BPAE_B_train"
    pairs = []
    for fov in fovs:
        clean = load_image(root / "gt" / str(fov) / "avg50.png")
        for k in captures:
            noisy = load_image(root / "raw" / str(fov) / f"HV110_P05005100{k:02d}.png")
            pairs.append((noisy, clean))
    return pairs


def synthetic_pairs(cleans, recipe: NoiseRecipe, seed: int) -> list:
    """(noisy, clean) central crops of ``cleans`` degraded by ``recipe``, in 0..255."""
    gen = torch.Generator().manual_seed(seed)
    crop = (VAL_CROP, VAL_CROP)
    pairs = []
    for clean in cleans:
        noisy_t, clean_t = SyntheticNoiseDataset([clean], recipe, region=512).batch(1, 512, gen)
        pairs.append((noisy_t[0, 0].numpy()[crop] * 255, clean_t[0, 0].numpy()[crop] * 255))
    return pairs


def load_data(data: Path, recipe: NoiseRecipe, high_snr: bool = False, confocal: bool = False):
    bsd = [
        load_image(p) for p in sorted((data / "BSD_Train400_natural" / "Train400").glob("*.png"))
    ]
    if len(bsd) != 400:
        raise SystemExit(f"expected 400 BSD Train400 images under {data}, found {len(bsd)}")
    train_pairs = [w2s_pair(data, f, c) for f in TRAIN_FOVS for c in range(3)]
    val_raw = [w2s_pair(data, f, c) for f in VAL_FOVS for c in range(3)]
    synthetic_bsd = SyntheticNoiseDataset(bsd, recipe)
    synthetic_w2s = SyntheticNoiseDataset([clean for _, clean in train_pairs], recipe)
    real = PairedDataset(train_pairs)

    crop = (VAL_CROP, VAL_CROP)
    val_real = [(noisy[crop], align_affine(clean, noisy)[crop]) for noisy, clean in val_raw]
    # The held-out clean images with one moderate level of correlated synthetic noise (lag-1
    # correlation about 0.5), and (high_snr) with white noise as a clean frame has; the same
    # every run.
    cleans = [clean for _, clean in val_raw]
    val_synthetic = synthetic_pairs(cleans, VAL_RECIPE, VAL_SEED)
    val_high = synthetic_pairs(cleans, VAL_HIGH_RECIPE, VAL_SEED + 1) if high_snr else []
    conf = None
    if confocal:  # whole fields on one side only (CONFOCAL_TRAIN_FOVS / CONFOCAL_VAL_FOVS)
        train = confocal_pairs(data, CONFOCAL_TRAIN_FOVS, range(CONFOCAL_CAPTURES))
        # The FMD pairs share one 8-bit scale: the whole images, the clean one as it is.
        val = confocal_pairs(data, CONFOCAL_VAL_FOVS, CONFOCAL_VAL_CAPTURES)
        conf = {
            "real": PairedDataset(train),
            "synthetic": SyntheticNoiseDataset(
                [c for _, c in train_pairs] + bsd[::4], CONFOCAL_RECIPE
            ),
            "val": val,
        }
    return synthetic_bsd, synthetic_w2s, real, val_real, val_synthetic, val_high, conf


TUBULE_IMAGES = 48


def tubules(n: int, side: int = 256, seed: int = 23) -> list[np.ndarray]:
    """``n`` made-up images of mitochondria-like networks (the same every run): per image
    2-5 cells, each a cloud of 20-60 tubules (smooth random walks 10-60 px long, 0.5-2 px
    thick, some branching) around a dark nucleus, under a Gaussian PSF of 0.8-1.8 px, on
    a dim background; float32 in [0, 1]. FMD's Confocal BPAE R type (MitoTracker) shows
    such structures and no real pair here does."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.zeros((side, side), np.float32)
        for _cell in range(rng.integers(2, 6)):
            cy, cx = rng.uniform(0.15, 0.85, 2) * side
            radius = rng.uniform(30, 70)
            for _t in range(rng.integers(20, 60)):
                a = rng.uniform(0, 2 * np.pi)
                r = radius * np.sqrt(rng.uniform(0.15, 1.0))  # not on the nucleus
                y, x = cy + r * np.sin(a), cx + r * np.cos(a)
                heading = rng.uniform(0, 2 * np.pi)
                bright = rng.uniform(0.3, 1.0)
                for _s in range(int(rng.uniform(10, 60))):
                    heading += rng.normal(0, 0.35)
                    y, x = y + np.sin(heading), x + np.cos(heading)
                    iy, ix = round(y), round(x)
                    if 0 <= iy < side and 0 <= ix < side:
                        img[iy, ix] += bright
        img = gaussian_filter(img, rng.uniform(0.5, 2.0))  # tubule thickness
        img = gaussian_filter(img, rng.uniform(0.8, 1.8))  # the PSF
        img = img / max(float(img.max()), 1e-6)
        img += rng.uniform(0.0, 0.05)  # a dim background
        out.append(np.clip(img / img.max(), 0, 1).astype(np.float32))
    return out


def noisy_psnr(pairs) -> float:
    return float(np.mean([psnr(c, z, data_range=float(c.max() - c.min())) for z, c in pairs]))


# --- time budget ----------------------------------------------------------------------------


def probe(spec: Spec, dataset, seconds: float, threads: int, bf16: str) -> dict:
    """Steps per second of the real training loop for a few settings; the fastest wins.

    fp32 with all threads and with one thread (on a shared machine, threads that wait
    for each other can be several times slower than one), then bf16 autocast with the
    better thread count (unless ``bf16`` forces a choice).
    """

    def rate(n_threads: int, use_bf16: bool) -> float:
        torch.manual_seed(0)
        model = build(spec.architecture, spec.config)
        start = None
        counted = 0

        def stop():
            return start is not None and time.perf_counter() - start > seconds

        config = TrainConfig(
            steps=10**6,
            batch_size=spec.batch_size,
            patch=spec.patch,
            lr=spec.lr,
            bf16=use_bf16,
            threads=n_threads,
            seed=0,
        )
        for tick in train_iter(model, dataset, config, stop=stop):
            if tick.step == 3:  # the first steps set up kernels: not counted
                start = time.perf_counter()
            elif start is not None:
                counted += 1
        return counted / seconds

    use_bf16 = bf16 == "on"
    rates = {f"{'bf16' if use_bf16 else 'fp32'}@{threads}": rate(threads, use_bf16)}
    if threads > 1:
        rates[f"{'bf16' if use_bf16 else 'fp32'}@1"] = rate(1, use_bf16)
    best_threads = int(max(rates, key=rates.get).split("@")[1])
    if bf16 == "auto":
        rates[f"bf16@{best_threads}"] = rate(best_threads, True)
    best = max(rates, key=rates.get)
    return {
        "steps_per_second": {k: round(v, 2) for k, v in rates.items()},
        "bf16": best.startswith("bf16"),
        "threads": int(best.split("@")[1]),
        "rate": rates[best],
    }


# --- training -------------------------------------------------------------------------------


def run_phase(
    label, model, dataset, *, steps, lr, spec, val_pairs, bf16, threads, seed, ckpt, resume
):
    start = time.perf_counter()
    last_print = 0.0
    config = TrainConfig(
        steps=steps,
        batch_size=spec.batch_size,
        patch=spec.patch,
        lr=lr,
        loss=spec.loss,
        seed=seed,
        val_every=max(1, steps // VALIDATIONS),
        bf16=bf16,
        threads=threads,
        checkpoint_every=500,
    )
    gen = train_iter(model, dataset, config, val_pairs=val_pairs, checkpoint=ckpt, resume=resume)

    def report(tick):
        nonlocal last_print
        if time.perf_counter() - last_print > 30 or tick.step == steps:
            last_print = time.perf_counter()
            print(f"  [{label}] {tick.message}", flush=True)

    return drain(gen, report), time.perf_counter() - start


def start_model(spec: Spec, args) -> Path:
    """The card of ``spec.init``: in --checkpoints, else shipped, else trained now."""
    for folder in (args.checkpoints, REPO / "src" / "napari_denoise" / "zoo"):
        if (folder / f"{spec.init}.json").is_file():
            return folder / f"{spec.init}.json"
    print(f"  {spec.init} (the start) not found: training it first", flush=True)
    sub = argparse.Namespace(**{**vars(args), "steps": spec.init_steps, "out": args.checkpoints})
    train_one(SPECS[spec.init], sub)
    return args.checkpoints / f"{spec.init}.json"


def train_one(spec: Spec, args) -> dict:
    print(f"== {spec.name}: {spec.architecture} {spec.config}", flush=True)
    synthetic_bsd, synthetic_w2s, real, val_real, val_synthetic, val_high, conf = load_data(
        args.data,
        spec.recipe,
        spec.val_high_snr,
        confocal=any(spec.confocal_mix) or spec.val_confocal,
    )
    pretrain = MixedDataset([(synthetic_bsd, 0.5), (synthetic_w2s, 0.5)])
    w_real, w_syn_w2s, w_syn_bsd = spec.finetune_mix
    w_conf_real, w_conf_syn = spec.confocal_mix
    sources = [(real, w_real), (synthetic_w2s, w_syn_w2s), (synthetic_bsd, w_syn_bsd)]
    if conf is not None:
        sources += [(conf["real"], w_conf_real), (conf["synthetic"], w_conf_syn)]
    if spec.tubule_mix > 0:
        sources.append(
            (SyntheticNoiseDataset(tubules(TUBULE_IMAGES), CONFOCAL_RECIPE), spec.tubule_mix)
        )
    finetune = MixedDataset([(src, w) for src, w in sources if w > 0])
    val_conf = conf["val"] if spec.val_confocal else []
    val_pairs = val_real + val_synthetic + val_high + val_conf

    measured = probe(
        spec, finetune if spec.init else pretrain, args.probe_seconds, args.threads, args.bf16
    )
    bf16, threads = measured["bf16"], measured["threads"]
    print(
        f"  probe (steps/s): {measured['steps_per_second']} -> bf16={bf16}, threads={threads}",
        flush=True,
    )
    if args.probe:
        return {"name": spec.name, "probe": measured}
    if args.steps:
        steps = args.steps
    else:
        # About 8% of the time goes to validation and checkpoints.
        steps = max(10, int(args.minutes * 60 * measured["rate"] * 0.92))
    steps_a = 0 if spec.init else max(1, round(steps * spec.pretrain_share))
    steps_b = max(1, steps - steps_a)
    print(
        f"  {steps} steps ({steps_a} pre-training + {steps_b} fine-tuning), bf16={bf16}, seed={args.seed}",
        flush=True,
    )

    torch.manual_seed(args.seed)
    ckpt_dir = args.checkpoints
    init = None
    if spec.init:  # fine-tuning only, from another recipe's model
        start, start_card = store.load_model(start_model(spec, args))
        model = build(spec.architecture, spec.config)
        model.load_state_dict(start.state_dict())
        model.train()
        init = {"model": spec.init, "sha256": start_card["weights"]["sha256"]}
        init["validation_psnr"] = round(validate(model, val_pairs), 3)
        print(
            f"  start: {spec.init} weights, validation {init['validation_psnr']:.3f} dB", flush=True
        )
        best_a, seconds_a = None, 0.0
    else:
        model = build(spec.architecture, spec.config)
        outcome, seconds_a = run_phase(
            "pre-train",
            model,
            pretrain,
            steps=steps_a,
            lr=spec.lr,
            spec=spec,
            val_pairs=val_pairs,
            bf16=bf16,
            threads=threads,
            seed=args.seed,
            ckpt=ckpt_dir / f"{spec.name}-pretrain",
            resume=args.resume,
        )
        model, best_a = outcome.model, outcome.best_val_psnr
    outcome, seconds_b = run_phase(
        "fine-tune",
        model,
        finetune,
        steps=steps_b,
        lr=spec.finetune_lr,
        spec=spec,
        val_pairs=val_pairs,
        bf16=bf16,
        threads=threads,
        seed=args.seed + 1,
        ckpt=ckpt_dir / f"{spec.name}-finetune",
        resume=args.resume,
    )
    if init is not None and outcome.best_val_psnr is not None:
        print(
            f"  fine-tuning: best validation {outcome.best_val_psnr:.3f} dB at step "
            f"{outcome.best_step} (start {init['validation_psnr']:.3f})",
            flush=True,
        )

    model = outcome.model
    precision = inference.choose_cpu_precision(model, val_real[:3])
    # A record of the training machine only: where the model runs, the precision is probed
    # on that machine at first use (inference.cpu_precision), not read from the card.
    precision["note"] = "measured on the training machine; not used to decide at run time"
    metrics = {
        "w2s_fov009_010_real_psnr": round(validate(model, val_real), 3),
        "w2s_fov009_010_real_noisy_psnr": round(noisy_psnr(val_real), 3),
        "w2s_fov009_010_synthetic_correlated_psnr": round(validate(model, val_synthetic), 3),
        "w2s_fov009_010_synthetic_correlated_noisy_psnr": round(noisy_psnr(val_synthetic), 3),
        **(
            {
                "w2s_fov009_010_synthetic_high_snr_psnr": round(validate(model, val_high), 3),
                "w2s_fov009_010_synthetic_high_snr_noisy_psnr": round(noisy_psnr(val_high), 3),
            }
            if val_high
            else {}
        ),
        **(
            {
                "fmd_confocal_bpae_b_val_fields_psnr": round(validate(model, val_conf), 3),
                "fmd_confocal_bpae_b_val_fields_noisy_psnr": round(noisy_psnr(val_conf), 3),
            }
            if val_conf
            else {}
        ),
        "selection_psnr_after_pretraining": round(best_a, 3) if best_a is not None else None,
        **({"selection_psnr_of_the_start": init["validation_psnr"]} if init else {}),
        "best_step_of_finetuning": outcome.best_step,
        "data_range": "span of each clean image (W2S: about 255)",
    }
    command = "python scripts/train_shipped.py --model {} --steps {} --seed {} --bf16 {} --threads {}".format(
        spec.name, steps, args.seed, "on" if bf16 else "off", threads
    )
    card = {
        "name": spec.name,
        "title": spec.title + (" — experimental, short training" if spec.experimental else ""),
        "description": spec.description,
        "normalisation": {"kind": "percentile", "low": 0.1, "high": 99.9},
        "noise_model": {
            "kind": (
                "told the noise: Poisson-Gaussian coefficients (a, b) of Var = a*x + b, "
                "estimated from each image (calibrate.noise_coefficients); trained at random "
                "levels, partly spatially correlated"
                if spec.config.get("noise_map")
                else "told the noise level: one standard deviation per image, estimated "
                "(inference.noise_level_of); trained at random levels, partly spatially correlated"
                if spec.architecture == "drunet"
                else "blind: Poisson-Gaussian at random levels, partly spatially correlated"
            ),
            "synthetic_recipe": dataclasses.asdict(spec.recipe),
        },
        "training": {
            "data": [
                "BSD_Train400_natural: 400 images with synthetic noise",
                "W2S_8bit_subset FOVs 001-008: 24 real pairs, and their clean images with synthetic noise",
                *(
                    [
                        f"FMD_Confocal_BPAE_B_train FOVs {list(CONFOCAL_TRAIN_FOVS)}: "
                        f"{len(CONFOCAL_TRAIN_FOVS) * CONFOCAL_CAPTURES} real confocal pairs "
                        "(each capture against its field's 50-capture average)",
                        "confocal-like synthetic noise (confocal_recipe) on the W2S FOV 001-008 "
                        "clean images and every fourth BSD image",
                    ]
                    if conf is not None and any(spec.confocal_mix)
                    else []
                ),
            ],
            **(
                {
                    "start": init,
                    "split": {
                        "confocal_train_fovs": list(CONFOCAL_TRAIN_FOVS),
                        "confocal_validation_fovs": list(CONFOCAL_VAL_FOVS),
                        "rule": "whole fields: every capture of a field on one side; FOV 19 "
                        "(FMD test_mix) and FOV 1 (kept for independent checks) not read",
                    },
                    "confocal_recipe": dataclasses.asdict(CONFOCAL_RECIPE),
                }
                if conf is not None
                else {}
            ),
            "validation_data": (
                "W2S_8bit_subset FOVs 009-010, central 256x256: 6 real pairs + the same clean "
                f"images with synthetic correlated noise {dataclasses.asdict(VAL_RECIPE)} (seed {VAL_SEED})"
                + (
                    f" + the same clean images with high-SNR white noise "
                    f"{dataclasses.asdict(VAL_HIGH_RECIPE)} (seed {VAL_SEED + 1})"
                    if val_high
                    else ""
                )
                + (
                    f" + FMD_Confocal_BPAE_B_train FOVs {list(CONFOCAL_VAL_FOVS)}, captures "
                    f"{list(CONFOCAL_VAL_CAPTURES)}, whole 512x512 against the 50-capture average"
                    if val_conf
                    else ""
                )
            ),
            "not_used": "FMD_test_mix (test only)",
            "recipe": {
                "phases": [
                    *(
                        []
                        if spec.init
                        else [
                            {
                                "name": "pre-train",
                                "steps": steps_a,
                                "lr": spec.lr,
                                "mix": {"synthetic_bsd": 0.5, "synthetic_w2s_train": 0.5},
                            }
                        ]
                    ),
                    {
                        "name": "fine-tune",
                        "steps": steps_b,
                        "lr": spec.finetune_lr,
                        "mix": {
                            "real_w2s_train": w_real,
                            "synthetic_w2s_train": w_syn_w2s,
                            "synthetic_bsd": w_syn_bsd,
                            **(
                                {
                                    "real_confocal_train": w_conf_real,
                                    "synthetic_confocal_like": w_conf_syn,
                                }
                                if any(spec.confocal_mix)
                                else {}
                            ),
                        },
                    },
                ],
                "optimizer": "Adam, linear warm-up, cosine decay to 1%, gradient clipping 1.0",
                "loss": spec.loss,
                "batch_size": spec.batch_size,
                "patch": spec.patch,
                "augmentation": "flips and 90-degree rotations",
                "selection": "best mean validation PSNR per phase",
            },
            "seed": args.seed,
            "steps": steps,
            "seconds": round(seconds_a + seconds_b, 1),
            "steps_per_second_probe": measured["steps_per_second"],
            "bf16": bf16,
            "threads": threads,
            "machine": platform.processor() or platform.machine(),
            "command": command,
            "napari_denoise": __version__,
        },
        "validation": metrics,
        "inference": precision,
        "default_rank": None,
    }
    card = store.save_model(model, card, args.out / spec.name, overwrite=True)  # retrained
    print(f"  saved {args.out / spec.name}.safetensors ({count_parameters(model):,} parameters)")
    print(f"  validation: {metrics}")
    print(f"  inference: {precision}")
    print(f"  reproduce: {command}", flush=True)
    return card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "napari_denoise" / "zoo")
    parser.add_argument("--checkpoints", type=Path, default=REPO / "build" / "train")
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(SPECS),
        help=f"default: the shipped ones ({', '.join(SHIPPED)})",
    )
    parser.add_argument("--minutes", type=float, default=25.0, help="training time per model")
    parser.add_argument("--steps", type=int, default=None, help="total steps (overrides --minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="most threads to use; the probe also tries one thread and keeps the faster",
    )
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--probe-seconds", type=float, default=5.0)
    parser.add_argument("--probe", action="store_true", help="only measure steps per second")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    args = parser.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    for name in args.model or SHIPPED:
        train_one(SPECS[name], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Classical denoising filters as methods (:data:`FILTERS`, registered by
:func:`~napari_denoise.engine.methods.load_builtin`).

Each filter works on one float32 block (``YX``, or ``ZYX`` for ``box3d``) in the image's
own intensity units and declares its parameters. A parameter left unset (``None``) is
chosen from the image by the filter's ``auto`` hook (see :mod:`.calibrate`): by SURE for
the linear filters (Gaussian, box, box 3D), by masked J-invariant calibration for median
and TV, otherwise from the estimated noise level. Every filter also accepts ``vst=True``: the pipeline then applies
the generalised Anscombe transform for Poisson-Gaussian noise first and its exact
unbiased inverse afterwards (see :mod:`napari_denoise.engine.denoise.noise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..method_base import Method, Param
from .calibrate import (
    best_candidate,
    center_crop,
    masked_jinv_loss,
    mean_noise_variance,
    noise_covariance,
    noise_is_correlated,
    sure_correlated,
    sure_linear,
)

__all__ = ["FILTERS", "gaussian_kernel1d", "noise_correlated_in"]

VST = Param(
    "vst",
    bool,
    False,
    "Shot noise grows with brightness: transform the image so that its noise is the same "
    "everywhere (generalised Anscombe transform), denoise, and transform back",
    label="Shot-noise correction",
)
# Filters whose strength comes from one global noise level need the noise to be the same
# everywhere, which Poisson-Gaussian noise is only after stabilisation: VST on by default.
VST_ON = Param("vst", bool, True, VST.help, label=VST.label)
NOISE_LEVEL = Param(
    "sigma",
    float,
    None,
    "Noise standard deviation, in the image's intensity units (auto: estimated from the image)",
    0.0,
    label="Noise level",
)
CALIBRATION_CROP = 512  # calibrate on the central crop: representative, and bounded cost
FILTERS: list[Method] = []  # in the order they are offered


def _samples(samples: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [center_crop(np.asarray(s, np.float32), CALIBRATION_CROP) for s in samples]


def _sigma(samples: Sequence[np.ndarray]) -> float:
    from .noise import estimate_sigma

    return float(np.median([estimate_sigma(s) for s in samples]))


# --- Gaussian -------------------------------------------------------------------------------

TRUNCATE = 4.0
GAUSSIAN_SIGMAS = tuple(np.round(np.geomspace(0.4, 6.0, 24), 3))


def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """scipy's normalised 1D Gaussian kernel (truncated at 4 sigma)."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def noise_correlated_in(blocks: Sequence[np.ndarray]) -> bool:
    """Whether the noise of any sample (its middle plane, for volumes) is spatially correlated."""
    planes = [b if b.ndim == 2 else b[b.shape[0] // 2] for b in blocks]
    return any(noise_is_correlated(p) for p in planes)


def _gaussian(block, *, sigma):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    return ndi.gaussian_filter(block, sigma, mode="reflect", truncate=TRUNCATE)


def _choose_linear(
    blocks: Sequence[np.ndarray], candidates: Sequence, kernels_for, smooth_for, *, coarse: int = 1
) -> object:
    """The width of a separable linear filter with the lowest estimated error.

    Independent noise: Stein's unbiased risk estimate (SURE) with the noise model's
    variance. Spatially correlated noise, which plain SURE and one-pixel blind spots both
    get wrong: SURE with the noise autocovariance measured in the image's flat parts
    (validated against a 7x7 blind-spot loss on simulated correlated noise, where it was
    as good for short-range and clearly better for long-range correlation).
    """
    if noise_correlated_in(blocks):
        planes = [b if b.ndim == 2 else b[b.shape[0] // 2] for b in blocks]
        covs = [noise_covariance(p) for p in planes]

        def correlated_loss(c):
            kernels = kernels_for(c)
            # Noise is taken as independent between planes: only the centre plane counts.
            depth = float(np.prod([k[len(k) // 2] for k in kernels[:-2]]))
            plane_kernel = depth * np.outer(kernels[-2], kernels[-1])
            return sum(
                sure_correlated(smooth_for(c)(b), b, plane_kernel, cov)
                for b, cov in zip(blocks, covs, strict=True)
            )

        return best_candidate(candidates, correlated_loss, coarse=coarse)[0]
    variances = [mean_noise_variance(b) for b in blocks]

    def loss(c):
        centre = float(np.prod([k[len(k) // 2] for k in kernels_for(c)]))
        pairs = zip(blocks, variances, strict=True)
        return sum(sure_linear(smooth_for(c)(b), b, centre, v) for b, v in pairs)

    return best_candidate(candidates, loss, coarse=coarse)[0]


def _gaussian_auto(samples, params):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    if params["sigma"] is None:
        params["sigma"] = _choose_linear(
            _samples(samples),
            GAUSSIAN_SIGMAS,
            lambda s: [gaussian_kernel1d(s)] * 2,
            lambda s: lambda b: ndi.gaussian_filter(b, s, mode="reflect", truncate=TRUNCATE),
            coarse=3,
        )
    return params


FILTERS.append(
    Method(
        "gaussian",
        _gaussian,
        (
            Param(
                "sigma",
                float,
                None,
                "Standard deviation of the Gaussian kernel (pixels); larger smooths more",
                0.1,
                20.0,
                label="Blur width (pixels)",
            ),
            VST,
        ),
        halo=lambda p: int(TRUNCATE * (p["sigma"] or 6.0) + 0.5),
        auto=_gaussian_auto,
        title="Gaussian (self-calibrated)",
        description="Gaussian blur whose width is chosen per image from its own noise (SURE).",
        default_rank=0,
    )
)


# --- Box (mean) 2D and 3D -------------------------------------------------------------------


def _box(block, *, size):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    return ndi.uniform_filter(block, size, mode="reflect")


def _box_auto(samples, params):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    if params["size"] is None:
        params["size"] = _choose_linear(
            _samples(samples),
            (3, 5, 7, 9, 11, 13),
            lambda k: [np.full(k, 1.0 / k)] * 2,
            lambda k: lambda b: ndi.uniform_filter(b, k, mode="reflect"),
        )
    return params


FILTERS.append(
    Method(
        "box",
        _box,
        (
            Param(
                "size",
                int,
                None,
                "Width of the square window (pixels, odd)",
                3,
                31,
                odd=True,
                label="Window (pixels)",
            ),
            VST,
        ),
        halo=lambda p: (p["size"] or 13) // 2,
        auto=_box_auto,
        title="Box (mean)",
        description="Mean over a square window, width chosen from the image's own noise (SURE).",
    )
)


def _box3d(block, *, size, size_z):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    return ndi.uniform_filter(block, (size_z, size, size), mode="reflect")


def _box3d_auto(samples, params):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    if params["size"] is None or params["size_z"] is None:
        blocks = [center_crop(np.asarray(s, np.float32), 256) for s in samples]
        sizes = (1, 3, 5, 7, 9) if params["size"] is None else (params["size"],)
        depths = (1, 3, 5) if params["size_z"] is None else (params["size_z"],)
        deepest = blocks[0].shape[0] - (1 - blocks[0].shape[0] % 2)  # odd, within the stack
        grid = [(k, min(kz, deepest)) for k in sizes for kz in depths if k * k * kz > 1]
        params["size"], params["size_z"] = _choose_linear(
            blocks,
            grid,
            lambda c: [
                np.full(c[1], 1.0 / c[1]),
                np.full(c[0], 1.0 / c[0]),
                np.full(c[0], 1.0 / c[0]),
            ],
            lambda c: lambda b: ndi.uniform_filter(b, (c[1], c[0], c[0]), mode="reflect"),
        )
    return params


FILTERS.append(
    Method(
        "box3d",
        _box3d,
        (
            Param(
                "size",
                int,
                None,
                "Width of the window in Y and X (pixels, odd)",
                1,
                31,
                odd=True,
                label="Window in Y and X (pixels)",
            ),
            Param(
                "size_z",
                int,
                None,
                "Depth of the window along Z or T (planes or frames, odd)",
                1,
                15,
                odd=True,
                label="Window depth (planes)",
            ),
            VST,
        ),
        ndim=3,
        halo=lambda p: max(p["size"] or 9, p["size_z"] or 5) // 2,
        auto=_box3d_auto,
        title="Box 3D (mean over Z/T too)",
        description="Mean over a box spanning neighbouring planes or frames; sizes self-calibrated.",
    )
)


# --- Median ---------------------------------------------------------------------------------


def _median(block, *, size):
    from scipy import ndimage as ndi  # here: listing the methods must stay light

    return ndi.median_filter(block, size, mode="reflect")


def _median_auto(samples, params):
    if params["size"] is None:
        blocks = [center_crop(b, 192) for b in _samples(samples)]
        loss = lambda k: sum(masked_jinv_loss(b, lambda x: _median(x, size=k)) for b in blocks)  # noqa: E731
        params["size"], _ = best_candidate((3, 5, 7), loss)
    return params


FILTERS.append(
    Method(
        "median",
        _median,
        (
            Param(
                "size",
                int,
                None,
                "Width of the square window (pixels, odd)",
                3,
                15,
                odd=True,
                label="Window (pixels)",
            ),
            VST,
        ),
        halo=lambda p: (p["size"] or 7) // 2,
        auto=_median_auto,
        slow=True,
        title="Median",
        description="Median over a square window, width chosen by masked J-invariant calibration.",
    )
)


# --- Non-local means ------------------------------------------------------------------------


def _nlm(block, *, h, patch_size, patch_distance, sigma):
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(
        block,
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        fast_mode=True,
    ).astype(np.float32)


def _nlm_auto(samples, params):
    if params["sigma"] is None:
        params["sigma"] = _sigma(_samples(samples))
    if params["h"] is None:
        # scikit-image's guidance for fast mode with sigma given: h a little below sigma.
        params["h"] = 0.8 * params["sigma"]
    return params


FILTERS.append(
    Method(
        "nlm",
        _nlm,
        (
            Param(
                "h",
                float,
                None,
                "Filtering strength, in the image's intensity units (auto: 0.8 × the noise "
                "level); larger smooths more",
                0.0,
                label="Strength",
            ),
            Param(
                "patch_size",
                int,
                5,
                "Width of the patches compared (pixels)",
                3,
                11,
                label="Patch width (pixels)",
            ),
            Param(
                "patch_distance",
                int,
                6,
                "How far away similar patches are looked for (pixels)",
                1,
                21,
                label="Search radius (pixels)",
            ),
            NOISE_LEVEL,
            VST_ON,
        ),
        halo=lambda p: p["patch_distance"] + p["patch_size"] // 2 + 1,
        auto=_nlm_auto,
        title="Non-local means",
        description="Averages similar patches (Buades et al. 2005); strength from the noise estimate.",
    )
)


# --- Total variation ------------------------------------------------------------------------


def _tv(block, *, weight):
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(block, weight=weight).astype(np.float32)


def _tv_auto(samples, params):
    if params["weight"] is None:
        blocks = [center_crop(b, 192) for b in _samples(samples)]
        # A floor relative to the image's range, so that it scales with the intensities.
        sigma = max(_sigma(blocks), 1e-6 * float(np.ptp(blocks[0])) or 1e-30)
        grid = [sigma * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]

        def loss(w):
            return sum(masked_jinv_loss(b, lambda x: _tv(x, weight=w), stride=3) for b in blocks)

        params["weight"], _ = best_candidate(grid, loss)
    return params


FILTERS.append(
    Method(
        "tv",
        _tv,
        (
            Param(
                "weight",
                float,
                None,
                "Total-variation weight, in the image's intensity units; larger smooths more",
                0.0,
                label="Strength",
            ),
            VST,
        ),
        # TV is not strictly local; this margin makes tile borders invisible in practice.
        halo=lambda p: 16,
        auto=_tv_auto,
        slow=True,
        title="Total variation",
        description="Chambolle's total-variation denoising, weight chosen by masked J-invariant calibration.",
    )
)


# --- Wavelet --------------------------------------------------------------------------------


def _wavelet(block, *, sigma, wavelet, mode):
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(
        block, sigma=sigma, wavelet=wavelet, mode=mode, method="BayesShrink", rescale_sigma=True
    ).astype(np.float32)


def _wavelet_auto(samples, params):
    if params["sigma"] is None:
        params["sigma"] = _sigma(_samples(samples))
    return params


FILTERS.append(
    Method(
        "wavelet",
        _wavelet,
        (
            NOISE_LEVEL,
            Param(
                "wavelet",
                str,
                "db2",
                "Wavelet family (the shape of the building blocks the image is split into)",
                choices=("db1", "db2", "sym4", "coif1"),
                label="Wavelet family",
                choice_labels=(
                    "Haar (db1)",
                    "Daubechies 2 (db2)",
                    "Symlet 4 (sym4)",
                    "Coiflet 1 (coif1)",
                ),
            ),
            Param(
                "mode",
                str,
                "soft",
                "How small wavelet coefficients are removed: soft shrinks all of them (smoother), "
                "hard keeps the large ones unchanged (sharper, more artefacts)",
                choices=("soft", "hard"),
                label="Thresholding",
                choice_labels=("Soft (smoother)", "Hard (sharper)"),
            ),
            VST_ON,
        ),
        halo=lambda p: 32,
        auto=_wavelet_auto,
        title="Wavelet (BayesShrink)",
        description="Wavelet-coefficient shrinkage with BayesShrink thresholds from the noise estimate.",
    )
)


# --- Bilateral ------------------------------------------------------------------------------


def _bilateral(block, *, sigma_color, sigma_spatial):
    from skimage.restoration import denoise_bilateral

    lo = float(block.min())
    span = float(block.max()) - lo or 1.0
    # scikit-image expects floats in [0, 1]; scale there and back so sigma_color keeps
    # the image's own units.
    out = denoise_bilateral(
        (block - lo) / span, sigma_color=sigma_color / span, sigma_spatial=sigma_spatial
    )
    return (out * span + lo).astype(np.float32)


def _bilateral_auto(samples, params):
    if params["sigma_color"] is None:
        params["sigma_color"] = 2.0 * _sigma(_samples(samples))
    return params


FILTERS.append(
    Method(
        "bilateral",
        _bilateral,
        (
            Param(
                "sigma_color",
                float,
                None,
                "How different in intensity neighbours may be and still be averaged, in the "
                "image's units (auto: 2 × the noise level)",
                0.0,
                label="Intensity tolerance",
            ),
            Param(
                "sigma_spatial",
                float,
                1.5,
                "Standard deviation of the distance weighting (pixels)",
                0.3,
                10.0,
                label="Reach (pixels)",
            ),
            VST_ON,
        ),
        halo=lambda p: max(5, 2 * math.ceil(3 * p["sigma_spatial"]) + 1) // 2 + 1,
        auto=_bilateral_auto,
        title="Bilateral",
        description="Edge-preserving average weighted by distance and intensity difference.",
    )
)


# --- BM3D (optional: the reference implementation's licence is non-commercial) -------------


def _bm3d(block, *, sigma, profile):
    import bm3d

    return np.asarray(bm3d.bm3d(block, sigma_psd=sigma, profile=profile), np.float32)


def _bm3d_auto(samples, params):
    if params["sigma"] is None:
        params["sigma"] = _sigma(_samples(samples))
    return params


def _bm3d_available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("bm3d") is None:
        return (
            False,
            "the optional 'bm3d' package is not installed (pip install 'napari-denoise[bm3d]').",
        )
    return True, ""


_ok, _why = _bm3d_available()
FILTERS.append(
    Method(
        "bm3d",
        _bm3d,
        (
            NOISE_LEVEL,
            Param(
                "profile",
                str,
                "np",
                "The bm3d package's preset of block sizes and thresholds",
                choices=("np", "refilter", "vn", "high", "deb"),
                label="Preset",
                choice_labels=(
                    "Normal",
                    "Normal, filtered twice",
                    "Very noisy images",
                    "High quality (slower)",
                    "For deblurring",
                ),
            ),
            VST_ON,
        ),
        halo=lambda p: 24,
        auto=_bm3d_auto,
        slow=True,
        title="BM3D",
        description="Block-matching and 3D collaborative filtering (Dabov et al. 2007), bm3d package.",
        available=_ok,
        unavailable_reason=_why,
    )
)

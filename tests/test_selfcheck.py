"""The no-ground-truth check: SURE of a black-box denoiser against the real error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_denoise.engine.denoise import selfcheck


@pytest.fixture(scope="module")
def clean(shared_data):
    import tifffile

    gt = tifffile.imread(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_1.tif"
    )
    return gt.astype(np.float64)[:256, :256]


def poisson_gaussian(clean, photons, seed=0):
    rng = np.random.default_rng(seed)
    gain = 255.0 / photons
    return (gain * rng.poisson(clean / gain) + rng.normal(0, 1.0, clean.shape)).astype(np.float32)


def blur(sigma):
    return lambda im: gaussian_filter(np.asarray(im, np.float64), sigma)


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_risk_estimates_the_real_error(clean, sigma):
    noisy = poisson_gaussian(clean, photons=60)
    out = blur(sigma)(noisy)
    true = float(np.mean((out - clean) ** 2))
    assert selfcheck.risk(noisy, blur(sigma)) == pytest.approx(true, rel=0.15)


def test_better_picks_the_result_closer_to_the_truth(clean):
    """At high SNR light smoothing wins, at low SNR strong smoothing: the check follows."""
    for photons, expected in ((2000, "light"), (10, "strong")):
        noisy = poisson_gaussian(clean, photons)
        name, scores = selfcheck.better(noisy, {"light": blur(0.6), "strong": blur(2.5)})
        true = {
            k: float(np.mean((blur(s)(noisy) - clean) ** 2))
            for k, s in (("light", 0.6), ("strong", 2.5))
        }
        assert min(true, key=true.get) == expected  # the premise
        assert name == expected, scores


def test_blend_weight_backs_off_an_over_smoothing_denoiser(clean):
    noisy = poisson_gaussian(clean, photons=2000)
    strong = blur(3.0)
    w = selfcheck.blend_weight(noisy, strong)
    assert 0.0 <= w < 0.9
    err = lambda out: float(np.mean((out - clean) ** 2))  # noqa: E731
    blended = w * strong(noisy) + (1 - w) * noisy
    assert err(blended) < err(strong(noisy))
    assert selfcheck.blend_weight(noisy, lambda im: np.asarray(im, np.float64)) == 1.0


def test_correlated_noise_is_measured(w2s_noise_pair):
    correlated, independent = w2s_noise_pair
    # conftest: 3 (white) and 12 (smoothed) grey levels of noise; 12 (white) alone
    c = selfcheck.estimate_noise_covariance(correlated)
    i = selfcheck.estimate_noise_covariance(independent)
    assert c.correlation is not None and i.correlation is None
    # within 30%: the finest scale holds little of smoothed noise (1/8 here), and some signal
    assert np.mean(c.variance) == pytest.approx(9 + 144, rel=0.3)
    assert np.mean(i.variance) == pytest.approx(144, rel=0.2)
    z = c.sample(np.random.default_rng(0)) / np.sqrt(c.variance)
    assert np.mean(z[:, 1:] * z[:, :-1]) > 0.3  # neighbours share the noise


def test_same_seed_same_answer(clean):
    noisy = poisson_gaussian(clean, photons=60)
    assert selfcheck.risk(noisy, blur(1.0), seed=3) == selfcheck.risk(noisy, blur(1.0), seed=3)

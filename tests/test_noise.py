"""Noise model: simulation, estimation on real data, Anscombe stabilisation and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from napari_denoise.engine.denoise import noise as N
from napari_denoise.engine.denoise.noise import NoiseModel
from napari_denoise.errors import InputError

LEVELS = [0.5, 1, 2, 5, 20, 100]  # photons


def test_noise_model_variance_and_validation():
    m = NoiseModel(gain=2.0, sigma=3.0, offset=10.0)
    np.testing.assert_allclose(m.variance([10, 20, 110]), [9.0, 29.0, 209.0])
    assert m.variance(5.0) == 9.0  # below the black level only the read noise remains
    with pytest.raises(InputError, match=">= 0"):
        NoiseModel(gain=-1.0, sigma=1.0)
    with pytest.raises(InputError, match="finite"):
        NoiseModel(gain=np.nan, sigma=1.0)


@pytest.mark.parametrize(("gain", "sigma", "offset"), [(2.0, 3.0, 10.0), (0.5, 0.0, 0.0)])
def test_simulated_noise_has_model_variance(gain, sigma, offset):
    model = NoiseModel(gain, sigma, offset)
    for mu in (offset + 1.5 * gain, offset + 20, offset + 200):
        z = N.add_poisson_gaussian(
            np.full(200_000, mu), gain=gain, sigma=sigma, offset=offset, rng=1
        )
        assert z.dtype == np.float32
        assert z.mean() == pytest.approx(mu, abs=4 * np.sqrt(model.variance(mu) / z.size))
        assert z.var() == pytest.approx(model.variance(mu), rel=0.03)


def test_simulation_gaussian_only_and_reproducible():
    clean = np.linspace(0, 100, 4096).reshape(64, 64)
    z = N.add_poisson_gaussian(clean, gain=0, sigma=5, rng=3)
    assert np.std(z - clean) == pytest.approx(5, rel=0.05)
    np.testing.assert_array_equal(z, N.add_poisson_gaussian(clean, gain=0, sigma=5, rng=3))
    gen = np.random.default_rng(3)
    assert not np.array_equal(
        N.add_poisson_gaussian(clean, gain=1, sigma=0, rng=gen),
        N.add_poisson_gaussian(clean, gain=1, sigma=0, rng=gen),
    )
    assert set(np.unique(N.add_poisson_gaussian(clean, gain=2, sigma=0, rng=0)) % 2) == {0.0}


@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_estimate_sigma_on_real_gt(fmd_pair, sigma):
    _, gt = fmd_pair
    noisy = gt + np.random.default_rng(7).normal(0, sigma, gt.shape)
    assert N.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.10)


def test_estimate_sigma_stack_is_median_of_slices(fmd_pair):
    _, gt = fmd_pair
    rng = np.random.default_rng(0)
    stack = np.stack([gt + rng.normal(0, s, gt.shape) for s in (4.0, 8.0, 30.0)])
    assert N.estimate_sigma(stack) == pytest.approx(N.estimate_sigma(stack[1]))
    assert N.estimate_sigma(stack) == pytest.approx(8.0, rel=0.1)


@pytest.mark.parametrize(("gain", "sigma"), [(4.0, 5.0), (2.0, 6.0), (3.0, 4.0)])
def test_estimate_noise_model_on_simulated_real_gt(fmd_pair, gain, sigma):
    _, gt = fmd_pair
    z = N.add_poisson_gaussian(gt, gain=gain, sigma=sigma, rng=11)
    model = N.estimate_noise_model(z)
    assert model.gain == pytest.approx(gain, rel=0.25)
    # Only the variance line is identifiable; its intercept at 0 is the read noise here.
    intercept = model.sigma**2 - model.gain * model.offset
    assert np.sqrt(max(intercept, 0.0)) == pytest.approx(sigma, rel=0.25)
    assert model.offset <= np.percentile(gt, 5)  # the black level is the darkest signal


def test_estimate_noise_model_black_level_and_stack(fmd_pair):
    _, gt = fmd_pair
    true = NoiseModel(gain=4.0, sigma=2.0, offset=30.0)  # b = 4 - 120 < 0 for offset 0
    z = N.add_poisson_gaussian(gt + 30.0, gain=4.0, sigma=2.0, offset=30.0, rng=5)
    model = N.estimate_noise_model(z)
    assert model.gain == pytest.approx(4.0, rel=0.25)
    assert model.offset > 0 and model.sigma >= 0
    mus = np.array([40.0, 80.0, 150.0])
    np.testing.assert_allclose(model.variance(mus), true.variance(mus), rtol=0.25)
    known = N.estimate_noise_model(z, offset=30.0)
    assert known.offset == 30.0
    np.testing.assert_allclose(known.variance(mus), model.variance(mus), rtol=1e-6)
    # a stack pools its slices: same answer within noise, on fewer pixels per slice
    stack = np.stack([N.add_poisson_gaussian(gt, gain=3, sigma=4, rng=s) for s in range(3)])
    pooled = N.estimate_noise_model(stack[:, :256, :256])
    assert pooled.gain == pytest.approx(3.0, rel=0.25)
    assert pooled.sigma == pytest.approx(4.0, rel=0.25)


def test_estimate_noise_model_pure_gaussian_and_errors():
    clean = np.tile(np.linspace(20, 220, 256), (256, 1))
    z = N.add_poisson_gaussian(clean, gain=0, sigma=6, rng=2)
    model = N.estimate_noise_model(z)
    assert model.gain < 0.05  # contributes < 2 % of the variance at the brightest level
    assert model.sigma == pytest.approx(6, rel=0.1)
    with pytest.raises(InputError, match="too small"):
        N.estimate_noise_model(np.zeros((16, 16)))
    with pytest.raises(InputError, match="NaN"):
        N.estimate_noise_model(np.full((64, 64), np.nan))


@pytest.mark.parametrize(("gain", "sigma"), [(1.0, 0.0), (2.0, 2.0), (3.0, 1.0)])
def test_anscombe_stabilises_variance(gain, sigma):
    model = NoiseModel(gain, sigma)
    rng = np.random.default_rng(4)
    for photons in (2, 3, 5, 20, 100):
        z = N.add_poisson_gaussian(
            np.full(100_000, photons * gain), gain=gain, sigma=sigma, rng=rng
        )
        assert N.anscombe(z, model).var() == pytest.approx(1.0, rel=0.10)


def test_anscombe_gaussian_limit_and_dtypes():
    model = NoiseModel(gain=0.0, sigma=4.0, offset=10.0)
    z = N.add_poisson_gaussian(np.full(50_000, 60.0), gain=0, sigma=4.0, rng=0)
    f = N.anscombe(z, model)
    assert f.dtype == np.float32
    assert f.std() == pytest.approx(1.0, rel=0.02) and f.mean() == pytest.approx(12.5, abs=0.05)
    np.testing.assert_allclose(N.inverse_anscombe(f, model), z, rtol=1e-5)
    assert N.anscombe(np.arange(4, dtype=np.uint8), NoiseModel(1, 0)).dtype == np.float32
    assert N.anscombe(np.arange(4.0), NoiseModel(1, 0)).dtype == np.float64
    with pytest.raises(InputError, match="no noise"):
        N.anscombe(z, NoiseModel(0.0, 0.0))


@pytest.mark.parametrize(("gain", "sigma"), [(1.0, 0.0), (1.0, 1.0), (3.0, 3.0)])
def test_exact_unbiased_inverse(gain, sigma):
    """inverse(E[f(z)]) recovers y; the algebraic inverse is biased at low counts."""
    model = NoiseModel(gain, sigma, offset=5.0)
    rng = np.random.default_rng(123)
    s2 = (sigma / gain) ** 2
    for y in LEVELS:
        z = N.add_poisson_gaussian(
            np.full(400_000, 5.0 + gain * y), gain=gain, sigma=sigma, offset=5.0, rng=rng
        )
        d = N.anscombe(z, model).astype(np.float64).mean()
        exact = (float(N.inverse_anscombe(d, model)) - 5.0) / gain
        algebraic = (d / 2) ** 2 - 3 / 8 - s2
        assert exact == pytest.approx(y, rel=0.03)
        if y <= 2:
            assert abs(algebraic - y) > 0.1 * y  # clearly biased: > 10 %
            assert abs(algebraic - y) > 5 * abs(exact - y)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 4.0])
def test_inverse_is_monotone_and_continuous(sigma):
    model = NoiseModel(gain=2.0, sigma=sigma, offset=1.0)
    d = np.linspace(0.0, 80.0, 20_001)
    x = N.inverse_anscombe(d, model)
    assert np.all(np.diff(x) >= 0)
    # no jump above 0 photons (where the clipping at 0 makes a kink), in particular none
    # where the closed form takes over: the slope (~ gain * D / 2) changes smoothly
    positive = x[1:-1] > model.offset + 0.5 * model.gain
    assert np.max(np.abs(np.diff(x, 2))[positive]) < 1e-4
    assert x[0] == pytest.approx(1.0)  # below E[f | 0 photons] -> 0 photons (= offset)
    # round trip of clean values: monotone, and ~identity once counts are high
    clean = np.linspace(1.0, 2001.0, 500)
    back = N.inverse_anscombe(N.anscombe(clean, model), model)
    assert np.all(np.diff(back) > 0)
    np.testing.assert_allclose(back[clean > 200], clean[clean > 200], rtol=0.01)
    assert N.inverse_anscombe(np.float32([3.0]), model).dtype == np.float32


def test_degenerate_fit_falls_back_to_a_gaussian_estimate(shared_data):
    """A real 12-bit frame (partly saturated) where the variance line degenerates."""
    import tifffile

    frame = tifffile.imread(
        shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    )[0]
    model = N.estimate_noise_model(frame)
    assert model.variance(np.median(frame)) > 0


@pytest.mark.parametrize("method", ["tv", "drunet-fluo"])
def test_a_black_frame_has_no_noise_and_denoises_to_a_finite_image(method):
    """scikit-image reads only non-zero detail coefficients: a black frame was NaN noise,
    and methods set by the noise level returned an image of NaN."""
    import napari_denoise as nd

    black = np.zeros((64, 64), np.float32)
    assert N.estimate_sigma(black) == 0.0
    assert np.isfinite(nd.denoise(black, method)).all()

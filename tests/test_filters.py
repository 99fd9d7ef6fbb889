"""Classical filters on real data: they denoise, keep shape and dtype, and calibrate themselves."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_denoise as nd
from napari_denoise.engine.denoise.filters import noise_correlated_in
from napari_denoise.engine.denoise.noise import add_poisson_gaussian
from napari_denoise.engine.methods import get_method, list_methods
from napari_denoise.engine.metrics import psnr

FILTERS_2D = [
    m.name for m in list_methods(kind="classical", include_unavailable=False) if m.ndim == 2
]


@pytest.fixture(scope="module")
def crop(fmd_pair):
    noisy, gt = fmd_pair
    return noisy[160:352, 160:352], gt[160:352, 160:352]


@pytest.mark.parametrize("name", FILTERS_2D)
def test_every_filter_raises_psnr_on_a_real_fmd_pair(crop, name):
    # A clear gain, well above what rounding or a lucky crop could give.
    noisy, gt = crop
    out = nd.denoise(noisy, name)
    assert out.shape == noisy.shape and out.dtype == np.uint8
    gain = psnr(gt, out, data_range=255) - psnr(gt, noisy, data_range=255)
    assert gain > 0.5, f"{name} only gained {gain:.2f} dB"


def test_box3d_uses_the_stack_axis_and_beats_2d_box_on_a_real_time_series(shared_data):
    from PIL import Image

    root = shared_data / "FMD_test_mix"
    stack = np.stack(
        [np.array(Image.open(root / "raw" / f"Confocal_FISH_{k}.png")) for k in (1, 2, 3, 4)]
    )
    gt = np.array(Image.open(root / "gt" / "Confocal_FISH_1.png"))
    stack, gt = stack[:, :192, :192], gt[:192, :192]
    out3 = nd.denoise(stack, "box3d", axes="TYX")
    out2 = nd.denoise(stack, "box", axes="TYX")
    score = lambda out: np.mean([psnr(gt, s, data_range=255) for s in out])  # noqa: E731
    assert score(out3) > score(out2) + 0.5
    with pytest.raises(nd.InputError, match="needs a Z or T axis"):
        nd.denoise(gt, "box3d")


def test_automatic_strength_grows_with_the_noise(fmd_pair):
    gt = fmd_pair[1][:256, :256].astype(np.float32)
    m = get_method("gaussian")
    chosen = []
    for gain in (0.5, 2.0, 8.0):
        noisy = add_poisson_gaussian(gt, gain=gain, sigma=2.0, rng=0)
        chosen.append(m.auto([noisy], {"sigma": None, "vst": False})["sigma"])
    assert chosen[0] < chosen[1] < chosen[2]


def test_calibration_gets_close_to_the_best_gaussian_on_real_data(fmd_pair):
    noisy, gt = (a.astype(np.float32) for a in fmd_pair)
    sigma = get_method("gaussian").auto([noisy], {"sigma": None, "vst": False})["sigma"]
    score = lambda s: psnr(gt, ndi.gaussian_filter(noisy, s), data_range=255)  # noqa: E731
    best = max(score(s) for s in np.geomspace(0.4, 6, 40))
    assert score(sigma) > best - 0.3


def test_correlated_noise_path_only_for_spatially_correlated_noise(fmd_pair):
    gt = fmd_pair[1][:256, :256].astype(np.float32)
    rng = np.random.default_rng(0)
    white = rng.standard_normal(gt.shape).astype(np.float32) * 10
    smooth = ndi.gaussian_filter(rng.standard_normal(gt.shape).astype(np.float32), 0.8)
    smooth *= 10 / smooth.std()
    assert not noise_correlated_in([gt + white])
    assert noise_correlated_in([gt + smooth])


def test_vst_runs_and_helps_a_noise_estimate_filter_on_poisson_noise(fmd_pair):
    gt = fmd_pair[1][:192, :192].astype(np.float32)
    noisy = add_poisson_gaussian(gt, gain=4.0, sigma=1.0, rng=1)
    with_vst = nd.denoise(noisy, "nlm", vst=True)
    without = nd.denoise(noisy, "nlm", vst=False)
    assert psnr(gt, with_vst, data_range=255) > psnr(gt, without, data_range=255)


def test_explicit_parameters_are_used_as_given(crop):
    noisy = crop[0].astype(np.float32)
    out = nd.denoise(noisy, "gaussian", sigma=2.0)
    np.testing.assert_allclose(out, ndi.gaussian_filter(noisy, 2.0, truncate=4.0), atol=1e-4)


@pytest.mark.parametrize(
    ("name", "correlated"),
    [
        ("WideField_BPAE_G_1", True),
        ("WideField_BPAE_R_3", True),
        ("Confocal_BPAE_G_1", False),
        ("TwoPhoton_MICE_2", False),
        ("Confocal_FISH_4", False),
    ],
)
def test_noise_correlation_is_detected_on_real_captures(shared_data, name, correlated):
    from PIL import Image

    from napari_denoise.engine.denoise.calibrate import noise_correlation_ratio

    raw = np.array(Image.open(shared_data / "FMD_test_mix" / "raw" / f"{name}.png"))
    assert (noise_correlation_ratio(raw) > 2.0) is correlated


def test_correlated_noise_covariance_is_measured_in_flat_regions(fmd_pair):
    from napari_denoise.engine.denoise.calibrate import noise_covariance

    gt = fmd_pair[1].astype(np.float32)
    rng = np.random.default_rng(5)
    kernel = np.array([0.25, 0.5, 0.25])
    noise = ndi.correlate1d(ndi.correlate1d(rng.standard_normal(gt.shape), kernel, 0), kernel, 1)
    noise *= 10 / noise.std()
    cov = noise_covariance(gt + noise)
    r = cov.shape[0] // 2
    # [1, 2, 1] / 4 smoothing: lag-1 correlation 2/3 per axis, lag 2 1/6, zero beyond
    rho = cov[r, r:] / cov[r, r]
    assert cov[r, r] == pytest.approx(100, rel=0.25)
    assert rho[1] == pytest.approx(2 / 3, abs=0.1) and rho[2] == pytest.approx(1 / 6, abs=0.1)
    assert abs(rho[4]) < 0.1

"""Metrics: agreement with scikit-image, range invariance, stacks and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import (
    normalized_root_mse,
    peak_signal_noise_ratio,
    structural_similarity,
)

from napari_denoise.engine import metrics as M
from napari_denoise.errors import InputError


@pytest.fixture(scope="module")
def rand_pair():
    rng = np.random.default_rng(42)
    true = rng.integers(0, 256, (64, 80), dtype=np.uint8)
    noise = rng.integers(-20, 21, true.shape)
    test = np.clip(true.astype(int) + noise, 0, 255).astype(np.uint8)
    return true, test


def test_psnr_hand_computed():
    true = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    test = np.array([[1, 10], [20, 27]], dtype=np.uint8)
    # MSE = (1 + 9) / 4 = 2.5 -> 10 log10(255^2 / 2.5)
    expected = 10 * math.log10(255**2 / 2.5)
    assert M.psnr(true, test, data_range=255) == pytest.approx(expected, rel=1e-12)
    # without data_range: the ground truth's own range, 30 - 0
    assert M.psnr(true, test) == pytest.approx(10 * math.log10(30**2 / 2.5), rel=1e-12)
    assert M.psnr(true, test, data_range=100) == pytest.approx(10 * math.log10(1e4 / 2.5))


def test_psnr_identical_is_inf():
    img = np.arange(64, dtype=np.uint16).reshape(8, 8)
    assert M.psnr(img, img) == math.inf
    assert M.snr(img, img) == math.inf


def test_agree_with_skimage_on_known_arrays(rand_pair):
    true, test = rand_pair
    assert M.psnr(true, test) == pytest.approx(peak_signal_noise_ratio(true, test), rel=1e-10)
    assert M.ssim(true, test) == pytest.approx(
        structural_similarity(true, test, data_range=255), rel=1e-10
    )
    for norm in ("euclidean", "min-max", "mean"):
        assert M.nrmse(true, test, normalization=norm) == pytest.approx(
            normalized_root_mse(true, test, normalization=norm), rel=1e-10
        )
    # float images with an explicit range
    tf, xf = true / 255.0, test.astype(np.float32) / 255.0
    assert M.psnr(tf, xf, data_range=1.0) == pytest.approx(
        peak_signal_noise_ratio(tf, xf.astype(np.float64), data_range=1.0), rel=1e-6
    )
    assert M.ssim(tf, xf, data_range=1.0) == pytest.approx(
        structural_similarity(tf, xf.astype(np.float64), data_range=1.0), rel=1e-6
    )


def test_agree_with_skimage_on_real_fmd_pair(fmd_pair):
    noisy, gt = fmd_pair
    p = M.psnr(gt, noisy, data_range=255)
    assert p == pytest.approx(peak_signal_noise_ratio(gt, noisy), rel=1e-10)
    assert 15 < p < 40  # a raw FMD capture is in the 20-35 dB range
    assert M.ssim(gt, noisy, data_range=255) == pytest.approx(
        structural_similarity(gt, noisy, data_range=255), rel=1e-10
    )
    assert M.nrmse(gt, noisy) == pytest.approx(normalized_root_mse(gt, noisy), rel=1e-10)
    res = M.compare(gt, noisy, data_range=255)
    assert res["psnr"] == pytest.approx(p)
    assert res["data_range"] == 255.0
    own = float(gt.max()) - float(gt.min())  # the default: the ground truth's own range
    assert M.compare(gt, noisy)["psnr"] == pytest.approx(
        peak_signal_noise_ratio(gt, noisy, data_range=own), rel=1e-10
    )
    assert res["psnr_ri"] >= res["psnr"] - 1e-9  # the fit can only lower the MSE


def test_snr_and_affine_fit_by_hand():
    true = np.array([3.0, 4.0, 0.0, 0.0])
    test = np.array([3.0, 4.0, 1.0, 0.0])
    assert M.snr(true, test) == pytest.approx(10 * math.log10(25.0))
    x = np.linspace(0, 1, 50)
    alpha, beta = M.affine_fit(3.0 * x - 2.0, x)
    assert (alpha, beta) == (pytest.approx(3.0), pytest.approx(-2.0))
    assert M.affine_fit(x, np.full_like(x, 7.0)) == (0.0, pytest.approx(x.mean()))


def test_range_invariant_psnr_ignores_affine_rescaling(fmd_pair):
    noisy, gt = fmd_pair
    rescaled = 0.5 * noisy.astype(np.float64) + 30
    ri, ri_rescaled = M.psnr_range_invariant(gt, noisy), M.psnr_range_invariant(gt, rescaled)
    assert ri_rescaled == pytest.approx(ri, abs=1e-9)
    assert M.psnr(gt, rescaled) < M.psnr(gt, noisy) - 3  # plain PSNR drops clearly
    s_ri = M.ssim_range_invariant(gt, rescaled)
    assert s_ri == pytest.approx(M.ssim_range_invariant(gt, noisy), abs=1e-9)
    assert M.ssim(gt, rescaled) < s_ri


def _three_slices(fmd_pair):
    noisy, gt = fmd_pair
    crops = [(slice(0, 128), slice(0, 160)), (slice(200, 328), slice(100, 260))]
    crops.append((slice(384, 512), slice(352, 512)))
    return np.stack([gt[c] for c in crops]), np.stack([noisy[c] for c in crops])


def test_per_slice_equals_2d_values(fmd_pair):
    gt3, noisy3 = _three_slices(fmd_pair)
    res = M.compare(gt3, noisy3, slice_axes=1, data_range=255)
    assert len(res["per_slice"]) == 3
    keys = {"psnr", "ssim", "psnr_ri", "ssim_ri", "nrmse", "snr", "data_range"}
    assert set(res) == keys | {"per_slice", "data_range_note"}
    for k, entry in enumerate(res["per_slice"]):
        assert set(entry) == keys
        single = M.compare(gt3[k], noisy3[k], data_range=255)
        assert len(single["per_slice"]) == 1
        for key in keys:
            assert entry[key] == pytest.approx(single[key], rel=1e-12)
        assert entry["psnr"] == pytest.approx(M.psnr(gt3[k], noisy3[k], data_range=255))
        assert entry["ssim"] == pytest.approx(M.ssim(gt3[k], noisy3[k], data_range=255))
        assert entry["psnr_ri"] == pytest.approx(
            M.psnr_range_invariant(gt3[k], noisy3[k], data_range=255)
        )
        assert entry["nrmse"] == pytest.approx(M.nrmse(gt3[k], noisy3[k]))
        assert entry["snr"] == pytest.approx(M.snr(gt3[k], noisy3[k]))
    for key in ("psnr", "ssim", "psnr_ri", "ssim_ri", "nrmse", "snr"):
        assert res[key] == pytest.approx(np.mean([e[key] for e in res["per_slice"]]))
    # ND ssim is the mean of the 2D slices
    assert M.ssim(gt3, noisy3, data_range=255) == pytest.approx(res["ssim"])
    # two leading axes: 1 x 3 slices, same values
    res2 = M.compare(gt3[None], noisy3[None], slice_axes=2, data_range=255)
    assert [e["psnr"] for e in res2["per_slice"]] == [e["psnr"] for e in res["per_slice"]]


def test_range_invariant_stack_fits_each_slice(fmd_pair):
    gt3, noisy3 = _three_slices(fmd_pair)
    scaled = noisy3.astype(np.float64) * np.array([0.5, 1.0, 2.0])[:, None, None] + 10
    a = M.compare(gt3, noisy3, slice_axes=1)
    b = M.compare(gt3, scaled, slice_axes=1)
    for ea, eb in zip(a["per_slice"], b["per_slice"], strict=True):
        assert eb["psnr_ri"] == pytest.approx(ea["psnr_ri"], abs=1e-9)


def test_default_data_range_is_the_ground_truths_span_not_the_dtypes():
    true16 = np.full((16, 16), 1000, np.uint16)
    true16[0, 0] = 3000
    test16 = true16 + 10
    assert M.psnr(true16, test16) == pytest.approx(10 * math.log10(2000**2 / 100))
    assert M.compare(true16, test16)["data_range"] == 2000.0


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (
            lambda: M.psnr(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8)),
            ["(4, 5)", "(5, 4)"],
        ),
        (lambda: M.ssim(np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.uint8)), ["empty"]),
        (lambda: M.psnr(np.zeros((8, 8)), np.zeros((8, 8))), ["constant", "data_range"]),
        (
            lambda: M.ssim(np.zeros((8, 8), np.float32), np.zeros((8, 8))),
            ["constant", "data_range"],
        ),
        (lambda: M.psnr(np.zeros(4), np.array([0, np.nan, 0, 0]), data_range=1), ["NaN"]),
        (lambda: M.snr(np.array([0, np.inf]), np.zeros(2)), ["infinite"]),
        (lambda: M.psnr(np.zeros(4, np.uint8), np.ones(4, np.uint8), data_range=0), ["> 0"]),
        (lambda: M.psnr(np.zeros(4, np.uint8), np.ones(4, np.uint8), data_range=-3), ["> 0"]),
        (
            lambda: M.ssim(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8), data_range=1),
            ["7x7"],
        ),
        (lambda: M.nrmse(np.zeros(4), np.ones(4), normalization="max"), ["normalization"]),
        (lambda: M.nrmse(np.zeros(4), np.ones(4)), ["undefined"]),
        (
            lambda: M.compare(
                np.zeros((2, 8, 8), np.uint8),
                np.zeros((2, 8, 8), np.uint8),
                slice_axes=2,
                data_range=1,
            ),
            ["slice_axes"],
        ),
    ],
)
def test_errors_are_input_errors_with_clear_words(call, words):
    with pytest.raises(InputError) as info:
        call()
    for word in words:
        assert word in str(info.value)

"""Automatic choices do not depend on where zero is or on the unit of intensity (issue 13, 3).

Adding a constant to an image must not change any automatic parameter; multiplying it by
``k`` must multiply the parameters measured in intensity units by ``k`` and leave the
others (pixel widths, and everything chosen in the variance-stabilised domain) unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_denoise.engine.denoise.noise import estimate_noise_model
from napari_denoise.engine.denoise.pipeline import choose_params, denoise_iter, drain
from napari_denoise.engine.methods import get_method, list_methods
from napari_denoise.engine.metrics import psnr

# Parameters in intensity units (they scale with the image); the rest are pixels or choices.
INTENSITY = {
    "nlm": {"h", "sigma"},
    "tv": {"weight"},
    "wavelet": {"sigma"},
    "bilateral": {"sigma_color"},
    "bm3d": {"sigma"},
}
# Intensity levels (they move with the offset too).
LEVELS = {"model": {"norm_low", "norm_high"}}
CAPTURE = "TwoPhoton_BPAE_R_1.png"  # the capture that got sigma 6.0 once shifted below zero

offsets = st.floats(-2000.0, 2000.0, allow_nan=False)
scales = st.sampled_from([1e-3, 0.01, 0.37, 1.0, 3.0, 100.0, 1e4])
SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,  # nothing written beside the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def capture(shared_data):
    raw = shared_data / "FMD_test_mix" / "raw" / CAPTURE
    gt = shared_data / "FMD_test_mix" / "gt" / CAPTURE
    return np.array(Image.open(raw)), np.array(Image.open(gt))


@pytest.fixture(scope="module")
def crop(capture):
    return capture[0][192:320, 192:320].astype(np.float64)


def _auto(method, image: np.ndarray, **given) -> dict:
    m = get_method(method)
    params, _ = choose_params(m, m.resolve_params(given), [image.astype(np.float32)])
    return params


def _check(method: str, base: dict, moved: dict, scale: float, offset: float, *, vst: bool):
    kind = "model" if get_method(method).kind == "model" else method
    for name, value in base.items():
        if not isinstance(value, float | int) or isinstance(value, bool):
            assert moved[name] == value, name
        elif name in LEVELS.get(kind, ()):
            expected = scale * (value + offset)
            assert moved[name] == pytest.approx(expected, rel=1e-4, abs=1e-4 * scale), name
        elif name in INTENSITY.get(kind, ()) and not vst:
            assert moved[name] == pytest.approx(scale * value, rel=2e-3, abs=0), name
        else:
            assert moved[name] == pytest.approx(value, rel=2e-3), name


def _auto_methods(kind: str) -> list[str]:
    return [
        m.name
        for m in list_methods(kind=kind, include_unavailable=False)
        if any(p.auto for p in m.params) and m.ndim == 2
    ]


CLASSICAL = _auto_methods("classical")


@pytest.mark.parametrize("vst", [False, True])
@pytest.mark.parametrize("method", CLASSICAL)
@SETTINGS
@given(offset=offsets, scale=scales)
def test_classical_auto_parameters_ignore_offset_and_follow_scale(crop, method, vst, offset, scale):
    if get_method(method).slow and scale not in (1e-3, 1e4):  # keep the suite fast
        return
    base = _auto(method, crop, vst=vst)
    moved = _auto(method, crop * scale + offset * scale, vst=vst)
    _check(method, base, moved, scale, offset, vst=vst)


@SETTINGS
@given(offset=offsets, scale=scales)
def test_box3d_auto_sizes_ignore_offset_and_scale(crop, offset, scale):
    stack = np.stack([crop, crop[::-1], crop[:, ::-1]])
    m = get_method("box3d")
    base, _ = choose_params(m, m.resolve_params({}), [stack.astype(np.float32)])
    moved_stack = (stack * scale + offset * scale).astype(np.float32)
    moved, _ = choose_params(m, m.resolve_params({}), [moved_stack])
    assert (moved["size"], moved["size_z"]) == (base["size"], base["size_z"])


@pytest.mark.parametrize("method", _auto_methods("model"))
@SETTINGS
@given(offset=offsets, scale=scales)
def test_model_normalisation_ignores_offset_and_follows_scale(crop, method, offset, scale):
    base = _auto(method, crop)
    moved = _auto(method, crop * scale + offset * scale)
    _check(method, base, moved, scale, offset, vst=False)


@SETTINGS
@given(offset=offsets, scale=scales)
def test_noise_model_is_equivariant(crop, offset, scale):
    base = estimate_noise_model(crop)
    moved = estimate_noise_model(crop * scale + offset * scale)
    assert moved.gain == pytest.approx(scale * base.gain, rel=1e-3)
    mu = np.linspace(crop.min(), crop.max(), 9)
    assert moved.variance(mu * scale + offset * scale) == pytest.approx(
        scale**2 * base.variance(mu), rel=1e-3
    )


@pytest.mark.parametrize(
    "store",
    [
        ("int16 below zero", lambda x: x.astype(np.int16) - 300, 300.0),
        ("float, mean subtracted", lambda x: x.astype(np.float32) - x.mean(), None),
    ],
    ids=lambda s: s[0],
)
def test_the_offset_capture_gets_the_same_gaussian_as_the_original(capture, store):
    noisy, gt = capture
    _, convert, shift = store
    shift = float(noisy.mean()) if shift is None else shift
    plain = drain(denoise_iter(noisy, "gaussian"))
    moved = drain(denoise_iter(convert(noisy), "gaussian"))
    assert moved.params["sigma"] == plain.params["sigma"]
    gain = psnr(gt, moved.data.astype(np.float64) + shift, data_range=255)
    assert gain == pytest.approx(psnr(gt, plain.data, data_range=255), abs=0.05)


@pytest.mark.parametrize("method", ["gaussian", "wavelet", "nlm", "bilateral"])
@SETTINGS
@given(offset=offsets, scale=scales)
def test_stabilised_results_move_with_the_image(crop, method, offset, scale):
    """With the variance-stabilising transform the result of ``k * x + c`` is
    ``k * result(x) + c``: the black level is measured, not assumed to be zero (an image
    stored below zero came back as a constant)."""
    base = drain(denoise_iter(crop.astype(np.float32), method, params={"vst": True})).data
    moved = crop * scale + offset * scale
    out = drain(denoise_iter(moved.astype(np.float32), method, params={"vst": True})).data
    back = out.astype(np.float64) / scale - offset
    assert np.abs(back - base).max() < 0.02 * (crop.max() - crop.min())
    assert np.abs(back - base).mean() < 0.002 * (crop.max() - crop.min())


@pytest.mark.parametrize("method", ["gaussian", "box"])
@SETTINGS
@given(offset=offsets, scale=scales)
def test_correlated_noise_path_ignores_offset_and_scale(w2s_noise_pair, method, offset, scale):
    """Spatially correlated noise (binned or interpolated cameras) takes its own SURE path."""
    correlated = w2s_noise_pair[0][:128, :128].astype(np.float64)
    base = _auto(method, correlated)
    moved = _auto(method, correlated * scale + offset * scale)
    _check(method, base, moved, scale, offset, vst=False)

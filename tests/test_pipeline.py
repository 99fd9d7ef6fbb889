"""The denoising loop: axes layouts, dtypes, channels, progress, and bad input."""

import numpy as np
import pytest

import napari_denoise as nd
from napari_denoise.engine.denoise.pipeline import denoise_iter, drain
from napari_denoise.errors import InputError, ParameterError


@pytest.fixture(scope="module")
def real(fmd_pair):
    return fmd_pair[0][:96, :80]


@pytest.mark.parametrize(
    ("axes", "shape"),
    [
        ("YX", (96, 80)),
        ("TYX", (3, 96, 80)),
        ("CYX", (2, 96, 80)),
        ("YXC", (96, 80, 2)),
        ("ZYX", (4, 96, 80)),
        ("TZCYX", (2, 2, 2, 96, 80)),
        ("XY", (80, 96)),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_output_keeps_shape_and_dtype_for_every_layout(real, axes, shape, dtype):
    base = real.T if axes == "XY" else real
    img = np.broadcast_to(
        base.reshape(base.shape + (1,) * (len(shape) - 2)) if axes.endswith("C") else base, shape
    ).astype(dtype)
    out = nd.denoise(img, "gaussian", axes=axes, sigma=1.0)
    assert out.shape == img.shape and out.dtype == img.dtype


def test_float32_output_on_request_and_integer_output_is_clipped(real):
    out = nd.denoise(real, "gaussian", sigma=1.0, output_dtype="float32")
    assert out.dtype == np.float32
    bright = np.full((64, 64), 255, np.uint8)
    assert nd.denoise(bright, "gaussian", sigma=2.0).max() == 255


def test_channels_get_their_own_automatic_parameters(fmd_pair):
    gt = fmd_pair[1][:160, :160].astype(np.float32)
    rng = np.random.default_rng(0)
    stack = np.stack([gt + rng.normal(0, s, gt.shape) for s in (2.0, 20.0)]).astype(np.float32)
    gen = denoise_iter(stack, "gaussian", axes="CYX")
    result = drain(gen)
    sig = [p["sigma"] for p in result.channel_params]
    assert sig[0] < sig[1]
    assert "channel_params" in result.provenance()


def test_progress_is_monotonic_and_reaches_the_total(real):
    stack = np.stack([real] * 3).astype(np.float32)
    ticks = []
    drain(denoise_iter(stack, "gaussian", axes="TYX", tile=32, params={"sigma": 1.0}), ticks.append)
    tiled = [t for t in ticks if t.total > 1]
    assert [t.done for t in tiled] == sorted(t.done for t in tiled)
    assert tiled[-1].done == tiled[-1].total


def test_memory_mapped_input_is_denoised(tmp_path, real):
    path = tmp_path / "stack.npy"
    np.save(path, np.stack([real] * 2))
    mm = np.load(path, mmap_mode="r")
    out = nd.denoise(mm, "box", axes="TYX", size=3)
    assert out.shape == mm.shape and not isinstance(out, np.memmap)


@pytest.mark.parametrize(
    ("image", "kwargs", "words"),
    [
        (np.zeros((0, 10)), {}, "empty"),
        (np.arange(10.0), {}, "1-D"),
        (np.array([[1.0, np.nan, 2.0]] * 3), {}, "NaN"),
        (np.zeros((64, 64, 3), np.uint8), {}, "RGB"),
        (np.array([["a", "b"]] * 3), {}, "numeric"),
        (np.zeros((2, 2)), {}, "at least 3x3"),
        (np.zeros((8, 8)), {"axes": "ZYX"}, "3 letters"),
        (np.zeros((4, 8, 8)), {"axes": "TTX"}, "repeats T"),
    ],
)
def test_bad_input_gets_a_clear_message(image, kwargs, words):
    with pytest.raises(InputError, match=words):
        nd.denoise(image, "gaussian", **kwargs)


def test_rgb_is_allowed_when_the_user_says_it_is_channels(fmd_pair):
    rgb = np.stack([fmd_pair[0][:64, :64]] * 3, axis=-1)
    assert nd.denoise(rgb, "gaussian", axes="YXC").shape == rgb.shape


def test_bad_tile_and_parameter_are_refused(real):
    with pytest.raises(ParameterError, match="at least 16"):
        nd.denoise(real, "gaussian", tile=4)
    with pytest.raises(ParameterError, match="no parameter"):
        nd.denoise(real, "gaussian", radius=3)


def test_denoise_iter_refuses_values_float32_cannot_hold():
    big = np.full((32, 32), 1e300) * np.random.default_rng(0).random((32, 32))
    with pytest.raises(InputError, match="float32"):
        drain(denoise_iter(big, "gaussian"))
    with pytest.raises(InputError, match="nested list"):
        drain(denoise_iter([[1.0, 2.0], [3.0]], "gaussian"))


def test_progress_says_where_it_is_as_data_and_in_the_methods_title():
    # Issue 14: 'nlm T=2: tile 5 of 12' spoke our internal names. The engine now says the
    # loop position as data (axis, index, size) and in words with the method's title.
    rng = np.random.default_rng(0)
    image = (rng.random((2, 3, 40, 40)) * 100).astype(np.float32)
    ticks = [t for t in denoise_iter(image, "gaussian", axes="CTYX", tile=24, params={"sigma": 1})]
    tiles = [t for t in ticks if t.position]
    assert tiles[-1].position == (("C", 1, 2), ("T", 2, 3))
    assert tiles[-1].message == "Gaussian (self-calibrated), channel 2 of 2, frame 3 of 3"
    assert all("=" not in t.message and "gaussian" not in t.message for t in ticks)
    choosing = [t for t in ticks if t.choosing]
    assert [t.position for t in choosing] == [(("C", 0, 2),), (("C", 1, 2),)]


def test_progress_of_a_single_plane_has_no_position():
    image = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    ticks = list(denoise_iter(image, "box", tile=24, params={"size": 3}))
    assert ticks[-1].position == () and ticks[-1].message == "Box (mean)"

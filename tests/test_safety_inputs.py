"""No silent wrong answer from what a file or an array holds (issue 13, 3): every TIFF
series, palette PNGs, one RGB policy, values float32 cannot hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_denoise as nd
from napari_denoise.cli import main
from napari_denoise.errors import InputError
from napari_denoise.io import read_image

GAUSS = ["--method", "gaussian", "--param", "sigma=1.0", "-q"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


def _noisy(shape, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    return rng.integers(100, 1000, shape).astype(dtype)


# --------------------------------------------------------------------------- TIFF series
@pytest.fixture
def multi(tmp_path):
    path = tmp_path / "multi.tif"
    first, second = _noisy((3, 40, 40)), _noisy((50, 60), seed=1)
    with tifffile.TiffWriter(path) as w:
        w.write(first, photometric="minisblack")
        w.write(second, photometric="minisblack")
    return path, first, second


def test_reading_a_multi_series_tiff_never_drops_a_series(multi):
    path, first, second = multi
    with pytest.raises(InputError, match="2 image series"):
        read_image(path)
    assert np.array_equal(read_image(path, series=0).data, first)
    assert np.array_equal(read_image(path, series=1).data, second)
    with pytest.raises(InputError, match="series 2"):
        read_image(path, series=2)


def test_cli_denoises_every_series_into_its_own_file(multi, tmp_path):
    path, first, second = multi
    out = tmp_path / "out"
    assert main(["denoise", str(path), "-o", str(out), *GAUSS]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "multi_series0_denoised.tif",
        "multi_series0_denoised.tif.json",
        "multi_series1_denoised.tif",
        "multi_series1_denoised.tif.json",
    ]
    assert tifffile.imread(out / "multi_series0_denoised.tif").shape == first.shape
    assert tifffile.imread(out / "multi_series1_denoised.tif").shape == second.shape
    prov = json.loads((out / "multi_series1_denoised.tif.json").read_text())
    assert prov["input"]["series"] == 1


def test_cli_single_output_name_gets_the_series(multi, tmp_path):
    path, first, second = multi
    assert main(["denoise", str(path), "-o", str(tmp_path / "clean.tif"), *GAUSS]) == 0
    assert tifffile.imread(tmp_path / "clean_series0.tif").shape == first.shape
    assert tifffile.imread(tmp_path / "clean_series1.tif").shape == second.shape
    assert not (tmp_path / "clean.tif").exists()


# --------------------------------------------------------------------------- palette PNG
def _palette_png(path, lut: np.ndarray, index: np.ndarray):
    im = Image.fromarray(index.astype(np.uint8), mode="P")
    im.putpalette(lut.astype(np.uint8).ravel().tolist())
    im.save(path)


@pytest.mark.parametrize("colour", [(1, 1, 1), (0, 1, 0), (1, 0, 1), (0.5, 0, 0)])
def test_a_palette_png_with_a_ramp_lut_reads_as_its_index(tmp_path, colour):
    index = np.random.default_rng(0).integers(0, 256, (40, 40)).astype(np.uint8)
    ramp = np.arange(256)[:, None] * np.array(colour)[None, :]
    _palette_png(tmp_path / "lut.png", np.round(ramp), index)
    image = read_image(tmp_path / "lut.png")
    assert image.axes == "YX" and image.data.dtype == np.uint8
    assert np.array_equal(image.data, index)


def test_a_palette_png_with_a_colour_lut_is_refused(tmp_path):
    index = np.random.default_rng(0).integers(0, 256, (40, 40)).astype(np.uint8)
    i = np.arange(256)
    fire = np.stack([np.minimum(3 * i, 255), np.clip(3 * i - 255, 0, 255), i[::-1]], axis=1)
    _palette_png(tmp_path / "fire.png", fire, index)
    with pytest.raises(InputError, match="palette"):
        read_image(tmp_path / "fire.png")


# --------------------------------------------------------------------------- RGB
@pytest.fixture
def rgb_png(tmp_path):
    data = _noisy((48, 48, 3), dtype=np.uint8)
    Image.fromarray(data).save(tmp_path / "rgb.png")
    return tmp_path / "rgb.png", data


def test_rgb_is_refused_alike_by_api_and_cli(rgb_png, tmp_path, capsys):
    path, data = rgb_png
    with pytest.raises(InputError, match="colour") as api:
        nd.denoise(data, "gaussian", sigma=1.0)
    assert main(["denoise", str(path), "-o", str(tmp_path / "out.tif"), *GAUSS]) == 2
    line = _err(capsys)
    assert "colour" in line and "--axes YXC" in line
    assert "axes='YXC'" in str(api.value)
    assert not (tmp_path / "out.tif").exists()


def test_rgb_with_explicit_axes_is_denoised_per_channel_alike(rgb_png, tmp_path):
    path, data = rgb_png
    api = nd.denoise(data, "gaussian", axes="YXC", sigma=1.0)
    out = tmp_path / "out.tif"
    assert main(["denoise", str(path), "-o", str(out), "--axes", "YXC", *GAUSS]) == 0
    assert np.array_equal(tifffile.imread(out), api)


def test_alpha_is_kept_never_denoised(tmp_path):
    data = _noisy((48, 48, 4), dtype=np.uint8)
    Image.fromarray(data, mode="RGBA").save(tmp_path / "rgba.png")
    out = tmp_path / "out.tif"
    assert (
        main(["denoise", str(tmp_path / "rgba.png"), "-o", str(out), "--axes", "YXC", *GAUSS]) == 0
    )
    result = tifffile.imread(out)
    assert np.array_equal(result[..., 3], data[..., 3])
    assert np.array_equal(
        result[..., :3], nd.denoise(data[..., :3], "gaussian", axes="YXC", sigma=1.0)
    )


def test_grey_with_alpha_denoises_the_grey_only(tmp_path):
    data = _noisy((48, 48, 2), dtype=np.uint8)
    Image.fromarray(data, mode="LA").save(tmp_path / "la.png")
    out = tmp_path / "out.tif"
    assert main(["denoise", str(tmp_path / "la.png"), "-o", str(out), *GAUSS]) == 0
    result = tifffile.imread(out)
    assert np.array_equal(result[..., 1], data[..., 1])
    assert np.array_equal(result[..., 0], nd.denoise(data[..., 0], "gaussian", sigma=1.0))


# --------------------------------------------------------------------------- value range
STRUCTURE = np.add.outer(np.arange(48.0), np.arange(48.0))


@pytest.mark.parametrize(
    "data",
    [
        STRUCTURE * 1e300,  # beyond float32's range
        STRUCTURE * 1e-300,  # below float32's smallest number
        (np.uint64(2**62) + STRUCTURE.astype(np.uint64)),  # float32 cannot tell them apart
    ],
    ids=["1e300", "1e-300", "2**62+small"],
)
def test_values_float32_cannot_hold_are_refused_with_the_reason(tmp_path, capsys, data):
    with pytest.raises(InputError, match="float32"):
        nd.denoise(data, "gaussian", sigma=1.0)
    np.save(tmp_path / "x.npy", data)
    assert main(["denoise", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.tif"), *GAUSS]) == 2
    line = _err(capsys)
    assert "float32" in line and "NaN" not in line
    assert not (tmp_path / "y.tif").exists()


def test_large_uint64_values_with_real_spread_are_denoised(tmp_path):
    data = (STRUCTURE * 2.0**56).astype(np.uint64)  # up to about 2**62.6
    out = nd.denoise(data, "gaussian", sigma=1.0)
    assert out.dtype == np.uint64
    err = np.abs(out.astype(np.float64) - data.astype(np.float64)).max() / data.max()
    assert err < 0.02  # a smooth ramp survives a Gaussian blur


def test_an_animated_png_is_not_read_as_its_first_frame(tmp_path):
    frames = [Image.fromarray(_noisy((32, 32), seed=s, dtype=np.uint8)) for s in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="3 frames"):
        read_image(tmp_path / "anim.png")

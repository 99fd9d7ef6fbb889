"""Issue 24: a stack's planes fused with their matching neighbours before the default network.

The fusion (engine/denoise/fusion.py) aligns each neighbour by phase correlation, weighs it
pixel by pixel by a test of the difference against the noise, and averages; the centre
plane always counts fully. It runs on whole planes before tiling, through the one driver.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_denoise.engine.denoise.fusion import (
    FUSION_REACH,
    fuse,
    fusion_noise,
    shift_between,
    window_neighbours,
)
from napari_denoise.engine.denoise.plan import reflect


def _scene(side=128, seed=0) -> np.ndarray:
    """A smooth positive scene with blobs (photons per pixel)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    scene = np.full((side, side), 10.0, np.float32)
    for _ in range(12):
        cy, cx, r = rng.uniform(10, side - 10), rng.uniform(10, side - 10), rng.uniform(3, 9)
        scene += 60.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return scene


def _noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).poisson(clean).astype(np.float32)


@pytest.mark.parametrize("shift", [(0, 0), (1, 0), (0, -3), (4, 2), (-7, 5)])
def test_the_shift_between_two_noisy_planes_is_found_to_the_pixel(shift):
    clean = _scene()
    moved = np.roll(clean, shift, axis=(0, 1))
    # moving the second plane by the answer puts it back onto the first
    assert shift_between(_noisy(clean, 1), _noisy(moved, 2)) == (-shift[0], -shift[1])


def test_a_flat_plane_has_no_shift():
    assert shift_between(np.ones((32, 32)), np.ones((32, 32))) == (0, 0)


def test_matching_neighbours_lower_the_noise_as_an_average_does():
    clean = _scene()
    window = np.stack([_noisy(clean, s) for s in range(7)])
    fused, count = fuse(window, [0, 1, 2, 4, 5, 6], noise=fusion_noise([window[3]]), weights=True)
    single = np.mean((window[3] - clean) ** 2)
    err = np.mean((fused - clean) ** 2)
    # 7 planes averaged would give 1/7 of the error; the weights keep nearly all of them
    assert err < single / 4, (err, single)
    assert float(np.median(count)) > 6.0


def test_a_neighbour_that_shows_something_else_is_not_averaged_in():
    clean = _scene()
    other = np.roll(_scene(seed=5), 17, axis=1)  # a cut to another field
    window = np.stack([_noisy(other, 1), _noisy(clean, 2), _noisy(other, 3)])
    fused, count = fuse(window, [0, 2], noise=fusion_noise([window[1]]), weights=True)
    differs = np.abs(other - clean) > 30  # where the fields clearly differ
    assert differs.sum() > 500
    # there, the centre plane alone (the neighbours' weight is ~0 on most such pixels)
    assert np.median(count[differs]) < 1.05
    np.testing.assert_allclose(np.median(np.abs(fused - window[1])[differs]), 0.0, atol=0.5)


def test_a_drifting_sample_is_aligned_before_it_is_averaged():
    big = _scene(side=160)
    frames = [big[16 + 2 * t : 16 + 2 * t + 128, 10:138] for t in range(-3, 4)]  # 2 px/frame
    window = np.stack([_noisy(f, s) for s, f in enumerate(frames)])
    clean = frames[3]
    fused = fuse(window, [0, 1, 2, 4, 5, 6], noise=fusion_noise([window[3]]))
    inner = (slice(12, -12), slice(12, -12))  # away from the reflected edges
    err = np.mean((fused - clean)[inner] ** 2)
    plain = np.mean((window.mean(axis=0) - clean)[inner] ** 2)
    single = np.mean((window[3] - clean)[inner] ** 2)
    assert err < single / 4 and err < plain / 2, (err, single, plain)


def _smoothed_noise(clean: np.ndarray, seed: int, width: float = 1.0) -> np.ndarray:
    """Poisson noise shared between neighbouring pixels (smoothed, its variance kept), as a
    binned or smoothed camera image has."""
    from scipy.ndimage import gaussian_filter

    n = _noisy(clean, seed) - clean
    m = gaussian_filter(n, width)
    return (clean + m * (np.std(n) / np.std(m))).astype(np.float32)


def test_noise_shared_between_pixels_still_lets_matching_neighbours_in():
    """A box mean of correlated noise varies far more than one of independent noise: tested
    as if the noise were independent, every neighbour of a still sample looked different
    and none was kept (as on FMD's widefield captures). The fusion measures the noise's
    covariance on the plane and tests against it; a cut to another field is still left out."""
    from napari_denoise.engine.denoise.fusion import combine

    clean = _scene(side=160) * 10  # 100 to 700 photons (fewer and the fit loses the shot noise)
    window = np.stack([_smoothed_noise(clean, s) for s in range(7)])
    fused = combine(window, [0, 1, 2, 4, 5, 6])
    single = np.mean((window[3] - clean) ** 2)
    assert np.mean((fused - clean) ** 2) < single / 2, (np.mean((fused - clean) ** 2), single)
    other = np.roll(_scene(side=160, seed=5), 17, axis=1) * 10
    cut = np.stack([_smoothed_noise(other, 1), window[3], _smoothed_noise(other, 3)])
    fused = combine(cut, [0, 2])
    differs = np.abs(other - clean) > 300
    assert differs.sum() > 500
    assert np.median(np.abs(fused - window[3])[differs]) < 5.0  # the noise: about 20


@pytest.mark.parametrize("seed", [1, 2])
def test_shared_noise_is_tested_at_the_level_the_differences_show(seed):
    """The level of shared noise was the one measured in the plane's flattest tiles: on a
    dark background of few photons the stabilised noise is weaker there than on bright
    cells, and the tests on the cells were too strict (a still stack kept little; W2S
    validation stacks: drift 2 px worst +1.43 dB). The differences' fine energy, scaled by
    the share of the noise the finest detail holds under the measured correlation, reads
    the level where each test is made."""
    from napari_denoise.engine.denoise.fusion import combine

    clean = (_scene(side=192, seed=seed) - 8.0) * 4  # ~8 photons of background, cells to ~250
    window = np.stack([_smoothed_noise(clean, s + 10 * seed) for s in range(4)])
    at = [reflect(j, 4) for j in range(-2, 5)]  # the second plane's window
    fused = combine(window[at], window_neighbours(at))
    bright = clean > 60
    err = np.mean((fused - clean)[bright] ** 2)
    mean_err = np.mean((window.mean(axis=0) - clean)[bright] ** 2)
    assert err < 2.0 * mean_err, (err, mean_err)  # a single frame: about 4x


def test_noise_shared_a_little_between_pixels_is_found_on_the_differences():
    """Noise smoothed by a Gaussian of 0.5 px reads below the plane's test for correlated
    noise (ratio about 1.8 < 2; real independent captures read up to 1.4 there), and
    tested as independent every neighbour of a still stack was left out (the plane alone,
    +0.00 dB on validation stacks). The differences of the planes, free of the signal,
    show it: the fusion then tests against the covariance."""
    from napari_denoise.engine.denoise.calibrate import noise_is_correlated
    from napari_denoise.engine.denoise.fusion import combine

    clean = _scene(side=160) * 10
    window = np.stack([_smoothed_noise(clean, s, width=0.5) for s in range(4)])
    assert not noise_is_correlated(window[0])
    at = [reflect(j, 4) for j in range(-2, 5)]  # the second plane's window
    fused = combine(window[at], window_neighbours(at))
    mean_err = np.mean((window.mean(axis=0) - clean) ** 2)
    single = np.mean((window[1] - clean) ** 2)
    assert np.mean((fused - clean) ** 2) < 0.5 * single, (np.mean((fused - clean) ** 2), single)
    assert np.mean((fused - clean) ** 2) < 1.6 * mean_err


def test_cells_that_all_move_are_not_taken_for_shared_noise():
    """Where every cell moves, the planes' differences hold far more energy per pixel than
    at the finest scale, as shared noise does; read on the differences alone, independent
    noise was taken for shared and tested against a covariance measured elsewhere, which
    let the moved nuclei in (-2.1 dB on the cancer-cell time-lapse check). The plane's own
    reading must agree."""
    rng = np.random.default_rng(2)
    side = 160
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    cells = rng.uniform(12, side - 12, (40, 2))
    steps = rng.normal(0, 3.0, (40, 2))

    def frame(t):
        img = np.full((side, side), 20.0, np.float32)
        for (cy, cx), (sy, sx) in zip(cells, steps, strict=True):
            img += 300.0 * np.exp(-((yy - cy - t * sy) ** 2 + (xx - cx - t * sx) ** 2) / 18.0)
        return img

    clean = np.stack([frame(t) for t in range(7)])
    window = np.stack([_noisy(c, s) for s, c in enumerate(clean)])
    from napari_denoise.engine.denoise.fusion import combine

    fused = combine(window, [0, 1, 2, 4, 5, 6])
    err, single = np.mean((fused - clean[3]) ** 2), np.mean((window[3] - clean[3]) ** 2)
    assert err < single, (err, single)


def test_a_stack_of_planes_too_small_to_test_is_denoised_frame_by_frame():
    """Planes too small for any noise estimate (a 6 x 9 crop) have nothing the fusion
    can test a neighbour against: the default refused the stack ("image is too small to
    estimate noise") although frame by frame denoises it. Each plane now stands alone."""
    import napari_denoise as nd

    stack = np.random.default_rng(0).poisson(50, (5, 6, 9)).astype(np.uint16)
    alone = nd.denoise(stack, "unet-fluo", axes="TYX", neighbours="off")
    default = nd.denoise(stack, "unet-fluo", axes="TYX")
    np.testing.assert_array_equal(default, alone)


def test_a_reflected_end_does_not_count_a_plane_twice():
    n = 4  # frame 0 of a 4-frame stack: window 3 2 1 0 1 2 3
    positions = [(reflect(j, n),) for j in range(-FUSION_REACH, FUSION_REACH + 1)]
    slots = window_neighbours(positions)
    assert sorted(positions[j] for j in slots) == [(1,), (2,), (3,)]
    assert window_neighbours([(0,)] * 7) == []  # a stack of one plane: no neighbour


# --- the default model on a stack: one driver, every path -----------------------------------

torch = pytest.importorskip("torch")


def _run(image, method, axes=None, tile=None, output_dtype=None, **params):
    from napari_denoise.engine.denoise.pipeline import denoise_iter, drain

    return drain(
        denoise_iter(image, method, axes=axes, tile=tile, output_dtype=output_dtype, params=params)
    )


def _stack(n=5, side=96, seed=0) -> np.ndarray:
    clean = _scene(side=side, seed=seed)
    return np.stack([_noisy(clean, seed + t) for t in range(n)]).astype(np.uint16)


def test_the_default_denoises_a_stack_with_its_neighbours_and_says_so():
    import napari_denoise as nd
    from napari_denoise.engine.denoise.pipeline import denoise_iter
    from napari_denoise.engine.methods import default_method

    stack = _stack(n=5)
    method = default_method().name
    gen = denoise_iter(stack, method, axes="TYX")
    ticks = []
    try:
        while True:
            ticks.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert result.neighbours == 4  # a 5-frame stack: the 4 others
    assert result.provenance()["neighbour_planes"] == 4
    assert any("with 4 neighbouring frames" in t.message for t in ticks if not t.choosing)
    alone = _run(stack, method, axes="TYX", neighbours="off")
    assert alone.neighbours == 0
    # off: exactly each plane denoised on its own (the same settings)
    params = {k: v for k, v in alone.params.items() if k not in ("neighbours", "device")}
    for t in (0, 2):
        plane = nd.denoise(stack[t], method, axes="YX", **params)
        np.testing.assert_array_equal(np.asarray(plane), np.asarray(alone.data)[t])
    assert not np.array_equal(np.asarray(result.data), np.asarray(alone.data))
    # a lone plane has no neighbours, whatever the setting
    assert _run(stack[0], method).neighbours == 0


def test_a_stack_with_neighbours_is_the_same_tiled_chunked_or_from_a_file(tmp_path):
    import tifffile

    import napari_denoise as nd
    from napari_denoise.engine.denoise.lazy import denoise_dask
    from napari_denoise.engine.methods import default_method
    from napari_denoise.files import denoise_file

    stack = _stack(n=6, side=112)
    method = default_method().name
    whole = _run(stack, method, axes="TYX", output_dtype="float32")
    params = {k: v for k, v in whole.params.items() if k != "device"}
    whole = np.asarray(whole.data)
    for tile in (48, 80):
        tiled = nd.denoise(stack, method, axes="TYX", output_dtype="float32", tile=tile, **params)
        assert np.abs(np.asarray(tiled) - whole).max() < 0.01, tile
    import dask.array as da

    chunked = da.from_array(stack, chunks=(2, 56, 56))
    lazy = denoise_dask(chunked, method, axes="TYX", output_dtype="float32", params=params)
    assert np.abs(np.asarray(lazy.data.compute()) - whole).max() < 0.01
    tifffile.imwrite(tmp_path / "in.tif", stack)
    denoise_file(
        tmp_path / "in.tif",
        tmp_path / "out.tif",
        method,
        axes="TYX",
        tile=64,
        output_dtype="float32",
        params=params,
    )
    assert np.abs(tifffile.imread(tmp_path / "out.tif") - whole).max() < 0.01


def test_the_command_line_says_a_stack_was_denoised_with_its_neighbours(tmp_path, capsys):
    import tifffile

    from napari_denoise.cli import main

    stack = _stack(n=4, side=64)
    tifffile.imwrite(tmp_path / "movie.tif", stack, metadata={"axes": "TYX"})
    assert main(["denoise", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "a.tif"), "-q"]) == 0
    said = capsys.readouterr().err
    assert "each frame denoised with its 3 neighbouring frames" in said, said
    off = ["--param", "neighbours=off"]
    assert (
        main(["denoise", str(tmp_path / "movie.tif"), "-o", str(tmp_path / "b.tif"), "-q", *off])
        == 0
    )
    assert "neighbouring" not in capsys.readouterr().err


def test_a_dark_stack_of_few_photons_is_fused_without_a_noise_model_fit():
    """A noise model cannot be fitted on a plane of mostly zeros (few unclipped pixels):
    the fusion then tests against a Gaussian noise level instead of failing the run."""
    from napari_denoise.engine.denoise.fusion import combine
    from napari_denoise.engine.denoise.noise import estimate_noise_model
    from napari_denoise.errors import InputError

    rng = np.random.default_rng(0)
    beads = np.zeros((96, 96), np.float32)
    beads[rng.integers(4, 92, 12), rng.integers(4, 92, 12)] = 40.0
    window = rng.poisson(np.broadcast_to(beads + 0.05, (5, 96, 96))).astype(np.float32)
    with pytest.raises(InputError):
        estimate_noise_model(window[2])
    fused = combine(window, [0, 1, 3, 4])
    assert fused.shape == (96, 96) and np.isfinite(fused).all()


def test_the_settings_are_chosen_on_the_planes_the_network_sees():
    """With neighbours, the network denoises fused planes (less noise than one frame):
    the automatic settings (the detail put back) are chosen on such planes, not on single
    frames, whose noise asks for less detail."""
    from napari_denoise.engine.denoise.fusion import combine
    from napari_denoise.engine.denoise.plan import choose_params
    from napari_denoise.engine.methods import default_method, get_method

    stack = _stack(n=3, side=128, seed=3)
    m = get_method(default_method().name)
    result = _run(stack, m.name, axes="TYX")
    positions = [
        [reflect(j, 3) for j in range(t - FUSION_REACH, t + FUSION_REACH + 1)] for t in range(3)
    ]
    fused = [
        combine(stack[p].astype(np.float32), window_neighbours([(i,) for i in p]))
        for p in positions
    ]
    base = m.resolve_params({"neighbours": "on"})
    want, _ = choose_params(m, base, [np.asarray(f, np.float32) for f in fused])
    single, _ = choose_params(m, base, [s.astype(np.float32) for s in stack])
    assert want["detail"] != single["detail"]  # the choice depends on which planes it sees
    assert result.params["detail"] == pytest.approx(want["detail"])
    assert result.params["detail_width"] == pytest.approx(want["detail_width"])


def _model_times(noise, factor: float):
    """A noise model ``(gain, sigma, offset)`` whose variance is ``factor`` times the given."""
    gain, sigma, offset = noise
    return (gain * factor, sigma * np.sqrt(factor), offset)


@pytest.mark.parametrize("factor", [0.6, 0.8])
def test_a_noise_model_that_understates_the_noise_still_lets_a_still_stack_in(factor):
    # A plane's fitted model is not exact (W2S images under synthetic Poisson noise: 10-40%
    # low on some, 4x where the fit fell back to Gaussian noise), and the tests' thresholds
    # are a few percent of the noise variance: before, every neighbour of a still stack was
    # dropped where the model read low. The noise is now read on the differences.
    clean = _scene(seed=3)
    window = np.stack([_noisy(clean, s) for s in range(4)])
    noise = _model_times(fusion_noise([window[0]]), factor)
    slots = window_neighbours([reflect(j, 4) for j in range(-3, 4)])
    at = [reflect(j, 4) for j in range(-3, 4)]
    fused, count = fuse(window[at], slots, noise=noise, weights=True)
    assert float(np.mean(count)) > 3.8, float(np.mean(count))
    mean_err = np.mean((window.mean(axis=0) - clean) ** 2)
    assert np.mean((fused - clean) ** 2) < 1.1 * mean_err


def test_neighbours_whose_mean_differs_by_a_change_of_focus_are_dropped_there():
    # The last plane of a z-stack sees neighbours on one side only, all in better focus:
    # each differs by a little (about its Laplacian times a constant), too little for the
    # pixel tests, yet averaged together they sharpen it (end planes of validation
    # z-stacks lost 1-2 dB against frame by frame after the network). The kept
    # neighbours' mean difference is projected on the Laplacian of the fused plane.
    from scipy.ndimage import gaussian_filter, gaussian_laplace

    from napari_denoise.engine.denoise.fusion import _defocus_keep

    rng = np.random.default_rng(4)
    unit = gaussian_filter(rng.normal(0, 1, (192, 192)), 3.0).astype(np.float32)
    unit *= np.float32(20.0 / unit.std())  # a scene on the unit-noise scale
    sd = np.ones_like(unit)
    ones = [np.ones_like(unit)] * 3
    noise = [rng.normal(0, np.sqrt(2), unit.shape).astype(np.float32) for _ in range(3)]
    still = _defocus_keep(unit, noise, ones, sd)
    assert float(np.mean(still)) > 0.98, float(np.mean(still))
    # sharper neighbours: the centre minus a little of its Laplacian, a fraction of the noise
    focus = -0.25 * gaussian_laplace(unit, 2.0)
    assert 0.02 < np.mean(focus**2) < 0.5  # per pixel, far below the noise variance (2)
    sharper = [n + focus.astype(np.float32) for n in noise]
    keep = _defocus_keep(unit, sharper, ones, sd)
    assert float(np.mean(keep)) < 0.3, float(np.mean(keep))
    # on both sides of a plane in focus the changes cancel: kept
    both = [noise[0] + focus, noise[1] - focus, noise[2]]
    assert float(np.mean(_defocus_keep(unit, both, ones, sd))) > 0.9


def test_the_noise_read_on_a_difference_is_its_variance_and_ignores_smooth_change():
    from napari_denoise.engine.denoise.fusion import _block_energies, _full

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.5, (200, 201)).astype(np.float32)  # an odd side
    yy, xx = np.mgrid[:200, :201]
    smooth = (40 * np.sin(xx / 15.0) * np.cos(yy / 21.0)).astype(np.float32)
    energy = _full(_block_energies(noise + smooth)[0], noise.shape)
    assert energy.shape == noise.shape
    np.testing.assert_allclose(np.median(energy), 1.5**2, rtol=0.08)

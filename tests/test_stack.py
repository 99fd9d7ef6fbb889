"""Stacks denoised with their neighbours: the multi-frame network, its windows and the engine.

A test multi-frame model (the shipped single-frame unet-fluo made multi-frame, with random
neighbour weights so that the neighbours change the result) is saved in a user folder;
the shipped unet-fluo-stack, when present, is checked the same way at the end.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import napari_denoise as nd  # noqa: E402
from napari_denoise.engine.denoise import stack as stk  # noqa: E402
from napari_denoise.engine.denoise import stack_stream as stream  # noqa: E402
from napari_denoise.engine.denoise.pipeline import denoise_iter, drain  # noqa: E402
from napari_denoise.engine.models import registry, store  # noqa: E402
from napari_denoise.engine.models.unet_stack import UNetStack  # noqa: E402
from napari_denoise.engine.training.stack_data import (  # noqa: E402
    MotionRecipe,
    RealSeriesWindows,
    SyntheticWindows,
    end_slots,
    fourier_shift,
)
from napari_denoise.errors import InputError  # noqa: E402

SEAM = 0.01  # grey levels: tiled = whole


def _single():
    model, _ = store.load_model("unet-fluo")
    return model.float().to(memory_format=torch.contiguous_format)


@pytest.fixture
def stack_model(user_dir):
    torch.manual_seed(0)
    net = UNetStack.from_single(_single(), 5)
    with torch.no_grad():  # neighbours that matter, so windows and ends are tested
        w = net.down[0][0].weight
        w[:, [0, 1, 3, 4]] = 0.05 * torch.randn_like(w[:, [0, 1, 3, 4]])
    card = {"name": "tiny-stack", "window": {"frames": 5}, "halo": int(net.reach)}
    store.save_model(net, card, user_dir / "tiny-stack")
    registry.register_models()
    return "tiny-stack"


@pytest.fixture(scope="module")
def series(shared_data):
    """A real 8-frame time-lapse crop (uint16 nuclei)."""
    import tifffile

    path = shared_data / "BioImageAnalysisNotebooks_stacks" / "cancer_cell_migration_crop.tif"
    return tifffile.imread(path)[:8, :96, :96]


# --- the network ----------------------------------------------------------------------------


def test_multi_frame_network_starts_as_the_single_frame_one_exactly():
    single = _single()
    net = UNetStack.from_single(single, 5).eval()
    x = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), single(x[:, 2:3]))
    assert net.reach == single.reach and net.multiple == single.multiple


def test_wrong_window_is_a_clear_error():
    net = UNetStack.from_single(_single(), 5)
    with pytest.raises(ValueError, match="windows of 5 frames"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="odd"):
        UNetStack(UNetStack.config_class(frames=4))


# --- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "n", "expected"),
    [
        (0, 10, [2, 1, 0, 1, 2]),
        (1, 10, [1, 0, 1, 2, 3]),
        (9, 10, [7, 8, 9, 8, 7]),
        (1, 3, [1, 0, 1, 2, 1]),
    ],
)
def test_windows_reflect_at_the_ends(t, n, expected):
    assert stk.window_indices(t, n, 5) == expected
    # training builds the same windows (slots relative to a full window)
    assert [t - 2 + s for s in end_slots(5, t, n)] == expected


def test_fourier_shift_moves_by_whole_pixels_exactly_and_keeps_white_noise():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 96, 96, generator=rng)
    moved = fourier_shift(x, torch.tensor([[[3.0, -2.0]]]))
    assert torch.allclose(moved[..., 20:70, 20:70], x[..., 17:67, 22:72], atol=1e-4)
    half = fourier_shift(x, torch.tensor([[[0.5, 0.5]]]))
    assert abs(float(half[..., 16:-16, 16:-16].std()) - 1.0) < 0.05  # unitary: variance kept


def test_training_windows_shapes_and_centre_truth(shared_data):
    from napari_denoise.engine.training.datasets import load_image

    root = shared_data / "FMD_Confocal_BPAE_B_train"
    caps = [load_image(root / "raw" / "2" / f"HV110_P05005100{i:02d}.png") for i in range(10)]
    gt = load_image(root / "gt" / "2" / "avg50.png")
    g = torch.Generator().manual_seed(0)
    still = MotionRecipe(drift=0, jitter=0, region=0, cut=0, zlike=0, flicker=0, ends=0, short=0)
    noisy, clean = RealSeriesWindows([(caps, gt)], still).batch(4, 64, g)
    assert noisy.shape == (4, 5, 64, 64) and clean.shape == (4, 1, 64, 64)
    # the truth belongs to the centre frame: closer to it than to the neighbours' mean error
    err_c = (noisy[:, 2:3] - clean).abs().mean()
    assert err_c < 0.2 and torch.isfinite(noisy).all()
    n2, c2 = SyntheticWindows([gt], motion=MotionRecipe()).batch(4, 64, g)
    assert n2.shape == (4, 5, 64, 64) and c2.shape == (4, 1, 64, 64)


# --- the engine -----------------------------------------------------------------------------


def test_api_denoises_a_stack_with_its_neighbours_and_records_it(stack_model, series):
    result = drain(denoise_iter(series, stack_model, axes="TYX", params={"neighbours": "on"}))
    assert result.data.shape == series.shape and result.data.dtype == series.dtype
    assert result.params["neighbours"] == "on"
    frames = nd.denoise(series, "unet-fluo", axes="TYX", detail=0.0)
    assert np.abs(result.data.astype(float) - frames).max() > 1  # the neighbours were used


def test_frame_by_frame_choice_is_the_single_frame_default_exactly(stack_model, series):
    off = nd.denoise(series, stack_model, axes="TYX", neighbours="off")
    # the single-frame default frame by frame (it fuses a stack's neighbours by default)
    assert np.array_equal(off, nd.denoise(series, "unet-fluo", axes="TYX", neighbours="off"))


def test_a_lone_image_and_a_short_stack_fall_back_to_frame_by_frame(stack_model, series):
    lone = drain(denoise_iter(series[0], stack_model))
    assert lone.params["neighbours"] == "off"
    assert np.array_equal(lone.data, nd.denoise(series[0], "unet-fluo"))
    short = stream.denoise_stack(series[:2], model=stack_model, axes="TYX")
    assert short.neighbours == 0 and "only 2 planes" in short.status
    assert short.provenance["fallback"]["model"] == "unet-fluo"
    one = stream.denoise_stack(series[0], model=stack_model)
    assert "single image" in one.status


def test_streaming_equals_the_driver_and_holds_a_window_of_planes(stack_model, series):
    class Reader:  # a lazy stack: counts the planes read and how many are alive
        shape, dtype = series.shape, series.dtype

        def __init__(self):
            self.reads = 0

        def __len__(self):
            return series.shape[0]

        def __getitem__(self, i):
            self.reads += 1
            return series[i].copy()

    reader = Reader()
    streamed = stream.denoise_stack(reader, model=stack_model, axes="TYX", neighbours="on")
    driver = nd.denoise(series, stack_model, axes="TYX", neighbours="on", output_dtype="float32")
    assert np.abs(streamed.data - driver).max() <= SEAM
    assert "4 neighbouring frames" in streamed.status and streamed.provenance["neighbours"] == 4
    # each plane read once while streaming (a window held), plus the sample planes
    assert reader.reads <= series.shape[0] + 4 + 1


def test_tiled_equals_whole_across_tiles_and_stack_blocks(stack_model, shared_data):
    import tifffile

    path = shared_data / "BioImageAnalysisNotebooks_stacks" / "cancer_cell_migration_crop.tif"
    big = np.tile(tifffile.imread(path)[:5].astype(np.float32), (1, 4, 4))  # 520 x 520
    kw = {"axes": "TYX", "neighbours": "on", "detail": 0.0}
    whole = nd.denoise(big, stack_model, tile=4096, **kw)
    tiled = nd.denoise(big, stack_model, tile=128, **kw)
    assert np.abs(whole - tiled).max() <= SEAM
    streamed = stream.denoise_stack(big, model=stack_model, tile=128, **kw)
    assert np.abs(streamed.data - whole).max() <= SEAM


def test_bad_stacks_are_clear_errors(stack_model):
    with pytest.raises(InputError, match="TYX or ZYX"):
        stream.denoise_stack(np.zeros((2, 3, 16, 16), np.float32), model=stack_model)
    with pytest.raises(Exception, match="neighbours must be"):
        stream.denoise_stack(np.zeros((3, 16, 16), np.float32), model=stack_model, neighbours="x")


def test_the_check_without_ground_truth_prefers_frames_when_neighbours_are_another_field(
    stack_model, shared_data
):
    """Neighbours from unrelated images cannot help: SURE must not prefer them over frame by
    frame with a network that mixes them in (the test model's random neighbour weights)."""
    from napari_denoise.engine.training.datasets import load_image

    root = shared_data / "FMD_Confocal_BPAE_B_train" / "raw"
    planes = [
        load_image(root / str(f) / "HV110_P0500510000.png")[:128, :128] for f in (2, 3, 4, 6, 7)
    ]
    stack = np.stack(planes)
    card = store.read_card(user_path := (store.user_model_dir() / f"{stack_model}.json"))
    use, risks = stk.neighbours_help(stack, card_path=str(user_path), low=0.0, high=255.0)
    assert card["window"]["frames"] == 5 and {"stack", "frames", "noise"} <= set(risks)
    assert not use, risks


@pytest.mark.skipif(
    not (store.SHIPPED_DIR / "unet-fluo-stack.json").exists(), reason="not shipped yet"
)
def test_shipped_stack_model_uses_neighbours_on_a_real_confocal_series(shared_data):
    from napari_denoise.engine.metrics import psnr
    from napari_denoise.engine.training.datasets import load_image

    root = shared_data / "FMD_Confocal_BPAE_B_train"  # validation field 5: never trained on
    caps = np.stack(
        [
            load_image(root / "raw" / "5" / f"HV110_P05005100{i:02d}.png")[:192, :192]
            for i in range(5)
        ]
    ).astype(np.uint8)
    gt = load_image(root / "gt" / "5" / "avg50.png")[:192, :192]
    result = stream.denoise_stack(caps, model="unet-fluo-stack", axes="TYX")
    frames = nd.denoise(caps, "unet-fluo", axes="TYX", output_dtype="float32", neighbours="off")
    fused = nd.denoise(caps, "unet-fluo", axes="TYX", output_dtype="float32")
    multi = np.mean([psnr(gt, p, data_range=255) for p in result.data])
    single = np.mean([psnr(gt, p, data_range=255) for p in frames])
    default = np.mean([psnr(gt, p, data_range=255) for p in fused])
    assert multi >= single - 0.1, (multi, single)
    # the default's own use of the neighbours (issue 24) gains on this real series
    assert default >= single + 0.5, (default, single)


def test_bioimageio_export_refuses_a_multi_frame_model_in_one_sentence(stack_model, tmp_path):
    from napari_denoise.bioimageio.common import BioimageioError

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BioimageioError, match="window of 5 neighbouring frames"):
        nd.export_model(stack_model, out / "x.zip")
    assert list(out.iterdir()) == []


def test_precision_of_a_multi_frame_network_is_measured_on_a_window(stack_model):
    from itertools import count

    net = UNetStack.from_single(_single(), 5).eval()
    ticks = count()
    record = stk.probe_window_precision(net, repeats=1, timer=lambda: float(next(ticks)))
    assert {"fp32_ms_per_mp", "bf16_ms_per_mp", "mean_change", "max_change"} <= set(record)
    assert record["precision"] in ("fp32", "bf16") and record["max_change"] < 0.05

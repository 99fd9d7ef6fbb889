"""The networks: registry, shapes on odd sizes, documented sizes, and that they learn."""

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_denoise.engine import models  # noqa: E402
from napari_denoise.engine.models import build, count_parameters, list_architectures  # noqa: E402
from napari_denoise.engine.models.inference import run_model  # noqa: E402
from napari_denoise.engine.training.datasets import PairedDataset, load_image  # noqa: E402

ARCHITECTURES = ["dncnn", "drunet", "msred", "restormer_lite", "ridnet", "unet"]
# Small configs keep the learning test fast; the documented sizes are the defaults.
SMALL = {
    "dncnn": {"depth": 5, "features": 16},
    "drunet": {"channels": (8, 16, 32), "blocks": 1},
    "msred": {"channels": (8, 16, 32), "blocks": 1},
    "restormer_lite": {"dim": 8, "blocks": (1, 1), "heads": (1, 2)},
    "ridnet": {"features": 16, "modules": 2, "reduction": 4},
    "unet": {"base": 16, "depth": 2},
}


def _forward(model, x):
    if model.takes_noise_level:
        return model(x, torch.full((x.shape[0],), 0.1))
    return model(x)


def test_registry_lists_every_architecture_and_rebuilds_from_a_dict():
    # psf-wrap wraps another network (blind spot with a PSF): not built on its own here;
    # careamics_unet is for imported CAREamics packages (tests/test_bioimageio.py).
    # unet-stack is the multi-frame U-Net (engine/denoise/stack.py), tested in test_stack.py.
    assert list_architectures() == sorted(
        [*ARCHITECTURES, "psf-wrap", "careamics_unet", "unet-stack"]
    )
    model = build("unet", {"base": 8, "depth": 1})
    assert model.config.base == 8 and model.architecture == "unet"
    with pytest.raises(KeyError, match="Unknown architecture 'vit'"):
        build("vit")
    with pytest.raises(TypeError, match="no config field"):
        build("unet", {"width": 3})


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_keeps_the_shape_on_odd_sizes(name):
    torch.manual_seed(0)
    model = build(name, SMALL[name]).eval()
    m = model.multiple
    x = torch.rand(2, 1, 3 * m, 5 * m)
    assert _forward(model, x).shape == x.shape
    # Odd sizes go through the zoo's padding to a multiple of the downsampling factor.
    image = np.random.default_rng(0).random((37, 29)).astype(np.float32) * 200
    out = run_model(model, image, low=0.0, high=200.0, noise_level=0.1)
    assert out.shape == image.shape and out.dtype == np.float32
    tiny = run_model(model, image[:3, :5], low=0.0, high=200.0, noise_level=0.1)
    assert tiny.shape == (3, 5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_an_untrained_network_is_the_identity(name):
    model = build(name, SMALL[name]).eval()
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(_forward(model, x), x)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_default_parameter_count_is_the_documented_one(name):
    module = importlib.import_module(f"napari_denoise.engine.models.{name}")
    count = count_parameters(build(name))
    assert f"{count:,} parameters" in module.__doc__


def test_macs_per_pixel_of_a_plain_convolution_stack():
    model = build("dncnn", {"depth": 3, "features": 4, "batch_norm": False})
    # 1->4, 4->4, 4->1 3x3 convolutions at full resolution.
    assert models.macs_per_pixel(model, size=32) == 9 * (4 + 16 + 4)


@pytest.fixture(scope="module")
def real_pair(shared_data):
    root = shared_data / "W2S_8bit_subset"
    noisy = load_image(root / "images_avg1_8bit" / "input_avg1_001_0.tif")
    clean = load_image(root / "images_avg400_8bit" / "target_avg400_001_0.tif")
    return noisy[160:288, 160:288], clean[160:288, 160:288]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_few_training_steps_lower_the_loss_on_a_real_crop(name, real_pair):
    from napari_denoise.engine.training.loop import train_iter

    torch.manual_seed(0)
    model = build(name, SMALL[name])
    data = PairedDataset([real_pair])
    probe = data.batch(8, 32, torch.Generator().manual_seed(123))

    def loss_of(m):
        m.eval()
        with torch.no_grad():
            if m.takes_noise_level:
                out = m(probe[0], (probe[0] - probe[1]).flatten(1).std(dim=1))
            else:
                out = m(probe[0])
        return float(torch.nn.functional.l1_loss(out, probe[1]))

    before = loss_of(model)
    gen = train_iter(model, data, steps=25, batch_size=8, patch=32, lr=2e-3, seed=0, threads=1)
    losses = [p.loss for p in gen]
    assert len(losses) == 25
    assert loss_of(model) < 0.95 * before


def test_noise_map_unet_takes_poisson_gaussian_coefficients():
    torch.manual_seed(0)
    model = build("unet", {"base": 8, "depth": 2, "noise_map": True}).eval()
    assert model.takes_noise_level and model.noise_input == "poisson-gaussian"
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.1)
        low = model(x, torch.tensor([[1e-4, 1e-4]] * 2))
        high = model(x, torch.tensor([[0.05, 1e-3]] * 2))
    assert low.shape == x.shape and not torch.allclose(low, high)
    with pytest.raises(ValueError, match="noise coefficients"):
        model(x)
    # The per-pixel map is sqrt(a * local mean + b).
    flat = torch.full((1, 1, 8, 8), 0.5)
    std = models.unet.noise_std_map(flat, torch.tensor([[0.02, 0.01]]))
    assert torch.allclose(std, torch.full_like(flat, (0.02 * 0.5 + 0.01) ** 0.5))


def test_n2v2_unet_options_change_the_network_and_keep_the_shape():
    torch.manual_seed(0)
    plain = build("unet", {"base": 8, "depth": 2})
    n2v2 = build(
        "unet", {"base": 8, "depth": 2, "residual": False, "skip_top": False, "blurpool": True}
    )
    x = torch.rand(1, 1, 24, 40)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), x)  # residual and zero head: the identity
        y = n2v2.eval()(x)
    assert y.shape == x.shape and not torch.allclose(y, x)  # predicts the image itself
    assert isinstance(n2v2.pool, models.unet.BlurPool)
    # Without the top skip the first decoder block only sees the upsampled features.
    assert n2v2.merge[-1][0].in_channels == 8 and plain.merge[-1][0].in_channels == 16


def _random_unet():
    torch.manual_seed(1)
    model = build("unet", SMALL["unet"]).eval()
    with torch.no_grad():  # an untrained U-Net is the identity: give it random weights
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    return model


def test_the_self_ensemble_averages_the_turned_back_outputs_of_flipped_inputs():
    model = _random_unet()
    image = np.random.default_rng(2).random((24, 32)).astype(np.float32) * 100
    run = lambda img, k=1: run_model(model, np.ascontiguousarray(img), low=0, high=100, ensemble=k)  # noqa: E731
    flips = [image, image[:, ::-1], image[::-1], image[::-1, ::-1]]
    back = [run(flips[0]), run(flips[1])[:, ::-1], run(flips[2])[::-1], run(flips[3])[::-1, ::-1]]
    np.testing.assert_allclose(run(image, 2), (back[0] + back[1]) / 2, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(run(image, 4), np.mean(back, axis=0), rtol=1e-4, atol=1e-2)
    # All eight symmetries: the result turns with the image; a single pass does not.
    plain_t, ens_t = run(image.T).T, run(image.T, 8).T
    assert np.abs(plain_t - run(image)).max() > 0.3
    np.testing.assert_allclose(ens_t, run(image, 8), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(run(image[::-1], 8)[::-1], run(image, 8), rtol=1e-4, atol=1e-2)
    with pytest.raises(ValueError, match="ensemble must be one of"):
        run(image, 3)

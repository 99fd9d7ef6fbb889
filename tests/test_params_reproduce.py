"""The parameters a run reports (and its provenance records) reproduce the run: given back,
they give the same output, whatever the image's intensity units."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import napari_denoise as nd
from napari_denoise.engine.denoise.pipeline import drain


@pytest.fixture(scope="module")
def myxo(shared_data):
    path = shared_data / "Myxococcus_bacteria_16bit_pair" / "Noisy_images_avg1_16bit.png"
    return np.array(Image.open(path))[128:384, 128:384]


@pytest.mark.parametrize("unit", [1.0, 1e-9])  # grey levels; a float image in tiny units
def test_the_reported_parameters_reproduce_the_default_run(myxo, unit):
    image = myxo.astype(np.float32) * np.float32(unit)
    result = drain(nd.denoise_iter(image))
    params = {k: v for k, v in result.params.items() if k != "device"}
    assert params["norm_high"] > params["norm_low"] > 0  # as used, not rounded to nothing
    again = nd.denoise(image, **params)
    span = float(image.max() - image.min())
    assert np.abs(again - result.data).max() <= 1e-5 * span

"""The normalisation a training run records (model card, ``data_details``) is the one it
used, whatever the image's intensity units."""

from __future__ import annotations

import numpy as np
import pytest

from napari_denoise.engine.training.split import split_images


@pytest.mark.parametrize("unit", [1.0, 1e-9])  # grey levels; a float image in tiny units
def test_the_recorded_normalisation_is_the_one_used(unit):
    rng = np.random.default_rng(0)
    grey = rng.normal(300, 20, (1, 96, 96)) + np.linspace(0, 1600, 96)
    image = (grey * unit).astype(np.float32)
    split = split_images(image, None, None, patch=32, val_fraction=0.2, clean_patches=False)
    recorded = split.info["normalisation"]
    span = split.high - split.low
    assert split.low > 0
    assert abs(recorded["low"] - split.low) <= 1e-6 * span
    assert abs(recorded["high"] - split.high) <= 1e-6 * span

"""Validation during training scores an image the same in any intensity unit."""

from __future__ import annotations

import numpy as np
import pytest


def test_validation_of_a_noise_map_network_does_not_depend_on_units(shared_data):
    # The noise a noise-map network is told came from the image normalised by
    # max(hi - lo, 1e-6): for 8-bit data stored x1e-9 that floor, not the image, set the
    # scale, and the network was told a noise ~5x too low.
    import tifffile

    from napari_denoise.engine.methods import get_method
    from napari_denoise.engine.models.inference import loaded
    from napari_denoise.engine.training.loop import validate

    root = shared_data / "W2S_8bit_subset"
    noisy = tifffile.imread(root / "images_avg1_8bit" / "input_avg1_009_0.tif")[:128, :128]
    clean = tifffile.imread(root / "images_avg400_8bit" / "target_avg400_009_0.tif")[:128, :128]
    noisy, clean = noisy.astype(np.float32), clean.astype(np.float32)
    model, _ = loaded(get_method("unet-fluo-nm").model.card, "cpu")
    grey = validate(model, [(noisy, clean)])
    tiny = validate(model, [(noisy * np.float32(1e-9), clean * np.float32(1e-9))])
    assert tiny == pytest.approx(grey, abs=0.05)

"""The default model's automatic detail restoration does not depend on the units the
intensities are stored in: the same image in grey levels or as a float in tiny units
(a scaled or calibrated export) gets the same setting."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_denoise as nd
from napari_denoise.engine.denoise.pipeline import drain


@pytest.fixture(scope="module")
def hela_ch3(shared_data):
    path = shared_data / "BioImageAnalysisNotebooks_stacks" / "hela-cells.tif"
    return tifffile.imread(path)[..., 2].astype(np.float32)


def test_the_detail_choice_is_the_same_in_tiny_units(hela_ch3):
    grey = drain(nd.denoise_iter(hela_ch3)).params
    assert grey["detail"] > 0.1  # an image where something is put back: the test can fail
    tiny = drain(nd.denoise_iter(hela_ch3 * np.float32(1e-9))).params
    assert tiny["detail"] == pytest.approx(grey["detail"], abs=0.02)
    assert tiny["detail_width"] == grey["detail_width"]

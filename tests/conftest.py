"""Shared fixtures: the real data beside the checkout, and small real crops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# The CPU precision is decided per machine at first use (engine/models/inference.py); the
# suite checks behaviour, so it computes in float32 everywhere unless told otherwise
# (tests/test_precision.py checks the decision itself, with fake probes), and never writes
# into the user's cache folder.
os.environ.setdefault("NAPARI_DENOISE_PRECISION", "fp32")


def _find_shared_data() -> Path:
    env = os.environ.get("NAPARI_DENOISE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if (c / "README.md").exists():
            return c
    raise FileNotFoundError(
        "The real test data (../shared/data) was not found beside the checkout; "
        "set NAPARI_DENOISE_SHARED_DATA to its folder."
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real microscopy data (FMD, W2S, stacks) beside the checkout."""
    return _find_shared_data()


@pytest.fixture(scope="session")
def fmd_pair(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """One real FMD test_mix pair (noisy, ground truth), uint8 512x512."""
    from PIL import Image

    root = shared_data / "FMD_test_mix"
    name = "Confocal_MICE_1.png"
    noisy = np.array(Image.open(root / "raw" / name))
    gt = np.array(Image.open(root / "gt" / name))
    return noisy, gt


@pytest.fixture(scope="session")
def w2s_noise_pair(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """A real W2S ground truth (FOV 009, 256 x 256, float32) with camera-like spatially
    correlated noise (smoothed plus a little white), and with independent noise of about
    the same strength: ``(correlated, independent)``."""
    import tifffile
    from scipy.ndimage import gaussian_filter

    gt = tifffile.imread(
        shared_data / "W2S_8bit_subset" / "images_avg400_8bit" / "target_avg400_009_0.tif"
    ).astype(np.float32)[:256, :256]
    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.normal(0, 1.0, gt.shape), 1.0)
    correlated = gt + 3.0 * rng.normal(0, 1.0, gt.shape) + smooth * (12.0 / smooth.std())
    independent = gt + 12.0 * rng.normal(0, 1.0, gt.shape)
    return correlated.astype(np.float32), independent.astype(np.float32)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """An empty user model folder; the models' registrations are restored afterwards."""
    from napari_denoise.engine.models import registry

    folder = tmp_path / "models"
    monkeypatch.setenv("NAPARI_DENOISE_MODEL_DIR", str(folder))
    yield folder
    monkeypatch.delenv("NAPARI_DENOISE_MODEL_DIR")
    registry.register_models()

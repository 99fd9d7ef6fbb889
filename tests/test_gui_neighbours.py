"""Issue 24: the Denoise widget denoises a stack with its neighbours by default and says so."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("torch")
pytestmark = pytest.mark.gui

from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise.engine.methods import default_method  # noqa: E402


def _movie(n=4, side=64):
    rng = np.random.default_rng(0)
    clean = np.linspace(20, 120, side * side).reshape(side, side)
    return rng.poisson(np.broadcast_to(clean, (n, side, side))).astype(np.uint16)


def test_a_time_lapse_is_denoised_with_its_neighbours_and_the_status_says_so(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    viewer.add_image(_movie(), name="movie", metadata={"axes": "TYX"})
    widget = DenoiseWidget(viewer)
    assert widget.picker.method().name == default_method().name
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=120_000)
    said = widget.status.text()
    assert "Each frame was denoised with its 3 neighbouring frames" in said, said
    from napari_denoise._qt._layers import PROVENANCE_KEY

    assert viewer.layers[-1].metadata[PROVENANCE_KEY]["neighbour_planes"] == 3

"""Issue 25, point 7: the Denoise widget follows napari's layer list, and values chosen
for one image are not shown (greyed) while another one is chosen or runs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise._qt._params import AutoNumber  # noqa: E402

WAIT = 60_000


def _two_images(viewer):
    rng = np.random.default_rng(0)
    a = viewer.add_image((rng.random((64, 64)) * 50).astype(np.float32), name="dim cells")
    b = viewer.add_image((rng.random((64, 64)) * 900).astype(np.float32), name="bright cells")
    return a, b


def _sigma(widget) -> AutoNumber:
    control = widget.params.control("sigma")
    assert isinstance(control, AutoNumber)
    return control


def _run(qtbot, widget):
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)


def test_selecting_a_layer_in_the_layer_list_is_what_run_denoises(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b = _two_images(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    viewer.layers.selection.active = a
    assert widget.layer_combo.layer() is a
    viewer.layers.selection.active = b
    assert widget.layer_combo.layer() is b and widget.batch_layers() == [b]
    _run(qtbot, widget)
    result = viewer.layers[-1]
    assert result.name.startswith("bright cells [")
    # selecting the result (to look at it or save it) keeps the input
    viewer.layers.selection.active = result
    assert widget.layer_combo.layer() is b


def test_values_chosen_for_one_image_go_when_another_is_chosen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, b = _two_images(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    viewer.layers.selection.active = a
    _run(qtbot, widget)
    sigma = _sigma(widget)
    assert sigma.box.specialValueText() == ""  # the chosen value is shown
    viewer.layers.selection.active = b
    assert sigma.box.specialValueText() == "from the image"
    assert "Last chosen" not in sigma.box.toolTip()
    assert sigma.value() is None  # still on auto
    _run(qtbot, widget)
    assert sigma.box.specialValueText() == "" and "Last chosen" in sigma.box.toolTip()


def test_values_chosen_by_the_last_run_go_when_the_next_run_starts(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a, _ = _two_images(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    viewer.layers.selection.active = a
    _run(qtbot, widget)
    sigma = _sigma(widget)
    assert sigma.box.specialValueText() == ""
    assert widget.run()
    assert sigma.box.specialValueText() == "from the image"  # while it runs
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert sigma.box.specialValueText() == ""

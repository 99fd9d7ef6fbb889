"""Finding 1 of issue 14: the widgets fit a 1366 x 768 laptop screen."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_denoise._qt._compact import MAX_WIDTH  # noqa: E402

PLUGIN = "napari-denoise"
NAMES = ("Denoise", "Compare", "Train")


def _open_all(viewer):
    viewer.add_image(np.zeros((5, 64, 64), np.uint16), name="noisy", metadata={"axes": "TYX"})
    viewer.add_image(np.zeros((5, 64, 64), np.uint16), name="ground truth")
    return {name: viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_each_widget_is_at_most_420_px_wide_and_nothing_inside_is_wider(make_napari_viewer, name):
    viewer = make_napari_viewer()
    widget = _open_all(viewer)[name]
    assert widget.minimumSizeHint().width() <= MAX_WIDTH
    # The form inside the scroll area must fit too, or it would be clipped on the right.
    body = widget.scroll_area.widget()
    bar = widget.scroll_area.verticalScrollBar().sizeHint().width()
    assert body.minimumSizeHint().width() + bar <= MAX_WIDTH
    assert body.minimumSizeHint().width() + bar <= widget.minimumSizeHint().width()
    # A long form scrolls: the widget itself asks for little height.
    assert widget.minimumSizeHint().height() <= 300


def test_all_three_docked_fit_a_laptop_screen_and_leave_half_to_the_canvas(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    widgets = _open_all(viewer)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    window.resize(1366, 768)
    qtbot.wait(100)
    assert window.width() <= 1366 and window.height() <= 768
    # Each tab, brought to the front, shows its whole form: nothing cut off on the right.
    for widget in widgets.values():
        widget.parent().raise_()
        for _ in range(3):
            QApplication.processEvents()
            qtbot.wait(50)
        body = widget.scroll_area.widget()
        assert body.width() <= widget.scroll_area.viewport().width(), type(widget).__name__
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= window.width() / 2
    # A difference layer (its colormap joins napari's list, shown in the layer controls)
    # must not widen napari's own dock either.
    from napari_denoise._qt._layers import add_difference

    layers = viewer.layers
    add_difference(viewer, layers["noisy"], layers["ground truth"], name="noisy − ground truth")
    layers.selection.active = layers["noisy − ground truth"]
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    assert canvas.width() >= window.width() / 2


def test_progress_texts_do_not_widen_the_train_form(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _open_all(viewer)["Train"]
    body = widget.scroll_area.widget()
    before = body.minimumSizeHint().width()
    widget.eta.setText("step 150000 of 300000 · 1 h 05 min left")
    widget.status.setText("Training on 'a rather long layer name', starting from a model " * 3)
    QApplication.processEvents()  # the layouts take the new texts into account
    assert body.minimumSizeHint().width() <= before

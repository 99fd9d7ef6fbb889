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


def test_the_closed_method_list_shows_the_choice_whole_at_the_minimum_width(
    make_napari_viewer, qtbot
):
    # 'U-Net (fluorescence, blind) (defau': the closed box cut the title and '(default)'.
    from qtpy.QtGui import QFontMetrics
    from qtpy.QtWidgets import QStyle, QStyleOptionComboBox

    from napari_denoise._qt._method_picker import display_name

    viewer = make_napari_viewer(show=True)
    widget = _open_all(viewer)["Denoise"]
    picker = widget.picker
    dock = widget.parent()
    dock.setFloating(True)  # then it takes exactly the width asked for
    dock.resize(widget.minimumSizeHint().width(), 600)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    assert widget.width() <= MAX_WIDTH
    option = QStyleOptionComboBox()
    picker.initStyleOption(option)
    field = picker.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, picker
    )
    metrics = QFontMetrics(picker.font())
    for method in picker._methods.values():
        if not method.available:
            continue
        picker.set_method(method.name)
        shown = picker.closed_text()
        assert metrics.horizontalAdvance(shown) <= field.width(), shown
        if method.is_default:
            assert shown.endswith("(default)")
        # Shortened or not, the tooltip has it whole, then what the list is for.
        assert picker.toolTip().startswith(display_name(method))
        assert "How to denoise" in picker.toolTip()
        print(f"{field.width()} px: {shown!r}")
    picker.set_method("unet-fluo")
    # The entry as listed in the open list would not fit: the closed box needs its own text.
    assert metrics.horizontalAdvance(picker.currentText()) > field.width()
    assert picker.closed_text().endswith("(default)")


@pytest.mark.parametrize("name", NAMES)
def test_unfolding_advanced_or_changing_method_does_not_widen_the_form(make_napari_viewer, name):
    # The dock keeps the width it was given (330 px, shared by the three tabs): a form that
    # grows wider once "Advanced" is unfolded is cut on the right ('Previ', 'Cance').
    from napari_denoise._qt._compact import Collapsible, FormScroll

    viewer = make_napari_viewer(show=True)  # shown: napari's style sheet applies
    widget = _open_all(viewer)[name]
    widget.parent().raise_()
    QApplication.processEvents()
    body = widget.scroll_area.widget()
    bar = widget.scroll_area.verticalScrollBar().sizeHint().width()
    for section in widget.findChildren(Collapsible):
        section.set_open(True)
    # Denoise: every method's form; Train: every mode's (the PSF mode adds rows).
    choices = {"Denoise": "picker", "Train": "mode"}.get(name)
    combo = getattr(widget, choices) if choices else None
    for i in range(combo.count()) if combo is not None else [None]:
        if i is not None:
            combo.setCurrentIndex(i)
        QApplication.processEvents()
        assert body.minimumSizeHint().width() + bar <= FormScroll.SHARED_WIDTH, i


@pytest.mark.parametrize("name", NAMES)
def test_no_closed_drop_down_cuts_its_entry(make_napari_viewer, qtbot, name):
    # 'Supervised: noisy + cle', 'U-Net (fluorescence, blii': every closed box shows its
    # entry whole, or shortened on purpose with the whole entry in its tooltip.
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QFontMetrics
    from qtpy.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox

    from napari_denoise._qt._compact import Collapsible, FittingCombo, FormScroll

    viewer = make_napari_viewer(show=True)
    widget = _open_all(viewer)[name]
    viewer.layers["noisy"].name = "noisy time-lapse of membranes, channel 2 [unet-fluo]"
    dock = widget.parent()
    dock.setFloating(True)
    dock.resize(FormScroll.SHARED_WIDTH, 700)
    for section in widget.findChildren(Collapsible):
        section.set_open(True)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(30)
    checked = []

    def fits(combo):
        metrics = QFontMetrics(combo.font())
        for i in range(combo.count()):
            if not combo.model().index(i, 0).flags() & Qt.ItemFlag.ItemIsEnabled:
                continue
            combo.setCurrentIndex(i)
            QApplication.processEvents()  # a new form may show or hide the scroll bar
            option = QStyleOptionComboBox()
            combo.initStyleOption(option)
            field = combo.style().subControlRect(
                QStyle.ComplexControl.CC_ComboBox,
                option,
                QStyle.SubControl.SC_ComboBoxEditField,
                combo,
            )
            full = combo.currentText().strip()
            shown = combo.closed_text() if isinstance(combo, FittingCombo) else full
            assert metrics.horizontalAdvance(shown) <= field.width(), (shown, field.width(), combo)
            if shown != full:
                assert combo.toolTip().startswith(combo.full_text()), combo.toolTip()
            checked.append(shown)
            if combo is getattr(widget, "picker", None):  # each method's own drop-downs too
                for inner in widget.params.findChildren(QComboBox):
                    fits(inner)

    form = getattr(widget, "params", None)  # rebuilt for each method: checked with the picker
    combos = [c for c in widget.findChildren(QComboBox) if c.isVisibleTo(widget)]
    for combo in [c for c in combos if form is None or not form.isAncestorOf(c)]:
        fits(combo)
    assert len(checked) >= 5


def test_parameter_labels_are_not_broken_over_two_lines(make_napari_viewer, qtbot):
    # 'Search radius / (pixels)' and 'Flip-and-turn / averaging' wrapped with room to spare.
    from qtpy.QtWidgets import QLabel

    viewer = make_napari_viewer(show=True)
    widget = _open_all(viewer)["Denoise"]
    widget.parent().raise_()
    for method in ("nlm", "unet-fluo", "box3d", "bilateral"):
        widget.picker.set_method(method)
        for _ in range(3):
            QApplication.processEvents()
            qtbot.wait(20)
        for label in widget.params.findChildren(QLabel):
            if label.isVisible() and label.text():
                assert label.height() < 1.5 * label.fontMetrics().height(), label.text()


def test_run_is_on_screen_without_scrolling_for_the_default_method(make_napari_viewer, qtbot):
    """A new user at 1366 x 768 sees Run for the default model without scrolling (a long
    model description and its parameters pushed it below the fold)."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    viewer.add_image(np.zeros((64, 64), np.uint16), name="noisy")
    for name in ("Compare", "Train"):  # as the plugin's menu docks them: tabs of one dock
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise", tabify=True)
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(50)
    window.resize(1366, 768)
    qtbot.wait(100)
    assert widget.picker.method().name == "unet-fluo"  # the premise: the default model
    viewport = widget.scroll_area.viewport()
    bottom = widget.run_button.mapTo(viewport, widget.run_button.rect().bottomLeft()).y()
    assert 0 < bottom <= viewport.height()
    # The whole description stays one click away, and in the tooltip.
    about = widget.about
    assert about.toolTip() == widget.picker.method().description
    about.set_open(True)
    assert about.plain_text() == widget.picker.method().description
    about.set_open(False)
    assert len(about.plain_text()) < len(widget.picker.method().description)

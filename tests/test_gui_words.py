"""Issue 14, finding 10: numbers on screen in plain notation (no e-notation)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("qtpy")

from napari_denoise._qt._curve_plot import axis_labels
from napari_denoise._qt._words import plain


def test_plain_numbers():
    assert plain(12345.6) == "12346"  # the whole part kept (see the next test)
    assert plain(0.000123456) == "0.000123"
    assert plain(1.5) == "1.5"
    assert plain(True) == "on" and plain(7) == "7"


def test_a_large_value_keeps_its_whole_part():
    """A 16-bit image's White level chosen as 4095 was reported as 'White level = 4100' in
    the status line while the form showed 4095.000: the digits before the point stay."""
    from napari_denoise._qt._words import labelled_value
    from napari_denoise.engine.methods import get_method

    white = get_method("unet-fluo").param("norm_high")
    assert labelled_value(white, 4095.0) == "White level = 4095"
    assert plain(36842.629) == "36843"
    assert plain(-4095.4) == "-4095"
    assert plain(221.0) == "221" and plain(0.306745) == "0.307" and plain(999.6) == "1000"


def test_the_training_plot_axes_never_use_e_notation():
    low, high = axis_labels(0.0000123, 0.0000456)
    assert "e" not in low + high and low != high


# --- labels on screen (Param.label), the internal names only for the CLI and the API ------


def _texts(form) -> list[str]:
    from qtpy.QtWidgets import QCheckBox, QLabel

    return [w.text() for w in form.findChildren(QLabel) + form.findChildren(QCheckBox)]


def _methods():
    from napari_denoise.engine.methods import list_methods

    return [m for m in list_methods() if m.available]


@pytest.mark.parametrize("method", _methods(), ids=lambda m: m.name)
def test_the_form_shows_each_parameter_by_its_label(qtbot, method):
    from qtpy.QtWidgets import QComboBox

    from napari_denoise._qt._params import HANDLED_ELSEWHERE, ParamForm

    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(method)
    texts = _texts(form)
    for param in method.params:
        if param.name in HANDLED_ELSEWHERE:
            continue
        assert param.label in texts, (param.name, texts)
        assert param.name not in texts
        control = form.control(param.name)
        if isinstance(control, QComboBox):  # choices in words, the value still the code
            shown = [control.itemText(i) for i in range(control.count())]
            assert shown == [param.choice_text(c) for c in param.choices]
            assert form.values()[param.name] == param.default


def test_a_choice_set_by_its_code_shows_its_words(qtbot):
    from napari_denoise._qt._params import ParamForm
    from napari_denoise.engine.methods import get_method

    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(get_method("wavelet"))
    form.set_values({"wavelet": "sym4", "mode": "hard"})
    assert form.control("wavelet").currentText() == "Symlet 4 (sym4)"
    assert form.values()["wavelet"] == "sym4" and form.values()["mode"] == "hard"


def test_a_result_name_says_the_settings_by_their_labels():
    from napari_denoise._qt._layers import result_name
    from napari_denoise._qt._words import settings_text
    from napari_denoise.engine.methods import get_method

    name = result_name("noisy", "gaussian", settings={"sigma": 1.5, "vst": True})
    assert name == "noisy [gaussian, Blur width 1.5 px, Shot-noise correction on]"
    assert settings_text(get_method("bm3d"), {"profile": "vn"}) == "Preset: Very noisy images"


# --- progress in the method's title and plain words --------------------------------------


def test_progress_names_the_method_and_the_frame_in_words():
    from napari_denoise._qt._words import progress_text
    from napari_denoise.engine.denoise.tiling import Progress

    frame = (("T", 3, 10),)
    tick = Progress(37, 45, "nlm T=3", position=frame)
    assert progress_text(tick, "Non-local means") == "Non-local means, frame 4 of 10: part 37 of 45"
    # One tile per frame: the frames are the parts.
    tick = Progress(4, 10, "nlm T=3", position=frame)
    assert progress_text(tick, "Non-local means") == "Non-local means, frame 4 of 10"
    assert progress_text(Progress(37, 45, "nlm"), "Non-local means") == (
        "Non-local means: part 37 of 45"
    )
    both = (("C", 1, 2), ("Z", 0, 5))
    assert progress_text(Progress(3, 40, "x", position=both), "Median") == (
        "Median, channel 2 of 2, plane 1 of 5: part 3 of 40"
    )
    choosing = Progress(0, 1, "x", position=(("C", 0, 3),), choosing=True)
    assert progress_text(choosing, "Median") == (
        "Median: choosing its settings from the image (channel 1 of 3)"
    )


def test_a_cancelled_run_says_how_far_it_got_in_words():
    from napari_denoise._qt._words import stopped_text
    from napari_denoise.engine.denoise.tiling import Progress

    assert stopped_text(Progress(4, 10, "", position=(("T", 3, 10),))) == " after 4 of 10 frames"
    assert stopped_text(Progress(37, 45, "", position=(("T", 3, 10),))) == " after 37 of 45 parts"
    assert stopped_text(Progress(0, 1, "", choosing=True)) == ""
    assert stopped_text(None) == ""


# --- what a stranger reads: no internal names anywhere on the three widgets ---------------

INTERNAL = re.compile(r"_|\bsigma\b|\bvst\b|\bnlm\b|\bnp\b|\d[eE][+-]?\d|\bcuda\b|\bmps\b")


def _on_screen(widget) -> list[str]:
    from qtpy.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QLabel

    texts = [w.text() for w in widget.findChildren(QLabel) if w.isVisibleTo(widget)]
    texts += [w.text() for w in widget.findChildren(QAbstractButton) if w.isVisibleTo(widget)]
    texts += [w.title() for w in widget.findChildren(QGroupBox) if w.isVisibleTo(widget)]
    for combo in widget.findChildren(QComboBox):
        if combo.isVisibleTo(widget) and combo.parent() is not None:
            texts += [combo.itemText(i) for i in range(combo.count())]
    return [t for t in texts if t]


@pytest.mark.gui
@pytest.mark.parametrize("name", ["Denoise", "Train", "Compare"])
def test_no_internal_word_on_any_widget(make_napari_viewer, name):
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_denoise._qt._compact import Collapsible

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((3, 32, 32), np.float32), name="noisy", metadata={"axes": "TYX"})
    _, widget = viewer.window.add_plugin_dock_widget("napari-denoise", name)
    for section in widget.findChildren(Collapsible):
        section.set_open(True)
    seen = []
    if name == "Denoise":
        for method in [m for m, v in widget.picker._methods.items() if v.available]:
            widget.picker.set_method(method)
            seen += _on_screen(widget)
    elif name == "Train":
        for i in range(widget.mode.count()):
            widget.mode.setCurrentIndex(i)
            QApplication.processEvents()
            seen += _on_screen(widget)
    seen += _on_screen(widget)
    # Layer names and model names are the user's; method descriptions come from model cards.
    bad = sorted({t for t in seen if INTERNAL.search(t) and "noisy" not in t})
    assert not bad, bad


def test_each_method_entry_says_the_name_a_result_layer_and_the_command_line_use(qtbot):
    # Result layers are named 'noisy [nlm]': the list entry 'Non-local means' says so.
    from qtpy.QtCore import Qt

    from napari_denoise._qt._method_picker import MethodPicker

    picker = MethodPicker()
    qtbot.addWidget(picker)
    index = picker.findData("nlm", Qt.ItemDataRole.UserRole)
    tip = picker.itemData(index, Qt.ItemDataRole.ToolTipRole)
    assert "Averages similar patches" in tip and "--method nlm" in tip


def test_an_automatic_value_says_where_it_will_come_from(qtbot):
    # '[x] auto  [- auto +]' said 'auto' twice and not what it means.
    from napari_denoise._qt._params import ParamForm
    from napari_denoise.engine.methods import get_method

    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(get_method("nlm"))
    box = form.control("h").box
    assert box.specialValueText() == "from the image" and box.text() == "from the image"
    form.control("h").set_value(2.0)
    assert box.text() != "from the image"


def test_taking_detail_off_auto_starts_from_the_network_alone(qtbot):
    # Before any run, unticking 'auto' started 'Detail put back' at 1: all of what the
    # network removed, i.e. (at blur 0) the noisy input itself.
    from napari_denoise._qt._params import ParamForm
    from napari_denoise.engine.methods import get_method

    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(get_method("unet-fluo"))
    form.control("detail").auto.setChecked(False)
    form.control("detail_width").auto.setChecked(False)
    assert form.values()["detail"] == 0.0
    assert form.values()["detail_width"] == pytest.approx(1.3)
    form.set_method(get_method("nlm"))  # a parameter without a starting point: 1
    form.control("h").auto.setChecked(False)
    assert form.values()["h"] == 1.0


def test_the_status_does_not_report_the_blur_of_detail_not_put_back(qtbot):
    from napari_denoise._qt._denoise_widget import _chosen
    from napari_denoise._qt._params import ParamForm
    from napari_denoise.engine.methods import get_method

    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(get_method("unet-fluo"))
    none_back = _chosen({"detail": 0.0, "detail_width": 0.0, "norm_low": 3.0}, form)
    assert "Detail put back = 0" in none_back and "Detail blur" not in none_back
    some_back = _chosen({"detail": 0.31, "detail_width": 1.3, "norm_low": 3.0}, form)
    assert "Detail blur = 1.3" in some_back


def test_the_status_says_the_gaussian_only_where_it_is_mixed_in():
    """A model whose card mixes in the Gaussian (issue 23): no word on it, nor on its
    width, where none of it is mixed in."""
    from napari_denoise._qt._denoise_widget import _moot

    for name in ("gaussian_share", "gaussian_sigma"):
        assert _moot(name, {"gaussian_share": 0.0, "gaussian_sigma": 0.9})
        assert not _moot(name, {"gaussian_share": 0.63, "gaussian_sigma": 0.9})

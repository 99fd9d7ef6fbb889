"""A value chosen automatically, taken off auto in the form, starts from what was chosen,
whatever the image's units: not rounded to 0 in small units, not clipped to 0 when negative."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")

from napari_denoise._qt._params import ParamForm
from napari_denoise.engine.methods import get_method


@pytest.fixture
def form(qtbot):
    form = ParamForm()
    qtbot.addWidget(form)
    form.set_method(get_method("unet-fluo"))
    return form


def _take_off_auto(form, *names):
    for name in names:
        form.control(name).auto.setChecked(False)
    return form.values()


def test_levels_in_tiny_units_are_not_rounded_to_nothing(form):
    # A float image in tiny units: the run chose (and reported) these levels.
    chosen = {"norm_low": 3.08534992e-07, "norm_high": 1.93592999e-06}
    form.show_chosen(chosen)
    values = _take_off_auto(form, "norm_low", "norm_high")
    for name, value in chosen.items():
        assert values[name] == pytest.approx(value, rel=0.01)
    assert "0.000000309" in form.control("norm_low").box.text()


def test_a_negative_level_is_kept(form):
    form.show_chosen({"norm_low": -12.5, "norm_high": 840.0})
    values = _take_off_auto(form, "norm_low", "norm_high")
    assert values["norm_low"] == -12.5 and values["norm_high"] == 840.0


def test_grey_levels_keep_three_decimals(form):
    form.show_chosen({"norm_low": 308.535, "norm_high": 1935.93})
    assert form.control("norm_low").box.decimals() == 3
    assert _take_off_auto(form, "norm_low")["norm_low"] == 308.535


def test_a_whole_number_starts_from_its_declared_start(qtbot):
    """``Param.start`` is declared as a float; on a whole-number parameter (a window) the
    spin box took it as is and Qt raised a TypeError when 'auto' was unticked."""
    from napari_denoise._qt._params import AutoNumber
    from napari_denoise.engine.methods import Param

    box = AutoNumber(Param("size", int, None, "Window", minimum=1, maximum=9, start=3.0))
    qtbot.addWidget(box)
    box.auto.setChecked(False)
    assert box.value() == 3 and isinstance(box.value(), int)

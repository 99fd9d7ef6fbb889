"""Issue 14, finding 10: numbers on screen in plain notation (no e-notation)."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")

from napari_denoise._qt._curve_plot import axis_labels
from napari_denoise._qt._words import plain


def test_plain_numbers():
    assert plain(12345.6) == "12300"
    assert plain(0.000123456) == "0.000123"
    assert plain(1.5) == "1.5"
    assert plain(True) == "on" and plain(7) == "7"


def test_the_training_plot_axes_never_use_e_notation():
    low, high = axis_labels(0.0000123, 0.0000456)
    assert "e" not in low + high and low != high

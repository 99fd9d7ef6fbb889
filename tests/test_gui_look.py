"""Issue 25, point 9: the "More…" link reads on napari's dark and light themes, and the
activity dock's label is short enough to leave its progress bar the width."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtGui import QColor, QPalette  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_denoise._qt._words import BAR_CHARS, bar_text  # noqa: E402

PLUGIN = "napari-denoise"


def _luminance(color: QColor) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(x) for x in (color.redF(), color.greenF(), color.blueF()))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio (1 to 21)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _link_color(summary) -> QColor:
    """The colour the link is drawn in: its own style, else the palette's link colour."""
    found = re.search(r'<a [^>]*style="color: (#[0-9a-fA-F]{6})', summary.text())
    return QColor(found.group(1)) if found else summary.palette().color(QPalette.ColorRole.Link)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_the_more_link_reads_on_the_theme(make_napari_viewer, qtbot, theme):
    viewer = make_napari_viewer(show=True)
    viewer.theme = theme
    viewer.add_image(np.zeros((64, 64), np.uint16), name="noisy")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(30)
    summary = widget.about
    assert "More…" in summary.text(), "the default method's description folds"
    background = summary.palette().color(QPalette.ColorRole.Window)
    assert contrast(_link_color(summary), background) >= 4.5  # WCAG AA for text


def test_activity_labels_are_short(make_napari_viewer, qtbot, monkeypatch):
    from napari_denoise._qt import _runner

    # Every tick reaches the bar: with the 0.1 s throttle a fast run on a quiet machine
    # could show no frame label at all (the test then failed by timing, not by wording).
    monkeypatch.setattr(_runner, "UI_INTERVAL", 0.0)
    viewer = make_napari_viewer()
    name = "fmd_confocal_mice_noisy_capture_of_field_19_deconvolved"
    # Noise and non-local means: each frame takes long enough to be reported while the
    # run lasts (a Gaussian on zeros could end before any frame label reached the bar).
    noise = np.random.default_rng(0).normal(100, 10, (3, 96, 96)).astype(np.float32)
    viewer.add_image(noise, name=name, metadata={"axes": "TYX"})
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.layer_combo.set_layer(viewer.layers[name])
    widget.picker.set_method("nlm")
    assert widget.run()
    pbar = widget.runner.worker.pbar
    labels = [pbar.desc]
    pbar.events.description.connect(lambda event: labels.append(event.value))
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=60_000)
    # (napari shows a description followed by ": ")
    assert labels and all(len(text.removesuffix(": ")) <= BAR_CHARS for text in labels), labels
    # in words, not cut: what is done, then where (the bar shows how far)
    assert "Choosing settings" in labels, labels
    assert any(re.fullmatch(r"frame \d of 3", text) for text in labels), labels


def test_bar_text_keeps_the_start_and_the_end():
    text = "layer 2 of 3 (ch2): U-Net (fluorescence, blind), frame 13 of 20"
    short = bar_text(text)
    assert len(short) <= BAR_CHARS and short.startswith("layer 2 of")
    assert short.endswith("13 of 20") and "…" in short
    assert bar_text("Gaussian") == "Gaussian"

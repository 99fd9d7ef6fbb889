"""The method's description folded to its first sentence (``_compact.Summary``)."""

from __future__ import annotations

import pytest

pytest.importorskip("qtpy")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402

from napari_denoise._qt._compact import Summary  # noqa: E402


@pytest.mark.parametrize(
    "text,first",
    [
        (
            "Plain residual CNN (DnCNN, Zhang et al. 2017): 17 layers. Blind; shorter training.",
            "Plain residual CNN (DnCNN, Zhang et al. 2017): 17 layers.",
        ),
        ("Averages similar patches (Buades et al. 2005); strength from the noise.", None),
        ("Keeps small spots, e.g. beads, sharp. Slower.", "Keeps small spots, e.g. beads, sharp."),
        ("A halo of approx. 3 px is added. Slower.", "A halo of approx. 3 px is added."),
        ("Fast (see Fig. 2 for the error). Slower on GPUs.", "Fast (see Fig. 2 for the error)."),
        ("One sentence without an end", None),
        ("", None),
    ],
)
def test_the_first_sentence_is_not_cut_at_an_abbreviation(qtbot, text, first):
    """'Zhang et al.' ended the first "sentence" inside its parentheses: the label showed
    'Plain residual CNN (DnCNN, Zhang et al.' and a More link."""
    label = Summary()
    qtbot.addWidget(label)
    label.set_description(text)
    assert label.plain_text() == (text if first is None else first)
    assert ("More" in label.text()) == (first is not None)


def test_no_shipped_description_is_cut_inside_parentheses(qtbot):
    from napari_denoise.engine.methods import list_methods

    label = Summary()
    qtbot.addWidget(label)
    for method in list_methods():
        label.set_description(method.description)
        shown = label.plain_text()
        assert shown.count("(") == shown.count(")"), (method.name, shown)


def test_html_characters_are_shown_as_written(qtbot):
    label = Summary()
    qtbot.addWidget(label)
    label.set_description("Noise < 5 & <b>bold</b>. The rest.")
    assert label.plain_text() == "Noise < 5 & <b>bold</b>."
    assert "&lt;b&gt;" in label.text() and "&amp;" in label.text()


def test_more_is_reachable_from_the_keyboard(qtbot):
    """A QLabel's links take only the mouse unless told otherwise: a keyboard user could
    not unfold the description."""
    label = Summary()
    qtbot.addWidget(label)
    label.set_description("First sentence here. The rest of the description.")
    label.show()
    qtbot.waitExposed(label)
    assert label.focusPolicy() & Qt.FocusPolicy.TabFocus
    label.setFocus()
    qtbot.keyClick(label, Qt.Key.Key_Tab)  # onto the link
    qtbot.keyClick(label, Qt.Key.Key_Return)
    assert label.is_open()
    label.set_description("Nothing to unfold.")  # no link: no stop on the way
    assert label.focusPolicy() == Qt.FocusPolicy.NoFocus
    label.set_description("Folds again. The rest.")
    assert label.focusPolicy() & Qt.FocusPolicy.TabFocus and not label.is_open()

"""Small layout pieces that keep the dock widgets narrow enough for a laptop screen.

A widget's form goes inside a vertical scroll area (a long form scrolls instead of
stretching napari's window), drop-downs take their width from a few characters rather
than from their longest entry (the open list is as wide as it needs; the closed box
shortens the chosen entry to fit, :class:`FittingCombo`), and rarely used
options fold away under an "Advanced" header. Three napari-denoise docks in the same
area share it as tabs instead of stacking.
"""

from __future__ import annotations

import html
import re

from qtpy.QtCore import QEvent, QSize, Qt, QTimer
from qtpy.QtGui import QColor, QPalette
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

MAX_WIDTH = 420  # px: every widget's minimum width stays at or under this
COMBO_CHARS = 16
TEXT_INSET = 1  # px: Qt's styles draw a drop-down's text this far in from each side


class FormScroll(QScrollArea):
    """A vertical scroll area as wide as its form needs (never clipping it on the right),
    asking for little height: the dock decides how tall it is, the form scrolls."""

    MIN_HEIGHT = 160
    # One minimum width for all three widgets: as tabs of one dock they share its width,
    # and a tab raised later would otherwise be cut on the right.
    SHARED_WIDTH = 330

    def _bar(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        body = self.widget()
        width = body.minimumSizeHint().width() if body is not None else 0
        return QSize(max(width + self._bar(), self.SHARED_WIDTH), self.MIN_HEIGHT)

    def sizeHint(self) -> QSize:
        body = self.widget()
        height = body.sizeHint().height() if body is not None else 0
        # As wide as needed, no wider: napari gives the dock its hinted width, and the
        # rest of the window goes to the canvas.
        return QSize(self.minimumSizeHint().width(), height)


def scrolling(owner: QWidget, body: QWidget) -> QScrollArea:
    """Put ``body`` in a vertical scroll area filling ``owner``; returns the area."""
    if body.layout() is not None:  # narrow side margins: the dock has its own frame
        margins = body.layout().contentsMargins()
        body.layout().setContentsMargins(4, margins.top(), 4, margins.bottom())
    area = FormScroll()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(body)
    layout = QVBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(area)
    return area


def narrow(combo: QComboBox, chars: int = COMBO_CHARS) -> QComboBox:
    """A drop-down as wide as ``chars`` characters; its open list shows whole entries."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    view = combo.view()
    view.setTextElideMode(Qt.TextElideMode.ElideNone)
    view.setMinimumWidth(view.sizeHintForColumn(0) + 24)
    combo.model().rowsInserted.connect(
        lambda *_: view.setMinimumWidth(view.sizeHintForColumn(0) + 24)
    )
    return combo


def shorter_forms(text: str) -> list[str]:
    """Ever shorter forms of an entry, each keeping its head: without a trailing
    '[name]', the note after ' — ', the explanation after ': ', the trailing parenthesis.

    'Supervised: noisy + clean pairs' -> ['Supervised'];
    'U-Net (fluorescence, blind)  [unet-fluo]' -> ['U-Net (fluorescence, blind)', 'U-Net'].
    """
    forms = []
    for pattern in (r"\s*\[[^\[\]]*\]$", r" — .*$", r": .*$", r"\s*\([^()]*\)$"):
        shorter = re.sub(pattern, "", forms[-1] if forms else text).strip()
        if shorter and shorter != (forms[-1] if forms else text):
            forms.append(shorter)
    return forms


class FittingCombo(QComboBox):
    """A drop-down whose closed box shows the chosen entry readably however narrow the dock:
    whole if it fits, else its first shorter form that fits (:meth:`shorter_texts`), else
    elided (``elide``: right, or middle for names whose end matters). The open list shows
    every entry whole; when the closed box shortens, the tooltip gives the entry whole,
    followed by the sentence set with ``setToolTip``.
    """

    def __init__(self, *, shorten: bool = False, elide=Qt.TextElideMode.ElideRight):
        super().__init__()
        self._shorten = shorten
        self._elide = elide
        self._hint = ""
        self.currentIndexChanged.connect(self._update_tooltip)

    def full_text(self) -> str:
        """The chosen entry as the open list shows it (without its indentation)."""
        return self.currentText().strip()

    def shorter_texts(self) -> list[str]:
        """Shorter forms to try, in order, when the entry does not fit."""
        return shorter_forms(self.full_text()) if self._shorten else []

    def _field_width(self) -> int:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        return field.width() - 2 * TEXT_INSET

    def sizeHint(self) -> QSize:
        # Qt's hint fits the longest entry exactly; the inset it draws text with needs more.
        return super().sizeHint() + QSize(2 * TEXT_INSET, 0)

    def minimumSizeHint(self) -> QSize:
        return super().minimumSizeHint() + QSize(2 * TEXT_INSET, 0)

    def elided(self, width: int) -> str:
        """The last resort: the entry elided to ``width`` pixels."""
        return self.fontMetrics().elidedText(self.full_text(), self._elide, width)

    def closed_text(self) -> str:
        """What the closed box shows."""
        metrics, width = self.fontMetrics(), self._field_width()
        for text in (self.full_text(), *self.shorter_texts()):
            if metrics.horizontalAdvance(text) <= width:
                return text
        return self.elided(width)

    def tooltip_head(self) -> str:
        """The tooltip's first line: the entry whole when the closed box shortens it."""
        full = self.full_text()
        return full if full and self.closed_text() != full else ""

    def setToolTip(self, text: str) -> None:
        """Set the sentence the tooltip gives after the entry (when that is shortened)."""
        self._hint = text
        self._update_tooltip()

    def _update_tooltip(self, *_) -> None:
        super().setToolTip("\n".join(t for t in (self.tooltip_head(), self._hint) if t))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._update_tooltip()

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ToolTip:  # an entry may have been renamed meanwhile
            self._update_tooltip()
        return super().event(event)

    def paintEvent(self, event) -> None:
        # As QComboBox paints itself, with the closed box's own text.
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = self.closed_text()
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


# Words whose full stop ends no sentence (the next word may still be capitalised).
_ABBREVIATION = re.compile(
    r"(?:^|[\s(\[])(?:e\.g|i\.e|et al|cf|vs|approx|fig|eq|no|resp|dr)\.$", re.I
)


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence: a ``.``, ``!`` or ``?`` outside
    brackets, before a capital, and not an abbreviation's (``Zhang et al. 2017``,
    ``e.g. Beads``, ``approx. 3 px`` end none); all of ``text`` if it has one sentence."""
    depth = 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char in ".!?" and depth == 0:
            after = text[i + 1 :]
            start = after.lstrip(" \t\n\"'([")
            if len(start) == len(after) or not start[:1].isupper():
                continue
            if char == "." and _ABBREVIATION.search(text[: i + 1]):
                continue
            return text[: i + 1]
    return text


class Summary(QLabel):
    """A description shown by its first sentence, with a "More" link that unfolds the
    rest in place (and "Less" that folds it again); the whole text is the tooltip. A long
    model description would otherwise push the Run button below a laptop screen's fold."""

    MORE, LESS = "More…", "Less"
    # Qt's link blue is for light windows: on napari's dark theme it was hard to see.
    LINK_ON_DARK, LINK_ON_LIGHT = QColor("#8ecbff"), QColor("#0b57c2")

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setMinimumWidth(120)  # wraps: no wider than the dock
        self.setStyleSheet("color: gray")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.linkActivated.connect(lambda *_: self.set_open(not self._open))
        self._full, self._first, self._open = "", "", False

    def set_description(self, text: str) -> None:
        self._full = text.strip()
        self._first = first_sentence(self._full)
        self.setToolTip(self._full if self._first != self._full else "")
        self.set_open(False)

    def set_open(self, shown: bool) -> None:
        self._open = bool(shown)
        folds = self._first != self._full
        # Tab reaches the link (Enter follows it) only where there is one.
        flags = Qt.TextInteractionFlag.LinksAccessibleByMouse
        if folds:
            flags |= Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        self.setTextInteractionFlags(flags)
        if not folds:
            self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.setText(html.escape(self._full))
            return
        body, link = (self._full, self.LESS) if self._open else (self._first, self.MORE)
        color = self.link_color().name()
        self.setText(f'{html.escape(body)} <a href="#" style="color: {color}">{link}</a>')

    def link_color(self) -> QColor:
        """A link colour that reads on the background the theme gives this label."""
        background = self.palette().color(QPalette.ColorRole.Window)
        return self.LINK_ON_DARK if background.lightnessF() < 0.5 else self.LINK_ON_LIGHT

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        # napari's theme changed (or the label got its stylesheet): recolour the link.
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange) and getattr(
            self, "_full", ""
        ):
            self.set_open(self._open)

    def is_open(self) -> bool:
        return self._open

    def plain_text(self) -> str:
        """What the label shows, without the link."""
        return self._full if self._open or self._first == self._full else self._first


class Collapsible(QWidget):
    """A header button ("▸ Advanced") that shows or hides the widget below it."""

    def __init__(self, title: str, body: QWidget, *, tooltip: str = ""):
        super().__init__()
        self.body = body
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; }")
        self.button.setToolTip(tooltip or f"Show or hide the {title.lower()} options.")
        self.button.toggled.connect(self.set_open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(body)
        self.set_open(False)

    def set_open(self, shown: bool) -> None:
        """Unfold (True) or fold (False) the section."""
        self.button.blockSignals(True)
        self.button.setChecked(shown)
        self.button.blockSignals(False)
        self.button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.body.setVisible(shown)

    def is_open(self) -> bool:
        """Whether the section is unfolded."""
        return self.button.isChecked()


class DockTabs:
    """Mixin for a dock widget: on first show, join a dock of another such widget as a tab.

    napari's Plugins menu stacks docks in one column, which leaves each too short on a
    laptop screen; as tabs each gets the whole height.
    """

    _shown = 0  # widgets shown so far (class-wide)
    _order = 0  # when this widget was first shown (1, 2 ...); 0: not yet

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._order:
            DockTabs._shown += 1
            self._order = DockTabs._shown
            QTimer.singleShot(0, self._join_tabs)

    def _join_tabs(self) -> None:
        try:
            dock = self.parent()
        except RuntimeError:  # deleted meanwhile
            return
        window = dock.parent() if isinstance(dock, QDockWidget) else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        if any(isinstance(other.widget(), DockTabs) for other in window.tabifiedDockWidgets(dock)):
            return  # already a tab beside one of ours (e.g. docked with tabify=True)
        area = window.dockWidgetArea(dock)
        earlier = [
            other
            for other in window.findChildren(QDockWidget)
            if other is not dock
            and window.dockWidgetArea(other) == area
            and not other.isFloating()
            and isinstance(other.widget(), DockTabs)
            and 0 < other.widget()._order < self._order
        ]
        if earlier:  # join the first one opened (the others already joined it)
            first = min(earlier, key=lambda other: other.widget()._order)
            window.tabifyDockWidget(first, dock)
            dock.show()
            dock.raise_()


class ElidedButton(QPushButton):
    """A push button that never widens its dock: it asks for the width of ``chars``
    characters and shows its text elided to the width it gets (``elide``: middle by
    default, so both the action and the end of a name stay readable); when elided, the
    tooltip gives the whole text, followed by the sentence set with ``setToolTip``."""

    def __init__(self, text: str = "", *, chars: int = 14, elide=Qt.TextElideMode.ElideMiddle):
        super().__init__()
        self._full, self._hint, self._chars, self._elide = "", "", chars, elide
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setText(text)

    def full_text(self) -> str:
        """The whole text (the button may show it elided)."""
        return self._full

    def setText(self, text: str) -> None:
        self._full = text
        self._show()

    def setToolTip(self, text: str) -> None:
        """Set the sentence the tooltip gives after the whole text (when elided)."""
        self._hint = text
        self._show()

    def _padding(self) -> int:
        shown = super().text()  # the style's margins, and a little air at each end
        return super().sizeHint().width() - self.fontMetrics().horizontalAdvance(shown) + 8

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        width = self.fontMetrics().horizontalAdvance("x" * self._chars) + self._padding()
        return QSize(width, hint.height())

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._show()

    def _show(self) -> None:
        room = max(self.width() - self._padding(), 0)
        shown = self.fontMetrics().elidedText(self._full, self._elide, room)
        if shown != super().text():
            super().setText(shown)
        head = self._full if shown != self._full else ""
        super().setToolTip("\n".join(t for t in (head, self._hint) if t))


# Zero-width space: an invisible place where a line may break.
BREAK = "\u200b"
_LONG_WORD = re.compile(r"\S{24,}")


def breakable(text: str) -> str:
    """``text`` with invisible break points in words too long for a narrow dock (file
    paths, long names): after each ``/``, ``\\``, ``_``, ``-`` and ``.``, and at least
    every 16 characters."""

    def split(match: re.Match) -> str:
        word = re.sub(r"([/\\_.-])", r"\1" + BREAK, match.group(0))
        parts = word.split(BREAK)
        return BREAK.join(
            BREAK.join(part[i : i + 16] for i in range(0, len(part), 16)) or part for part in parts
        )

    return _LONG_WORD.sub(split, text)


class WrappingLabel(QLabel):
    """A label whose text wraps to the dock's width, long words and file paths too
    (:func:`breakable`); :meth:`text` gives the text as set. It asks for the width of
    ``min_width`` pixels, never for the width of its text."""

    def __init__(self, text: str = "", *, min_width: int = 120):
        super().__init__()
        self._plain = ""
        self.setWordWrap(True)
        self.setMinimumWidth(min_width)
        self.setText(text)

    def setText(self, text: str) -> None:
        self._plain = text
        super().setText(breakable(text))

    def text(self) -> str:
        return self._plain

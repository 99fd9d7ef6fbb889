"""A drop-down of the registered methods, grouped: your models (by the names you gave
them), the shipped deep-learning models, classical filters, then "More models" (the
experimental networks).

The open list shows every entry whole; the closed box, only ~250 px wide in a dock,
shows the chosen one shortened if it must be (:meth:`MethodPicker.closed_text`: the
trailing notes go first, then the middle is elided, "(default)" always stays), and its
tooltip gives it whole.
"""

from __future__ import annotations

import re
import weakref
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QFont, QStandardItem, QStandardItemModel
from qtpy.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter

from ..engine.methods import default_method, list_methods
from ..engine.models.store import SHIPPED_DIR

YOURS, SHIPPED, CLASSICAL, MORE = (
    "Your models",
    "Deep-learning models",
    "Classical filters",
    "More models (experimental, short training)",
)


def is_user_model(method) -> bool:
    """A model whose card lives outside the shipped folder (trained, fine-tuned or imported)."""
    card = method.model.card if method.model is not None else None
    return bool(card) and Path(card).resolve().parent != SHIPPED_DIR.resolve()


def is_experimental(method) -> bool:
    """A shipped network whose card says `"experimental": true` (short training)."""
    return method.experimental


def display_name(method) -> str:
    """Your models by the name you gave them; shipped ones by their title."""
    return method.name if is_user_model(method) else (method.title or method.name)


def short_names(method) -> list[str]:
    """The display name, then shorter forms of it: without the note after ' — ', then
    without the trailing parenthesis ('U-Net (fluorescence, blind)' -> 'U-Net')."""
    names = [display_name(method)]
    if is_user_model(method):
        return names  # the name the user typed, as typed
    names.append(names[-1].split(" — ")[0].strip())
    names.append(re.sub(r"\s*\([^()]*\)\s*$", "", names[-1]).strip() or names[-1])
    return list(dict.fromkeys(names))


def flags(method) -> str:
    """What the list adds after a name: '  (default)', '  (slow on large images)'."""
    default = "  (default)" if method.available and method.is_default else ""
    slow = "  (slow on large images)" if method.slow else ""
    return default + slow


def grouped(methods) -> list[tuple[str, list]]:
    """``[(group title, methods)]`` in the order shown; empty groups left out."""
    models = [m for m in methods if m.kind == "model"]
    yours = sorted((m for m in models if is_user_model(m)), key=lambda m: m.name.lower())
    shipped = [m for m in models if not is_user_model(m)]
    groups = [
        (YOURS, yours),
        (SHIPPED, [m for m in shipped if not is_experimental(m)]),
        (CLASSICAL, [m for m in methods if m.kind == "classical"]),
        (MORE, [m for m in shipped if is_experimental(m)]),
    ]
    return [(title, group) for title, group in groups if group]


def tooltip(method) -> str:
    """What the entry is: the title (for your models), the description or why unavailable."""
    if not method.available:
        return method.unavailable_reason
    head = f"{method.title}\n" if is_user_model(method) and method.title else ""
    return head + method.description


# Open widgets listing models (anything with ``reload()``), refreshed when one is added.
_watchers: weakref.WeakSet = weakref.WeakSet()


def watch_models(widget) -> None:
    """Have ``widget.reload()`` called whenever :func:`notify_models_changed` is."""
    _watchers.add(widget)


def notify_models_changed(select: str | None = None) -> None:
    """Re-read the registry in every open model list (call after a model was added);
    ``select``: the new model's name, chosen in every method picker."""
    for widget in list(_watchers):
        try:
            widget.reload()
            if select is not None and isinstance(widget, MethodPicker):
                widget.set_method(select)
        except RuntimeError:  # its Qt object was deleted: forget it
            _watchers.discard(widget)


class MethodPicker(QComboBox):
    """Choose a method; group headers cannot be chosen, unavailable methods are greyed out.

    Emits ``methodChanged`` with the :class:`~napari_denoise.engine.methods.Method`.
    """

    methodChanged = Signal(object)

    def __init__(self):
        super().__init__()
        self._methods = {}
        self._hint = ""
        self.setModel(QStandardItemModel(self))
        self.currentIndexChanged.connect(self._emit)
        self.reload()
        watch_models(self)

    def reload(self) -> None:
        """Re-read the registry (e.g. after a model was added), keeping the choice (else the default)."""
        model: QStandardItemModel = self.model()
        current = self.method()
        self.blockSignals(True)
        model.clear()
        methods = list_methods()
        self._methods = {m.name: m for m in methods}
        for title, group in grouped(methods):
            header = QStandardItem(title)
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            font = QFont()
            font.setBold(True)
            header.setFont(font)
            model.appendRow(header)
            for m in group:
                item = QStandardItem("    " + display_name(m) + flags(m))
                item.setData(m.name, Qt.ItemDataRole.UserRole)
                item.setToolTip(tooltip(m))
                if not m.available:
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                model.appendRow(item)
        if current is not None and current.name in self._methods:
            # The same choice stays selected without a signal (the user's parameter
            # values stay), unless the registry now holds a new record for it.
            self.setCurrentIndex(self.findData(current.name, Qt.ItemDataRole.UserRole))
            self.blockSignals(False)
            if self._methods[current.name] is not current:
                self._emit()
            return
        self.blockSignals(False)
        self.set_method(default_method().name)

    def method(self):
        """The chosen method, or None before the list is filled."""
        return self._methods.get(self.currentData(Qt.ItemDataRole.UserRole))

    def set_method(self, name: str) -> None:
        """Choose the method registered as ``name``."""
        index = self.findData(name, Qt.ItemDataRole.UserRole)
        if index >= 0 and index != self.currentIndex():
            self.setCurrentIndex(index)  # emits through currentIndexChanged
        elif index >= 0:
            self._emit()

    def _emit(self, *_) -> None:
        method = self.method()
        self._update_tooltip()
        if method is not None:
            self.methodChanged.emit(method)

    # ------------------------------------------------------------------ the closed box
    def setToolTip(self, text: str) -> None:
        """Set the sentence that follows the chosen method's whole name in the tooltip."""
        self._hint = text
        self._update_tooltip()

    def _update_tooltip(self) -> None:
        method = self.method()
        head = display_name(method) + flags(method) if method is not None else ""
        super().setToolTip("\n".join(t for t in (head, self._hint) if t))

    def _field_width(self) -> int:
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        return field.width() - 4  # the style draws the text 1-2 px in from each side

    def closed_text(self) -> str:
        """The chosen method as the closed box shows it: whole if it fits, else a shorter
        form (:func:`short_names`), else elided in the middle; '(default)' is never cut."""
        method = self.method()
        if method is None:
            return self.currentText().strip()
        metrics, width = self.fontMetrics(), self._field_width()
        default = " (default)" if method.available and method.is_default else ""
        names = short_names(method)
        for name in names:
            for text in (name + flags(method).replace("  ", " "), name + default):
                if metrics.horizontalAdvance(text) <= width:
                    return text
        room = max(0, width - metrics.horizontalAdvance(default))
        return metrics.elidedText(names[0], Qt.TextElideMode.ElideMiddle, room) + default

    def paintEvent(self, event) -> None:
        # As QComboBox paints itself, with the closed box's own text (not the list entry).
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = self.closed_text()
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

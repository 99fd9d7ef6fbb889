"""A drop-down of the registered methods, grouped: your models (by the names you gave
them), the shipped deep-learning models, classical filters, then "More models" (the
experimental networks).

The open list shows every entry whole; the closed box, only ~240 px wide in a dock,
shows the chosen one shortened if it must be (:class:`~._compact.FittingCombo`: the
trailing notes go first, then the middle is elided, "(default)" always stays), and its
tooltip gives it whole.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QFont, QStandardItem, QStandardItemModel

from ..engine.methods import default_method, list_methods
from ..engine.models.store import SHIPPED_DIR
from ._compact import FittingCombo, shorter_forms

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
    """The display name, then shorter forms of it (:func:`~._compact.shorter_forms`):
    'U-Net (fluorescence, blind)' -> 'U-Net'; your models only by the name you gave."""
    name = display_name(method)
    return [name] if is_user_model(method) else [name, *shorter_forms(name)]


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
    """What the entry is: the title (for your models), the description or why unavailable,
    and the name that result layers, the command line and Python use."""
    if not method.available:
        return method.unavailable_reason
    head = f"{method.title}\n" if is_user_model(method) and method.title else ""
    name = (
        f"\nIn result layer names and on the command line: {method.name} (--method {method.name})"
    )
    return head + method.description + name


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


class MethodPicker(FittingCombo):
    """Choose a method; group headers cannot be chosen, unavailable methods are greyed out.

    Emits ``methodChanged`` with the :class:`~napari_denoise.engine.methods.Method`.
    """

    methodChanged = Signal(object)

    def __init__(self):
        super().__init__(elide=Qt.TextElideMode.ElideMiddle)
        self._methods = {}
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
    def full_text(self) -> str:
        method = self.method()
        if method is None:
            return super().full_text()
        return display_name(method) + flags(method).replace("  ", " ")

    def shorter_texts(self) -> list[str]:
        """The shorter names (:func:`short_names`), '(default)' kept, slowness dropped."""
        method = self.method()
        if method is None:
            return []
        return [name + _default(method) for name in short_names(method)]

    def elided(self, width: int) -> str:
        """Elided in the middle, '(default)' kept whole."""
        method = self.method()
        if method is None:
            return super().elided(width)
        default = _default(method)
        room = max(0, width - self.fontMetrics().horizontalAdvance(default))
        name = display_name(method)
        return self.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, room) + default

    def tooltip_head(self) -> str:
        """Always the chosen method's whole name (the closed box may shorten it)."""
        return self.full_text() if self.method() is not None else ""


def _default(method) -> str:
    return " (default)" if method.available and method.is_default else ""

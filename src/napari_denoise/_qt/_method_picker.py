"""A drop-down of the registered methods, grouped: deep-learning models, then classical filters."""

from __future__ import annotations

import weakref

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QFont, QStandardItem, QStandardItemModel
from qtpy.QtWidgets import QComboBox

from ..engine.methods import default_method, list_methods

GROUPS = (("model", "Deep-learning models"), ("classical", "Classical filters"))

# Open widgets listing models (anything with ``reload()``), refreshed when one is added.
_watchers: weakref.WeakSet = weakref.WeakSet()


def watch_models(widget) -> None:
    """Have ``widget.reload()`` called whenever :func:`notify_models_changed` is."""
    _watchers.add(widget)


def notify_models_changed() -> None:
    """Re-read the registry in every open model list (call after a model was added)."""
    for widget in list(_watchers):
        try:
            widget.reload()
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
        for kind, title in GROUPS:
            group = [m for m in methods if m.kind == kind]
            if not group:
                continue
            header = QStandardItem(title)
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            font = QFont()
            font.setBold(True)
            header.setFont(font)
            model.appendRow(header)
            for m in group:
                default = "  (default)" if m.available and m.is_default else ""
                slow = "  (slow on large images)" if m.slow else ""
                item = QStandardItem("    " + (m.title or m.name) + default + slow)
                item.setData(m.name, Qt.ItemDataRole.UserRole)
                item.setToolTip(m.description if m.available else m.unavailable_reason)
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
        if method is not None:
            self.methodChanged.emit(method)

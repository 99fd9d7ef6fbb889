"""Choosing image layers: a combo box (one) and a check list (several), both following the viewer."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from napari.layers import Image
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QListWidget, QListWidgetItem

from ._compact import FittingCombo

NONE_TEXT = "(none)"


class ImageLayerCombo(FittingCombo):
    """Pick one image layer (grayscale only); optionally offers "(none)".

    ``accept(layer) -> bool`` narrows the choice further (e.g. same shape as a GT layer);
    ``prefer(layer) -> bool`` says which layer to pick first when nothing is chosen yet
    (default: the selected layer). Emits ``layerChanged`` with the layer (or None).
    """

    layerChanged = Signal(object)

    def __init__(
        self,
        viewer,
        *,
        allow_none: bool = False,
        accept: Callable | None = None,
        prefer: Callable | None = None,
    ):
        super().__init__(elide=Qt.TextElideMode.ElideMiddle)  # a result's name ends in [...]
        self._viewer = viewer
        self._allow_none = allow_none
        self._accept = accept or (lambda layer: True)
        self._prefer = prefer or (lambda layer: layer is viewer.layers.selection.active)
        self._layers: list = []
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self.refresh)
        self.destroyed.connect(lambda *_: _disconnect(viewer, self.refresh, self._rename))
        self.currentIndexChanged.connect(lambda *_: self.layerChanged.emit(self.layer()))
        self.refresh()

    def layer(self) -> Image | None:
        """The chosen layer, or None."""
        i = self.currentIndex() - (1 if self._allow_none else 0)
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer) -> None:
        """Choose ``layer`` if it is offered."""
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer) + (1 if self._allow_none else 0))
        elif layer is None and self._allow_none:
            self.setCurrentIndex(0)

    def set_filter(self, accept: Callable) -> None:
        """Replace the extra condition a layer must meet, and refresh."""
        self._accept = accept
        self.refresh()

    def refresh(self, *_) -> None:
        """Rebuild the list, keeping the current choice when it is still there."""
        current = self.layer()
        layers = [
            layer
            for layer in reversed(self._viewer.layers)  # top of the layer list first
            if isinstance(layer, Image) and not layer.rgb and self._accept(layer)
        ]
        for layer in layers:  # follow renames
            layer.events.name.disconnect(self._rename)
            layer.events.name.connect(self._rename)
        self.blockSignals(True)
        self.clear()
        if self._allow_none:
            self.addItem(NONE_TEXT)
        self.addItems([layer.name for layer in layers])
        self._layers = layers
        self.blockSignals(False)
        if current in layers:
            self.set_layer(current)
        else:
            preferred = [ly for ly in layers if self._prefer(ly)]
            first = None if self._allow_none else (layers[0] if layers else None)
            self.set_layer(preferred[0] if preferred else first)
        if self.layer() is not current:
            self.layerChanged.emit(self.layer())

    def _rename(self, event) -> None:
        layer = event.source
        if layer in self._layers:
            self.setItemText(self._layers.index(layer) + (1 if self._allow_none else 0), layer.name)


def _disconnect(viewer, refresh, rename) -> None:
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.moved, events.reordered):
        event.disconnect(refresh)
    for layer in viewer.layers:
        layer.events.name.disconnect(rename)


class ImageLayerChecklist(QListWidget):
    """Tick any number of image layers; follows the viewer's layer list like the combo.

    ``ticked``: whether a layer starts ticked (new layers too); a layer the user ticked or
    unticked keeps that state across refreshes and renames. Emits ``changed`` when what is
    listed or ticked may have changed.
    """

    changed = Signal()

    def __init__(self, viewer, *, accept: Callable | None = None, ticked: bool = True):
        super().__init__()
        self._viewer = viewer
        self._accept = accept or (lambda layer: True)
        self._ticked = ticked
        self._layers: list = []
        # Layers not in the starting state (by layer, not name: a new layer under a deleted
        # one's name starts afresh; weak: a deleted layer is not kept alive by this list).
        self._flipped: weakref.WeakSet = weakref.WeakSet()
        # A long name loses its middle, not its end ('fmd_conf…raw [wavelet]'): results of
        # one input differ only at the end. The whole name is the item's tooltip.
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.itemChanged.connect(self._remember)
        self.itemChanged.connect(lambda *_: self.changed.emit())
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self.refresh)
        self.destroyed.connect(lambda *_: _disconnect(viewer, self.refresh, self._rename))
        self.refresh()

    def set_filter(self, accept: Callable) -> None:
        """Replace the condition a layer must meet, and refresh."""
        self._accept = accept
        self.refresh()

    def checked(self) -> list:
        """The ticked layers, top of the layer list first."""
        return [
            ly
            for i, ly in enumerate(self._layers)
            if self.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_checked(self, layer, on: bool = True) -> None:
        """Tick (or untick) ``layer`` if it is listed."""
        if layer in self._layers:
            state = Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
            self.item(self._layers.index(layer)).setCheckState(state)

    def refresh(self, *_) -> None:
        """Rebuild from the viewer; new layers start in the starting state."""
        self.blockSignals(True)
        self.clear()
        self._layers = [
            ly
            for ly in reversed(self._viewer.layers)
            if isinstance(ly, Image) and not ly.rgb and self._accept(ly)
        ]
        for layer in self._layers:  # follow renames
            layer.events.name.disconnect(self._rename)
            layer.events.name.connect(self._rename)
        for layer in self._layers:
            item = QListWidgetItem(layer.name)
            item.setToolTip(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = self._ticked != (layer in self._flipped)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)
        self.setMaximumHeight(24 + 22 * min(max(len(self._layers), 1), 6))
        self.changed.emit()

    def _rename(self, event) -> None:
        layer = event.source
        if layer not in self._layers:
            return
        item = self.item(self._layers.index(layer))
        self.blockSignals(True)
        item.setText(layer.name)
        item.setToolTip(layer.name)
        self.blockSignals(False)

    def _remember(self, item) -> None:
        row = self.row(item)
        if not 0 <= row < len(self._layers):
            return
        layer = self._layers[row]
        if (item.checkState() == Qt.CheckState.Checked) == self._ticked:
            self._flipped.discard(layer)
        else:
            self._flipped.add(layer)

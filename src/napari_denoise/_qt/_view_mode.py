"""The comparison toggle: input and result side by side, or overlaid with a difference layer."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from ._compact import narrow
from ._layers import add_difference

OFF, SIDE_BY_SIDE, OVERLAY = "Off", "Side by side", "Overlay + difference"


class ComparisonToggle(QWidget):
    """Shows the last input/result pair in one of three ways.

    *Side by side* turns on napari's grid with only the pair visible (other layers are
    hidden and shown again when leaving this mode). *Overlay + difference* puts the
    result over the input and adds ``input - result``: what the method removed, which
    should look like noise, not like cells.
    """

    def __init__(self, viewer):
        super().__init__()
        self.viewer = viewer
        self.pair = None
        self._hidden: list = []
        self._difference = None
        self._grid = False
        self.combo = QComboBox()
        self.combo.addItems([OFF, SIDE_BY_SIDE, OVERLAY])
        narrow(self.combo, 8)
        self.combo.setToolTip("Compare the input with the last result.")
        self.combo.setEnabled(False)
        self.combo.currentTextChanged.connect(self._apply)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Compare"))
        layout.addWidget(self.combo, 1)
        # napari holds this method weakly: it goes with this object. No slot on
        # ``destroyed`` here: one (a lambda) crashed the process (a segfault) when Qt
        # destroyed this child widget with its dock while a run's worker was busy.
        viewer.layers.events.removed.connect(self._on_removed)

    def set_pair(self, source, result) -> None:
        """Compare ``source`` with ``result`` from now on (re-applies the current mode)."""
        self._reset()
        self.pair = (source, result)
        self.combo.setEnabled(True)
        self._apply(self.combo.currentText())

    def mode(self) -> str:
        """The current mode's text."""
        return self.combo.currentText()

    def set_mode(self, mode: str) -> None:
        """Switch to ``mode`` (OFF, SIDE_BY_SIDE or OVERLAY)."""
        self.combo.setCurrentText(mode)

    def _apply(self, mode: str) -> None:
        self._reset()
        if self.pair is None or mode == OFF:
            return
        source, result = self.pair
        source.visible = result.visible = True
        if mode == SIDE_BY_SIDE:
            self._hidden = [ly for ly in self.viewer.layers if ly.visible and ly not in self.pair]
            for layer in self._hidden:
                layer.visible = False
            self.viewer.grid.enabled = self._grid = True
            self.viewer.reset_view()
        else:
            name = f"noise removed: {result.name}"
            self._difference = add_difference(self.viewer, source, result, name=name)
        self.viewer.layers.selection.active = result

    def _reset(self) -> None:
        if self._grid:  # only undo what this toggle did
            self.viewer.grid.enabled = self._grid = False
            self.viewer.reset_view()
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        if self._difference is not None and self._difference in self.viewer.layers:
            self.viewer.layers.remove(self._difference)
        self._difference = None

    def _on_removed(self, event) -> None:
        try:
            self.combo.isEnabled()
        except RuntimeError:  # Qt has deleted this widget; its Python side is not gone yet
            return
        if self.pair is not None and event.value in self.pair:
            self.pair = None
            self.combo.blockSignals(True)
            self.combo.setCurrentText(OFF)
            self.combo.blockSignals(False)
            self.combo.setEnabled(False)
            self._reset()
        elif event.value is self._difference:
            self._difference = None

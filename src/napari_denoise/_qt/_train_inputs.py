"""The Train widget's two choosers: a Shapes layer (training regions) and the start model."""

from __future__ import annotations

from pathlib import Path

from napari.layers import Shapes
from qtpy.QtCore import Qt

from ..engine.methods import default_method, list_methods
from ..engine.training.options import passes_input_through, untrainable_reason
from ._compact import FittingCombo
from ._layer_combo import NONE_TEXT, _disconnect
from ._method_picker import display_name, grouped, is_user_model, tooltip, watch_models

NEW_UNET = "new:unet"


class ShapesLayerCombo(FittingCombo):
    """Pick a Shapes layer, or "(none)"; follows the viewer's layer list."""

    def __init__(self, viewer):
        super().__init__(elide=Qt.TextElideMode.ElideMiddle)
        self._viewer = viewer
        self._layers: list = []
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self.refresh)
        self.destroyed.connect(lambda *_: _disconnect(viewer, self.refresh, self.refresh))
        self.refresh()

    def layer(self) -> Shapes | None:
        """The chosen Shapes layer, or None."""
        i = self.currentIndex() - 1
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer) -> None:
        """Choose ``layer`` (None: "(none)")."""
        self.setCurrentIndex(self._layers.index(layer) + 1 if layer in self._layers else 0)

    def refresh(self, *_) -> None:
        """Rebuild the list, keeping the current choice when it is still there."""
        current = self.layer()
        self._layers = [ly for ly in reversed(self._viewer.layers) if isinstance(ly, Shapes)]
        self.blockSignals(True)
        self.clear()
        self.addItems([NONE_TEXT] + [ly.name for ly in self._layers])
        self.set_layer(current)
        self.blockSignals(False)


class StartModelCombo(FittingCombo):
    """Where training starts: a shipped or user model from the registry, or a new U-Net.

    Chosen at first: the model trained last (in this session, :meth:`remember`, else the
    newest of your trained models on disk), else the shipped default, never merely the
    first of the list. Models training cannot start
    from (an imported TorchScript network) are listed greyed, their tooltip says why.
    """

    last_trained: str | None = None  # shared by every Train widget of the session

    @classmethod
    def remember(cls, name: str) -> None:
        """``name`` was just trained: the next Train widget starts from it."""
        cls.last_trained = name

    def __init__(self):
        super().__init__(shorten=True)
        self.setToolTip(
            "Fine-tune a trained model (fast, needs little data) or train a new U-Net "
            "from random weights (needs more steps)."
        )
        self._psf = False
        self._mode = "supervised"
        self._residual: set[str] | None = None  # models that add their input (N2V2 cannot)
        self._fill()
        watch_models(self)

    def set_mode(self, mode: str) -> None:
        """PSF models are offered only to a PSF run (their blur is part of the network);
        N2V2 cannot start from a network that adds its input to its output (shown greyed)."""
        self._psf = mode == "n2v-psf"
        self._mode = mode
        if mode == "n2v2" and self._residual is None:
            self._find_residual()
        self._fill()

    def _find_residual(self) -> None:
        """Which models add their input to their output (N2V2 cannot start from them)."""
        self._residual = {
            m.name
            for m in list_methods(kind="model", include_unavailable=False)
            if passes_input_through(m.model.config if m.model is not None else {})
        }

    def reload(self) -> None:
        """Re-read the registry (a model was added), keeping the current choice."""
        self._residual = None  # the new model is checked again when N2V2 needs it
        if self._mode == "n2v2":
            self._find_residual()
        self._fill()

    def _fill(self) -> None:
        current = self.currentData()
        self.blockSignals(True)
        self.clear()
        models = list_methods(kind="model", include_unavailable=False)
        for m in [m for _, group in grouped(models) for m in group]:  # your models first
            psf = m.model is not None and m.model.architecture == "psf-wrap"
            if (psf and not self._psf) or m.name.endswith("-deconvolved"):
                continue
            name = display_name(m)
            self.addItem(name if name == m.name else f"{name}  [{m.name}]", m.name)
            self.setItemData(self.count() - 1, tooltip(m), Qt.ItemDataRole.ToolTipRole)
            refused = untrainable_reason(m.model.architecture if m.model else None, m.name)
            if refused:
                item = self.model().item(self.count() - 1)
                item.setEnabled(False)
                item.setToolTip(refused)
            elif self._mode == "n2v2" and m.name in (self._residual or ()):
                item = self.model().item(self.count() - 1)
                item.setEnabled(False)
                item.setToolTip(
                    "N2V2 needs a network that does not add its input to its output; "
                    "start from a new U-Net or choose Noise2Void."
                )
        self.addItem("New U-Net (random weights)", NEW_UNET)
        usable = [self.itemData(i) for i in range(self.count()) if self.model().item(i).isEnabled()]
        last = self.last_trained or _newest_trained(models)
        for choice in (current, last, _default_name(), NEW_UNET):
            if choice in usable:
                self.setCurrentIndex(self.findData(choice))
                break
        self.blockSignals(False)

    def start(self) -> str:
        """The engine's ``start``: a model name, or ``"new:unet"``."""
        return self.currentData()


def _newest_trained(models) -> str | None:
    """Your model trained most recently (its card written last); imported ones do not
    count (they were not trained here)."""
    newest = (0.0, None)
    for m in models:
        if not is_user_model(m) or m.model.imported_from:
            continue
        try:
            written = Path(m.model.card).stat().st_mtime
        except OSError:
            continue
        newest = max(newest, (written, m.name), key=lambda pair: pair[0])
    return newest[1]


def _default_name() -> str | None:
    """The shipped default model's name (None if there is none)."""
    try:
        return default_method().name
    except RuntimeError:  # no default registered
        return None

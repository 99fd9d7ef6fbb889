"""The preview row: [Preview on: visible area | drawn rectangle]  [Preview].

Choosing "drawn rectangle" adds a Shapes layer in rectangle mode, so that drawing the
region is one drag; a preview result is shown over the input as its own layer.
"""

from __future__ import annotations

from napari.layers import Shapes
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from ._compact import narrow
from ._layers import PREVIEW_KEY, result_name
from ._preview import Region, shapes_box

VISIBLE, RECTANGLE = "visible area", "drawn rectangle"
REGION_LAYER = "preview region"


class PreviewControls(QWidget):
    """Where to preview, and the button; ``box(layer)`` gives the rectangle (or None)."""

    def __init__(self, viewer, current_layer):
        super().__init__()
        self.viewer = viewer
        self._current_layer = current_layer  # callable: the layer being denoised
        self.source = QComboBox()
        self.source.addItems([VISIBLE, RECTANGLE])
        narrow(self.source, 6)
        self.source.setToolTip(
            "Preview the current plane: what is on screen, or a rectangle you draw."
        )
        self.button = QPushButton("Preview")
        self.button.setToolTip("Denoise only the current plane, quickly, to tune the parameters.")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Preview on"))
        row.addWidget(self.source, 1)
        row.addWidget(self.button)
        self.source.currentTextChanged.connect(self._on_source)

    def box(self, layer):
        """(y0, y1, x0, x1) of the drawn rectangle in ``layer``'s pixels, or None (visible area)."""
        if self.source.currentText() != RECTANGLE:
            return None
        return shapes_box(self.region_layer(create=False), self.viewer, layer)

    def _on_source(self, text: str) -> None:
        if text == RECTANGLE:
            self.region_layer(create=True)

    def region_layer(self, *, create: bool) -> Shapes | None:
        """The Shapes layer whose rectangle bounds the preview (made on request)."""
        if REGION_LAYER in self.viewer.layers:
            return self.viewer.layers[REGION_LAYER]
        active = self.viewer.layers.selection.active
        if isinstance(active, Shapes):
            return active
        if not create:
            return next((ly for ly in reversed(self.viewer.layers) if isinstance(ly, Shapes)), None)
        layer = self._current_layer()
        geometry = {"scale": layer.scale[-2:], "translate": layer.translate[-2:]} if layer else {}
        shapes = self.viewer.add_shapes(
            name=REGION_LAYER,
            ndim=2,
            edge_color="yellow",
            face_color="transparent",
            edge_width=2,
            **geometry,
        )
        shapes.mode = "add_rectangle"
        show_info("Draw a rectangle on the image, then press Preview.")
        return shapes

    def add_result(self, source, region: Region, result, kwargs: dict):
        """Put the previewed plane over ``source`` as '<source> [<method> preview]'."""
        data, placement = region.place(result.data[region.plane], source)
        kwargs = {
            **kwargs,
            **placement,
            "metadata": {PREVIEW_KEY: source.name, "params": result.params},
        }
        name = result_name(source.name, result.method, preview=True)
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        layer = self.viewer.add_image(data, name=name, **kwargs)
        if REGION_LAYER in self.viewer.layers:  # keep the drawn rectangle visible on top
            index = self.viewer.layers.index(REGION_LAYER)
            self.viewer.layers.move(index, len(self.viewer.layers))
        return layer

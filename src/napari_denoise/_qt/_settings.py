"""Settings shared by every method: the input's axes, and the tile size and device."""

from __future__ import annotations

from napari.qt.threading import create_worker
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QWidget

from .._napari import layer_axes
from ..engine.device import DEVICES, resolve_device
from ..engine.methods import Param
from ..engine.pipeline import DEFAULT_TILE
from ..errors import DenoiseError
from ..io import infer_axes, normalize_axes
from ._compact import narrow
from ._params import AutoNumber

AXIS_NAMES = {"T": "time", "Z": "Z", "C": "channel", "Y": "Y", "X": "X"}
NO_LAYER = "No image layer: open an image or a sample (File > Open Sample)."
TILE = Param(
    "tile", int, None, "Tile size in Y and X (pixels); auto = the method's default", 16, 8192
)


def describe(shape, dtype, axes: str | None) -> str:
    """'5 × 256 × 256 (time, Y, X), uint16'."""
    sizes = " × ".join(str(n) for n in shape)
    names = f" ({', '.join(AXIS_NAMES[a] for a in axes)})" if axes else ""
    return f"{sizes}{names}, {dtype}"


class InputAxes(QWidget):
    """What the chosen layer is (size, axes, type), with its axes letters editable."""

    def __init__(self):
        super().__init__()
        self.info = QLabel(NO_LAYER)
        self.info.setWordWrap(True)
        self.axes = QLineEdit()
        self.axes.setToolTip(
            "One letter per dimension: T time, Z depth, C channel, Y and X the image plane.\n"
            "Change it if the guess is wrong (e.g. ZYX for a volume, TYX for a time-lapse)."
        )
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.info)
        form.addRow("Axes", self.axes)

    def set_layer(self, layer) -> None:
        """Describe ``layer`` and guess its axes (stored ones first)."""
        if layer is None:
            self.info.setText(NO_LAYER)
            self.axes.setText("")
            return
        shape = layer.data.shape
        try:
            axes = layer_axes(shape, layer.metadata) or infer_axes(shape)
        except DenoiseError:
            axes = ""
        self.axes.setText(axes)
        self.info.setText(describe(shape, layer.data.dtype, axes or None))

    def axes_for(self, ndim: int) -> str:
        """The axes typed in, checked (InputError with a sentence if they do not fit)."""
        return normalize_axes(self.axes.text() or "?", ndim)


class ComputeSettings(QWidget):
    """Tile size (memory per step) and compute device (models only)."""

    def __init__(self):
        super().__init__()
        self.tile = AutoNumber(TILE, waiting_text="")
        self.tile.setToolTip("Large images are processed in tiles of this size (less memory).")
        self.tile.box.setValue(DEFAULT_TILE)
        self.tile.box.setSingleStep(128)
        self.tile.box.setSuffix(" px")
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        narrow(self.device, 6)
        self.device_note = QLabel("")
        self.device.currentTextChanged.connect(self._resolve_device)
        device_row = QHBoxLayout()
        device_row.addWidget(self.device)
        device_row.addWidget(self.device_note, 1)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Tile size", self.tile)
        form.addRow("Device", device_row)
        self._device_choice: dict[str, str] = {}

    def tile_size(self) -> int | None:
        """The tile size, or None for the method's default."""
        return self.tile.value()

    def set_method(self, method) -> None:
        """Devices matter only for models; classical filters always run on the CPU."""
        is_model = method.kind == "model"
        if self.tile.value() is None:  # on auto: show the size this method will use
            self.tile.box.setValue(int(method.extra.get("tile", DEFAULT_TILE)))
        self.device.setEnabled(is_model)
        self.device.setToolTip("" if is_model else "Classical filters run on the CPU.")
        if is_model:
            self._resolve_device(self.device.currentText())
        else:
            self.device_note.setText("CPU (classical filter)")

    def _resolve_device(self, name: str) -> None:
        if not self.device.isEnabled():
            return
        if name in self._device_choice:
            self.device_note.setText(self._device_choice[name])
            return
        self.device_note.setText("checking…")

        def show(text: str, name=name) -> None:
            self._device_choice[name] = text
            try:
                if self.device.currentText() == name:
                    self.device_note.setText(text)
            except RuntimeError:  # the widget was closed meanwhile
                pass

        def work():  # importing torch takes a moment: not on the GUI thread
            try:
                return f"→ {resolve_device(name).upper()}"
            except DenoiseError as err:
                return str(err)

        create_worker(work, _connect={"returned": show}, _start_thread=True)

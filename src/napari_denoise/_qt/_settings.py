"""Settings shared by every method: the input's axes, and the tile size and device."""

from __future__ import annotations

from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from .._napari import layer_axes
from ..axes import infer_axes, normalize_axes
from ..engine.denoise.pipeline import DEFAULT_TILE
from ..engine.device import DEVICE_LABELS, DEVICES, resolve_device
from ..engine.methods import Param
from ..errors import DenoiseError
from ._compact import FittingCombo, narrow
from ._params import AutoNumber
from ._warm import load_torch
from ._words import param_label

DEVICE_HELP = (
    "Where a deep-learning model runs: Automatic picks the graphics card (GPU) when there "
    "is one, else the processor (CPU)."
)
AXIS_NAMES = {"T": "time", "Z": "Z", "C": "channel", "Y": "Y", "X": "X"}
NO_LAYER = "No image layer: open an image or a sample (File > Open Sample)."
RGB_LAYER = (
    "Layer '{name}' holds {n} colour channels in one RGB layer, and each channel is denoised "
    "on its own: press Split channels. (For a TIFF, opening it with File > Open with "
    "Plugin > napari-denoise splits the channels and keeps the axes and pixel size.)"
)
GUESSED = (
    "Axes guessed from the shape: if wrong, correct them below, or reopen the file with "
    "File > Open with Plugin > napari-denoise (reads axes and pixel size)."
)
TILE = Param(
    "tile",
    int,
    None,
    "Tile size in Y and X (pixels); auto: the method's default",
    16,
    8192,
    label="Tile size",
)


def describe(shape, dtype, axes: str | None) -> str:
    """'5 × 256 × 256 (time, Y, X), uint16'."""
    sizes = " × ".join(str(n) for n in shape)
    names = f" ({', '.join(AXIS_NAMES[a] for a in axes)})" if axes else ""
    return f"{sizes}{names}, {dtype}"


class InputAxes(QWidget):
    """What the chosen layer is (size, axes, type), with its axes letters editable.

    When no layer fits (e.g. an RGB layer from napari's own reader), it says what to do and
    offers to split the colour channels into layers; emits ``split`` with the new layers.
    """

    split = Signal(list)

    def __init__(self, viewer=None):
        super().__init__()
        self.viewer = viewer
        self.info = QLabel(NO_LAYER)
        self.info.setWordWrap(True)
        self.info.setMinimumWidth(120)  # wraps: no wider than the dock
        self.split_button = QPushButton("Split channels")
        self.split_button.setToolTip(
            "Make one grayscale layer per colour channel (the RGB layer is kept, hidden)."
        )
        self.split_button.setVisible(False)
        self.split_button.clicked.connect(self.split_rgb)
        self.axes = QLineEdit()
        self.axes.setToolTip(
            "One letter per dimension: T time, Z depth, C channel, Y and X the image plane.\n"
            "Change it if the guess is wrong (e.g. ZYX for a volume, TYX for a time-lapse)."
        )
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.info)
        form.addRow(self.split_button)
        form.addRow("Axes", self.axes)

    def _rgb(self):
        layers = self.viewer.layers if self.viewer is not None else []
        return next((ly for ly in layers if isinstance(ly, Image) and ly.rgb), None)

    def set_layer(self, layer) -> None:
        """Describe ``layer`` and guess its axes (stored ones first)."""
        self.split_button.setVisible(False)
        if layer is None:
            rgb = self._rgb()
            if rgb is not None:
                n = rgb.data.shape[-1]
                self.info.setText(RGB_LAYER.format(name=rgb.name, n=n))
                self.split_button.setVisible(True)
            else:
                self.info.setText(NO_LAYER)
            self.axes.setText("")
            return
        shape = layer.data.shape
        stored = layer_axes(shape, layer.metadata)
        try:
            axes = stored or infer_axes(shape)
        except DenoiseError:
            axes = ""
        self.axes.setText(axes)
        text = describe(shape, layer.data.dtype, axes or None)
        if not stored and len(shape) > 2:
            text = f"{text}. {GUESSED}"
        self.info.setText(text)

    def split_rgb(self) -> list:
        """Add one grayscale layer per channel of the first RGB layer; hides the RGB one."""
        from napari.layers.utils.stack_utils import split_rgb

        rgb = self._rgb()
        if rgb is None:
            return []
        names = ("red", "green", "blue", "alpha")
        added = []
        for i, layer in enumerate(split_rgb(rgb, with_alpha=rgb.data.shape[-1] == 4)):
            layer.name = f"{rgb.name} [{names[i]}]"
            added.append(self.viewer.add_layer(layer))
        rgb.visible = False
        self.split.emit(added)
        return added

    def axes_for(self, ndim: int) -> str:
        """The axes typed in, checked (InputError with a sentence if they do not fit)."""
        return normalize_axes(self.axes.text() or "?", ndim)

    def axes_like(self, layer) -> str:
        """Axes for another layer run with the same settings: those stored with it, else
        those typed in when it has as many dimensions, else guessed from its shape
        (InputError with a sentence if none fits)."""
        shape = layer.data.shape
        stored = layer_axes(shape, layer.metadata)
        if stored:
            return normalize_axes(stored, len(shape))
        typed = self.axes.text()
        if typed and len(typed) == len(shape):
            return normalize_axes(typed, len(shape))
        return normalize_axes(infer_axes(shape), len(shape))


class ComputeSettings(QWidget):
    """Tile size (memory per step) and compute device (models only)."""

    def __init__(self):
        super().__init__()
        self.tile = AutoNumber(TILE, waiting_text="")
        self.tile.setToolTip("Large images are processed in tiles of this size (less memory).")
        self.tile.box.setToolTip("Tile size in pixels (Y and X). Smaller tiles use less memory.")
        self.tile.box.setValue(DEFAULT_TILE)
        self.tile.box.setSingleStep(128)
        self.tile.box.setSuffix(" px")
        self.device = FittingCombo(shorten=True)
        for code, words in zip(DEVICES, DEVICE_LABELS, strict=True):  # codes: for the CLI
            self.device.addItem(words, code)
        narrow(self.device, 8)
        self.device.setToolTip(DEVICE_HELP)
        self.device_note = QLabel("")
        self.device_note.setWordWrap(True)  # 'CPU (classical filter)' must not widen the form
        self.device_note.setMinimumWidth(60)
        self.device.currentIndexChanged.connect(lambda *_: self._resolve_device(self.device_name()))
        device_row = QHBoxLayout()
        device_row.addWidget(self.device)
        device_row.addWidget(self.device_note, 1)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(param_label(TILE), self.tile)
        form.addRow("Device", device_row)
        self._device_choice: dict[str, str] = {}

    def device_name(self) -> str:
        """The chosen device as the engine and the CLI name it: auto, cpu, cuda or mps."""
        return self.device.currentData() or "auto"

    def tile_size(self) -> int | None:
        """The tile size, or None for the method's default."""
        return self.tile.value()

    def set_method(self, method) -> None:
        """Devices matter only for models; classical filters always run on the CPU."""
        is_model = method.kind == "model"
        if self.tile.value() is None:  # on auto: show the size this method will use
            self.tile.box.setValue(int(method.tile or DEFAULT_TILE))
        self.device.setEnabled(is_model)
        self.device.setToolTip(DEVICE_HELP if is_model else "Classical filters run on the CPU.")
        if is_model:
            self._resolve_device(self.device_name())
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
                if self.device_name() == name:
                    self.device_note.setText(text)
            except RuntimeError:  # the widget was closed meanwhile
                pass

        def work():  # importing torch takes a moment: not on the GUI thread
            load_torch()  # paced so that the GUI thread keeps going
            try:
                return f"→ {resolve_device(name).upper()}"
            except DenoiseError as err:
                return str(err)

        create_worker(work, _connect={"returned": show}, _start_thread=True)

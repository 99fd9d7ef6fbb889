"""[Load model…] [Export…]: bring a model file in as a method, or package one of yours.

Both call the package's public functions ``napari_denoise.import_model(path)`` (returns
the new method's name) and ``napari_denoise.export_model(name, path)`` (a bioimage.io
zip), looked up when pressed: a napari-denoise without them shows the buttons disabled,
saying why. The work (reading, hashing, zipping weights) runs in a worker thread.
"""

from __future__ import annotations

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

import napari_denoise

from ._method_picker import is_user_model, notify_models_changed

MISSING = "This version of napari-denoise cannot {what} models (napari_denoise.{fn} is missing)."


def _function(name: str):
    return getattr(napari_denoise, name, None)


class ModelFiles(QWidget):
    """Load a model file as a method; export the chosen model of yours as a bioimage.io zip."""

    def __init__(self, picker, status: QLabel):
        super().__init__()
        self.picker = picker
        self.status = status
        self.worker = None
        self.load_button = QPushButton("Load model…")
        self.export_button = QPushButton("Export…")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.load_button)
        row.addWidget(self.export_button)
        self.load_button.clicked.connect(self._ask_load)
        self.export_button.clicked.connect(self._ask_export)
        picker.methodChanged.connect(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Enable what this napari-denoise can do for the chosen method, and say why not."""
        busy = self.worker is not None
        can_load = _function("import_model") is not None
        self.load_button.setEnabled(can_load and not busy)
        self.load_button.setToolTip(
            "Add a model file (a bioimage.io .zip, or a .safetensors with its .json card) "
            "to the list of methods, under Your models."
            if can_load
            else MISSING.format(what="load", fn="import_model")
        )
        method = self.picker.method()
        can_export = _function("export_model") is not None
        mine = method is not None and method.kind == "model" and is_user_model(method)
        imported = mine and method.model is not None and bool(method.model.imported_from)
        self.export_button.setEnabled(can_export and mine and not imported and not busy)
        if not can_export:
            tip = MISSING.format(what="export", fn="export_model")
        elif not mine:
            tip = "Choose one of your models in the list above to export it."
        elif imported:
            source = method.model.imported_from.get("source") or "a bioimage.io package"
            tip = f"'{method.name}' came from {source}: share that package instead."
        else:
            tip = f"Save '{method.name}' as a bioimage.io model package (.zip) to share it."
        self.export_button.setToolTip(tip)

    # ------------------------------------------------------------------ actions
    def load(self, path) -> None:
        """Import the model at ``path`` in a worker; it is then listed and selected."""
        self._run(_function("import_model"), (str(path),), self._loaded, f"Loading {path}…")

    def export(self, path) -> None:
        """Export the chosen model to ``path`` in a worker."""
        name = self.picker.method().name
        self._run(_function("export_model"), (name, str(path)), self._exported, "Exporting…")

    def _run(self, fn, args, done, text) -> None:
        if fn is None or self.worker is not None:
            return
        self.status.setText(text)
        self.worker = create_worker(fn, *args)
        self.worker.returned.connect(done)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.refresh()
        self.worker.start()

    def _loaded(self, name: str) -> None:
        notify_models_changed(select=name)
        self.status.setText(f"Model '{name}' added under Your models, and chosen.")

    def _exported(self, path) -> None:
        self.status.setText(f"Model written to {path}.")

    def _failed(self, error: Exception) -> None:
        message = str(error) or type(error).__name__
        self.status.setText(message)
        show_error(message)

    def _finished(self) -> None:
        self.worker = None
        self.refresh()

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a model", "", "Models (*.zip *.safetensors *.json)"
        )
        if path:
            self.load(path)

    def _ask_export(self) -> None:
        method = self.picker.method()
        path, _ = QFileDialog.getSaveFileName(
            self, "Export model", f"{method.name}.zip", "bioimage.io model (*.zip)"
        )
        if path:
            self.export(path)

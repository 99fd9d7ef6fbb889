"""The Denoise dock widget: pick an image layer and a method, preview, run, compare.

Composed of small widgets (layer combo, method picker, parameter form, run settings,
comparison toggle); the work runs in a :class:`~._runner.Runner`. This file only wires
them together and turns results into layers.
"""

from __future__ import annotations

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import DenoiseError, InputError
from ._command import as_command, as_python
from ._compact import Collapsible, DockTabs, narrow, scrolling
from ._fill import RESULT_FILE_KEY, Refresher, remove_file
from ._layer_combo import ImageLayerCombo
from ._layers import previews_of, result_kwargs, result_name, save_layer
from ._method_picker import MethodPicker
from ._model_files import ModelFiles
from ._params import ParamForm
from ._preview import preview_region
from ._preview_controls import RECTANGLE, REGION_LAYER, VISIBLE, PreviewControls
from ._runner import Job, Runner
from ._settings import ComputeSettings, InputAxes
from ._view_mode import ComparisonToggle
from ._words import (
    labelled_value,
    method_title,
    non_default,
    progress_text,
    reworded,
    stopped_text,
)

__all__ = ["RECTANGLE", "REGION_LAYER", "VISIBLE", "DenoiseWidget"]


def _chosen(params: dict, form: ParamForm) -> str:
    """'Noise level = 1.27 (chosen automatically)': labels as on screen."""
    auto = [p for p in form.method.params if p.auto and p.name not in form.values()]
    parts = [
        labelled_value(p, params[p.name])
        for p in auto
        if isinstance(params.get(p.name), int | float)
    ]
    return f"{', '.join(parts)} (chosen automatically)" if parts else ""


def _planes(shape, axes: str) -> int:
    """How many Y/X planes an image of ``shape`` and ``axes`` holds."""
    return int(np.prod([n for n, a in zip(shape, axes, strict=False) if a not in "YX"]))


class DenoiseWidget(DockTabs, QWidget):
    """Denoise an image layer into a new layer; the input is never modified."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.layer_combo = ImageLayerCombo(napari_viewer)
        self.layer_combo.setToolTip("The image to denoise (it is never changed).")
        self.picker = MethodPicker()
        self.picker.setToolTip("How to denoise: a trained network or a classical filter.")
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setMinimumWidth(120)  # wraps: no wider than the dock
        self.about.setStyleSheet("color: gray")
        self.params = ParamForm()
        self.input = InputAxes(napari_viewer)
        self.settings = ComputeSettings()
        self.previewer = PreviewControls(napari_viewer, self.layer_combo.layer)
        self.preview_on, self.preview_button = self.previewer.source, self.previewer.button
        self.run_button = QPushButton("Run on whole image")
        self.run_button.setToolTip(
            "Denoise the whole layer (every plane) into a new layer, in the background."
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job; nothing is added.")
        self.cancel_button.setEnabled(False)
        self.save_button = QPushButton("Save result…")
        self.save_button.setToolTip(
            "Save the last result as TIFF with its pixel size, plus a .json file saying how "
            "it was made (method, settings, input file, versions)."
        )
        self.save_button.setEnabled(False)
        self.copy_button = QPushButton("Copy as command")
        self.copy_button.setToolTip(
            "Copy the command line (napari-denoise denoise ...) and the Python call that "
            "repeat the last run, e.g. on a whole folder without napari."
        )
        self.copy_button.setEnabled(False)
        self.last_result = None
        self._last_run: dict = {}
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumWidth(120)  # wraps: no wider than the dock
        self.compare = ComparisonToggle(napari_viewer)
        self.model_files = ModelFiles(self.picker, self.status)
        self.runner = Runner(
            on_done=self._on_done,
            on_failed=self._on_job_failed,
            on_cancelled=self._on_cancelled,
            on_progress=self._on_progress,
            on_busy=self._on_busy,
            on_started=self._on_started,
            on_filled=lambda f: self._filling["refresher"].request(),
        )
        self._task: dict = {}
        # The result being filled in: layer, file, refresher (one dict, emptied, never replaced,
        # so that the teardown below can remove a half-filled layer without this widget).
        self._filling: dict = {}
        self._files: list = []  # (layer, path) of the file-backed results this widget made
        self._layout()
        self.layer_combo.layerChanged.connect(self.input.set_layer)
        self.input.split.connect(lambda layers: self.layer_combo.set_layer(layers[0]))
        self.save_button.clicked.connect(self._ask_save)
        self.copy_button.clicked.connect(self.copy_command)
        self.picker.methodChanged.connect(self._on_method)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.runner.cancel)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        # Not self: the slot must work while the widget is destroyed.
        runner, filling, removed = self.runner, self._filling, self._on_layer_removed
        self.destroyed.connect(lambda *_: _teardown(napari_viewer, runner, removed, filling))
        self.input.set_layer(self.layer_combo.layer())
        self._on_method(self.picker.method())

    def _layout(self) -> None:
        method_box = QGroupBox("Method")
        method_layout = QVBoxLayout(method_box)
        for w in (self.picker, self.model_files, self.about, self.params):
            method_layout.addWidget(w)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button, 1)
        run_row.addWidget(self.cancel_button)
        narrow(self.picker, 18)
        self.advanced = Collapsible(
            "Advanced", self.settings, tooltip="Tile size (memory per step) and compute device."
        )
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(QLabel("Image layer"))
        layout.addWidget(self.layer_combo)
        layout.addWidget(self.input)
        layout.addWidget(method_box)
        layout.addWidget(self.previewer)
        layout.addLayout(run_row)
        layout.addWidget(self.status)
        layout.addWidget(self.compare)
        result_row = QHBoxLayout()
        result_row.addWidget(self.save_button)
        result_row.addWidget(self.copy_button)
        layout.addLayout(result_row)
        layout.addWidget(self.advanced)
        layout.addStretch(1)
        self.scroll_area = scrolling(self, body)

    # ------------------------------------------------------------------ actions
    def preview(self) -> bool:
        """Denoise the current plane's visible area (or drawn rectangle) into a preview layer."""
        return self._start(preview=True)

    def run(self) -> bool:
        """Denoise the whole image layer in a worker thread; the result becomes a new layer."""
        return self._start(preview=False)

    def _start(self, *, preview: bool) -> bool:
        layer, method = self.layer_combo.layer(), self.picker.method()
        if layer is None:
            show_info("Choose an image layer first (File > Open, or File > Open Sample).")
            return False
        try:
            if layer.multiscale:
                raise InputError(
                    f"Layer '{layer.name}' is a multiscale pyramid; open its full-resolution "
                    "image as a plain layer to denoise it."
                )
            axes = self.input.axes_for(layer.ndim)
            params = self.params.values()
            if preview:
                box = self.previewer.box(layer)
                region = preview_region(self.viewer, layer, axes, method_ndim=method.ndim, box=box)
                data, axes = region.cut(layer.data), region.axes
            else:
                region, data = None, layer.data
        except DenoiseError as err:
            self._on_failed(str(err))
            return False
        what = f"{method_title(method.name)} on {layer.name!r}" + (
            f" (preview, {region.description})" if preview else ""
        )
        source = (
            None
            if preview
            else {
                "path": layer.source.path or layer.metadata.get("source_path"),
                "layer": layer.name,
            }
        )
        label, tile = f"Denoising: {what}", self.settings.tile_size()
        device = self.settings.device_name()
        job = Job(data, method.name, axes, params, tile, label, source, device, fill=not preview)
        if not self.runner.start(job):
            return False
        self._task = {
            "layer": layer,
            "method": method.name,
            "axes": axes,
            "region": region,
            "settings": non_default(method, params),
            "params": params,
            "tile": tile,
            "device": self.settings.device_name() if method.kind == "model" else None,
            "path": layer.source.path or layer.metadata.get("source_path"),
            "planes": _planes(np.shape(data), axes),
        }
        self.status.setText(f"Denoising {what}…")
        return True

    # ------------------------------------------------------------------ results
    def _on_progress(self, tick) -> None:
        text = progress_text(tick, method_title(self._task["method"]))
        if self._filling.get("file"):
            text += f" (writing to {self._filling['file']})"
        self.status.setText(text)

    def _on_started(self, started) -> None:
        """A stack's result array exists: show it now, it fills in plane by plane."""
        task = self._task
        layer = task["layer"]
        kwargs = result_kwargs(layer, axes=task["axes"])
        if started.path:
            kwargs["metadata"][RESULT_FILE_KEY] = started.path
            self.status.setText(f"The result is too big for memory: writing it to {started.path}")
        name = result_name(layer.name, task["method"], settings=task["settings"])
        new = self.viewer.add_image(started.data, name=name, **kwargs)
        self._filling.update(layer=new, file=started.path, refresher=Refresher(new))
        if started.path:
            self._files.append((new, started.path))

    def _discard_partial(self) -> None:
        """Cancel or failure: the half-filled result layer and its file go."""
        _discard(self.viewer, self._filling)

    def _on_done(self, outcome) -> None:
        task, result = self._task, outcome.result
        layer = task["layer"]
        if layer not in self.viewer.layers:
            self._discard_partial()
            return  # cancelled on removal; a result that arrived meanwhile is dropped
        region = task["region"]
        kwargs = result_kwargs(layer, axes=task["axes"], provenance=outcome.provenance)
        chosen = _chosen(result.params, self.params)
        self.params.show_chosen(result.params)
        if region is None:
            for preview in previews_of(self.viewer, layer):  # it would hide the input
                self.viewer.layers.remove(preview)
            new, file = self._filling.get("layer"), self._filling.get("file")
            if new is None:
                name = result_name(layer.name, result.method, settings=task["settings"])
                new = self.viewer.add_image(result.data, name=name, **kwargs)
            elif new not in self.viewer.layers:
                self._discard_partial()
                return  # the user deleted the filling layer (and so cancelled)
            else:
                self._filling.pop("refresher").refresh()
                self._filling.clear()  # done: the layer (and its file) stays
                new.metadata = {**kwargs["metadata"], **_file_key(new)}
            self.last_result = new
            self.save_button.setEnabled(True)
            self.copy_button.setEnabled(True)
            self._last_run = {k: task[k] for k in ("method", "params", "axes", "tile", "device")}
            self._last_run["input_path"] = task["path"]
            self.compare.set_pair(layer, new)
            done = f"Done in {result.seconds:.1f} s → layer '{new.name}'. {chosen}"
            if file:
                done += f" It is kept in {file} (too big for memory) until the layer is deleted."
            self.status.setText(done.strip())
            return
        self.previewer.add_result(layer, region, result, kwargs)
        done = f"Preview ({region.description}) in {result.seconds:.1f} s. {chosen}"
        self.status.setText(done.strip())

    def save_result(self, path) -> list:
        """Write the last result (TIFF + provenance sidecar) to ``path``; the written paths."""
        if self.last_result is None or self.last_result not in self.viewer.layers:
            raise InputError("There is no result to save yet: press Run first.")
        return save_layer(self.last_result, path)

    def command_text(self) -> str:
        """The command line and the Python call that repeat the last run."""
        run = self._last_run
        if not run:
            return ""
        python = {k: run[k] for k in ("method", "params", "axes", "input_path")}
        return f"{as_command(**run)}\n\n{as_python(**python)}"

    def copy_command(self) -> str:
        """Put :meth:`command_text` on the clipboard (and return it)."""
        from qtpy.QtWidgets import QApplication

        text = self.command_text()
        if text:
            QApplication.clipboard().setText(text)
            self.status.setText("Copied the command line and the Python call to the clipboard.")
        return text

    def _ask_save(self) -> None:
        layer = self.last_result
        if layer is None or layer not in self.viewer.layers:
            self._on_failed("There is no result to save yet: press Run first.")
            return
        start = f"{layer.name}.tif".replace("/", "-")
        path, _ = QFileDialog.getSaveFileName(self, "Save result", start, "TIFF (*.tif *.tiff)")
        if not path:
            return
        self.status.setText(f"Saving '{layer.name}'…")

        def done(written):
            self.status.setText("Saved " + " and ".join(str(p) for p in written) + ".")

        def failed(err):
            self._on_failed(f"Could not save: {err}")

        create_worker(
            self.save_result,
            path,
            _connect={"returned": done, "errored": failed},
            _start_thread=True,
        )

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _on_job_failed(self, message: str) -> None:
        self._discard_partial()
        self._on_failed(reworded(message, self._task.get("method", "")))

    def _on_cancelled(self, last) -> None:
        self._discard_partial()
        self.status.setText(f"Cancelled{stopped_text(last)}; nothing was added.")

    def _on_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.preview_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------ events
    def _on_method(self, method) -> None:
        if method is None:
            return
        self.params.set_method(method)
        self.settings.set_method(method)
        self.about.setText(method.description)

    def _on_layer_removed(self, event) -> None:
        if self.runner.busy and event.value is self._task.get("layer"):
            self.runner.cancel()
            show_info(f"Layer '{event.value.name}' was deleted: denoising stopped, nothing added.")
        elif self.runner.busy and event.value is self._filling.get("layer"):
            self.runner.cancel()  # the result being filled in was deleted: stop computing it
        # A file-backed result is the layer's alone: it goes with the layer.
        for layer, path in [f for f in self._files if f[0] is event.value]:
            self._files.remove((layer, path))
            remove_file(path)

    def event(self, event) -> bool:
        # napari's close button takes the widget out of its dock (parent -> None) without
        # deleting it: stop the work then, so that no thread runs on for nothing.
        if event.type() == QEvent.Type.ParentChange and self.parent() is None:
            self.runner.cancel()
        return super().event(event)

    def showEvent(self, event) -> None:
        # Opened (e.g. from Layers > Filter > Denoise): work on the layer selected in napari.
        if not self.runner.busy:
            self.layer_combo.set_layer(self.viewer.layers.selection.active)
        super().showEvent(event)

    def closeEvent(self, event) -> None:
        self.runner.cancel()
        super().closeEvent(event)


def _file_key(layer) -> dict:
    """The result-file entry of a layer's metadata, if this widget made it file-backed."""
    path = layer.metadata.get(RESULT_FILE_KEY)
    return {RESULT_FILE_KEY: path} if path else {}


def _discard(viewer, filling: dict) -> None:
    """Cancel, failure or teardown: the half-filled result layer and its file go."""
    if filling.get("refresher") is not None:
        filling["refresher"].stop()
    layer = filling.get("layer")
    if layer is not None and layer in viewer.layers:
        viewer.layers.remove(layer)
    remove_file(filling.get("file"))
    filling.clear()


def _teardown(viewer, runner: Runner, on_removed, filling: dict) -> None:
    runner.shutdown()
    _discard(viewer, filling)
    viewer.layers.events.removed.disconnect(on_removed)

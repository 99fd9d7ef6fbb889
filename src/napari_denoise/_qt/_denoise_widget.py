"""The Denoise dock widget: pick an image layer and a method, preview, run, compare.

Composed of small widgets (layer combo, method picker, parameter form, run settings,
comparison toggle); the work runs in a :class:`~._runner.Runner`. This file only wires
them together and turns results into layers. Run denoises the chosen layer and the ones
ticked under "More layers", one after another in one worker: each result lands as its own
layer as soon as it is done; Cancel stops the batch and keeps the results already landed.
"""

from __future__ import annotations

import time
from functools import partial

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QTimer
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
from ._compact import Collapsible, DockTabs, Summary, narrow, scrolling
from ._fill import RESULT_FILE_KEY, Refresher, forget_result_file
from ._layer_combo import ImageLayerChecklist, ImageLayerCombo
from ._layer_roles import made_here
from ._layers import previews_of, result_kwargs, result_name, save_layer
from ._method_picker import MethodPicker
from ._model_files import ModelFiles
from ._params import ParamForm
from ._preview import preview_region
from ._preview_controls import RECTANGLE, REGION_LAYER, VISIBLE, PreviewControls
from ._run_state import Batch, Filling, Rerun, Task
from ._runner import BatchDone, Callbacks, Job, Runner, start_worker
from ._settings import ComputeSettings, InputAxes
from ._view_mode import ComparisonToggle
from ._warm import warm_model
from ._words import (
    labelled_value,
    method_title,
    neighbours_text,
    non_default,
    progress_text,
    reworded,
    stopped_text,
)

__all__ = ["RECTANGLE", "REGION_LAYER", "VISIBLE", "DenoiseWidget"]

RUN_ONE = "Run on whole image"
_warmed: set = set()  # (model card, device) warmed in this process


def _moot(name: str, params: dict) -> bool:
    """A setting that does nothing with the others as they are (the blur of a detail
    that is not put back, the Gaussian of a default that mixes none in): not worth a word."""
    if name == "detail_width":
        return not params.get("detail")
    if name in ("gaussian_share", "gaussian_sigma"):
        return not params.get("gaussian_share")
    return False


def _chosen(params: dict, form: ParamForm) -> str:
    """'Noise level = 1.27 (chosen automatically)': labels as on screen."""
    auto = [p for p in form.method.params if p.auto and p.name not in form.values()]
    parts = [
        labelled_value(p, params[p.name])
        for p in auto
        if isinstance(params.get(p.name), int | float) and not _moot(p.name, params)
    ]
    return f"{', '.join(parts)} (chosen automatically)" if parts else ""


def _skipped_text(skipped: list, *, alone: bool) -> str:
    """The reasons layers were skipped: the sentence alone for a run on one layer."""
    if alone and len(skipped) == 1:
        return skipped[0][1]
    return " ".join(f"Skipped '{name}': {reason}" for name, reason in skipped)


def _names(layers) -> str:
    return ", ".join(f"'{layer.name}'" for layer in layers)


def _job_and_task(layer, axes: str, method, params: dict, tile, device: str) -> tuple[Job, Task]:
    """The worker's :class:`Job` for one layer of a run, and what the widget keeps of it
    to turn its result into a layer (and to repeat it: Copy as command)."""
    path = layer.source.path or layer.metadata.get("source_path")
    channel = layer.metadata.get("channel") if path else None  # of a file with channels
    job = Job(
        data=layer.data,
        method=method.name,
        axes=axes,
        params=params,
        tile=tile,
        label=f"Denoising: {method_title(method.name)} on {layer.name!r}",
        source={"path": path, "layer": layer.name, "channel": channel},
        device=device,
        fill=True,
    )
    task = Task(
        layer=layer,
        method=method.name,
        axes=axes,
        settings=non_default(method, params),
        params=params,
        tile=tile,
        device=device if method.kind == "model" else None,
        path=path,
        channel=channel,
    )
    return job, task


class DenoiseWidget(DockTabs, QWidget):
    """Denoise an image layer into a new layer; the input is never modified."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.layer_combo = ImageLayerCombo(napari_viewer)
        self.layer_combo.setToolTip("The image to denoise (it is never changed).")
        self.picker = MethodPicker()
        self.picker.setToolTip("How to denoise: a trained network or a classical filter.")
        self.about = Summary()
        self.params = ParamForm()
        self.input = InputAxes(napari_viewer)
        self.settings = ComputeSettings()
        self.previewer = PreviewControls(napari_viewer, self.layer_combo.layer)
        self.preview_on, self.preview_button = self.previewer.source, self.previewer.button
        self.more_layers = ImageLayerChecklist(
            napari_viewer, accept=self._other_input, ticked=False
        )
        self.more_layers.setToolTip(
            "Tick other layers (e.g. the other channels) to denoise them too, one after "
            "another, with the same method and settings; each gets its own result layer."
        )
        self.run_button = QPushButton(RUN_ONE)
        self.run_button.setToolTip(
            "Denoise the whole layer (every plane), and the layers ticked under More layers, "
            "into new layers, in the background."
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(
            "Stop the running job; the layer being computed is not added (results of other "
            "layers already finished are kept)."
        )
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
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumWidth(120)  # wraps: no wider than the dock
        self.compare = ComparisonToggle(napari_viewer)
        self.model_files = ModelFiles(self.picker, self.status)
        self.runner = Runner(
            Callbacks(
                done=self._on_done,
                failed=self._on_job_failed,
                cancelled=self._on_cancelled,
                progress=self._on_progress,
                busy=self._on_busy,
                started=self._on_started,
                filled=self._on_filled,
                begun=self._on_begun,
                landed=self._on_landed,
                skipped=self._on_skipped,
            )
        )
        self._task: Task | None = None  # the input being denoised
        self._tasks: list[Task] = []  # every input of the batch, in order
        self._batch = Batch()  # the batch's results and skipped layers so far
        self._runs: list[tuple] = []  # (result layer, Rerun) for Save and Copy
        # The result being filled in (one record, emptied, never replaced, so that the
        # teardown below can remove a half-filled layer without this widget).
        self._filling = Filling()
        self._layout()
        self.layer_combo.layerChanged.connect(self.input.set_layer)
        self._input = [self.layer_combo.layer()]  # the input on screen (the combo re-emits)
        self.layer_combo.layerChanged.connect(self._on_input)
        self.layer_combo.layerChanged.connect(lambda *_: self.more_layers.refresh())
        self.more_layers.changed.connect(self._update_run_button)
        self.input.split.connect(lambda layers: self.layer_combo.set_layer(layers[0]))
        self.save_button.clicked.connect(self._ask_save)
        self.copy_button.clicked.connect(self.copy_command)
        self.picker.methodChanged.connect(self._on_method)
        self.preview_button.clicked.connect(self.preview)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.runner.cancel)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        napari_viewer.layers.selection.events.active.connect(self._on_selected)
        # A result's file goes with its layer, also after this widget is closed.
        napari_viewer.layers.events.removed.connect(forget_result_file)
        # Not self: the slot must work while the widget is destroyed.
        runner, filling = self.runner, self._filling
        slots = (self._on_layer_removed, self._on_selected)
        self.destroyed.connect(lambda *_: _teardown(napari_viewer, runner, slots, filling))
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
        self.more = Collapsible(
            "More layers",
            self.more_layers,
            tooltip="Denoise other layers too (e.g. every channel), with the same settings.",
        )
        layout.addWidget(self.more)
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
        layer, method = self.layer_combo.layer(), self.picker.method()
        if layer is None:
            show_info("Choose an image layer first (File > Open, or File > Open Sample).")
            return False
        try:
            axes = self._checked_axes(layer, chosen=True)
            params = self.params.values()
            box = self.previewer.box(layer)
            region = preview_region(self.viewer, layer, axes, method_ndim=method.ndim, box=box)
            data, axes = region.cut(layer.data), region.axes
        except DenoiseError as err:
            self._on_failed(str(err))
            return False
        what = f"{method_title(method.name)} on {layer.name!r} (preview, {region.description})"
        tile, device = self.settings.tile_size(), self.settings.device_name()
        job = Job(
            data=data,
            method=method.name,
            axes=axes,
            params=params,
            tile=tile,
            label=f"Denoising: {what}",
            device=device,
        )
        if not self.runner.start(job):
            return False
        self._task = Task(layer=layer, method=method.name, region=region)
        self._tasks, self._batch = [], Batch()
        self.params.clear_chosen()  # the last run's: this one chooses its own
        self.status.setText(f"Denoising {what}…")
        return True

    def run(self) -> bool:
        """Denoise the whole image layer, then the layers ticked under More layers, one
        after another in a worker thread; each result becomes a new layer."""
        layers, method = self.batch_layers(), self.picker.method()
        if not layers:
            show_info("Choose an image layer first (File > Open, or File > Open Sample).")
            return False
        params, tile = self.params.values(), self.settings.tile_size()
        device = self.settings.device_name()
        jobs, tasks, skipped = [], [], []
        for layer in layers:
            try:
                axes = self._checked_axes(layer, chosen=layer is layers[0])
            except DenoiseError as err:
                skipped.append((layer.name, reworded(str(err), method.name)))
                continue
            job, task = _job_and_task(layer, axes, method, params, tile, device)
            jobs.append(job)
            tasks.append(task)
        if not jobs:
            self._on_failed(_skipped_text(skipped, alone=len(layers) == 1))
            return False
        if len(jobs) > 1:
            jobs[0].label = f"Denoising {len(jobs)} layers with {method_title(method.name)}"
        if not self.runner.start(jobs):
            return False
        self._tasks, self._task = tasks, tasks[0]
        self.params.clear_chosen()  # the last run's: this one chooses its own
        self._batch = Batch(skipped=skipped)
        title = method_title(method.name)
        what = f"{title} on {tasks[0].layer.name!r}"
        if len(jobs) > 1:
            what = f"{title} on {len(jobs)} layers ({_names(t.layer for t in tasks)})"
        self.status.setText(f"Denoising {what}…")
        return True

    def batch_layers(self) -> list:
        """The layers Run denoises: the chosen one, then those ticked under More layers
        (in the layer list's order, bottom first, as channels are added)."""
        first = self.layer_combo.layer()
        if first is None:
            return []
        order = list(self.viewer.layers)
        extra = [ly for ly in self.more_layers.checked() if ly is not first and ly in order]
        return [first, *sorted(extra, key=order.index)]

    def _checked_axes(self, layer, *, chosen: bool) -> str:
        """The axes to denoise ``layer`` with (InputError with a sentence if it cannot be)."""
        if layer.multiscale:
            raise InputError(
                f"Layer '{layer.name}' is a multiscale pyramid; open its full-resolution "
                "image as a plain layer to denoise it."
            )
        return self.input.axes_for(layer.ndim) if chosen else self.input.axes_like(layer)

    def _other_input(self, layer) -> bool:
        """Offered under More layers: an image we did not make, other than the chosen one."""
        return not made_here(layer) and layer is not self.layer_combo.layer()

    def _update_run_button(self) -> None:
        n = len(self.batch_layers())
        self.run_button.setText(RUN_ONE if n <= 1 else f"Run on {n} layers")
        self.more.button.setText("More layers" + (f" ({n - 1} ticked)" if n > 1 else ""))

    # ------------------------------------------------------------------ results
    def _on_progress(self, tick) -> None:
        text = progress_text(tick, method_title(self._task.method))
        if len(self._tasks) > 1:  # 'layer 2 of 3 (ch2): Gaussian ...: part 1 of 3'
            index = self._batch.index
            where = f"layer {index + 1} of {len(self._tasks)} ({self._task.layer.name})"
            text = f"{where}: {text}"
        if self._filling.file:
            text += f" (writing to {self._filling.file})"
        self.status.setText(text)

    def _on_started(self, started) -> None:
        """A stack's result array exists: show it now, it fills in plane by plane."""
        task = self._task
        layer = task.layer
        kwargs = result_kwargs(layer, axes=task.axes)
        if started.path:
            kwargs["metadata"][RESULT_FILE_KEY] = started.path
            self.status.setText(f"The result is too big for memory: writing it to {started.path}")
        name = result_name(layer.name, task.method, settings=task.settings)
        # Added hidden and shown a moment later: inserting a layer and drawing its first
        # plane each cost napari's GUI thread tens of milliseconds, in two turns they do
        # not add up to one long pause.
        new = self.viewer.add_image(started.data, name=name, visible=False, **kwargs)
        QTimer.singleShot(0, partial(_show, self.viewer, new))
        self._filling.layer, self._filling.file = new, started.path
        self._filling.refresher = Refresher(new)

    def _on_filled(self, filled) -> None:
        refresher = self._filling.refresher
        if refresher is not None:
            refresher.request()

    def _discard_partial(self) -> None:
        """Cancel or failure: the half-filled result layer and its file go."""
        self._filling.discard(self.viewer)

    def _on_begun(self, begun) -> None:
        """The batch moves on to its next input."""
        self._task = self._tasks[begun.index]
        self._batch.index = begun.index
        if begun.index:
            self.params.clear_chosen()  # the previous input's

    def _on_skipped(self, skipped) -> None:
        """The engine refused an input of the batch: its half-filled result goes."""
        self._discard_partial()
        self._batch.ended = skipped.index + 1
        task = self._tasks[skipped.index]
        reason = reworded(skipped.reason, task.method)
        self._batch.skipped.append((task.layer.name, reason))

    def _on_landed(self, landed) -> None:
        """One input's result is complete: finish its layer (provenance, name, status)."""
        task, outcome = self._tasks[landed.index], landed.outcome
        self._batch.ended = landed.index + 1
        result, layer = outcome.result, task.layer
        if layer not in self.viewer.layers:
            self._discard_partial()
            return  # cancelled on removal; a result that arrived meanwhile is dropped
        kwargs = result_kwargs(layer, axes=task.axes, provenance=outcome.provenance)
        chosen = _chosen(result.params, self.params)
        self._show_chosen(layer, result.params)
        for preview in previews_of(self.viewer, layer):  # it would hide the input
            self.viewer.layers.remove(preview)
        new, file = self._filling.layer, self._filling.file
        if new is None:
            name = result_name(layer.name, result.method, settings=task.settings)
            new = self.viewer.add_image(result.data, name=name, **kwargs)
        elif new not in self.viewer.layers:
            self._discard_partial()
            return  # the user deleted the filling layer (and so cancelled)
        else:
            self._filling.refresher.refresh()
            self._filling.clear()  # done: the layer (and its file) stays
            new.metadata = {**kwargs["metadata"], **_file_key(new)}
        self.last_result = new
        self._batch.landed.append(new)
        self.save_button.setEnabled(True)
        self.copy_button.setEnabled(True)
        self._runs.append((new, task.rerun()))
        self.compare.set_pair(layer, new)
        done = f"Done in {result.seconds:.1f} s → layer '{new.name}'. {chosen}".strip()
        if neighbours_text(result):  # a stack: say that its planes were not denoised alone
            done += ("." if chosen else "") + " " + neighbours_text(result)
        if file:  # a sentence of its own, after the chosen values' full stop
            done += ("." if chosen else "") + f" It is kept in {file} (too big for memory)"
            done += " until the layer is deleted."
        self.status.setText(done)

    def _on_done(self, outcome) -> None:
        if isinstance(outcome, BatchDone):
            self._on_batch_done()
            return
        task, result = self._task, outcome.result  # a preview
        layer, region = task.layer, task.region
        if layer not in self.viewer.layers:
            return  # cancelled on removal; a result that arrived meanwhile is dropped
        kwargs = result_kwargs(layer, axes=region.axes, provenance=outcome.provenance)
        chosen = _chosen(result.params, self.params)
        self._show_chosen(layer, result.params)
        self.previewer.add_result(layer, region, result, kwargs)
        done = f"Preview ({region.description}) in {result.seconds:.1f} s. {chosen}"
        self.status.setText(done.strip())

    def _show_chosen(self, layer, params: dict) -> None:
        """Grey in the form what a run chose, if it ran on the image chosen now."""
        running = self._task.method if self._task is not None else None
        if layer is self.layer_combo.layer() and self.picker.method().name == running:
            self.params.show_chosen(params)

    def _on_batch_done(self) -> None:
        """Every input is done or skipped: say so once for the whole batch."""
        landed, skipped = self._batch.landed, self._batch.skipped
        alone = len(landed) + len(skipped) == 1
        if not landed:
            if skipped:
                self._on_failed(_skipped_text(skipped, alone=alone))
            return
        if alone:
            return  # the one result's own line stays
        seconds = time.monotonic() - self._batch.start
        count = f"{len(landed)} layer" + ("s" if len(landed) > 1 else "")
        done = f"Done: {count} in {seconds:.1f} s → {_names(landed)}."
        if skipped:
            done += " " + _skipped_text(skipped, alone=False)
        self.status.setText(done)

    def chosen_result(self):
        """The result Save and Copy act on: the layer selected in napari when it is one of
        this widget's results, else the last result (None when there is none)."""
        active = self.viewer.layers.selection.active
        if any(layer is active for layer, _ in self._runs):
            return active
        last = self.last_result
        return last if last is not None and last in self.viewer.layers else None

    def save_result(self, path) -> list:
        """Write the chosen result (TIFF + provenance sidecar) to ``path``; the written
        paths (see :meth:`chosen_result`)."""
        layer = self.chosen_result()
        if layer is None:
            raise InputError("There is no result to save yet: press Run first.")
        return save_layer(layer, path)

    def command_text(self) -> str:
        """The command line and the Python call that repeat the run of the chosen result."""
        layer = self.chosen_result()
        run: Rerun | None = next((run for made, run in self._runs if made is layer), None)
        if run is None:
            return ""
        return f"{run.command()}\n\n{run.python()}"

    def copy_command(self) -> str:
        """Put :meth:`command_text` on the clipboard (and return it)."""
        from qtpy.QtWidgets import QApplication

        text = self.command_text()
        if text:
            QApplication.clipboard().setText(text)
            self.status.setText("Copied the command line and the Python call to the clipboard.")
        return text

    def _ask_save(self) -> None:
        layer = self.chosen_result()
        if layer is None:
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
        method = self._task.method if self._task is not None else ""
        self._on_failed(reworded(message, method) + self._kept())

    def _kept(self) -> str:
        """' The finished results are kept: ...' for a batch stopped half-way."""
        landed = self._batch.landed
        return f" The finished results are kept: {_names(landed)}." if landed else ""

    def _on_cancelled(self, last) -> None:
        self._discard_partial()
        ended = self._batch.ended
        if self._tasks and ended >= len(self._tasks) and self._batch.landed:
            self._on_batch_done()  # Cancel came as the last result landed: all of it is done
            return
        done = stopped_text(last)
        if len(self._tasks) > 1:  # the first input not ended is the one stopped
            index = min(ended, len(self._tasks) - 1)
            where = f" layer {index + 1} of {len(self._tasks)}"
            self.status.setText(
                f"Cancelled during{where} ({self._tasks[index].layer.name}){done}; that "
                f"layer was not added.{self._kept() or ' Nothing was added.'}"
            )
            return
        self.status.setText(f"Cancelled{done}; nothing was added.")

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
        self.about.set_description(method.description)
        self._warm(method)

    def _warm(self, method) -> None:
        """A model chosen: load it (and PyTorch) and measure its speed in the background
        now, once, so that Run does not start with seconds of waiting (:func:`warm_model`)."""
        if method.kind != "model" or method.model is None:
            return
        key = (method.model.card, self.settings.device_name())
        if key in _warmed:
            return
        _warmed.add(key)
        start_worker(create_worker(warm_model, *key))

    def _on_layer_removed(self, event) -> None:
        waiting = self._tasks[self._batch.ended :] or [self._task]
        if self.runner.busy and any(t is not None and event.value is t.layer for t in waiting):
            self.runner.cancel()  # an input still to denoise is gone: stop the batch
            stopped = f"Layer '{event.value.name}' was deleted: denoising stopped"
            show_info(f"{stopped}.{self._kept()}" if self._kept() else f"{stopped}, nothing added.")
        elif self.runner.busy and event.value is self._filling.layer:
            self.runner.cancel()  # the result being filled in was deleted: stop computing it
        self._runs = [(layer, run) for layer, run in self._runs if layer is not event.value]
        # A file-backed result's file goes with its layer: forget_result_file, connected
        # to the viewer itself, so it also does after this widget is closed.

    def _on_input(self, layer) -> None:
        """Another input: the values chosen for the previous one are not its own."""
        if layer is not self._input[0]:
            self._input[0] = layer
            self.params.clear_chosen()

    def _on_selected(self, event=None) -> None:
        """A layer selected in napari's layer list is what Run denoises next (a result
        made here is not: selecting it to look at it or save it keeps the input)."""
        layer = self.viewer.layers.selection.active
        if layer is not None and not made_here(layer):
            self.layer_combo.set_layer(layer)  # offered only if it can be denoised

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


def _show(viewer, layer) -> None:
    """Make a result layer visible (if it is still there)."""
    if layer in viewer.layers:
        layer.visible = True


def _file_key(layer) -> dict:
    """The result-file entry of a layer's metadata, if this widget made it file-backed."""
    path = layer.metadata.get(RESULT_FILE_KEY)
    return {RESULT_FILE_KEY: path} if path else {}


def _teardown(viewer, runner: Runner, slots: tuple, filling: Filling) -> None:
    runner.shutdown()
    filling.discard(viewer)
    on_removed, on_selected = slots
    viewer.layers.events.removed.disconnect(on_removed)
    viewer.layers.selection.events.active.disconnect(on_selected)

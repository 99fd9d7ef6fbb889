"""The Train dock widget: fine-tune a model on your own images, in the background.

Pick the mode and the layers, where to start (a shipped model, one of yours, or a new
U-Net), press Start: a :class:`~._train_job.TrainRunner` runs the engine's fine-tuning
generator in a worker thread while a live plot shows the training loss and the
validation score. Stop ends training within one step and keeps the best model so far.
The engine saves the model with its card in the user model folder; it then appears at
once in every open Denoise widget's method list, and (optionally) the noisy layer is
denoised with it. The form itself is in :mod:`._train_form`; this file adds the run
controls and wires them up.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import (
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._napari import layer_axes
from ..axes import infer_axes
from ..errors import DenoiseError, InputError
from ._compact import DockTabs, ElidedButton, WrappingLabel, scrolling
from ._curve_plot import CurvePlot
from ._layers import result_kwargs, result_name
from ._method_picker import notify_models_changed
from ._runner import Callbacks, Job, Runner
from ._train_form import TrainForm
from ._train_inputs import NEW_UNET, StartModelCombo
from ._train_job import TrainJob, TrainRunner, rectangles, warm_up

__all__ = ["NEW_UNET", "TrainWidget"]

# The validation curve in plain words: what is measured, where, in what unit, which way is
# better. Held-out strips: a strip at the edge of each region that training never sees.
HELD_OUT_PSNR = "PSNR on held-out strips (dB)"  # higher is better (the plot's tooltip)
HELD_OUT_ERROR = "held-out error (lower is better)"  # on hidden pixels of held-out strips
WHY_PSNR_DIFFERS = (
    "(That PSNR is measured on held-out strips, each against its own brightness range; "
    "Compare measures whole images against the whole ground truth's range (darkest to "
    "brightest), which is wider, so its numbers are usually higher. Compare models there, "
    "on one image.)"
)


def _duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _source(layer) -> str:
    """The layer's file when it came from one (the card then records how to retrain), else its name."""
    return str(layer.source.path or layer.metadata.get("source_path") or layer.name)


def _axes(layer) -> str:
    return layer_axes(layer.data.shape, layer.metadata) or infer_axes(layer.data.shape)


class TrainWidget(DockTabs, TrainForm):
    """Train or fine-tune a denoising model on image layers; it joins the list of methods.

    The inputs and :meth:`spec` come from :class:`~._train_form.TrainForm`; this class
    adds Start/Stop, the progress and plot, and what happens with the new model.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)  # the form: inputs, mode logic, spec()
        self.model_name: str | None = None
        self._noisy = None  # the layer being trained on (the run's input)
        self._mode: str | None = None  # the run's mode
        self._pending: list[str] = []  # models still to run on the noisy layer
        self._closed = False  # taken out of its dock by napari's close button
        self._saved = ""  # what the last run saved (for the status line)
        self._stopping = False  # Stop pressed: no more time-left estimates
        self._build()
        self._layout()
        self.runner = TrainRunner(
            on_done=self._on_done,
            on_failed=self._on_failed,
            on_tick=self._on_tick,
            on_progress=self._on_progress,
            on_busy=self._on_busy,
            on_phase=self._on_phase,
        )
        self.denoiser = Runner(
            Callbacks(
                done=self._on_denoised,
                failed=self._on_failed,
                cancelled=lambda last: self.status.setText("Denoising cancelled; nothing added."),
                busy=self._on_busy,
            )
        )
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.denoise_button.clicked.connect(self.denoise_with_model)
        runners = (self.runner, self.denoiser)  # not self: used while the widget is destroyed
        removed, on_removed = napari_viewer.layers.events.removed, self._on_layer_removed
        removed.connect(on_removed)
        self.destroyed.connect(lambda *_: [r.shutdown() for r in runners])
        self.destroyed.connect(lambda *_: removed.disconnect(on_removed))
        self._on_busy(False)
        warm_up()

    # ------------------------------------------------------------------ run controls
    def _build(self) -> None:
        """Start/Stop, progress, plot, status (the form builds its own inputs)."""
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip(
            "Train in the background; the model is saved in your model folder and appears in "
            "the Denoise widget's list."
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End after the current step and keep the best model so far.")
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(14)
        self.eta = WrappingLabel()  # wraps, paths too: no wider than the dock
        # Two lines reserved (a phase's text): the step count after it does not relayout.
        self.eta.setMinimumHeight(2 * self.eta.fontMetrics().lineSpacing())
        self.plot = CurvePlot()
        self.status = WrappingLabel()
        # Two lines reserved: a longer message does not make the dock jump (and relayout).
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing())
        # Names a layer and a model, both maybe long: elided, never widening the dock.
        self.denoise_button = ElidedButton("Denoise with the new model")
        self.denoise_button.setToolTip("Denoise the noisy layer with the model just trained.")
        self.denoise_button.setVisible(False)

    def _layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.stop_button, 1)  # as easy to hit as Start
        body = QWidget()
        layout = QVBoxLayout(body)
        for group in self.input_groups:
            layout.addWidget(group)
        layout.addLayout(buttons)
        # The bar, and under it the step and time left: on one row the text would widen
        # the form past the dock as it grows (and be cut off on the right).
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.denoise_button)
        self.scroll_area = scrolling(self, body)

    # ------------------------------------------------------------------ starting and stopping
    def start(self) -> bool:
        """Start training in the background; False (with a message) when it cannot start."""
        if self.runner.busy or self.denoiser.busy:
            return False
        noisy = self.noisy.layer()
        supervised = self.mode_key() == "supervised"
        clean = self.clean.layer() if supervised else None
        try:
            if noisy is None:
                raise InputError("Choose the noisy image layer to train on (File > Open first).")
            if supervised and clean is None:
                raise InputError(
                    "Supervised training needs a clean layer (e.g. a long exposure of the same "
                    "field); open one, or choose Noise2Void to train on the noisy layer alone."
                )
            for layer in (noisy, clean):
                if layer is not None and layer.multiscale:
                    raise InputError(
                        f"Layer '{layer.name}' is a multiscale pyramid; open its full-resolution "
                        "image as a plain layer to train on it."
                    )
            if self.resume.isChecked() and not self.name.text().strip():
                raise InputError("To resume, type the name of the stopped model in New name.")
            regions = self._regions(noisy)
            axes = _axes(noisy)
            spec = self.config()  # the settings, checked before anything starts
        except DenoiseError as err:
            self._on_failed(str(err))
            return False
        job = TrainJob(
            spec=spec,
            noisy=noisy.data,
            clean=None if clean is None else clean.data,
            regions=regions,
            axes=axes,
            names=(_source(noisy), None if clean is None else _source(clean)),
            resume=self.resume.isChecked(),
        )
        if not self.runner.start(job):
            return False
        self._noisy, self._mode = noisy, job.spec.mode
        self._stopping = False
        self.model_name = None
        self.denoise_button.setVisible(False)
        self.plot.clear(job.spec.steps or 1)
        self.plot.set_validation_label(HELD_OUT_PSNR if clean is not None else HELD_OUT_ERROR)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta.setText("")
        start = self.start_model.currentText().split("  [")[0]
        self.status.setText(f"Training on '{noisy.name}', starting from {start}…")
        self.plot.set_note("Preparing the data and the model…")
        return True

    def _regions(self, noisy) -> list[tuple[int, int, int, int]] | None:
        shapes = self.regions.layer()
        if shapes is None:
            return None
        boxes, skipped = rectangles(shapes, noisy)
        if skipped:
            show_warning(f"{skipped} shape(s) in '{shapes.name}' are not rectangles: ignored.")
        if not boxes:
            raise InputError(
                f"The Shapes layer '{shapes.name}' has no rectangle; draw one with its "
                "rectangle tool, or set Regions to (none)."
            )
        return boxes

    def stop(self) -> None:
        """End training after the current step (the best model so far is saved)."""
        if self.runner.busy:
            self._stopping = True
            self.runner.stop()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping after this step; saving the best model so far…")
            self.plot.set_note("Stopping…")
        elif self.denoiser.busy:
            self._pending = []
            self.denoiser.cancel()

    # ------------------------------------------------------------------ progress and results
    def _on_phase(self, phase) -> None:
        """Before the first step and after the last: what happens, and how far it is."""
        self.eta.setText(phase.message)
        if self.runner.last is not None:  # after the steps (checking, saving): bar stays full
            return
        total = phase.total or 0
        if self.progress.maximum() != max(total, 1):
            self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(phase.done, total) if total else 0)
        self.plot.set_note(phase.what)

    def _on_tick(self, tick) -> None:
        # Every step goes into the plot's data (cheap); repaints come with _on_progress.
        val = tick.val_psnr if tick.val_psnr is not None else tick.val_loss
        self.plot.add(tick.step, tick.loss, val if tick.validated else None)

    def _on_progress(self, tick) -> None:
        # Fixed-size widgets only (no relayout of the dock): bar, one-line text, plot.
        self.plot.steps = tick.steps
        if self.progress.maximum() != tick.steps:
            self.progress.setRange(0, tick.steps)
        self.progress.setValue(tick.step)
        if self._stopping:
            left = " · stopping" if self.runner.busy else " · stopped"
        else:
            left = f" · {_duration(tick.eta_s)} left" if tick.step < tick.steps else ""
        self.eta.setText(f"step {tick.step} of {tick.steps}{left}")
        self.plot.update()

    def _on_done(self, result) -> None:
        self.model_name = result.name
        StartModelCombo.remember(result.name)  # the next Train widget starts from it
        # The engine registered it: list it everywhere, chosen in the Denoise widget.
        notify_models_changed(select=result.name)
        last = self.runner.last
        validation = result.card.get("validation", {})
        score = (
            f", PSNR {validation['psnr']:.2f} dB on the held-out strips"
            if validation.get("psnr") is not None
            else ""
        )
        steps = result.card.get("training", {}).get("steps", last.step if last else 0)
        how = "stopped early and saved" if result.stopped else "trained"
        message = f"Model '{result.name}' {how} after {steps} steps{score}."
        if getattr(result, "recommendation", None):  # the no-ground-truth check's verdict
            message = f"{message} {result.recommendation}"
        show_info(message)
        notes = " ".join(result.card.get("training", {}).get("notes", []))
        self._saved = f"{message} It is in the Denoise widget's list; files: {result.path}."
        if score:
            self._saved = f"{self._saved} {WHY_PSNR_DIFFERS}"
        if notes:  # choices made from the data, e.g. a blind block for correlated noise
            self._saved = f"{self._saved} {notes}"
        noisy = self._noisy
        if noisy not in self.viewer.layers:
            self._saved = f"Layer '{noisy.name}' was deleted, so training stopped. {self._saved}"
        self.status.setText(self._saved)
        if result.stopped:
            self.name.setText(result.name)  # ready to resume
        noisy = self._noisy
        self.denoise_button.setText(f"Denoise '{noisy.name}' with {result.name}")
        self.denoise_button.setVisible(True)
        if self.apply.isChecked() and not self._closed:
            self.denoise_with_model()

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def _on_busy(self, _busy: bool = False) -> None:
        busy = self.runner.busy or self.denoiser.busy
        self.start_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.denoise_button.setEnabled(not busy)
        if not self.runner.busy:
            self.plot.set_note("")

    # ------------------------------------------------------------------ using the new model
    def denoise_with_model(self) -> bool:
        """Run the new model (and its deconvolved twin, if asked) on the noisy layer."""
        noisy = self._noisy
        if self.model_name is None or noisy is None or self.runner.busy or self.denoiser.busy:
            return False
        if noisy not in self.viewer.layers:
            show_info(f"Layer '{noisy.name}' is no longer in the viewer.")
            return False
        self._pending = [self.model_name]
        if self._mode == "n2v-psf" and self.add_deconvolved.isChecked():
            self._pending.append(f"{self.model_name}-deconvolved")
        return self._denoise_next()

    def _denoise_next(self) -> bool:
        noisy = self._noisy
        if not self._pending or noisy not in self.viewer.layers:
            return False
        method = self._pending.pop(0)
        source = {
            "path": noisy.source.path or noisy.metadata.get("source_path"),
            "layer": noisy.name,
        }
        job = Job(
            data=noisy.data,
            method=method,
            axes=_axes(noisy),
            label=f"Denoising with {method}",
            source=source,
        )
        if not self.denoiser.start(job):
            return False
        self.status.setText(f"Denoising '{noisy.name}' with {method}…")
        return True

    def _on_denoised(self, outcome) -> None:
        noisy, result = self._noisy, outcome.result
        if noisy not in self.viewer.layers:
            return
        kwargs = result_kwargs(noisy, axes=result.axes, provenance=outcome.provenance)
        name = result_name(noisy.name, result.method)
        layer = self.viewer.add_image(result.data, name=name, **kwargs)
        self.status.setText(f"{self._saved} Denoised → layer '{layer.name}'.")
        self._denoise_next()

    def _on_layer_removed(self, event) -> None:
        if event.value is not self._noisy:
            return
        if self.runner.busy:  # nothing left to train on: stop now, keep what was learnt
            self.stop()
            self.status.setText(
                f"Layer '{event.value.name}' was deleted: training stops after this step and "
                "the best model so far is saved."
            )
        elif self.denoiser.busy:
            self._pending = []
            self.denoiser.cancel()

    # ------------------------------------------------------------------ lifetime
    def event(self, event) -> bool:
        # napari's close button takes the widget out of its dock without deleting it:
        # training then stops (the model so far is saved) and nothing new is started.
        if event.type() == QEvent.Type.ParentChange:
            self._closed = self.parent() is None
            if self._closed:
                self.runner.stop()
                self.denoiser.cancel()
        return super().event(event)

    def closeEvent(self, event) -> None:
        self.runner.stop()
        self.denoiser.cancel()
        super().closeEvent(event)

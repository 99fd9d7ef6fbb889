"""The Train dock widget: fine-tune a model on your own images, in the background.

Pick the mode and the layers, where to start (a shipped model, one of yours, or a new
U-Net), press Start: a :class:`~._train_job.TrainRunner` runs the engine's fine-tuning
generator in a worker thread while a live plot shows the training loss and the
validation score. Stop ends training within one step and keeps the best model so far.
The engine saves the model with its card in the user model folder; it then appears at
once in every open Denoise widget's method list, and (optionally) the noisy layer is
denoised with it. This file only builds the form and wires it up.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._napari import layer_axes
from ..errors import DenoiseError, InputError
from ..io import infer_axes
from ._compact import Collapsible, DockTabs, narrow, scrolling
from ._curve_plot import CurvePlot
from ._layer_combo import ImageLayerCombo
from ._layer_roles import looks_like_ground_truth, looks_like_noisy
from ._layers import result_kwargs, result_name
from ._method_picker import notify_models_changed
from ._runner import Job, Runner
from ._train_inputs import NEW_UNET, ShapesLayerCombo, StartModelCombo
from ._train_job import TrainJob, TrainRunner, rectangles, warm_up

__all__ = ["NEW_UNET", "TrainWidget"]

MODES = (
    ("supervised", "Supervised: noisy + clean pairs"),
    ("n2v", "Noise2Void: noisy images only"),
    ("n2v2", "N2V2: noisy only, fewer grid artefacts"),
    ("n2v-psf", "Blind spot + PSF: denoise and deconvolve"),
)
BLIND = ("n2v", "n2v2", "n2v-psf")
LOSSES = (("l1", "L1 (default)"), ("l2", "L2 (mean squared error)"), ("l1+ssim", "L1 + SSIM"))
MODE_HELP = {
    "supervised": "Learns to turn the noisy layer into the clean one (e.g. a short and a "
    "long exposure of the same field). In stacks every plane is a pair.",
    "n2v": "Learns from the noisy layer alone; assumes that neighbouring pixels have "
    "independent noise (Noise2Void).",
    "n2v2": "Noise2Void with a median blind spot and a U-Net without its top skip "
    "connection, against checkerboard artefacts (N2V2).",
    "n2v-psf": "Blind spot training through a Gaussian PSF with a positivity penalty: gives "
    "a denoised and a deconvolved image (Goncharova et al. 2020).",
}


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


class TrainWidget(DockTabs, QWidget):
    """Train or fine-tune a denoising model on image layers; it joins the list of methods.

    ``extra_spec`` holds FinetuneSpec keywords that the form does not show (``patch``,
    ``batch_size``, ``lr``, ``config`` ...), for scripts and tests.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.extra_spec: dict = {}
        self.model_name: str | None = None
        self._task: dict = {}
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
        )
        self.denoiser = Runner(
            on_done=self._on_denoised,
            on_failed=self._on_failed,
            on_cancelled=lambda last: self.status.setText("Denoising cancelled; nothing added."),
            on_busy=self._on_busy,
        )
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.noisy.layerChanged.connect(self._on_noisy)
        self.budget_unit.currentTextChanged.connect(self._on_unit)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.denoise_button.clicked.connect(self.denoise_with_model)
        runners = (self.runner, self.denoiser)  # not self: used while the widget is destroyed
        removed, on_removed = napari_viewer.layers.events.removed, self._on_layer_removed
        removed.connect(on_removed)
        self.destroyed.connect(lambda *_: [r.shutdown() for r in runners])
        self.destroyed.connect(lambda *_: removed.disconnect(on_removed))
        self._on_noisy(self.noisy.layer())
        self._on_mode()
        self._on_busy(False)
        warm_up()

    # ------------------------------------------------------------------ the form
    def _build(self) -> None:
        viewer = self.viewer
        self.mode = QComboBox()
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip(
            "How the model learns: from noisy + clean pairs of the same field, or from the "
            "noisy images alone (Noise2Void and variants)."
        )
        self.mode_help = QLabel()
        self.mode_help.setWordWrap(True)
        self.mode_help.setStyleSheet("color: gray")
        self.noisy = ImageLayerCombo(viewer, prefer=looks_like_noisy)
        self.noisy.setToolTip("The noisy images to learn from (they are never changed).")
        self.clean = ImageLayerCombo(viewer, prefer=looks_like_ground_truth)
        self.clean.setToolTip(
            "The same field with little noise (e.g. a long exposure or an average of many "
            "frames), the same size as the noisy layer."
        )
        self.regions = ShapesLayerCombo(viewer)
        self.regions.setToolTip(
            "Optional: train only inside the rectangles drawn in this Shapes layer (other "
            "shapes are ignored). (none): the whole image."
        )
        self.start_model = StartModelCombo()
        self.name = QLineEdit()
        self.name.setPlaceholderText("automatic")
        self.name.setToolTip("Name of the new model (its files in your model folder).")
        self.budget = QSpinBox()
        self.budget.setRange(1, 1_000_000)
        self.budget.setValue(10)
        self.budget.setToolTip("How long to train: a time, or a number of optimisation steps.")
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["minutes", "steps"])
        self.budget_unit.setToolTip("Count the training budget in minutes or in steps.")
        self.loss = QComboBox()
        for key, text in LOSSES:
            self.loss.addItem(text, key)
        self.loss.setToolTip(
            "How the difference to the target is measured while learning; L1 is a safe default."
        )
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The same seed, data and settings give the same model (on the CPU).")
        self.psf_sigma = QDoubleSpinBox()
        self.psf_sigma.setRange(0.1, 10.0)
        self.psf_sigma.setSingleStep(0.1)
        self.psf_sigma.setValue(1.0)
        self.psf_sigma.setSuffix(" px")
        self.psf_sigma.setToolTip("Standard deviation of the microscope's Gaussian PSF.")
        self.positivity = QDoubleSpinBox()
        self.positivity.setRange(0.0, 100.0)
        self.positivity.setSingleStep(0.5)
        self.positivity.setValue(1.0)
        self.positivity.setToolTip("Weight of the penalty on negative deconvolved values.")
        self.blind = QComboBox()
        self.blind.addItem("automatic (from the noise)", None)
        self.blind.addItem("1 pixel (independent noise)", 0)
        for r in (1, 2, 3):
            side = 2 * r + 1
            self.blind.addItem(f"{side} x {side} block (correlated noise)", r)
        self.blind.setToolTip(
            "What each blind spot hides. Noise2Void assumes neighbouring pixels have "
            "independent noise; camera noise that is spatially correlated (widefield, binned "
            "or interpolated pixels) needs a block. Automatic measures the noise first."
        )
        self.resume = QCheckBox("Resume a stopped run")
        self.resume.setToolTip("Continue from the checkpoint a stopped run left behind.")
        self.apply = QCheckBox("Then denoise the noisy layer")
        self.apply.setChecked(True)
        self.apply.setToolTip("When training ends, denoise the noisy layer with the new model.")
        self.add_deconvolved = QCheckBox("Also add the deconvolved image")
        self.add_deconvolved.setToolTip(
            "Blind spot + PSF training also gives a sharpened (deconvolved) image: add it too."
        )
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
        self.eta = QLabel("")
        self.plot = CurvePlot()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # Two lines reserved: a longer message does not make the dock jump (and relayout).
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing())
        self.denoise_button = QPushButton("Denoise with the new model")
        self.denoise_button.setToolTip("Denoise the noisy layer with the model just trained.")
        self.denoise_button.setVisible(False)

    def _layout(self) -> None:
        data = QGroupBox("Data")
        form = QFormLayout(data)
        form.addRow("Mode", self.mode)
        form.addRow(self.mode_help)
        form.addRow("Noisy layer", self.noisy)
        form.addRow("Clean layer", self.clean)
        self._clean_label = form.labelForField(self.clean)
        form.addRow("Regions", self.regions)
        training = QGroupBox("Model and training")
        form = QFormLayout(training)
        form.addRow("Start from", self.start_model)
        form.addRow("New name", self.name)
        budget = QHBoxLayout()
        budget.addWidget(self.budget, 1)
        budget.addWidget(self.budget_unit)
        form.addRow("Train for", budget)
        form.addRow("PSF sigma", self.psf_sigma)
        form.addRow("Positivity", self.positivity)
        form.addRow(self.apply)
        form.addRow(self.add_deconvolved)
        self._psf_widgets = [
            self.psf_sigma,
            form.labelForField(self.psf_sigma),
            self.positivity,
            form.labelForField(self.positivity),
            self.add_deconvolved,
        ]
        rare = QWidget()
        form = QFormLayout(rare)
        form.addRow("Loss", self.loss)
        form.addRow("Seed", self.seed)
        form.addRow("Blind spot", self.blind)
        self._blind_widgets = [self.blind, form.labelForField(self.blind)]
        form.addRow(self.resume)
        self.advanced = Collapsible(
            "Advanced", rare, tooltip="Loss, random seed, blind spot size, resuming a stopped run."
        )
        for combo, chars in ((self.mode, 12), (self.start_model, 12), (self.loss, 8)):
            narrow(combo, chars)
        narrow(self.blind, 12)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.stop_button)
        progress = QHBoxLayout()
        progress.addWidget(self.progress, 1)
        progress.addWidget(self.eta)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(data)
        layout.addWidget(training)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addLayout(progress)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.denoise_button)
        self.scroll_area = scrolling(self, body)

    def mode_key(self) -> str:
        """The engine's name of the chosen mode: supervised, n2v, n2v2 or n2v-psf."""
        return self.mode.currentData()

    def _on_mode(self, *_) -> None:
        mode = self.mode_key()
        blind = mode in BLIND
        self.clean.setVisible(not blind)
        self._clean_label.setVisible(not blind)
        for widget in self._psf_widgets:
            widget.setVisible(mode == "n2v-psf")
        for widget in self._blind_widgets:
            widget.setVisible(blind)
        self.mode_help.setText(MODE_HELP[mode])
        self.start_model.set_mode(mode)
        # Blind-spot training compares single pixels: SSIM needs whole clean patches.
        self.loss.model().item(self.loss.findData("l1+ssim")).setEnabled(not blind)
        if blind and self.loss.currentData() == "l1+ssim":
            self.loss.setCurrentIndex(self.loss.findData("l1"))

    def _on_noisy(self, noisy) -> None:
        self.clean.set_filter(lambda layer: layer is not noisy)

    def _on_unit(self, unit: str) -> None:
        self.budget.setValue(10 if unit == "minutes" else 2000)

    # ------------------------------------------------------------------ starting and stopping
    def spec(self) -> dict:
        """The FinetuneSpec keywords the form describes (plus :attr:`extra_spec`)."""
        minutes = self.budget_unit.currentText() == "minutes"
        spec = {
            "mode": self.mode_key(),
            "start": self.start_model.start(),
            "name": self.name.text().strip() or None,
            "steps": None if minutes else self.budget.value(),
            "minutes": float(self.budget.value()) if minutes else None,
            "loss": self.loss.currentData(),
            "seed": self.seed.value(),
        }
        if spec["mode"] == "n2v-psf":
            spec.update(psf_sigma=self.psf_sigma.value(), positivity=self.positivity.value())
        if spec["mode"] in BLIND:
            spec["blind_radius"] = self.blind.currentData()
        return {**spec, **self.extra_spec}

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
        except DenoiseError as err:
            self._on_failed(str(err))
            return False
        job = TrainJob(
            self.spec(),
            noisy.data,
            None if clean is None else clean.data,
            regions,
            axes=axes,
            names=(_source(noisy), None if clean is None else _source(clean)),
            resume=self.resume.isChecked(),
        )
        if not self.runner.start(job):
            return False
        self._task = {"noisy": noisy, "mode": job.spec["mode"]}
        self._stopping = False
        self.model_name = None
        self.denoise_button.setVisible(False)
        self.plot.clear(job.spec.get("steps") or 1)
        self.plot.set_validation_label(
            "validation PSNR (dB)" if clean is not None else "validation loss (masked)"
        )
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
        # The engine registered it: list it everywhere, chosen in the Denoise widget.
        notify_models_changed(select=result.name)
        last = self.runner.last
        validation = result.card.get("validation", {})
        score = (
            f", validation PSNR {validation['psnr']:.2f} dB"
            if validation.get("psnr") is not None
            else ""
        )
        steps = result.card.get("training", {}).get("steps", last.step if last else 0)
        how = "stopped early and saved" if result.stopped else "trained"
        message = f"Model '{result.name}' {how} after {steps} steps{score}."
        show_info(message)
        notes = " ".join(result.card.get("training", {}).get("notes", []))
        self._saved = f"{message} It is in the Denoise widget's list; files: {result.path}."
        if notes:  # choices made from the data, e.g. a blind block for correlated noise
            self._saved = f"{self._saved} {notes}"
        noisy = self._task["noisy"]
        if noisy not in self.viewer.layers:
            self._saved = f"Layer '{noisy.name}' was deleted, so training stopped. {self._saved}"
        self.status.setText(self._saved)
        if result.stopped:
            self.name.setText(result.name)  # ready to resume
        noisy = self._task["noisy"]
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
        noisy = self._task.get("noisy")
        if self.model_name is None or noisy is None or self.runner.busy or self.denoiser.busy:
            return False
        if noisy not in self.viewer.layers:
            show_info(f"Layer '{noisy.name}' is no longer in the viewer.")
            return False
        self._pending = [self.model_name]
        if self._task.get("mode") == "n2v-psf" and self.add_deconvolved.isChecked():
            self._pending.append(f"{self.model_name}-deconvolved")
        return self._denoise_next()

    def _denoise_next(self) -> bool:
        noisy = self._task["noisy"]
        if not self._pending or noisy not in self.viewer.layers:
            return False
        method = self._pending.pop(0)
        source = {
            "path": noisy.source.path or noisy.metadata.get("source_path"),
            "layer": noisy.name,
        }
        job = Job(noisy.data, method, _axes(noisy), label=f"Denoising with {method}", source=source)
        if not self.denoiser.start(job):
            return False
        self.status.setText(f"Denoising '{noisy.name}' with {method}…")
        return True

    def _on_denoised(self, outcome) -> None:
        noisy, result = self._task.get("noisy"), outcome.result
        if noisy not in self.viewer.layers:
            return
        kwargs = result_kwargs(noisy, axes=result.axes, provenance=outcome.provenance)
        name = result_name(noisy.name, result.method)
        layer = self.viewer.add_image(result.data, name=name, **kwargs)
        self.status.setText(f"{self._saved} Denoised → layer '{layer.name}'.")
        self._denoise_next()

    def _on_layer_removed(self, event) -> None:
        if event.value is not self._task.get("noisy"):
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

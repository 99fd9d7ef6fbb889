"""The Train widget's form: what to train on and how (no running, no results).

Modes, layers, start model, name, budget, and under Advanced the loss, seed, blind spot
and resume; :meth:`TrainForm.spec` turns them into the engine's FinetuneSpec keywords
and :meth:`TrainForm.config` into the record itself (checked, as the CLI builds it).
:class:`~._train_widget.TrainWidget` adds Start/Stop, progress and results.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ..engine.training import options
from ..engine.training.config import FinetuneSpec
from ._compact import Collapsible, FittingCombo, narrow
from ._layer_combo import ImageLayerCombo
from ._layer_roles import looks_like_ground_truth, looks_like_noisy
from ._train_inputs import ShapesLayerCombo, StartModelCombo

# The engine's choices (engine/training/options.py, no torch) in the words shown here; a
# mode or loss the engine adds without a label here fails at import, not silently.
_MODE_TEXT = {
    "supervised": "Supervised: noisy + clean pairs",
    "n2v": "Noise2Void: noisy images only",
    "n2v2": "N2V2: noisy only, fewer grid artefacts",
    "n2v-psf": "Blind spot + PSF: denoise and deconvolve",
    "n2n-frames": "Noisy stack only (neighbouring frames)",
}
_LOSS_TEXT = {"l1": "L1 (default)", "l2": "L2 (mean squared error)", "l1+ssim": "L1 + SSIM"}
MODES = tuple((mode, _MODE_TEXT[mode]) for mode in options.MODES)
BLIND = options.BLIND_MODES
FRAMES = options.FRAME_MODES
LOSSES = tuple((loss, _LOSS_TEXT[loss]) for loss in options.LOSS_NAMES)
MODE_HELP = {
    "supervised": "Learns to turn the noisy layer into the clean one (e.g. a short and a "
    "long exposure of the same field). In stacks every plane is a pair, or one clean "
    "plane (a still sample's average) serves every plane.",
    "n2v": "Learns from the noisy layer alone; assumes that neighbouring pixels have "
    "independent noise (Noise2Void).",
    "n2v2": "Noise2Void with a median blind spot and a U-Net without its top skip "
    "connection, against checkerboard artefacts (N2V2).",
    "n2v-psf": "Blind spot training through a Gaussian PSF with a positivity penalty: gives "
    "a denoised and a deconvolved image (Goncharova et al. 2020).",
    "n2n-frames": "Learns from a noisy time-lapse or z-stack alone: each plane is compared "
    "with its neighbouring planes, aligned, which show the same structure under other "
    "noise (Noise2Noise). Parts that moved or changed are left out. Needs at least 2 planes.",
}


class TrainForm(QWidget):
    """The training settings; ``extra_spec`` holds FinetuneSpec keywords the form does
    not show (``patch``, ``batch_size``, ``lr``, ``config`` ...), for scripts and tests."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.extra_spec: dict = {}
        self._build_inputs()
        self.input_groups = self._input_groups()
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.noisy.layerChanged.connect(self._on_noisy)
        self.budget_unit.currentTextChanged.connect(self._on_unit)
        self._on_noisy(self.noisy.layer())
        self._on_mode()

    def _build_inputs(self) -> None:
        viewer = self.viewer
        self.mode = FittingCombo(shorten=True)
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip(
            "How the model learns: from noisy + clean pairs of the same field, from the "
            "noisy images alone (Noise2Void and variants), or from a noisy stack's "
            "neighbouring frames."
        )
        self.mode_help = QLabel()
        self.mode_help.setWordWrap(True)
        self.mode_help.setMinimumWidth(120)  # wraps: no wider than the dock
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
        # As wide as six digits, not as the largest budget allowed (a million steps).
        self.budget.setMinimumWidth(self.budget.fontMetrics().horizontalAdvance("000000") + 40)
        self.budget.setToolTip("How long to train: a time, or a number of optimisation steps.")
        self.budget_unit = FittingCombo(shorten=True)
        self.budget_unit.addItems(["minutes", "steps"])
        self.budget_unit.setToolTip("Count the training budget in minutes or in steps.")
        self.loss = FittingCombo(shorten=True)
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
        self.psf_sigma.setToolTip(
            "How much the microscope blurs a point: the standard deviation of its point "
            "spread function (PSF), taken as Gaussian, in pixels."
        )
        self.positivity = QDoubleSpinBox()
        self.positivity.setRange(0.0, 100.0)
        self.positivity.setSingleStep(0.5)
        self.positivity.setValue(1.0)
        self.positivity.setToolTip(
            "How strongly negative values in the deconvolved image are penalised (light "
            "intensities cannot be negative)."
        )
        self.blind = FittingCombo(shorten=True)
        self.blind.addItem("automatic (from the noise)", None)
        self.blind.addItem("1 pixel (independent noise)", 0)
        for r in (1, 2, 3):
            side = 2 * r + 1
            self.blind.addItem(f"{side} × {side} block (correlated noise)", r)
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

    def _input_groups(self) -> list[QWidget]:
        """The Data and Model boxes and the Advanced section, in order."""
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
        form.addRow("PSF width", self.psf_sigma)
        form.addRow("Positivity", self.positivity)  # short: a longer label widens the form
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
        form.addRow("Random seed", self.seed)
        form.addRow("Blind spot", self.blind)
        self._blind_widgets = [self.blind, form.labelForField(self.blind)]
        form.addRow(self.resume)
        self.advanced = Collapsible(
            "Advanced", rare, tooltip="Loss, random seed, blind spot size, resuming a stopped run."
        )
        for combo, chars in ((self.mode, 10), (self.start_model, 10), (self.loss, 8)):
            narrow(combo, chars)
        narrow(self.blind, 12)
        narrow(self.regions, 10)
        return [data, training, self.advanced]

    def mode_key(self) -> str:
        """The engine's name of the chosen mode: supervised, n2v, n2v2, n2v-psf or n2n-frames."""
        return self.mode.currentData()

    def _on_mode(self, *_) -> None:
        mode = self.mode_key()
        blind = mode in BLIND
        frames = mode in FRAMES
        self.clean.setVisible(mode == "supervised")
        self._clean_label.setVisible(mode == "supervised")
        for widget in self._psf_widgets:
            widget.setVisible(mode == "n2v-psf")
        for widget in self._blind_widgets:
            widget.setVisible(blind)
        self.mode_help.setText(MODE_HELP[mode])
        self.start_model.set_mode(mode)
        # Blind-spot training compares single pixels: SSIM needs whole clean patches. A
        # noisy neighbour teaches the clean image only under the squared error (L2).
        self.loss.model().item(self.loss.findData("l1+ssim")).setEnabled(not (blind or frames))
        self.loss.model().item(self.loss.findData("l1")).setEnabled(not frames)
        if frames:
            self.loss.setCurrentIndex(self.loss.findData("l2"))
        elif blind and self.loss.currentData() == "l1+ssim":
            self.loss.setCurrentIndex(self.loss.findData("l1"))

    def _on_noisy(self, noisy) -> None:
        self.clean.set_filter(lambda layer: layer is not noisy)

    def _on_unit(self, unit: str) -> None:
        self.budget.setValue(10 if unit == "minutes" else 2000)

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

    def config(self) -> FinetuneSpec:
        """The training record the form describes: :meth:`spec` checked once, by the
        record (:class:`~napari_denoise.errors.ParameterError`, one sentence)."""
        return FinetuneSpec.from_dict(self.spec())

"""The Compare dock widget: score result layers against a ground-truth layer.

PSNR and SSIM, plain and range-invariant, per layer (mean over planes) or per plane,
with the noisy input as a baseline row; the table exports to CSV and any row can be
shown as a difference layer. The scoring runs in a worker thread.
"""

from __future__ import annotations

import re

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari import PROVENANCE_KEY
from ..engine.methods import Param
from ._compact import Collapsible, DockTabs, scrolling
from ._layer_combo import ImageLayerChecklist, ImageLayerCombo
from ._layers import DIFFERENCE_KEY, add_difference
from ._params import AutoNumber
from ._runner import guarded
from ._scores import BASELINE, COLUMNS, score_layers, table_rows, write_csv

RANGE = Param(
    "data_range", float, None, "Span of possible intensities; auto: from the ground truth", 1e-9
)
GT_NAME = re.compile(r"ground.?truth|\bgt\b|clean|target", re.IGNORECASE)
NOISY_NAME = re.compile(r"noisy|raw|input", re.IGNORECASE)
EXPLAIN = (
    "Higher is better. Range-invariant: each image is first rescaled to the ground truth "
    "(least-squares gain and offset, as in CARE), so a change of brightness is not penalised."
)


class CompareWidget(DockTabs, QWidget):
    """Pick a ground truth, a baseline and results; compute; export; inspect differences."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.gt = ImageLayerCombo(napari_viewer, prefer=lambda ly: bool(GT_NAME.search(ly.name)))
        self.baseline = ImageLayerCombo(
            napari_viewer, allow_none=True, prefer=lambda ly: bool(NOISY_NAME.search(ly.name))
        )
        self.results = ImageLayerChecklist(napari_viewer)
        self.data_range = AutoNumber(RANGE)
        self.per_slice = QCheckBox("One row per plane")
        self.compute_button = QPushButton("Compute")
        self.export_button = QPushButton("Export CSV…")
        self.diff_button = QPushButton("Difference layer")
        self.diff_button.setToolTip("Add the selected row's layer minus the ground truth.")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.note = QLabel(EXPLAIN)
        self.note.setWordWrap(True)
        self.results_by_name: dict = {}
        self.rows: list[dict] = []
        self.worker = None
        self._range_note = ""
        self._baseline_name = None
        self._layout()
        self.gt.layerChanged.connect(self._on_gt)
        self.baseline.layerChanged.connect(self._on_baseline)
        self.per_slice.toggled.connect(self._fill_table)
        self.compute_button.clicked.connect(self.compute)
        self.export_button.clicked.connect(self._ask_export)
        self.diff_button.clicked.connect(self.add_difference)
        self._on_gt(self.gt.layer())
        self._set_ready()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Ground truth", self.gt)
        form.addRow("Noisy input", self.baseline)
        form.addRow("Results", self.results)
        rare = QWidget()
        rare_form = QFormLayout(rare)
        rare_form.setContentsMargins(0, 0, 0, 0)
        rare_form.addRow("Data range", self.data_range)
        self.advanced = Collapsible(
            "Advanced", rare, tooltip="The data range used by PSNR and SSIM (automatic by default)."
        )
        buttons = QHBoxLayout()
        for w in (self.compute_button, self.export_button, self.diff_button):
            buttons.addWidget(w)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addWidget(self.per_slice)
        layout.addWidget(self.advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        layout.addStretch(1)
        self.scroll_area = scrolling(self, body)

    def _on_gt(self, gt) -> None:
        def comparable(layer):
            return (
                gt is not None
                and layer is not gt
                and layer.data.shape == gt.data.shape
                and DIFFERENCE_KEY not in layer.metadata
            )

        self.baseline.set_filter(comparable)
        # The input of a denoised result is the natural baseline.
        inputs = [
            ly.metadata.get(PROVENANCE_KEY, {}).get("napari_layer") for ly in self.viewer.layers
        ]
        for name in inputs:
            if name and name in self.viewer.layers and comparable(self.viewer.layers[name]):
                self.baseline.set_layer(self.viewer.layers[name])
                break
        self._on_baseline(self.baseline.layer())

    def _on_baseline(self, base) -> None:
        gt_filter = self.baseline._accept
        self.results.set_filter(lambda layer: gt_filter(layer) and layer is not base)

    def _set_ready(self) -> None:
        has_rows = bool(self.rows)
        self.compute_button.setEnabled(self.worker is None)
        self.export_button.setEnabled(has_rows)
        self.diff_button.setEnabled(has_rows)

    # ------------------------------------------------------------------ scoring
    def compute(self) -> bool:
        """Score the ticked result layers (and the baseline) against the ground truth."""
        gt, base = self.gt.layer(), self.baseline.layer()
        tests = [ly for ly in self.results.checked() if ly is not base]
        if base is not None:
            tests.insert(0, base)
        if gt is None or not tests:
            show_info(
                "Choose a ground-truth layer and at least one layer of the same shape to score."
            )
            return False
        if self.worker is not None:
            return False
        self._baseline_name = base.name if base is not None else None
        job = guarded(
            score_layers(
                gt.data, [(ly.name, ly.data) for ly in tests], data_range=self.data_range.value()
            ),
            "Scoring",
        )

        def steps():
            return (yield from job)

        self.worker = create_worker(
            steps, _progress={"desc": "Scoring against ground truth"}, _ignore_errors=True
        )
        self.destroyed.connect(self.worker.quit)  # closed meanwhile: stop after this layer
        self.worker.returned.connect(self._on_scored)
        self.worker.errored.connect(lambda err: show_error(str(err)))
        self.worker.finished.connect(self._on_finished)
        self._set_ready()
        self.worker.start()
        return True

    def _on_scored(self, value) -> None:
        self.results_by_name, self._range_note = value
        used = next(iter(self.results_by_name.values()))["data_range"]
        self.data_range.show_chosen(used)
        self._fill_table()

    def _on_finished(self) -> None:
        self.worker = None
        self._set_ready()

    def _fill_table(self, *_) -> None:
        self.rows = table_rows(
            self.results_by_name, per_slice=self.per_slice.isChecked(), baseline=self._baseline_name
        )
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, (key, _) in enumerate(COLUMNS):
                value = row[key]
                text = (
                    f"{value:.2f}"
                    if key.startswith("psnr")
                    else (f"{value:.4f}" if key.startswith("ssim") else str(value))
                )
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, value)
                if c >= 2:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(r, c, item)
        self.table.setColumnHidden(
            1, all(row["slice"] == "" for row in self.rows)
        )  # 2-D: no planes
        self.note.setText(f"{EXPLAIN} Computed with {self._range_note}.")
        self._set_ready()

    # ------------------------------------------------------------------ outputs
    def export_csv(self, path) -> None:
        """Write the table (full precision) to ``path``."""
        write_csv(path, self.rows, note=f"ground truth: {self.gt.layer().name}; {self._range_note}")

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export scores", "scores.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)
            show_info(f"Scores written to {path}")

    def add_difference(self) -> None:
        """Add (selected row's layer − ground truth) as a layer with a diverging colormap."""
        rows = {i.row() for i in self.table.selectedIndexes()} or {0}
        label = self.rows[min(rows)]["layer"]
        name = label.removesuffix(f" ({BASELINE})")
        gt = self.gt.layer()
        if gt is None or name not in self.viewer.layers:
            show_info("That layer is no longer in the viewer; compute again.")
            return
        add_difference(self.viewer, self.viewer.layers[name], gt, name=f"{name} − {gt.name}")

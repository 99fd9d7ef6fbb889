"""The Compare dock widget: score result layers against a ground-truth layer.

PSNR and SSIM, plain and range-invariant, per layer (mean over planes) or per plane,
with the noisy input as a baseline row; the table exports to CSV and any row can be
shown as a difference layer. The scoring runs in a worker thread.

Each layer's name is a row of its own, across the whole table, above its numbers: in a
narrow dock a name column beside four score columns and a plane column left ~60 px and
cut real names to 'fm…y [g…n]' (issue 25). The table is of one ground truth: choosing
another clears it.
"""

from __future__ import annotations

from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QRect, Qt
from qtpy.QtGui import QColor, QFont
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
from ._layer_roles import looks_like_ground_truth, looks_like_noisy
from ._layers import DIFFERENCE_KEY, add_difference
from ._params import AutoNumber
from ._runner import guarded
from ._scores import BASELINE, COLUMN_HELP, COLUMNS, score_layers, table_rows, write_csv
from ._words import param_label

RANGE = Param(
    "data_range",
    float,
    None,
    "Span of possible intensities; auto: the ground truth's own max − min",
    1e-9,
    label="Data range",
)
ASK_GT = (
    "Which layer is the ground truth (e.g. the average of many frames)? None is clearly one, "
    "so none was chosen: pick it above. Results of napari-denoise are never chosen by themselves."
)
BEST = QColor(60, 130, 80)
WRAP = int(Qt.TextFlag.TextWordWrap)
EXPLAIN = (
    "Higher is better. RI, range-invariant: each image is first rescaled to the ground truth "
    "(least-squares gain and offset, as in CARE), so a change of brightness is not penalised."
)


class CompareWidget(DockTabs, QWidget):
    """Pick a ground truth, a baseline and results; compute; export; inspect differences."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        # No default unless a layer is clearly a ground truth: a wrong one gives plausible,
        # wrong numbers.
        self.gt = ImageLayerCombo(napari_viewer, allow_none=True, prefer=looks_like_ground_truth)
        self.gt.setToolTip("The clean reference every other layer is scored against.")
        self.gt_hint = QLabel(ASK_GT)
        self.gt_hint.setWordWrap(True)
        self.gt_hint.setMinimumWidth(120)  # wraps: no wider than the dock
        self.gt_hint.setStyleSheet("color: orange")
        self.baseline = ImageLayerCombo(napari_viewer, allow_none=True, prefer=looks_like_noisy)
        self.baseline.setToolTip(
            "The raw noisy image, scored too as the first row: the number to beat."
        )
        self.left_out = QLabel("")
        self.left_out.setWordWrap(True)
        self.left_out.setMinimumWidth(120)  # wraps: no wider than the dock
        self.left_out.setStyleSheet("color: gray")
        self.results = ImageLayerChecklist(napari_viewer)
        self.results.setToolTip("Tick the layers to score (results of the same size).")
        self.data_range = AutoNumber(RANGE, waiting_text="from the ground truth")
        self.per_slice = QCheckBox("One row per plane")
        self.per_slice.setToolTip("For stacks: a row for every plane instead of the average.")
        self.compute_button = QPushButton("Compute")
        self.compute_button.setToolTip("Score the ticked layers against the ground truth.")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the table as a CSV file (full precision).")
        self.diff_button = QPushButton("Difference layer")
        self.diff_button.setToolTip("Add the selected row's layer minus the ground truth.")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        for c, (key, _) in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(c).setToolTip(COLUMN_HELP[key])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnHidden(0, True)  # the names are rows of their own, full width
        self.table.setWordWrap(True)  # a name longer than the table wraps
        header.sectionResized.connect(lambda *_: self._fit_table())  # the dock's width changed
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.note = QLabel(EXPLAIN)
        self.note.setWordWrap(True)
        self.note.setMinimumWidth(120)  # wraps: no wider than the dock
        self.results_by_name: dict = {}
        self.rows: list[dict] = []
        self.row_of: list[int] = []  # the table row of each of self.rows
        self._scored_gt = None  # the ground truth the table is of
        self._scoring_gt = None  # the one the running computation scores against
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
        self._fit_table()
        self._set_ready()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Ground truth", self.gt)
        form.addRow(self.gt_hint)
        form.addRow("Noisy input", self.baseline)
        form.addRow("Results", self.results)
        form.addRow(self.left_out)
        rare = QWidget()
        rare_form = QFormLayout(rare)
        rare_form.setContentsMargins(0, 0, 0, 0)
        rare_form.addRow(param_label(RANGE), self.data_range)
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
        if self.rows and gt is not self._scored_gt:
            old = self._scored_gt.name if self._scored_gt is not None else "another layer"
            now = f"'{gt.name}'" if gt is not None else "none"
            self._clear_scores(
                f"The ground truth is now {now}: the scores against '{old}' were cleared. "
                "Press Compute to score against it."
            )

        def comparable(layer):
            return (
                gt is not None
                and layer is not gt
                and layer.data.shape == gt.data.shape
                and DIFFERENCE_KEY not in layer.metadata
            )

        self.gt_hint.setVisible(gt is None)
        self._say_left_out(gt)
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

    def _say_left_out(self, gt) -> None:
        """Name the image layers not offered because their size differs from the GT's."""
        if gt is None:
            self.left_out.setText("")
            return
        shape = gt.data.shape
        other = [
            f"'{ly.name}' ({' × '.join(map(str, ly.data.shape))})"
            for ly in self.viewer.layers
            if isinstance(ly, Image)
            and ly is not gt
            and ly.data.shape != shape
            and DIFFERENCE_KEY not in ly.metadata
        ]
        size = " × ".join(map(str, shape))
        self.left_out.setText(
            f"Left out, not the size of the ground truth ({size}): {', '.join(other)}."
            if other
            else ""
        )
        self.left_out.setVisible(bool(other))

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
                "Choose the ground-truth layer, and tick at least one layer of the same size "
                "to score."
            )
            return False
        if self.worker is not None:
            return False
        self._baseline_name = base.name if base is not None else None
        self._scoring_gt = gt
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

    def _clear_scores(self, message: str) -> None:
        """Empty the table (its numbers are of another ground truth) and say why."""
        self.results_by_name, self.rows, self.row_of = {}, [], []
        self._scored_gt = None
        self.table.clearSpans()
        self.table.setRowCount(0)
        self.data_range.clear_chosen()
        self.note.setText(message)
        self._fit_table()
        self._set_ready()

    def _on_scored(self, value) -> None:
        gt = self._scoring_gt
        if gt is not self.gt.layer():  # changed while scoring: these numbers are not of it
            self._clear_scores(
                f"The ground truth changed while scoring against '{gt.name}': press Compute again."
            )
            return
        self._scored_gt = gt
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
        self.table.clearSpans()
        self.row_of, names, r = [], [], 0
        for row in self.rows:  # a row for each name, before its numbers
            if row["layer"] not in names:
                names.append(row["layer"])
                r += 1
            self.row_of.append(r)
            r += 1
        self.table.setRowCount(r)
        for name in names:
            first = self.row_of[[row["layer"] for row in self.rows].index(name)] - 1
            self._name_row(first, name)
        for i, row in enumerate(self.rows):
            r = self.row_of[i]
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
        single = all(row["slice"] == "" for row in self.rows)  # 2-D: no planes
        self.table.setColumnHidden(1, single)
        # The spare width goes to the plane column, or shared by the scores without one.
        header, stretch = self.table.horizontalHeader(), QHeaderView.ResizeMode.Stretch
        for c in range(2, len(COLUMNS)):
            header.setSectionResizeMode(
                c, stretch if single else QHeaderView.ResizeMode.ResizeToContents
            )
        self._mark_best()
        self._fit_table()
        self.note.setText(f"{EXPLAIN} Computed with {self._range_note}.")
        self._set_ready()

    def _name_row(self, r: int, name: str) -> None:
        """Row ``r``: the layer's whole name, across the table, wrapped if need be."""
        item = QTableWidgetItem(name)
        item.setToolTip(name)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        font = QFont(self.table.font())
        font.setItalic(True)
        item.setFont(font)
        self.table.setItem(r, 0, item)
        self.table.setSpan(r, 0, 1, len(COLUMNS))

    def _mark_best(self) -> None:
        """Bold on a green ground: the highest value of each score column (per plane)."""
        bold = QFont(self.table.font())
        bold.setBold(True)
        for c in range(2, len(COLUMNS)):
            best: dict = {}
            for r, row in enumerate(self.rows):
                value = row[COLUMNS[c][0]]
                if row["slice"] not in best or value > best[row["slice"]][0]:
                    best[row["slice"]] = (value, r)
            for _, r in best.values():
                item = self.table.item(self.row_of[r], c)
                item.setFont(bold)
                item.setBackground(BEST)
                item.setToolTip("Best in this column")

    def _fit_table(self) -> None:
        """As tall as its rows (the widget scrolls, the table does not hide any row)."""
        self.table.resizeRowsToContents()
        # A name row spans the table: Qt sizes it by its (hidden) first column, so its
        # height for the lines it wraps to is measured here, at the table's width now.
        width = max(self.table.viewport().width() - 8, 40)  # less the cell's margins
        metrics = self.table.fontMetrics()
        for r in range(self.table.rowCount()):
            if r in self.row_of:
                continue
            text = self.table.item(r, 0).text()
            need = metrics.boundingRect(QRect(0, 0, width, 10_000), WRAP, text).height() + 8
            if need > self.table.rowHeight(r):
                self.table.setRowHeight(r, need)
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        empty = 0 if self.table.rowCount() else self.table.verticalHeader().defaultSectionSize()
        frame = 2 * self.table.frameWidth()
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height() + rows + empty + frame
        )

    # ------------------------------------------------------------------ outputs
    def export_csv(self, path) -> None:
        """Write the table (full precision) to ``path``."""
        gt = self._scored_gt.name if self._scored_gt is not None else ""
        write_csv(path, self.rows, note=f"ground truth: {gt}; {self._range_note}")

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export scores", "scores.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)
            show_info(f"Scores written to {path}")

    def add_difference(self) -> None:
        """Add (selected row's layer − ground truth) as a layer with a diverging colormap."""
        if not self.rows:
            show_info("There are no scores yet: press Compute first.")
            return
        picked = {i.row() for i in self.table.selectedIndexes()}
        # a name row stands for its layer (its first row of numbers follows it)
        index = next((i for i, r in enumerate(self.row_of) if r in picked or r - 1 in picked), 0)
        label = self.rows[index]["layer"]
        name = label.removesuffix(f" ({BASELINE})")
        gt = self.gt.layer()
        if gt is None or name not in self.viewer.layers:
            show_info("That layer is no longer in the viewer; compute again.")
            return
        add_difference(self.viewer, self.viewer.layers[name], gt, name=f"{name} − {gt.name}")

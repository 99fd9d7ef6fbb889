"""A small live plot of two training curves against the step: loss (left axis), validation (right).

Drawn with QPainter, so it costs nothing to import and a repaint takes well under a
millisecond; the caller decides how often to repaint (``update()``).
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._words import plain

LOSS_COLOR = QColor(255, 170, 60)  # orange
VALIDATION_COLOR = QColor(90, 170, 255)  # blue
TRAINING = "training error"  # the loss, in plain words (lower is better)
MAX_POINTS = 2000  # longer series are thinned (every other point); the shape stays


class Series:
    """(step, value) points of one curve, thinned past :data:`MAX_POINTS`."""

    def __init__(self):
        self.points: list[tuple[float, float]] = []
        self._keep = 1  # keep one point in this many
        self._seen = 0

    def add(self, x: float, y: float) -> None:
        self._seen += 1
        if (self._seen - 1) % self._keep:
            return
        self.points.append((x, y))
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
            self._keep *= 2

    def y_range(self) -> tuple[float, float]:
        ys = [y for _, y in self.points]
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1e-6)
        return lo - pad, hi + pad


def _number(v: float, digits: int = 3) -> str:
    return plain(float(v), digits) if abs(v) < 10**digits else f"{v:.0f}"


def axis_labels(lo: float, hi: float) -> tuple[str, str]:
    """Labels of the bottom and top of an axis, with just enough digits to differ."""
    for digits in range(3, 8):
        low, high = _number(lo, digits), _number(hi, digits)
        if low != high:
            break
    return low, high


class CurvePlot(QWidget):
    """Training loss and a validation score (PSNR, or a loss) against the optimisation step."""

    def __init__(self):
        super().__init__()
        self.loss, self.validation = Series(), Series()
        self.steps = 1
        self.note = ""
        self.setMinimumHeight(170)
        # Expanding: napari's dock then gives the plot the spare height.
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.set_validation_label("PSNR on held-out strips (dB)")

    def set_validation_label(self, label: str) -> None:
        """What the second curve (right axis) shows."""
        self.validation_label = label
        self.setToolTip(
            f"Orange: {TRAINING} (left axis): how far the model's output still is from its "
            f"target on the training patches; lower is better. Blue: {label} (right axis), "
            "measured on a strip of each image that training never sees (a PSNR: higher is "
            "better; an error: lower is better); the model kept is the one best there."
        )
        self.update()

    def set_note(self, text: str) -> None:
        """A line shown in the middle of the plot while it has no curve yet."""
        self.note = text
        self.update()

    def clear(self, steps: int = 1) -> None:
        """Forget both curves; the step axis runs to ``steps``."""
        self.loss, self.validation, self.steps = Series(), Series(), max(1, int(steps))
        self.update()

    def add(self, step: int, loss: float | None, validation: float | None) -> None:
        """Add one tick's values (None: nothing new); repainting is up to the caller."""
        if loss is not None:
            self.loss.add(step, loss)
        if validation is not None:
            self.validation.add(step, validation)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().windowText().color()
        metrics = painter.fontMetrics()
        line = metrics.height()
        curves = [
            (s, color, s.y_range())
            for s, color in ((self.loss, LOSS_COLOR), (self.validation, VALIDATION_COLOR))
            if s.points
        ]
        labels = {id(s): axis_labels(*r) for s, _, r in curves}
        widths = {
            id(s): max(metrics.horizontalAdvance(t) for t in labels[id(s)]) for s, _, _ in curves
        }
        left = widths.get(id(self.loss), metrics.horizontalAdvance("0.000")) + 8
        right = widths.get(id(self.validation), metrics.horizontalAdvance("00.00")) + 8
        entries = self._legend_entries(metrics)
        top = (max(y for *_, y in entries) + 1) * line if entries else 2 * line
        frame = QRectF(left, top, self.width() - left - right, self.height() - top - line - 4)
        if frame.width() < 20 or frame.height() < 20:
            return
        faint = QColor(text)
        faint.setAlpha(70)
        painter.setPen(QPen(faint, 1))
        painter.drawRect(frame)
        painter.setPen(text)
        below = QRectF(frame.left(), frame.bottom() + 2, frame.width(), line)
        painter.drawText(below, Qt.AlignmentFlag.AlignCenter, f"step (of {self.steps})")
        self._legend(painter, line, entries)
        for series, color, (lo, hi) in curves:
            on_left = series is self.loss
            self._curve(painter, frame, series, color, lo, hi)
            painter.setPen(color)
            x = 0.0 if on_left else frame.right() + 6
            align = Qt.AlignmentFlag.AlignRight if on_left else Qt.AlignmentFlag.AlignLeft
            for label, y in zip(labels[id(series)], (frame.bottom(), frame.top()), strict=True):
                box = QRectF(x, y - line / 2, frame.left() - 6 if on_left else right, line)
                painter.drawText(box, align | Qt.AlignmentFlag.AlignVCenter, label)
        if not self.loss.points:
            painter.setPen(text if self.note else faint)
            note = self.note or "curves appear once training runs"
            # Wrapped inside the frame: a phase's text is longer than a narrow plot.
            flags = int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap)
            painter.drawText(frame.adjusted(6, 0, -6, 0), flags, note)
        painter.end()

    def _legend_entries(self, metrics) -> list[tuple[str, QColor, float, int]]:
        """Each curve's name and latest value, placed at (x, line): a second line when
        the two do not fit side by side (a narrow dock)."""
        entries, x, row = [], 4.0, 1
        for name, color, series in (
            (TRAINING, LOSS_COLOR, self.loss),
            (self.validation_label, VALIDATION_COLOR, self.validation),
        ):
            value = f": {_number(series.points[-1][1], 4)}" if series.points else ""
            room = self.width() - 28 - metrics.horizontalAdvance(value)  # never cut: elided
            label = metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, room) + value
            width = 20 + metrics.horizontalAdvance(label)
            if entries and x + width > self.width():
                x, row = 4.0, row + 1
            entries.append((label, color, x, row))
            x += width + 16
        return entries

    def _legend(self, painter: QPainter, line: int, entries) -> None:
        """At the top: each curve's name and its latest value."""
        for label, color, x, row in entries:
            y = row * line
            painter.setPen(QPen(color, 2))
            painter.drawLine(QPointF(x, y - line * 0.4), QPointF(x + 16, y - line * 0.4))
            painter.drawText(QPointF(x + 20, y), label)

    def _curve(self, painter, frame: QRectF, series: Series, color, lo: float, hi: float) -> None:
        def at(x: float, y: float) -> QPointF:
            return QPointF(
                frame.left() + frame.width() * min(x / self.steps, 1.0),
                frame.bottom() - frame.height() * (y - lo) / (hi - lo),
            )

        painter.setPen(QPen(color, 1.6))
        points = [at(x, y) for x, y in series.points]
        if len(points) > 1:
            painter.drawPolyline(QPolygonF(points))
        if series is self.validation and len(points) <= 50:  # mark each validation
            painter.setBrush(color)
            for p in points:
                painter.drawEllipse(p, 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)

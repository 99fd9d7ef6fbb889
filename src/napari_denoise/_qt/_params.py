"""Parameter controls built from a method's declared :class:`~napari_denoise.engine.methods.Param`.

One row per parameter, shown by its label (``Param.label``, plain words; the internal
name is for the CLI and the API): a check box for booleans, a drop-down for choices (each in
words, ``Param.choice_text``), a spin box for numbers. A parameter the method can choose from the image (``Param.auto``) gets an
"auto" check box beside its spin box; while it is ticked the value is left to the method,
and after a run or preview the spin box shows (greyed) the value that was chosen.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from ._compact import FittingCombo
from ._words import param_label, plain

BIG = 1e6  # upper bound for parameters the method leaves open

HANDLED_ELSEWHERE = {"device"}  # a model's device is chosen in the run settings

DECIMALS = 3  # a float's decimals, more for a small value (see _fit_decimals)
MAX_DECIMALS = 15


def _fit_decimals(box, value) -> None:
    """Enough decimals for ``value`` to keep its 3 significant digits, as status lines do:
    an image in small units has a black level of 3e-7, which 3 decimals would make 0."""
    if not isinstance(box, QDoubleSpinBox) or not isinstance(value, int | float):
        return
    magnitude = math.floor(math.log10(abs(value))) if value and math.isfinite(value) else 0
    box.setDecimals(min(MAX_DECIMALS, max(DECIMALS, 2 - magnitude)))


def _number_box(param) -> QSpinBox | QDoubleSpinBox:
    if param.type is int:
        box: QSpinBox | QDoubleSpinBox = QSpinBox()
        box.setRange(
            int(param.minimum if param.minimum is not None else 0), int(param.maximum or BIG)
        )
    else:
        box = QDoubleSpinBox()
        box.setDecimals(DECIMALS)
        # No declared minimum: a level (black level, noise floor) may be negative.
        low = param.minimum if param.minimum is not None else -BIG
        box.setRange(float(low), param.maximum or BIG)
        box.setSingleStep(0.1)
    box.setToolTip(param.help)
    # napari's style lets spin boxes shrink to 70 px, too narrow for "221.000" between
    # its +/- buttons; a little more, through the same style mechanism.
    box.setStyleSheet("QAbstractSpinBox { min-width: 92px; }")
    return box


class AutoNumber(QWidget):
    """A number that can be left to the method: [x] auto  [spin box]."""

    def __init__(self, param, *, auto_text: str = "auto", waiting_text: str = "from the image"):
        super().__init__()
        self.param = param
        self.waiting_text = waiting_text
        self.box = _number_box(param)
        self.auto = QCheckBox(auto_text)
        self.auto.setToolTip("Let the method choose this value from the image.")
        self.auto.setChecked(True)
        self._chosen = None
        self.auto.toggled.connect(self._sync)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.auto)
        layout.addWidget(self.box, 1)
        self._sync()

    def _sync(self) -> None:
        manual = not self.auto.isChecked()
        self.box.setEnabled(manual)
        # While on auto and before any run: show 'from the image' rather than a number.
        waiting = not manual and self._chosen is None and bool(self.waiting_text)
        self.box.setSpecialValueText(self.waiting_text if waiting else "")
        if waiting:
            self.box.setValue(self.box.minimum())
        if manual and self.box.value() == self.box.minimum():
            # Start from what the method chose last, else from the parameter's own starting
            # point, else from a plain 1 (px, or units).
            start = self._chosen if self._chosen is not None else self.param.start
            start = 1 if start is None else start
            start = max(self.box.minimum(), min(self.box.maximum(), start))
            # A whole-number box takes an int only (a start is declared as a float).
            self.box.setValue(round(start) if isinstance(self.box, QSpinBox) else start)

    def value(self) -> Any:
        """None while on auto, else the spin box value."""
        return None if self.auto.isChecked() else self.box.value()

    def set_value(self, value: Any) -> None:
        """Set a fixed value (None: back to auto)."""
        self.auto.setChecked(value is None)
        if value is not None:
            _fit_decimals(self.box, value)
            self.box.setValue(value)

    def show_chosen(self, value: Any) -> None:
        """Show what the method chose while staying on auto."""
        if self.auto.isChecked() and isinstance(value, int | float):
            self._chosen = value
            self.box.setSpecialValueText("")
            _fit_decimals(self.box, value)
            self.box.setValue(value)
            self.box.setToolTip(f"{self.param.help}\nLast chosen automatically: {plain(value)}")

    def clear_chosen(self) -> None:
        """Forget the value shown as chosen: it was chosen for another image (or run)."""
        if self._chosen is None:
            return
        self._chosen = None
        self.box.setToolTip(self.param.help)
        if self.auto.isChecked():
            self._sync()  # back to 'from the image'


class ParamForm(QWidget):
    """The controls for one method's parameters; ``values()`` gives what the user set."""

    def __init__(self):
        super().__init__()
        self._layout = QFormLayout(self)
        # Each label above its control: in a narrow dock both then get the full width.
        self._layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapAllRows)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._controls: dict[str, QWidget] = {}
        self.method = None

    def set_method(self, method) -> None:
        """Rebuild the rows for ``method``."""
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._controls = {}
        self.method = method
        for param in self._shown(method):
            control = self._control(param)
            self._controls[param.name] = control
            if isinstance(control, QCheckBox):
                self._layout.addRow(control)
            else:
                label = QLabel(param_label(param))
                label.setToolTip(param.help)
                # Labels are short (Param.label); a word-wrapped QLabel would break even
                # 'Search radius (pixels)' over two lines in a form with room to spare.
                self._layout.addRow(label, control)
        if not self._shown(method):
            self._layout.addRow(QLabel("This method has no parameters."))

    @staticmethod
    def _shown(method) -> list:
        return [p for p in method.params if p.name not in HANDLED_ELSEWHERE]

    def _control(self, param) -> QWidget:
        if param.type is bool:
            box = QCheckBox(param_label(param))
            box.setToolTip(param.help)
            box.setChecked(bool(param.default))
            return box
        if param.choices is not None:
            combo = FittingCombo(shorten=True)
            combo.addItems([param.choice_text(c) for c in param.choices])
            combo.setCurrentIndex(_index(param, param.default))
            combo.setToolTip(param.help)
            return combo
        if param.auto:
            return AutoNumber(param)
        box = _number_box(param)
        box.setValue(param.default)
        return box

    def values(self) -> dict[str, Any]:
        """Parameters to pass to the method: automatic ones left unset are omitted."""
        out: dict[str, Any] = {}
        for param in self._shown(self.method) if self.method else ():
            control = self._controls[param.name]
            if isinstance(control, QCheckBox):
                value = control.isChecked()
            elif isinstance(control, QComboBox):
                value = param.choices[control.currentIndex()]
            elif isinstance(control, AutoNumber):
                value = control.value()
            else:
                value = control.value()
            if value is not None:
                out[param.name] = value
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Set controls from ``values`` (None for an automatic parameter means auto)."""
        for name, value in values.items():
            control = self._controls[name]
            if isinstance(control, QCheckBox):
                control.setChecked(bool(value))
            elif isinstance(control, QComboBox):
                control.setCurrentIndex(_index(self.method.param(name), value))
            else:
                control.set_value(value) if isinstance(control, AutoNumber) else control.setValue(
                    value
                )

    def show_chosen(self, resolved: dict[str, Any]) -> None:
        """Display the values a run chose for the parameters left on auto."""
        for name, value in resolved.items():
            control = self._controls.get(name)
            if isinstance(control, AutoNumber):
                control.show_chosen(value)

    def clear_chosen(self) -> None:
        """Forget the values a run chose (the input changed, or a new run starts)."""
        for control in self._controls.values():
            if isinstance(control, AutoNumber):
                control.clear_chosen()

    def control(self, name: str) -> QWidget:
        """The control of parameter ``name`` (for tests and scripting)."""
        return self._controls[name]


def _index(param, value) -> int:
    """The position of ``value`` among the choices (a CLI string such as '4' too)."""
    return param.choices.index(param.coerce(value))

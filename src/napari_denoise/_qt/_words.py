"""How numbers and parameters are written on screen (no Qt): plain words, plain numbers.

Status lines and layer names use the labels the form shows, and numbers in positional
notation (``12300``, ``0.00012``), never ``1.23e+04``.
"""

from __future__ import annotations

import re

import numpy as np

LABEL_CHARS = 40


def plain(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, without e-notation; True/False as on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return np.format_float_positional(
            float(value), precision=digits, unique=False, fractional=False, trim="-"
        )
    return str(value)


def param_label(param) -> str:
    """A short label from the declaration: the help's opening words when short, else the name.

    'Noise standard deviation (auto = estimated)' -> 'Noise standard deviation';
    'sigma' with a long help -> 'Sigma'; ' (px)' is added when the help says pixels.
    """
    head = re.split(r"[(:;]", param.help)[0].strip()
    text = head if 0 < len(head) <= LABEL_CHARS else param.name.replace("_", " ")
    text = text[0].upper() + text[1:]
    if re.search(r"\(pixels", param.help):
        text += " (px)"
    return text


def non_default(method, values: dict) -> dict:
    """The entries of ``values`` that differ from ``method``'s declared defaults."""
    defaults = {p.name: p.default for p in method.params}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


def short_settings(values: dict) -> str:
    """'sigma=1.5 vst=on' (for layer names: short, the parameter names)."""
    return " ".join(f"{k}={plain(v)}" for k, v in values.items())

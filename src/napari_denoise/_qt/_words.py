"""How numbers and parameters are written on screen (no Qt): plain words, plain numbers.

Status lines and layer names use the labels the form shows (``Param.label``, never the
internal name the CLI takes), choices in words, and numbers in positional notation
(``12300``, ``0.00012``), never ``1.23e+04``.
"""

from __future__ import annotations

import re

import numpy as np

from ..engine.denoise.plan import POSITION_WORDS, position_text
from ..engine.methods import get_method
from ..engine.notes import Note
from ..errors import DenoiseError

LABEL_CHARS = 40
# The activity dock puts its label, the bar and 'n/total' on one line of its width: a
# longer label squeezed the bar to ~50 px (issue 25).
BAR_CHARS = 22


def plain(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, without e-notation; True/False as on/off.

    The whole part is never rounded away: 4095.0 is '4095', not '4100' (a 16-bit image's
    White level, shown beside a form that says 4095.000).
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if abs(value) >= 10**digits:  # more whole digits than ``digits``: keep them all
            return np.format_float_positional(value, precision=0, unique=False, trim="-")
        return np.format_float_positional(
            value, precision=digits, unique=False, fractional=False, trim="-"
        )
    return str(value)


def param_label(param) -> str:
    """The label a parameter is shown by: its declared ``label`` (plain words and unit).

    A parameter declared without one (a method registered by other code) falls back on the
    opening words of its help when short ('Noise level (auto: estimated)' -> 'Noise level'),
    else on its name with spaces.
    """
    if param.label:
        return param.label
    head = re.split(r"[(:;]", param.help)[0].strip()
    text = head if 0 < len(head) <= LABEL_CHARS else param.name.replace("_", " ")
    return text[0].upper() + text[1:]


def short_label(param) -> tuple[str, str]:
    """``(label, unit)`` for a compact line: 'Blur width (pixels)' -> ('Blur width', 'px');
    other parenthesised notes are left out."""
    label = param_label(param)
    match = re.fullmatch(r"(.*?)\s*\((.*)\)", label)
    if not match:
        return label, ""
    return match.group(1), "px" if match.group(2) == "pixels" else ""


def value_text(param, value) -> str:
    """A parameter's value as shown: a choice in its words, a number in plain notation."""
    if param.choices is not None and value in param.choices:
        return param.choice_text(value)
    return plain(value)


def labelled_value(param, value) -> str:
    """'Blur width = 0.912 px', 'Noise level = 12.3' (a status line's words)."""
    label, unit = short_label(param)
    return f"{label} = {value_text(param, value)}{' ' + unit if unit else ''}"


def non_default(method, values: dict) -> dict:
    """The entries of ``values`` that differ from ``method``'s declared defaults."""
    defaults = {p.name: p.default for p in method.params}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


def settings_text(method, values: dict) -> str:
    """'Blur width 1.5 px, Shot-noise correction on' (for layer names: the labels on screen,
    each value in plain words; a choice after a colon)."""
    parts = []
    for name, value in values.items():
        param = method.param(name)
        label, unit = short_label(param)
        if param.choices is not None:
            parts.append(f"{label}: {value_text(param, value)}")
        else:
            parts.append(f"{label} {plain(value)}{' ' + unit if unit else ''}")
    return ", ".join(parts)


def method_title(name: str) -> str:
    """The title a method is listed by ('nlm' -> 'Non-local means'); the name if unknown."""
    try:
        method = get_method(name)
    except DenoiseError:
        return name
    return method.title or method.name


def _one_tile_per_block(tick) -> bool:
    """Whether each block (plane, frame...) is one tile: then the blocks are the parts."""
    return bool(tick.position) and tick.total == int(np.prod([n for _, _, n in tick.position]))


def progress_text(tick, title: str) -> str:
    """A progress tick in words, with the method's title:
    'Non-local means, frame 4 of 10: part 37 of 45', or 'Non-local means, frame 4 of 10'
    when every frame is one part; a single plane: 'Non-local means: part 37 of 45'."""
    where = position_text(tick.position)
    if isinstance(tick, Note):  # a step before the tiles, in its own words
        return f"{title}: {tick.message[:1].lower()}{tick.message[1:]}"
    if tick.choosing:
        return f"{title}: choosing its settings from the image" + (f" ({where})" if where else "")
    head = f"{title}, {where}" if where else title
    if tick.total <= 1 or _one_tile_per_block(tick):
        return head
    return f"{head}: part {tick.done} of {tick.total}"


def bar_text(text: str, limit: int = BAR_CHARS) -> str:
    """``text`` cut in the middle to at most ``limit`` characters for the activity dock's
    label ('U-Net (fluores…frame 3 of 20'): its start says what, its end how far."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head].rstrip() + "…" + text[len(text) - (limit - 1 - head) :].lstrip()


def bar_label(tick) -> str:
    """A tick in two or three words for the activity dock, which shows 'n/total' and the
    time left beside it: 'Choosing detail', 'frame 3 of 20', 'Denoising'."""
    if isinstance(tick, Note) and tick.short:
        return bar_text(tick.short)
    if tick.choosing:
        return "Choosing settings"
    return bar_text(position_text(tick.position) or "Denoising")


def stopped_text(last) -> str:
    """' after 4 of 10 frames' (or '... parts') for the last tick of a stopped run."""
    if last is None or last.choosing or last.total <= 1:
        return ""
    if _one_tile_per_block(last):
        axis = last.position[-1][0]
        unit = POSITION_WORDS.get(axis, "block") + "s" if len(last.position) == 1 else "planes"
        return f" after {last.done} of {last.total} {unit}"
    return f" after {last.done} of {last.total} parts"


def reworded(message: str, method_name: str) -> str:
    """An engine message in the widget's words: "parameter 'size' of method 'box' must be
    odd" -> "'Window (pixels)' must be odd" (the engine names parameters as the command
    line takes them; the widget shows their labels)."""
    try:
        labels = {p.name: param_label(p) for p in get_method(method_name).params}
    except DenoiseError:
        return message
    message, found = re.subn(
        r"parameter '(\w+)' of method '[^']*'",
        lambda m: f"'{labels.get(m[1], m[1])}'",
        message,
    )
    if not found:  # not about a parameter: a quoted word is a layer's or a method's name
        return message
    return re.sub(r"'(\w+)'", lambda m: f"'{labels[m[1]]}'" if m[1] in labels else m[0], message)


def neighbours_text(result) -> str:
    """'Each frame was denoised with its 6 neighbouring frames, where they match.' for a
    stack denoised with its neighbours (empty otherwise)."""
    n = int(getattr(result, "neighbours", 0) or 0)
    if not n:
        return ""
    word = POSITION_WORDS.get("T" if "T" in result.axes else "Z", "plane")
    return (
        f"Each {word} was denoised with its {n} neighbouring {word}{'' if n == 1 else 's'}, "
        "where they match."
    )

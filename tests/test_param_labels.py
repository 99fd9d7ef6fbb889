"""Issue 14, finding 10: every parameter has a label in plain words for people, and every
choice a text, while the CLI and the Python API keep the internal names."""

from __future__ import annotations

import re

import pytest

from napari_denoise.engine.methods import Param, list_methods


def _internal(name) -> set[str]:
    name = str(name).lower()
    return {name, name.replace("_", " "), name.replace("_", "")}


def _every_param():
    return [(m.name, p) for m in list_methods() for p in m.params]


@pytest.mark.parametrize(("method", "param"), _every_param(), ids=lambda x: getattr(x, "name", x))
def test_every_parameter_has_a_plain_label(method, param):
    label = param.label.strip()
    assert label, f"{method}.{param.name} has no label"
    assert label.lower() not in _internal(param.name), f"{method}.{param.name}: {label!r}"
    assert "_" not in label and "=" not in label
    # The help is the tooltip: plain words too, not the names of the command line.
    assert not re.search(r"\w_\w|\bsigma\b|\bvst\b", param.help), param.help


@pytest.mark.parametrize(
    ("method", "param"),
    [(m, p) for m, p in _every_param() if p.choices is not None],
    ids=lambda x: getattr(x, "name", x),
)
def test_every_choice_is_shown_in_words(method, param):
    assert param.choice_labels is not None, f"{method}.{param.name}: choices shown as codes"
    texts = [param.choice_text(c) for c in param.choices]
    assert len(set(texts)) == len(texts)
    for choice, text in zip(param.choices, texts, strict=True):
        assert text.strip() and text != str(choice), f"{method}.{param.name}={choice!r}"


def test_the_bm3d_profile_np_is_explained():
    bm3d = next(m for m in list_methods() if m.name == "bm3d")
    assert "normal" in bm3d.param("profile").choice_text("np").lower()


def test_the_cli_description_keeps_the_internal_name_and_adds_the_label():
    param = Param("sigma", float, None, "Standard deviation (pixels)", label="Blur width (pixels)")
    described = param.describe()
    assert described["name"] == "sigma" and described["label"] == "Blur width (pixels)"


def test_a_choice_without_a_text_is_shown_as_itself():
    assert Param("mode", str, "soft", choices=("soft", "hard")).choice_text("hard") == "hard"


def test_the_cli_description_says_where_a_value_taken_off_auto_starts():
    """`list --json` describes what the form is built from: a declared starting point
    (Detail put back starts at 0, the network alone) is part of it."""
    from napari_denoise.engine.methods import get_method

    described = get_method("unet-fluo").param("detail").describe()
    assert described["start"] == 0.0
    assert "start" not in Param("sigma", float, None, "Blur width").describe()

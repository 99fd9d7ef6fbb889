"""Issue 25, point 3: no dead waits in the Denoise widget.

The first phase of a model run (loading, choosing the settings from sample planes) took
seconds with nothing said; now every step says what it does and how far it is, and
Cancel stops it there.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("torch")
pytestmark = pytest.mark.gui

from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise.engine.methods import list_methods  # noqa: E402
from napari_denoise.engine.notes import Note  # noqa: E402

WAIT = 120_000


def _model_with_detail_choice() -> str:
    """A shipped model whose settings are chosen by running it on sample planes."""
    from napari_denoise.engine.models.store import read_card

    for m in list_methods(kind="model", include_unavailable=False):
        if m.model is not None and read_card(m.model.card).get("detail"):
            return m.name
    pytest.skip("no shipped model chooses its detail setting")


def _stack(viewer, planes=5, side=96):
    rng = np.random.default_rng(0)
    clean = np.linspace(20, 180, side * side, dtype=np.float32).reshape(side, side)
    data = rng.poisson(np.broadcast_to(clean, (planes, side, side))).astype(np.uint16)
    return viewer.add_image(data, name="cells")


def _spy(widget) -> list:
    """Every tick the runner hands to the widget, in order."""
    seen, shown = [], widget.runner.calls.progress

    def spy(tick):
        seen.append(tick)
        shown(tick)

    widget.runner.calls.progress = spy
    return seen


def test_the_first_phase_of_a_model_run_says_each_step_and_how_far(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(_model_with_detail_choice())
    seen = _spy(widget)
    statuses = []
    layers_when_said = []

    def on_status(tick):  # what the status line says at each step, and whether a layer exists
        statuses.append(widget.status.text())
        layers_when_said.append(len(viewer.layers))

    widget.runner.calls.progress = (lambda f: lambda t: (f(t), on_status(t)))(
        widget.runner.calls.progress
    )
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    first_tile = next(i for i, t in enumerate(seen) if not t.choosing)
    before = seen[:first_tile]
    notes = [t for t in before if isinstance(t, Note)]
    # the choice is announced before it is made, then each sample plane as it is done
    assert any("Choosing the settings from" in t.message for t in notes), [
        t.message for t in before
    ]
    planes = [t for t in notes if re.search(r"sample plane \d+ of", t.message)]
    assert len(planes) >= 2 and [t.done for t in planes] == list(range(len(planes)))
    assert all(t.total == len(planes) for t in planes)
    # each is on screen in words, while only the input is there (before the result layer)
    assert any("sample plane 1 of" in s for s in statuses[:first_tile])
    assert layers_when_said[0] == 1
    assert viewer.layers[-1].name.startswith("cells [")


def test_cancel_during_the_choice_of_settings_stops_it_there(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(_model_with_detail_choice())
    seen = _spy(widget)
    relay = widget.runner._relay

    def cancel_on_first_plane(worker, note):
        """Cancel pressed while the first sample plane is on screen: done in the worker
        thread, as the note is said, so that the worker cannot have gone on to the tiles
        before the GUI thread handled the note (under load it had: a timing failure)."""
        relay(worker, note)
        if "sample plane 1 of" in note.message:
            widget.runner.cancel()

    widget.runner._relay = cancel_on_first_plane  # bound into the job when it starts
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert not any("sample plane 2 of" in t.message for t in seen if isinstance(t, Note))
    assert not any(not t.choosing for t in seen), "tiles ran after Cancel"
    assert [ly.name for ly in viewer.layers] == ["cells"]
    assert widget.status.text().startswith("Cancelled")


def test_choosing_a_model_measures_its_speed_in_the_background_before_run(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    """The once-per-machine precision measurement is done when the model is chosen (in a
    worker thread), so that the first Run does not wait for it."""
    from napari_denoise.engine.models import inference

    monkeypatch.delenv("NAPARI_DENOISE_PRECISION", raising=False)
    monkeypatch.setenv("NAPARI_DENOISE_CACHE_DIR", str(tmp_path))  # a fresh profile
    monkeypatch.setattr(inference, "_precision_memo", {})
    from napari_denoise._qt import _denoise_widget

    monkeypatch.setattr(_denoise_widget, "_warmed", set())
    viewer = make_napari_viewer()
    _stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(_model_with_detail_choice())
    qtbot.waitUntil(lambda: bool(inference._precision_memo), timeout=WAIT)  # no Run pressed
    seen = _spy(widget)
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    said = [t.message for t in seen if isinstance(t, Note)]
    assert not any("speed" in m for m in said), said
    assert not any("Loading PyTorch" in m for m in said), said

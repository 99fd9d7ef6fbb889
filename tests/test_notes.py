"""Issue 25, point 3: the engine says what its long steps do (engine.notes), to whoever
listens in the thread; nothing changes without a listener."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_denoise.engine.denoise.pipeline import denoise_iter, drain
from napari_denoise.engine.notes import Note, listening, say


def test_say_reaches_the_innermost_listener_of_this_thread_only():
    outer, inner = [], []
    say("nobody listens")  # no listener: nothing happens
    with listening(outer.append):
        say("a")
        with listening(inner.append):
            say("b", 1, 4, short="B")
        thread = threading.Thread(target=lambda: say("from another thread"))
        thread.start()
        thread.join()
        say("c")
    say("after")
    assert [n.message for n in outer] == ["a", "c"]
    assert inner == [Note(1, 4, "b", choosing=True, short="B")]


def test_a_listener_that_raises_stops_the_step():
    class Stop(Exception):
        pass

    def stop(note):
        raise Stop

    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 64)).astype(np.float32)
    with listening(stop), pytest.raises(Stop):
        drain(denoise_iter(image, "gaussian", axes="TYX"))


def test_choosing_the_settings_is_said_before_it_is_done():
    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 64)).astype(np.float32)
    events = []
    gen = denoise_iter(image, "gaussian", axes="TYX")
    with listening(lambda note: events.append(("note", note.message))):
        for tick in gen:
            events.append(("tick", tick.message))
    assert events[0][0] == "note" and "Choosing the settings from 3 sample planes" in events[0][1]


def test_a_run_waiting_for_another_threads_speed_measurement_says_how_far(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from napari_denoise.engine.models import inference

    monkeypatch.delenv("NAPARI_DENOISE_PRECISION", raising=False)
    monkeypatch.setenv("NAPARI_DENOISE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(inference, "_precision_memo", {})
    started, release = threading.Event(), threading.Event()

    def slow_probe(model):  # another thread's measurement, at its run 3 of 8
        inference._probing[:] = [2, 8]
        started.set()
        release.wait(10)
        record = {"fp32_ms_per_mp": 10.0, "bf16_ms_per_mp": 20.0}
        return {**record, "mean_change": 0.0, "max_change": 0.0, "precision": "fp32"}

    measuring = threading.Thread(
        target=lambda: inference.cpu_precision(None, "abc", probe=slow_probe)
    )
    measuring.start()
    assert started.wait(10)
    threading.Timer(0.6, release.set).start()
    notes = []
    with listening(notes.append):
        assert inference.cpu_precision(None, "abc", probe=slow_probe) == "fp32"
    measuring.join()
    assert notes and all((n.done, n.total) == (2, 8) for n in notes)
    assert "run 3 of 8" in notes[0].message and "once" in notes[0].message

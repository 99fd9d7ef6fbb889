"""Issue 14: Run on several layers (e.g. the channels of a split file) in one go."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import napari_denoise as nd  # noqa: E402
from napari_denoise._qt import _denoise_widget as widget_module  # noqa: E402
from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise.engine.methods import Method, register, unregister  # noqa: E402

WAIT = 30_000  # ms: generous for a busy 2-core machine, never a hang


class Gate:
    """A test method: the first ``free`` blocks pass at once, the next ones wait."""

    name = "test_gate"

    def __init__(self, free: int):
        self.free, self.calls = free, 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, block):
        with self.lock:
            self.calls += 1
            calls = self.calls
        if calls > self.free:
            self.release.wait(20)
        return block + 1.0


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


def channels(viewer, shape=(3, 24, 24), names=("ch1", "ch2", "ch3")):
    rng = np.random.default_rng(0)
    return [
        viewer.add_image(
            (rng.random(shape, dtype=np.float32) * (100 + 50 * i)),
            name=name,
            metadata={"axes": "TYX"[-len(shape) :], "source_path": f"/data/{name}.tif"},
        )
        for i, name in enumerate(names)
    ]


def results(viewer):
    return [ly for ly in viewer.layers if "result_of" in ly.metadata]


def batch(viewer, layers):
    """A Denoise widget on ``layers[0]`` with the other ones ticked under More layers."""
    widget = DenoiseWidget(viewer)
    widget.layer_combo.set_layer(layers[0])
    for layer in layers[1:]:
        widget.more_layers.set_checked(layer)
    return widget


def test_more_layers_offers_the_other_inputs_and_the_run_button_counts_them(make_napari_viewer):
    viewer = make_napari_viewer()
    a, b, c = channels(viewer)
    viewer.add_image(
        np.zeros((3, 24, 24), np.float32), name="a [gaussian]", metadata={"result_of": "a"}
    )
    widget = DenoiseWidget(viewer)
    widget.layer_combo.set_layer(a)
    offered = widget.more_layers._layers
    assert a not in offered and {id(b), id(c)} == {id(ly) for ly in offered}  # no result
    assert widget.more_layers.checked() == []  # nothing joins unless ticked
    assert widget.batch_layers() == [a]
    assert widget.run_button.text() == "Run on whole image"
    widget.more_layers.set_checked(c)
    widget.more_layers.set_checked(b)
    assert widget.batch_layers() == [a, b, c]  # the layer list's order
    assert widget.run_button.text() == "Run on 3 layers"
    widget.layer_combo.set_layer(b)  # the chosen layer is never listed twice
    assert widget.batch_layers() == [b, c]


def test_three_layers_give_three_results_named_after_their_inputs(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layers = channels(viewer)
    widget = batch(viewer, layers)
    widget.picker.set_method("gaussian")
    lines = []
    progress = widget.runner.calls.progress

    def record(tick):
        progress(tick)
        lines.append(widget.status.text())

    widget.runner.calls.progress = record
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    found = results(viewer)
    assert [ly.name for ly in found] == ["ch1 [gaussian]", "ch2 [gaussian]", "ch3 [gaussian]"]
    for layer, result in zip(layers, found, strict=True):
        np.testing.assert_array_equal(np.asarray(result.data), nd.denoise(layer.data, "gaussian"))
        assert result.metadata["result_of"] == layer.name
        provenance = result.metadata["napari_denoise"]
        assert provenance["napari_layer"] == layer.name
        assert provenance["input"]["path"] == f"/data/{layer.name}.tif"
    # One progress line for the whole batch, saying which layer it is on.
    assert any(line.startswith("layer 2 of 3 (ch2): ") for line in lines), lines
    assert "Done: 3 layers" in widget.status.text()
    assert widget.last_result is found[-1]
    # Save and Copy act on the result selected in napari, else on the last one.
    assert "/data/ch3.tif" in widget.command_text()
    viewer.layers.selection.active = found[0]
    assert "/data/ch1.tif" in widget.command_text()


def test_cancel_mid_batch_keeps_finished_results_and_drops_the_rest(
    make_napari_viewer, qtbot, tmp_path
):
    gate = Gate(free=4)  # ch1's 3 planes and ch2's first plane, then it waits
    register(Method(gate.name, gate, title="Gate (test)"), replace=True)
    try:
        viewer = make_napari_viewer()
        layers = channels(viewer)
        widget = batch(viewer, layers)
        widget.picker.set_method(gate.name)
        assert widget.run()

        def second_filling():
            found = results(viewer)
            assert len(found) == 2 and np.all(np.asarray(found[1].data[0]) > 0)

        qtbot.waitUntil(second_filling, timeout=WAIT)
        widget.cancel_button.click()
        gate.release.set()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    finally:
        gate.release.set()
        unregister(gate.name)
    (kept,) = results(viewer)
    assert kept.name == "ch1 [test_gate]" and "napari_denoise" in kept.metadata
    np.testing.assert_array_equal(kept.data, layers[0].data + 1)
    assert gate.calls <= 5  # ch3 never started
    text = widget.status.text()
    assert "Cancelled during layer 2 of 3 (ch2)" in text and "'ch1 [test_gate]'" in text


def test_an_unusable_layer_is_skipped_with_its_name_and_reason(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    a, bad, c = channels(viewer, names=("ch1", "bad", "ch3"))
    bad.data = np.where(np.arange(bad.data.size).reshape(bad.data.shape) == 5, np.nan, bad.data)
    flat = viewer.add_image(np.zeros((2, 2, 2, 2, 8, 8), np.float32), name="6d")
    widget = batch(viewer, [a, bad, c, flat])
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert [ly.name for ly in results(viewer)] == ["ch1 [gaussian]", "ch3 [gaussian]"]
    text = widget.status.text()
    assert "Done: 2 layers" in text
    assert "Skipped 'bad': " in text and "NaN" in text
    assert "Skipped '6d': An image needs 2 to 5 dimensions" in text
    assert errors == []  # the batch ran: a line in the status, no error pop-up


def test_a_batch_whose_every_layer_is_refused_says_why(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    a, b = channels(viewer, names=("ch1", "ch2"))
    for layer in (a, b):
        layer.data = np.full(layer.data.shape, np.nan, np.float32)
    widget = batch(viewer, [a, b])
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert results(viewer) == []
    assert len(errors) == 1 and "Skipped 'ch1'" in errors[0] and "Skipped 'ch2'" in errors[0]


def test_each_result_of_a_batch_replaces_the_preview_of_its_input(make_napari_viewer, qtbot):
    from napari_denoise._qt._layers import previews_of

    viewer = make_napari_viewer()
    layers = channels(viewer, shape=(24, 24))
    widget = batch(viewer, layers)
    widget.picker.set_method("gaussian")
    for layer in layers[:2]:
        widget.layer_combo.set_layer(layer)
        assert widget.preview()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert previews_of(viewer, layers[0]) and previews_of(viewer, layers[1])
    widget.layer_combo.set_layer(layers[0])
    assert widget.batch_layers() == layers
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert all(previews_of(viewer, layer) == [] for layer in layers)
    assert len(results(viewer)) == 3


@pytest.fixture
def pause_after_landing(monkeypatch):
    """The batch's worker waits after each landed result until ``go`` is set: a Cancel
    pressed then falls before the next layer's first tick (or right as the last result
    lands)."""
    from napari_denoise._qt import _runner

    go = threading.Event()
    steps = _runner.batch_steps

    def paused(jobs):
        gen = steps(jobs)
        try:
            item = next(gen)
            while True:
                sent = yield item
                if isinstance(item, _runner.Landed):
                    go.wait(20)
                item = gen.send(sent)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()

    monkeypatch.setattr(_runner, "batch_steps", paused)
    return go


def cancel_on_landing(widget, go, index):
    """Press Cancel as the result ``index`` lands, then let the worker go on."""
    landed = widget.runner.calls.landed

    def then_cancel(item):
        landed(item)
        if item.index == index:
            widget.cancel_button.click()
        go.set()

    widget.runner.calls.landed = then_cancel


def test_cancel_as_the_only_result_lands_keeps_it_and_says_done(
    make_napari_viewer, qtbot, pause_after_landing
):
    viewer = make_napari_viewer()
    (layer,) = channels(viewer, names=("ch1",))
    widget = batch(viewer, [layer])
    widget.picker.set_method("gaussian")
    cancel_on_landing(widget, pause_after_landing, 0)
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    (kept,) = results(viewer)
    text = widget.status.text()
    assert "nothing was added" not in text.lower() and "Cancelled" not in text, text
    assert f"'{kept.name}'" in text


def test_cancel_between_two_layers_names_the_layer_not_yet_done(
    make_napari_viewer, qtbot, pause_after_landing
):
    viewer = make_napari_viewer()
    layers = channels(viewer)
    widget = batch(viewer, layers)
    widget.picker.set_method("gaussian")
    cancel_on_landing(widget, pause_after_landing, 0)
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    (kept,) = results(viewer)
    assert kept.name == "ch1 [gaussian]"
    text = widget.status.text()
    # ch1 is finished and kept: the layer not added is the next one, and no count of
    # ch1's frames is passed off as how far the cancelled layer got.
    assert "layer 2 of 3 (ch2)" in text and "(ch1)" not in text, text
    assert " after " not in text and "'ch1 [gaussian]'" in text, text


def test_cancel_as_the_last_result_of_a_batch_lands_says_done(
    make_napari_viewer, qtbot, pause_after_landing
):
    viewer = make_napari_viewer()
    layers = channels(viewer, names=("ch1", "ch2"))
    widget = batch(viewer, layers)
    widget.picker.set_method("gaussian")
    cancel_on_landing(widget, pause_after_landing, 1)
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert len(results(viewer)) == 2
    text = widget.status.text()
    assert "Done: 2 layers" in text and "Cancelled" not in text, text


def test_deleting_a_later_input_mid_batch_says_the_finished_results_stay(
    make_napari_viewer, qtbot, monkeypatch
):
    said = []
    monkeypatch.setattr(widget_module, "show_info", said.append)
    gate = Gate(free=4)  # ch1's 3 planes and ch2's first plane, then it waits
    register(Method(gate.name, gate, title="Gate (test)"), replace=True)
    try:
        viewer = make_napari_viewer()
        layers = channels(viewer)
        widget = batch(viewer, layers)
        widget.picker.set_method(gate.name)
        assert widget.run()
        qtbot.waitUntil(lambda: len(results(viewer)) == 2, timeout=WAIT)
        viewer.layers.remove(layers[2])  # ch3, still to do
        gate.release.set()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    finally:
        gate.release.set()
        unregister(gate.name)
    (kept,) = results(viewer)
    assert kept.name == "ch1 [test_gate]"
    assert len(said) == 1 and "'ch3' was deleted" in said[0], said
    assert "nothing added" not in said[0] and "'ch1 [test_gate]'" in said[0], said


def test_deleting_the_result_as_it_lands_says_nothing_was_added(
    make_napari_viewer, qtbot, pause_after_landing
):
    viewer = make_napari_viewer()
    (layer,) = channels(viewer, names=("ch1",))
    widget = batch(viewer, [layer])
    widget.picker.set_method("gaussian")
    landed, go = widget.runner.calls.landed, pause_after_landing

    def delete_then_land(item):
        viewer.layers.remove(widget._filling.layer)  # the user deletes the filling result
        landed(item)
        go.set()

    widget.runner.calls.landed = delete_then_land
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert results(viewer) == []
    assert "nothing was added" in widget.status.text().lower(), widget.status.text()


def test_deleting_an_input_already_done_lets_the_batch_go_on(
    make_napari_viewer, qtbot, pause_after_landing
):
    viewer = make_napari_viewer()
    layers = channels(viewer)
    widget = batch(viewer, layers)
    widget.picker.set_method("gaussian")
    landed, go = widget.runner.calls.landed, pause_after_landing

    def land_then_delete_its_input(item):
        landed(item)
        if item.index == 0:
            viewer.layers.remove(layers[0])  # ch1 is done: its result stays, the rest goes on
        go.set()

    widget.runner.calls.landed = land_then_delete_its_input
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    names = [ly.name for ly in results(viewer)]
    assert names == ["ch1 [gaussian]", "ch2 [gaussian]", "ch3 [gaussian]"], names
    assert "Done: 3 layers" in widget.status.text(), widget.status.text()

"""Issues 13 §5 and 14: a stack's result fills in as it is computed, in memory or in a file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import napari_denoise as nd  # noqa: E402
from napari_denoise._qt import _fill  # noqa: E402
from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise.engine.methods import Method, register, unregister  # noqa: E402

WAIT = 30_000  # ms: generous for a busy 2-core machine, never a hang


class Gated:
    """A test method: the first plane is done at once, the others wait for ``release``."""

    name = "test_gated"

    def __init__(self):
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, block):
        self.calls += 1
        if self.calls > 1:
            self.release.wait(20)
        return block + 1.0


@pytest.fixture
def gated():
    method = Gated()
    register(Method(method.name, method, title="Gated (test)"), replace=True)
    yield method
    method.release.set()
    unregister(method.name)


@pytest.fixture
def tiny_memory(monkeypatch, tmp_path):
    """Any result is 'too big for memory'; result files go to a throw-away folder."""
    monkeypatch.setattr(_fill, "available_memory", lambda: 1)
    monkeypatch.setenv("NAPARI_DENOISE_CACHE_DIR", str(tmp_path))
    return tmp_path


def stack(viewer, shape=(4, 32, 32)):
    data = np.random.default_rng(0).random(shape, dtype=np.float32) * 100
    return viewer.add_image(data, name="stack")


def results(viewer):
    return [ly for ly in viewer.layers if "result_of" in ly.metadata]


def gaussian_run(viewer, qtbot) -> DenoiseWidget:
    """A Denoise widget that has run the Gaussian on a new stack, to its end."""
    stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    return widget


def partial_shown(qtbot, widget, viewer):
    """Wait until the result layer is there while the job still runs; return it."""

    def first_plane_in():
        found = results(viewer)
        assert widget.runner.busy and found
        assert np.all(np.asarray(found[0].data[0]) > 0)

    qtbot.waitUntil(first_plane_in, timeout=WAIT)
    return results(viewer)[0]


def test_a_stack_result_appears_at_once_and_fills_plane_by_plane(make_napari_viewer, qtbot, gated):
    viewer = make_napari_viewer()
    source = stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(gated.name)
    viewer.dims.set_current_step(0, 0)
    assert widget.run()
    layer = partial_shown(qtbot, widget, viewer)
    # The finished plane is on screen, the later ones are still zeros.
    qtbot.waitUntil(lambda: np.all(np.asarray(layer._slice.image.raw) > 0), timeout=WAIT)
    np.testing.assert_array_equal(layer.data[0], source.data[0] + 1)
    assert not np.any(layer.data[2:])
    assert widget.runner.busy
    gated.release.set()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert results(viewer) == [layer]  # the same layer, not a second one
    np.testing.assert_array_equal(layer.data, source.data + 1)
    assert "napari_denoise" in layer.metadata  # the provenance, once done
    assert widget.last_result is layer
    assert "Done" in widget.status.text()


def test_a_result_too_big_for_memory_goes_to_a_file_the_widget_names(
    make_napari_viewer, qtbot, tiny_memory
):
    viewer = make_napari_viewer()
    source = stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    (layer,) = results(viewer)
    assert isinstance(layer.data, np.memmap)
    path = Path(layer.metadata["result_file"])
    assert path.is_file() and tiny_memory in path.parents
    assert str(path) in widget.status.text()
    np.testing.assert_array_equal(np.asarray(layer.data), nd.denoise(source.data, "gaussian"))
    # The file is the layer's: deleting the layer deletes it.
    viewer.layers.remove(layer)
    assert not path.exists()


def test_cancel_removes_the_partial_layer_and_its_file(
    make_napari_viewer, qtbot, gated, tiny_memory
):
    viewer = make_napari_viewer()
    stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(gated.name)
    assert widget.run()
    layer = partial_shown(qtbot, widget, viewer)
    path = Path(layer.metadata["result_file"])
    assert path.is_file() and str(path) in widget.status.text()
    widget.cancel_button.click()
    gated.release.set()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert results(viewer) == []
    assert not path.exists()
    assert "nothing was added" in widget.status.text()


def test_a_single_plane_keeps_its_in_memory_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    stack(viewer, shape=(32, 32))
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    (layer,) = results(viewer)
    assert not isinstance(layer.data, np.memmap) and "result_file" not in layer.metadata


class Reads:
    """An array-like that records the size of every read (what dask asks of it)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.sizes = []

    def __getitem__(self, key):
        part = self.data[key]
        self.sizes.append(part.size)
        return part


def test_a_dask_layer_is_read_a_plane_at_a_time(make_napari_viewer, qtbot):
    import dask.array as da

    data = np.random.default_rng(0).random((6, 32, 32), dtype=np.float32) * 100
    source = Reads(data)
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(source, chunks=(1, 32, 32), asarray=True), name="lazy")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    (layer,) = results(viewer)
    np.testing.assert_array_equal(np.asarray(layer.data), nd.denoise(data, "gaussian"))
    assert max(source.sizes) == 32 * 32


def test_a_failure_half_way_leaves_no_layer_and_no_file(
    make_napari_viewer, qtbot, tiny_memory, monkeypatch
):
    from napari_denoise._qt import _denoise_widget

    monkeypatch.setattr(_denoise_widget, "show_error", lambda message: None)

    def breaks(block, calls=[]):  # noqa: B006 - counts the calls of one test
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("simulated crash on the third plane")
        return block

    register(Method("test_breaks", breaks, title="Breaks (test)"), replace=True)
    try:
        viewer = make_napari_viewer()
        stack(viewer)
        widget = DenoiseWidget(viewer)
        widget.picker.set_method("test_breaks")
        seen = []
        viewer.layers.events.inserted.connect(lambda e: seen.append(e.value.metadata))
        assert widget.run()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    finally:
        unregister("test_breaks")
    assert seen and "result_file" in seen[0]  # the layer was there while it ran
    assert results(viewer) == []
    assert not Path(seen[0]["result_file"]).exists()
    assert "simulated crash" in widget.status.text()


def test_the_worker_computes_once_the_result_layer_is_shown(make_napari_viewer, qtbot):
    """Adding a layer takes the GUI thread 50-150 ms; the worker's threads must not take
    the cores meanwhile (gui_stall: 240-370 ms while both ran), so it waits."""
    import time

    calls = []

    def timed(block):
        calls.append(time.perf_counter())
        return block

    register(Method("test_timed", timed, title="Timed (test)"), replace=True)
    try:
        viewer = make_napari_viewer()
        stack(viewer)
        widget = DenoiseWidget(viewer)
        widget.picker.set_method("test_timed")
        shown = []
        started = widget.runner.calls.started

        def record(tick):
            started(tick)
            shown.append(time.perf_counter())

        widget.runner.calls.started = record
        assert widget.run()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    finally:
        unregister("test_timed")
    assert len(shown) == 1 and len(calls) == 4
    assert min(calls) > shown[0]


def test_the_result_layer_is_drawn_in_a_later_turn_than_it_is_added(
    make_napari_viewer, qtbot, gated
):
    """Inserting a layer and drawing its first plane each cost napari's GUI thread tens
    of milliseconds: split in two turns of the event loop, they make two short pauses."""
    viewer = make_napari_viewer()
    stack(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(gated.name)
    visible_when_added = []
    viewer.layers.events.inserted.connect(lambda e: visible_when_added.append(e.value.visible))
    assert widget.run()
    layer = partial_shown(qtbot, widget, viewer)
    assert visible_when_added == [False]
    qtbot.waitUntil(lambda: layer.visible, timeout=WAIT)
    gated.release.set()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)
    assert layer.visible and results(viewer) == [layer]


def test_a_result_file_goes_with_its_layer_after_the_widget_is_closed(
    make_napari_viewer, qtbot, tiny_memory
):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer()
    widget = gaussian_run(viewer, qtbot)
    (layer,) = results(viewer)
    path = Path(layer.metadata["result_file"])
    assert path.is_file()
    widget.close()
    widget.deleteLater()  # the dock closed: the widget and its connections are gone
    QApplication.processEvents()
    qtbot.wait(50)
    viewer.layers.remove(layer)
    assert not path.exists()  # not left in the user's cache folder for ever


def test_only_files_in_the_results_folder_are_removed_with_a_layer(
    make_napari_viewer, tiny_memory, tmp_path_factory
):
    viewer = make_napari_viewer()
    DenoiseWidget(viewer)
    mine = tmp_path_factory.mktemp("user") / "mine.npy"  # a user's file, named in metadata
    np.save(mine, np.zeros((2, 2)))
    layer = viewer.add_image(np.zeros((2, 2)), name="x", metadata={"result_file": str(mine)})
    viewer.layers.remove(layer)
    assert mine.exists()


def test_the_status_of_a_file_backed_result_reads_as_sentences(
    make_napari_viewer, qtbot, tiny_memory
):
    viewer = make_napari_viewer()
    widget = gaussian_run(viewer, qtbot)
    text = widget.status.text()
    # '... Blur width = 1.2 px (chosen automatically). It is kept in ...': a full stop
    # between the chosen values and the file's sentence.
    assert "(chosen automatically). It is kept in " in text, text

"""The Denoise widget: runs, previews, Cancel, errors and the stress cases of issue 3."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import QThreadPool  # noqa: E402

import napari_denoise as nd  # noqa: E402
from napari_denoise._qt import DenoiseWidget  # noqa: E402
from napari_denoise._qt import _denoise_widget as widget_module  # noqa: E402
from napari_denoise._qt._runner import worker_pool  # noqa: E402
from napari_denoise._qt._view_mode import OFF, OVERLAY, SIDE_BY_SIDE  # noqa: E402
from napari_denoise.engine.methods import (  # noqa: E402
    Method,
    default_method,
    register,
    unregister,
)
from napari_denoise.engine.metrics import psnr  # noqa: E402

PLUGIN = "napari-denoise"
WAIT = 20_000  # ms: generous for a busy 2-core machine, never a hang


class SlowCounter:
    """A registered test method that sleeps per tile and counts the tiles it processed."""

    name = "test_slow"

    def __init__(self, delay=0.02, fail=False):
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, block):
        with self.lock:
            self.calls += 1
        if self.fail:
            raise RuntimeError("simulated crash inside a filter")
        time.sleep(self.delay)
        return block


@pytest.fixture
def slow():
    counter = SlowCounter()
    register(Method(counter.name, counter, title="Slow (test)"), replace=True)
    yield counter
    unregister(counter.name)


@pytest.fixture
def errors(monkeypatch):
    shown = []
    monkeypatch.setattr(widget_module, "show_error", shown.append)
    return shown


def no_thread_runs() -> bool:
    """No worker thread is running: neither a denoising job nor anything on napari's pool."""
    pools = (QThreadPool.globalInstance(), worker_pool())
    return all(pool.activeThreadCount() == 0 for pool in pools)


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)


def slow_run(viewer, qtbot, slow, shape=(3, 64, 64)):
    """A widget started on a stack with the slow method: 49 tiles of 16 px per plane."""
    layer = viewer.add_image(np.random.default_rng(0).random(shape, dtype=np.float32), name="stack")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(slow.name)
    widget.settings.tile.set_value(16)
    assert widget.run()
    qtbot.waitUntil(lambda: slow.calls >= 2, timeout=WAIT)
    return layer, widget


def test_widget_opens_through_the_plugin_manager(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    assert isinstance(widget, DenoiseWidget)
    assert widget.layer_combo.layer() is viewer.layers["noisy (FMD)"]
    assert widget.picker.method() is default_method()
    _, compare = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    assert type(compare).__name__ == "CompareWidget"


def test_run_adds_a_matching_result_layer_and_leaves_the_input_alone(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    gt, noisy = viewer.layers["ground truth (FMD)"], viewer.layers["noisy (FMD)"]
    noisy.scale, noisy.translate = (0.5, 0.5), (10, 20)
    noisy.contrast_limits = (5, 120)
    before = noisy.data.copy()
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")  # what follows uses its sigma
    widget.layer_combo.set_layer(noisy)
    assert widget.run()
    wait_idle(qtbot, widget)

    result = viewer.layers["noisy (FMD) [gaussian]"]
    np.testing.assert_array_equal(noisy.data, before)
    np.testing.assert_array_equal(result.data, nd.denoise(before, "gaussian"))
    assert result.data.dtype == np.uint8
    np.testing.assert_allclose(result.scale, noisy.scale)
    np.testing.assert_allclose(result.translate, noisy.translate)
    assert tuple(result.contrast_limits) == (5, 120)
    prov = result.metadata["napari_denoise"]
    assert prov["method"] == "gaussian" and prov["params"]["sigma"] > 0
    assert prov["napari_layer"] == "noisy (FMD)" and "versions" in prov
    assert psnr(gt.data, result.data) > psnr(gt.data, noisy.data) + 3  # real data, real gain
    assert "Blur width = " in widget.status.text()  # the label on screen
    # the automatic sigma is now shown (greyed) in its control
    sigma = widget.params.control("sigma")
    assert sigma.auto.isChecked() and sigma.box.value() == pytest.approx(prov["params"]["sigma"])


def test_parameters_come_from_the_method_declaration(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((64, 64), dtype=np.float32) * 100)
    widget = DenoiseWidget(viewer)
    for method in nd.list_methods():
        if method.available:
            widget.picker.set_method(method.name)
            assert widget.params.method is method
            # The device has its own control in the settings, shared by all models.
            declared = {p.name for p in method.params} - {"device"}
            assert set(widget.params._controls) == declared
            assert widget.params.values().keys() == {
                p.name for p in method.params if not p.auto and p.name in declared
            }  # automatic ones left unset
    widget.picker.set_method("gaussian")
    widget.params.set_values({"sigma": 2.0})
    assert widget.params.values() == {"sigma": 2.0, "vst": False}
    widget.run()
    wait_idle(qtbot, widget)
    assert viewer.layers[-1].metadata["napari_denoise"]["params"]["sigma"] == 2.0


def test_cancel_stops_the_computation_and_adds_nothing(make_napari_viewer, qtbot, slow):
    viewer = make_napari_viewer()
    layer, widget = slow_run(viewer, qtbot, slow)
    assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    widget.cancel_button.click()
    wait_idle(qtbot, widget)
    stopped_at = slow.calls
    qtbot.wait(300)
    assert slow.calls == stopped_at  # nothing runs on in the background
    total = 3 * 49
    assert stopped_at < total / 2
    assert widget.runner.last.total == total and widget.runner.last.done < total
    assert list(viewer.layers) == [layer]
    assert "Cancelled" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_a_second_run_is_refused_while_one_runs(make_napari_viewer, qtbot, slow):
    viewer = make_napari_viewer()
    _, widget = slow_run(viewer, qtbot, slow, shape=(1, 64, 64))
    assert not widget.run() and not widget.preview()
    wait_idle(qtbot, widget)
    assert [ly.name for ly in viewer.layers] == ["stack", "stack [test_slow]"]


def test_closing_the_dock_mid_run_stops_the_thread(make_napari_viewer, qtbot, slow):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 64, 64), dtype=np.float32), name="stack")
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    widget.picker.set_method(slow.name)
    widget.settings.tile.set_value(16)
    assert widget.run()
    qtbot.waitUntil(lambda: slow.calls >= 2, timeout=WAIT)
    viewer.window.remove_dock_widget(dock)  # what napari's close button does
    qtbot.waitUntil(no_thread_runs, timeout=WAIT)
    assert slow.calls < 3 * 49 / 2
    qtbot.wait(100)
    assert [ly.name for ly in viewer.layers] == ["stack"]


def test_deleting_the_input_mid_run_stops_and_adds_nothing(make_napari_viewer, qtbot, slow):
    viewer = make_napari_viewer()
    layer, widget = slow_run(viewer, qtbot, slow)
    viewer.layers.remove(layer)
    wait_idle(qtbot, widget)
    assert slow.calls < 3 * 49 / 2
    assert len(viewer.layers) == 0
    assert widget.run_button.isEnabled()


def test_an_error_in_the_worker_is_a_notification_not_a_layer(
    make_napari_viewer, qtbot, slow, errors
):
    slow.fail = True
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32), name="img")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method(slow.name)
    assert widget.run()
    wait_idle(qtbot, widget)
    assert errors == [
        "Denoising stopped because of an unexpected error "
        "(RuntimeError: simulated crash inside a filter)."
    ]
    assert len(viewer.layers) == 1


def test_bad_input_gives_the_engine_sentence(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    data = np.ones((64, 64), np.float32)
    data[3, 4] = np.nan
    viewer.add_image(data, name="with nan")
    widget = DenoiseWidget(viewer)
    widget.run()
    wait_idle(qtbot, widget)
    assert len(errors) == 1 and "NaN" in errors[0]
    widget.input.axes.setText("QYX")  # wrong axes: refused before any thread starts
    assert not widget.run()
    assert "axes" in errors[-1] and len(viewer.layers) == 1


def test_preview_on_the_visible_plane_of_a_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "membrane_timelapse")
    stack = viewer.layers[0]
    viewer.dims.set_current_step(0, 3)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")  # what follows uses its sigma
    widget.params.set_values({"sigma": 1.5})
    assert widget.preview()
    wait_idle(qtbot, widget)
    preview = viewer.layers["membrane time-lapse [gaussian preview]"]
    assert preview.data.shape == (1, 256, 256)  # the whole plane before the canvas is drawn
    np.testing.assert_allclose(preview.translate, [3, 0, 0])
    expected = nd.denoise(np.asarray(stack.data[3]), "gaussian", sigma=1.5)
    np.testing.assert_array_equal(preview.data[0], expected)
    assert "256 × 256 px at frame 3" in widget.status.text()  # as numbered on the slider
    widget.preview()  # a second preview replaces the first
    wait_idle(qtbot, widget)
    assert [ly.name for ly in viewer.layers].count(preview.name) == 1


def test_preview_on_a_drawn_rectangle(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    noisy = viewer.layers["noisy (FMD)"]
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")  # what follows uses its sigma
    widget.layer_combo.set_layer(noisy)
    widget.preview_on.setCurrentText(widget_module.RECTANGLE)
    region = viewer.layers[widget_module.REGION_LAYER]
    assert region.mode == "add_rectangle"
    region.add_rectangles(np.array([[100, 150], [100, 250], [180, 250], [180, 150]]))
    widget.params.set_values({"sigma": 1.0})
    assert widget.preview()
    wait_idle(qtbot, widget)
    preview = viewer.layers["noisy (FMD) [gaussian preview]"]
    assert preview.data.shape == (80, 100)
    np.testing.assert_allclose(preview.translate, [100, 150])
    crop = np.asarray(noisy.data[100:180, 150:250])
    np.testing.assert_array_equal(preview.data, nd.denoise(crop, "gaussian", sigma=1.0))


def test_comparison_toggle(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    gt, noisy = viewer.layers
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")  # what follows uses its sigma
    widget.params.set_values({"sigma": 1.0})
    widget.run()
    wait_idle(qtbot, widget)
    result = viewer.layers[-1]

    widget.compare.set_mode(SIDE_BY_SIDE)
    assert viewer.grid.enabled and not gt.visible and noisy.visible and result.visible
    widget.compare.set_mode(OVERLAY)
    assert not viewer.grid.enabled and gt.visible
    diff = viewer.layers[-1]
    assert diff.name.startswith("noise removed")
    expected = noisy.data.astype(np.float32) - result.data.astype(np.float32)
    np.testing.assert_array_equal(np.asarray(diff.data), expected)
    lo, hi = diff.contrast_limits
    assert lo == -hi and hi > 0
    widget.compare.set_mode(OFF)
    assert diff not in viewer.layers and not viewer.grid.enabled
    viewer.layers.remove(result)
    assert not widget.compare.combo.isEnabled()


def test_widget_deleted_mid_run_leaves_no_thread(make_napari_viewer, qtbot, slow):
    viewer = make_napari_viewer()
    _, widget = slow_run(viewer, qtbot, slow)
    widget.deleteLater()
    qtbot.waitUntil(no_thread_runs, timeout=WAIT)
    assert slow.calls < 3 * 49 / 2
    qtbot.wait(100)
    assert [ly.name for ly in viewer.layers] == ["stack"]


def test_tiff_to_denoised_tiff_with_provenance(make_napari_viewer, qtbot, shared_data, tmp_path):
    import json

    import tifffile

    path = shared_data / "BioImageAnalysisNotebooks_stacks" / "cancer_cell_migration_crop.tif"
    viewer = make_napari_viewer()
    (stack,) = viewer.open(path, plugin=PLUGIN)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")  # what follows uses its sigma
    widget.layer_combo.set_layer(stack)
    assert widget.input.axes.text() == "TYX"
    widget.params.set_values({"sigma": 1.2})
    widget.run()
    wait_idle(qtbot, widget)
    result = viewer.layers[-1]
    viewer.layers.selection.active = result
    out = tmp_path / "denoised.tif"
    viewer.layers.save(str(out), selected=True, plugin=PLUGIN)

    saved = tifffile.imread(out)
    np.testing.assert_array_equal(saved, nd.denoise(tifffile.imread(path), "gaussian", sigma=1.2))
    prov = json.loads(out.with_name(out.name + ".json").read_text())
    assert prov["method"] == "gaussian" and prov["params"]["sigma"] == 1.2
    assert prov["input"]["path"] == str(path.resolve()) and len(prov["input"]["sha256"]) == 64
    assert prov["input"]["axes"] == "TYX" and prov["input"]["shape"] == [48, 130, 130]


def test_preview_of_a_3d_method_shows_the_current_frame(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "membrane_timelapse")
    stack = viewer.layers[0]
    viewer.dims.set_current_step(0, 2)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("box3d")
    widget.params.set_values({"size": 3, "size_z": 3})
    assert widget.preview()
    wait_idle(qtbot, widget)
    preview = viewer.layers[-1]
    full = nd.denoise(np.asarray(stack.data), "box3d", size=3, size_z=3)
    np.testing.assert_array_equal(preview.data[0], full[2])  # neighbours in T were used
    np.testing.assert_allclose(preview.translate, [2, 0, 0])


def test_a_model_method_gets_the_device_from_the_device_setting(make_napari_viewer, qtbot):
    from napari_denoise.engine.device import resolve_device
    from napari_denoise.engine.methods import Param

    seen = []

    def fake_model(block, *, device, strength):
        seen.append(device)
        return block * strength

    params = (Param("device", str, "cpu", "where to run"), Param("strength", float, 1.0, "x", 0, 2))
    register(
        Method("test_model", fake_model, params, kind="model", title="Fake model"), replace=True
    )
    try:
        viewer = make_napari_viewer()
        viewer.add_image(np.ones((32, 32), np.float32), name="img")
        widget = DenoiseWidget(viewer)
        texts = [widget.picker.itemText(i) for i in range(widget.picker.count())]
        assert texts[0] == "Deep-learning models"
        fake = next(i for i, t in enumerate(texts) if "Fake model" in t)
        assert 0 < fake < texts.index("Classical filters")
        widget.picker.set_method("test_model")
        assert set(widget.params._controls) == {"strength"}  # device is in the run settings
        assert widget.settings.device.isEnabled()
        widget.run()
        wait_idle(qtbot, widget)
        chosen = resolve_device("auto")  # 'auto' resolved in the worker: cpu, cuda or mps
        assert seen == [chosen]
        assert viewer.layers[-1].metadata["napari_denoise"]["device"] == chosen
    finally:
        unregister("test_model")


def test_auto_tile_shows_the_method_default_and_slow_methods_are_flagged(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    from napari_denoise.engine.denoise.pipeline import DEFAULT_TILE

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.float32))
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("unet-fluo")
    model_tile = nd.get_method("unet-fluo").tile
    assert widget.settings.tile.box.value() == model_tile and widget.settings.tile_size() is None
    # Choosing a model checks the device in a worker; let it finish before tear-down.
    qtbot.waitUntil(lambda: "checking" not in widget.settings.device_note.text(), timeout=30000)
    widget.picker.set_method("gaussian")
    assert widget.settings.tile.box.value() == DEFAULT_TILE
    texts = {
        widget.picker.itemData(i, Qt.ItemDataRole.UserRole): widget.picker.itemText(i)
        for i in range(widget.picker.count())
    }
    assert "slow" in texts["bm3d"] and "slow" not in texts["gaussian"]


def test_the_comparison_toggle_ignores_layer_removal_once_qt_deleted_it(make_napari_viewer, qtbot):
    """The toggle no longer disconnects from a slot on ``destroyed`` (that lambda crashed
    the process when Qt destroyed it with its dock while a run's worker was busy): napari
    holds its method weakly, and until the Python side goes, a removal is ignored."""
    from napari_denoise._qt._view_mode import ComparisonToggle

    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((8, 8), np.float32), name="a")
    toggle = ComparisonToggle(viewer)
    toggle.set_pair(a, a)
    toggle.deleteLater()  # Qt deletes the widget; ``toggle`` (Python) stays referenced
    qtbot.wait(50)
    with pytest.raises(RuntimeError):
        toggle.combo.isEnabled()
    viewer.layers.remove(a)  # no error from the deleted widget
    assert len(viewer.layers) == 0

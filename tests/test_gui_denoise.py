"""Issue 14: the Denoise widget's findings 7, 8, 9, 10 and 11."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QListWidget,
)

from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402

PLUGIN = "napari-denoise"
WAIT = 30_000


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=WAIT)


def _noisy(viewer, shape=(64, 64)):
    rng = np.random.default_rng(0)
    return viewer.add_image((rng.random(shape) * 200).astype(np.float32), name="noisy")


def test_the_preview_goes_when_the_full_result_lands(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _noisy(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.preview()
    wait_idle(qtbot, widget)
    assert any("preview_of" in ly.metadata for ly in viewer.layers)
    assert widget.run()
    wait_idle(qtbot, widget)
    assert not any("preview_of" in ly.metadata for ly in viewer.layers)
    assert [ly.name for ly in viewer.layers] == ["noisy", "noisy [gaussian]"]


def test_a_result_name_says_its_non_default_parameters(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _noisy(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    widget.params.set_values({"sigma": 1.5, "vst": True})
    assert widget.run()
    wait_idle(qtbot, widget)
    assert viewer.layers[-1].name == "noisy [gaussian, Blur width 1.5 px, Shot-noise correction on]"


def test_status_lines_use_the_labels_on_screen_and_plain_numbers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32) * 1e5)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("nlm")
    assert widget.run()
    wait_idle(qtbot, widget)
    text = widget.status.text()
    assert "Strength = " in text and "Noise level = " in text and not re.search(r"\bh =", text)
    assert "e+" not in text and "e-" not in text


def test_progress_and_cancel_lines_use_the_methods_title_and_plain_words(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image((rng.random((3, 160, 160)) * 200).astype(np.float32), name="stack")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("nlm")
    widget.input.axes.setText("TYX")
    widget.settings.tile.set_value(48)
    shown: list[str] = []
    set_text = widget.status.setText
    widget.status.setText = lambda text: (shown.append(text), set_text(text))[1]
    ticks = []
    progress = widget.runner.calls.progress
    widget.runner.calls.progress = lambda tick: (ticks.append(tick), progress(tick))
    assert widget.run()
    wait_idle(qtbot, widget)
    progress = [t for t in shown if ": part " in t]
    assert progress and all(
        re.match(r"Non-local means, frame [1-3] of 3: part", t) for t in progress
    )
    assert shown[-1].startswith("Done in")  # it names the new layer, 'stack [nlm]'
    assert not any("nlm" in t or "T=" in t or "tile" in t for t in shown[:-1])
    last = ticks[-1]
    assert last.total > 3  # several parts per frame
    widget._batch.ended = 0  # as if Cancel had stopped it before the result landed
    widget._on_cancelled(last)
    assert (
        widget.status.text()
        == f"Cancelled after {last.total} of {last.total} parts; nothing was added."
    )


def test_save_result_writes_tiff_and_provenance(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _noisy(viewer)
    widget = DenoiseWidget(viewer)
    assert not widget.save_button.isEnabled()  # nothing to save yet
    widget.picker.set_method("gaussian")
    assert widget.run()
    wait_idle(qtbot, widget)
    assert widget.save_button.isEnabled()
    written = widget.save_result(tmp_path / "clean.tif")
    assert [p.name for p in written] == ["clean.tif", "clean.tif.json"]
    sidecar = json.loads((tmp_path / "clean.tif.json").read_text())
    assert sidecar["method"] == "gaussian"


def test_an_rgb_layer_is_explained_and_can_be_split(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32, 3), np.uint16), name="three channels", rgb=True)
    widget = DenoiseWidget(viewer)
    assert widget.layer_combo.layer() is None
    text = widget.input.info.text()
    assert "three channels" in text and "Split channels" in text
    assert widget.input.split_button.isVisibleTo(widget)
    widget.input.split_button.click()
    grey = [ly for ly in viewer.layers if not ly.rgb]
    assert len(grey) == 3 and all(ly.data.shape == (32, 32) for ly in grey)
    assert widget.layer_combo.layer() in grey
    assert not widget.input.split_button.isVisibleTo(widget)


@pytest.mark.parametrize("name", ["Denoise", "Compare", "Train"])
def test_every_control_has_a_tooltip(make_napari_viewer, name):
    viewer = make_napari_viewer()
    _noisy(viewer)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QListWidget)
    missing = []
    for control in widget.findChildren(kinds):
        if isinstance(control.parent(), QAbstractSpinBox | QComboBox | QAbstractItemView):
            continue  # the inner parts of a spin box, a combo or a table
        if not control.toolTip().strip():
            missing.append(f"{type(control).__name__} {getattr(control, 'text', lambda: '')()}")
    assert not missing, missing


def test_copy_as_command_repeats_the_run_headless(make_napari_viewer, qtbot, tmp_path):
    import shlex
    import shutil
    import subprocess
    import sys

    import tifffile

    source = tmp_path / "cells.tif"
    rng = np.random.default_rng(3)
    tifffile.imwrite(source, (rng.random((2, 48, 48)) * 1000).astype(np.uint16))
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin=PLUGIN)
    widget = DenoiseWidget(viewer)
    widget.layer_combo.set_layer(viewer.layers["cells"])
    assert not widget.copy_button.isEnabled()
    widget.picker.set_method("gaussian")
    widget.params.set_values({"sigma": 1.25, "vst": True})
    assert widget.run()
    wait_idle(qtbot, widget)
    text = widget.copy_command()
    command, python = text.split("\n\n")
    words = shlex.split(command)
    assert words[:3] == ["napari-denoise", "denoise", str(source)]
    assert "napari_denoise.denoise(image, method='gaussian'" in python
    # The copied command, run by the real CLI, gives the same image as the widget.
    cli = shutil.which(
        "napari-denoise", path=str(__import__("pathlib").Path(sys.executable).parent)
    )
    out = subprocess.run([cli, *words[1:]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written = tifffile.imread(tmp_path / "cells_denoised.tif")
    np.testing.assert_array_equal(written, np.asarray(viewer.layers[-1].data))
    namespace: dict = {}
    exec(python, namespace)  # the Python call too
    np.testing.assert_array_equal(namespace["result"], written)


def test_a_refused_setting_is_named_by_its_label(make_napari_viewer, qtbot):
    # 'parameter 'size' of method 'box' must be odd' spoke the command line's names.
    viewer = make_napari_viewer()
    _noisy(viewer)
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("box")
    widget.params.set_values({"size": 4})
    widget.run()
    wait_idle(qtbot, widget)
    text = widget.status.text()
    assert "'Window (pixels)' must be odd" in text, text
    assert "size" not in text and "method 'box'" not in text
    widget.picker.set_method("unet-fluo")
    widget.params.set_values({"norm_low": 50.0, "norm_high": 10.0})
    widget.run()
    wait_idle(qtbot, widget)
    text = widget.status.text()
    assert "'Black level' (50.0) must be below 'White level' (10.0)" in text, text


def test_only_parameters_are_renamed_in_a_message(make_napari_viewer, qtbot):
    # A layer (or method) that happens to share a parameter's name keeps its name.
    viewer = make_napari_viewer()
    pyramid = [np.zeros((64, 64), np.float32), np.zeros((32, 32), np.float32)]
    viewer.add_image(pyramid, multiscale=True, name="size")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("box")
    assert not widget.run()
    text = widget.status.text()
    assert "Layer 'size' is a multiscale pyramid" in text, text


def test_copy_as_command_for_a_channel_of_a_file_repeats_that_channel(
    make_napari_viewer, qtbot, tmp_path
):
    # A file with channels opens as one layer per channel, each with the file as source:
    # the copied Python call must denoise that channel, not the whole file as if it were one.
    import shlex
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import tifffile

    source = tmp_path / "two.tif"
    rng = np.random.default_rng(4)
    data = (rng.random((2, 40, 40)) * 1000).astype(np.uint16)
    tifffile.imwrite(source, data, imagej=True, metadata={"axes": "CYX"})
    viewer = make_napari_viewer()
    viewer.open(str(source), plugin=PLUGIN)
    first, second = (ly for ly in viewer.layers if ly.metadata.get("channel") is not None)
    widget = DenoiseWidget(viewer)
    widget.layer_combo.set_layer(first)
    widget.more_layers.set_checked(second)
    widget.picker.set_method("gaussian")
    assert widget.run()
    wait_idle(qtbot, widget)
    made = [ly for ly in viewer.layers if ly.metadata.get("result_of") == second.name]
    provenance = made[0].metadata["napari_denoise"]
    assert provenance["input"]["path"] == str(source) and provenance["input_channel"] == 1
    viewer.layers.selection.active = made[0]
    command, python = widget.command_text().split("\n\n")
    namespace: dict = {}
    exec(python, namespace)
    np.testing.assert_array_equal(namespace["result"], np.asarray(made[0].data))
    # The command line denoises the whole file; its second channel is this result.
    words = shlex.split(command, comments=True)
    cli = shutil.which("napari-denoise", path=str(Path(sys.executable).parent))
    out = subprocess.run([cli, *words[1:]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written = tifffile.imread(tmp_path / "two_denoised.tif")
    np.testing.assert_array_equal(written[1], np.asarray(made[0].data))

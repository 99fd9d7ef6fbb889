"""Regenerate the user-guide screenshots on the bundled real data.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/images/make_screenshots.py [NAME ...]

Writes the PNG files next to this script (NAME: only those pictures: menu, denoise,
timelapse, choosing, compare_planes, train, bioimageio, neighbours). Every picture is napari's real window, with the napari-denoise
widgets docked through napari's plugin manager.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = (1366, 768)  # a laptop screen: what the widgets are designed for


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def wait(app, widget) -> None:
    while widget.runner.busy:
        pump(app, 0.05)
    pump(app, 0.5)


def save(viewer, name: str) -> None:
    from qtpy.QtWidgets import QApplication

    for widget in QApplication.allWidgets():  # pop-up notifications would hide the canvas
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()
    QApplication.processEvents()
    viewer.window._qt_window.grab().save(str(HERE / name))
    print("wrote", HERE / name)


def camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9
    return scene.camera if scene is not None else viewer.camera


def open_docked(sample: str):
    """napari at laptop size (as a maximised window on a 1366 x 768 screen), the sample
    open, then Compare, Train and Denoise docked as tabs (Denoise in front)."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-denoise")
    window = viewer.window._qt_window
    window.resize(*SIZE)
    window.move(0, 0)
    pump(QApplication.instance(), 0.3)
    viewer.open_sample("napari-denoise", sample)
    for name in ("Compare", "Train"):
        viewer.window.add_plugin_dock_widget("napari-denoise", name, tabify=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-denoise", "Denoise", tabify=True)
    pump(QApplication.instance(), 0.5)
    viewer.reset_view()
    return viewer, widget


def menu(app) -> None:
    """Layers > Filter > Denoise: the widget opens for the selected layer."""
    from qtpy.QtCore import QPoint

    viewer, _ = open_docked("fmd_pair")
    window = viewer.window._qt_window
    layers = next(a for a in window.menuBar().actions() if "Layers" in a.text()).menu()
    layers.popup(window.mapToGlobal(QPoint(100, 25)))
    pump(app, 0.3)
    item = next(a for a in layers.actions() if "Filter" in a.text())
    layers.setActiveAction(item)
    geometry = layers.actionGeometry(item)
    item.menu().popup(layers.mapToGlobal(QPoint(layers.width(), geometry.y())))
    pump(app, 0.5)
    app.primaryScreen().grabWindow(0).copy(0, 0, 720, 420).save(
        str(HERE / "menu_layers_filter.png")
    )
    print("wrote", HERE / "menu_layers_filter.png")
    item.menu().close()
    layers.close()
    viewer.close()


def denoise_and_compare(app) -> None:
    """The FMD pair: preview, run, side by side, overlay, compare table."""
    from napari_denoise._qt._denoise_widget import RECTANGLE, REGION_LAYER
    from napari_denoise._qt._view_mode import OFF, OVERLAY, SIDE_BY_SIDE

    viewer, widget = open_docked("fmd_pair")
    pump(app, 0.5)
    save(viewer, "denoise_widget.png")

    # Preview on a drawn rectangle, with the method's automatic choice shown.
    widget.preview_on.setCurrentText(RECTANGLE)
    region = viewer.layers[REGION_LAYER]
    region.add_rectangles(np.array([[140, 120], [140, 330], [300, 330], [300, 120]]))
    region.mode = "pan_zoom"
    viewer.layers.selection.active = viewer.layers["noisy (FMD)"]
    widget.picker.set_method("gaussian")
    widget.preview()
    wait(app, widget)
    camera(viewer).center = (220, 225)
    camera(viewer).zoom *= 2.2
    pump(app, 0.5)
    save(viewer, "preview_rectangle.png")
    viewer.layers.remove(viewer.layers["noisy (FMD) [gaussian preview]"])
    viewer.layers.remove(region)
    widget.preview_on.setCurrentText("visible area")
    viewer.reset_view()

    widget.run()
    wait(app, widget)
    widget.picker.set_method("unet-fluo")
    widget.run()
    wait(app, widget)
    widget.compare.set_mode(SIDE_BY_SIDE)
    pump(app, 0.5)
    save(viewer, "side_by_side.png")
    widget.compare.set_mode(OVERLAY)
    camera(viewer).zoom *= 2.0
    pump(app, 0.5)
    save(viewer, "overlay_difference.png")
    widget.compare.set_mode(OFF)
    viewer.reset_view()

    dock = viewer.window._wrapped_dock_widgets["Compare (napari-denoise)"]
    dock.raise_()
    compare = dock.widget()
    compare.compute()
    while compare.worker is not None:
        pump(app, 0.05)
    compare.table.selectRow(compare.row_of[1])  # the first result's scores
    compare.add_difference()
    pump(app, 0.5)
    save(viewer, "compare_widget.png")
    viewer.close()


def timelapse_progress(app) -> None:
    """The real time-lapse: a slow method half-way, its result filling in (the frame shown
    is done, the later ones not yet), with napari's activity dock open."""
    viewer, widget = open_docked("membrane_timelapse")
    frames = viewer.layers[0].data.shape[0]
    widget.picker.set_method("nlm")
    widget.settings.tile.set_value(128)
    pump(app, 1.0)
    widget.run()
    viewer.window._qt_window.statusBar()._toggle_activity_dock(True)

    def done_frames():
        last = widget.runner.last
        return 0 if last is None or last.total <= 1 else last.done * frames // last.total

    while widget.runner.busy and done_frames() < max(1, frames // 2):
        pump(app, 0.05)
    viewer.dims.set_current_step(0, done_frames() - 1)
    pump(app, 0.15)  # the frame drawn, the run not yet over
    save(viewer, "timelapse_running.png")
    widget.runner.cancel()
    wait(app, widget)
    viewer.close()


def train(app) -> None:
    """The Train widget fine-tuning the shipped U-Net on a drawn region of the FMD pair."""
    import os
    import shutil
    import tempfile

    # The model trained for the picture goes to a throw-away folder, not the user's.
    folder = tempfile.mkdtemp(prefix="napari-denoise-shot-")
    os.environ["NAPARI_DENOISE_MODEL_DIR"] = folder
    from napari_denoise.engine.models.registry import register_models

    register_models()
    viewer, _ = open_docked("fmd_pair")
    region = viewer.add_shapes(
        np.array([[40, 40], [40, 340], [340, 340], [340, 40]]),
        shape_type="rectangle",
        name="training region",
        edge_color="yellow",
        face_color="transparent",
        edge_width=3,
    )
    viewer.layers.selection.active = viewer.layers["noisy (FMD)"]
    # make napari docks Train already (behind Denoise): bring its tab to the front.
    dock = viewer.window._wrapped_dock_widgets["Train (napari-denoise)"]
    dock.raise_()
    widget = dock.widget()
    widget.regions.set_layer(region)
    widget.name.setText("fmd-confocal-ft")
    widget.budget_unit.setCurrentText("steps")
    widget.budget.setValue(300)
    widget.extra_spec = {"batch_size": 8}
    pump(app, 0.5)
    widget.start()
    while widget.runner.busy and (widget.runner.last is None or widget.runner.last.step < 150):
        pump(app, 0.05)
    pump(app, 0.3)
    save(viewer, "train_widget.png")
    widget.stop()
    while widget.runner.busy or widget.denoiser.busy:
        pump(app, 0.05)
    viewer.close()
    shutil.rmtree(folder, ignore_errors=True)
    del os.environ["NAPARI_DENOISE_MODEL_DIR"]
    register_models()


def bioimageio(app) -> None:
    """A bioimage.io package (exported from the shipped U-Net) loaded with Load model..."""
    import os
    import shutil
    import tempfile

    import napari_denoise as nd

    folder = tempfile.mkdtemp(prefix="napari-denoise-shot-")
    os.environ["NAPARI_DENOISE_MODEL_DIR"] = folder
    from napari_denoise.engine.models.registry import register_models

    register_models()
    package = nd.export_model("unet-fluo", Path(folder) / "cells-unet.zip")
    viewer, widget = open_docked("fmd_pair")
    widget.model_files.load(package)
    while widget.model_files.worker is not None:
        pump(app, 0.05)
    pump(app, 0.5)
    save(viewer, "bioimageio_loaded.png")
    viewer.close()
    shutil.rmtree(folder, ignore_errors=True)
    del os.environ["NAPARI_DENOISE_MODEL_DIR"]
    register_models()


def choosing(app) -> None:
    """The real time-lapse with the default network: the status line during the choice of
    settings, before the first frame (what used to be a silent wait), activity dock open."""
    from napari_denoise.engine.methods import default_method

    viewer, widget = open_docked("membrane_timelapse")
    widget.picker.set_method(default_method().name)
    pump(app, 1.0)
    widget.run()
    viewer.window._qt_window.statusBar()._toggle_activity_dock(True)
    while widget.runner.busy and "sample plane 2 of" not in widget.status.text():
        pump(app, 0.02)
    pump(app, 0.1)
    save(viewer, "choosing_settings.png")
    widget.runner.cancel()
    wait(app, widget)
    viewer.close()


def compare_planes(app) -> None:
    """Compare, one row per plane, on a real 3-capture confocal stack (FMD BPAE, a
    training field) with long names, as a user names them and as Denoise names its
    results: every name whole, on its own line."""
    from napari_denoise import denoise
    from napari_denoise.bench import find_data
    from napari_denoise.io import read_image

    fmd = find_data() / "FMD_Confocal_BPAE_B_train"
    captures = sorted((fmd / "raw" / "10").glob("*.png"))[:3]
    raw = np.stack([np.asarray(read_image(p).data) for p in captures])
    gt = np.asarray(read_image(fmd / "gt" / "10" / "avg50.png").data)
    stacks = {
        "BPAE_confocal_field10_avg50": np.stack([gt] * len(captures)),
        "BPAE_confocal_field10_raw": raw,
        "BPAE_confocal_field10_raw [gaussian]": denoise(raw, "gaussian", axes="TYX"),
        "BPAE_confocal_field10_raw [unet-fluo]": denoise(raw, "unet-fluo", axes="TYX"),
    }
    viewer, _ = open_docked("fmd_pair")
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    for name, data in stacks.items():
        viewer.add_image(data, name=name, metadata={"axes": "TYX"})
    dock = viewer.window._wrapped_dock_widgets["Compare (napari-denoise)"]
    dock.raise_()
    compare = dock.widget()
    compare.gt.set_layer(viewer.layers["BPAE_confocal_field10_avg50"])
    compare.baseline.set_layer(viewer.layers["BPAE_confocal_field10_raw"])
    for layer in viewer.layers:
        compare.results.set_checked(layer, "[" in layer.name)
    compare.per_slice.setChecked(True)
    compare.compute()
    while compare.worker is not None:
        pump(app, 0.05)
    viewer.layers.selection.active = viewer.layers["BPAE_confocal_field10_raw [unet-fluo]"]
    viewer.reset_view()
    pump(app, 0.5)
    save(viewer, "compare_per_plane.png")
    viewer.close()


def neighbours(app) -> None:
    """A real confocal time series (FMD BPAE nuclei, a training field's 10 captures, a
    256 x 256 crop) denoised by the default, which uses each frame's neighbours, beside
    the raw frames and the same model frame by frame (napari's grid: raw | frame by frame
    | with neighbours), the status line saying how."""
    from napari_denoise.bench import find_data
    from napari_denoise.io import read_image

    fmd = find_data() / "FMD_Confocal_BPAE_B_train"
    captures = sorted((fmd / "raw" / "10").glob("*.png"))[:10]
    raw = np.stack([np.asarray(read_image(p).data) for p in captures])[:, 96:352, 40:296]
    viewer, widget = open_docked("fmd_pair")
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(raw, name="confocal_time_series", metadata={"axes": "TYX"})
    widget.layer_combo.set_layer(viewer.layers["confocal_time_series"])
    pump(app, 0.5)
    widget.params.set_values({"neighbours": "off"})
    widget.run()
    wait(app, widget)
    widget.params.set_values({"neighbours": "on"})
    widget.run()
    wait(app, widget)
    viewer.dims.set_current_step(0, 4)
    for layer in viewer.layers:  # raw | frame by frame | with neighbours
        layer.visible = True
    viewer.grid.enabled, viewer.grid.shape = True, (1, 3)
    viewer.reset_view()
    from qtpy.QtWidgets import QScrollArea

    for area in widget.findChildren(QScrollArea):  # down to the status line
        area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    pump(app, 0.5)
    save(viewer, "stack_neighbours.png")
    viewer.close()


PICTURES = {
    "neighbours": neighbours,
    "menu": menu,
    "choosing": choosing,
    "compare_planes": compare_planes,
    "bioimageio": bioimageio,
    "denoise": denoise_and_compare,
    "timelapse": timelapse_progress,
    "train": train,
}


def main(names: list[str] | None = None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    napari.Viewer(show=False).close()  # create the QApplication
    app = QApplication.instance()
    for name in names or PICTURES:
        PICTURES[name](app)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

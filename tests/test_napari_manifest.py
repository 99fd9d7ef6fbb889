"""The npe2 manifest: valid, shipped inside the package, and wired into napari's menus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "napari-denoise"


def test_manifest_passes_npe2_validate_with_imports():
    npe2_cli = Path(sys.executable).with_name("npe2")
    cmd = [str(npe2_cli), "validate", PLUGIN, "--imports"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_package_manifest_is_a_real_file_and_the_root_one_only_points_to_it():
    packaged = REPO / "src" / "napari_denoise" / "napari.yaml"
    assert packaged.is_file() and not packaged.is_symlink()  # links break Windows checkouts
    assert "contributions:" in packaged.read_text()
    pointer = REPO / "napari.yaml"
    assert "src/napari_denoise/napari.yaml" in pointer.read_text()


def test_installed_manifest_declares_every_contribution():
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution(PLUGIN)
    contrib = mf.contributions
    assert {w.display_name for w in contrib.widgets} == {"Denoise", "Compare", "Train"}
    assert {s.key for s in contrib.sample_data} == {"fmd_pair", "membrane_timelapse"}
    assert any("*.tif" in r.filename_patterns for r in contrib.readers)
    assert any(
        ".tif" in w.filename_extensions and w.layer_types == ["image"] for w in contrib.writers
    )
    filter_menu = contrib.menus["napari/layers/filter"]
    assert [item.command for item in filter_menu] == [
        "napari-denoise.denoise_widget",
        "napari-denoise.train_widget",
        "napari-denoise.compare_widget",
    ]
    measure_menu = contrib.menus["napari/layers/measure"]
    assert [item.command for item in measure_menu] == ["napari-denoise.compare_widget"]


def test_every_widget_is_in_a_layers_menu(make_napari_viewer):
    from napari._app_model import get_app_model

    make_napari_viewer()
    found = set()
    for menu_id in ("napari/layers/filter", "napari/layers/measure"):
        menu = get_app_model().menus.get_menu(menu_id)
        found |= {getattr(item, "command", None) for item in menu}
    ids = {c.id for c in found if c is not None}
    assert {
        "napari-denoise.denoise_widget",
        "napari-denoise.train_widget",
        "napari-denoise.compare_widget",
    } <= ids


def test_import_of_the_package_does_not_import_qt():
    code = "import sys, napari_denoise, napari_denoise._napari; print(any(m.startswith(('qtpy', 'PyQt')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_make_napari_opens_the_sample_with_the_widgets_docked(qtbot):
    from napari_denoise._launch import open_viewer
    from napari_denoise._qt import CompareWidget, DenoiseWidget, TrainWidget

    viewer, widget = open_viewer(show=False)
    try:
        assert isinstance(widget, DenoiseWidget)
        docked = [type(w) for w in viewer.window.dock_widgets.values()]
        assert {DenoiseWidget, CompareWidget, TrainWidget} <= set(docked)
        assert [layer.name for layer in viewer.layers] == ["ground truth (FMD)", "noisy (FMD)"]
    finally:
        viewer.close()

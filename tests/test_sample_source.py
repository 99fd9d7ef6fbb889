"""The bundled samples say which file they come from, like any opened file: Copy as command
then names the real file (not the INPUT.tif placeholder) and a saved result's provenance
names its input file and checksum."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_denoise._qt import DenoiseWidget  # noqa: E402

PLUGIN = "napari-denoise"


@pytest.mark.parametrize(
    ("sample", "layer", "file"),
    [
        ("fmd_pair", "noisy (FMD)", "fmd_confocal_mice_noisy.png"),
        ("membrane_timelapse", "membrane time-lapse", "membrane_timelapse.tif"),
    ],
)
def test_a_sample_run_can_be_repeated_on_its_file(
    make_napari_viewer, qtbot, tmp_path, sample, layer, file
):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, sample)
    widget = DenoiseWidget(viewer)
    widget.layer_combo.set_layer(viewer.layers[layer])
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=20_000)

    command = widget.command_text()
    assert "INPUT.tif" not in command
    path = next(Path(w) for w in command.split() if w.endswith(file))
    assert path.is_file()
    written = widget.save_result(tmp_path / "result.tif")
    prov = json.loads(Path(f"{written[0]}.json").read_text())
    assert Path(prov["input"]["path"]) == path
    assert prov["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

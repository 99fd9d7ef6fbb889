"""The npe2 reader, writer and sample data, through napari and on real stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_denoise._napari import (  # noqa: E402
    PROVENANCE_KEY,
    get_reader,
    read_tiff,
    sidecar_path,
    write_tiff,
)

PLUGIN = "napari-denoise"
STACKS = "BioImageAnalysisNotebooks_stacks"


def test_reader_claims_tiff_only(tmp_path):
    assert get_reader(str(tmp_path / "a.tif")) is read_tiff
    assert get_reader(str(tmp_path / "a.ome.tiff")) is read_tiff
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.npy")]) is None


def test_drag_and_drop_of_a_real_volume_keeps_axes_and_pixel_size(make_napari_viewer, shared_data):
    path = shared_data / STACKS / "Bead_Image1_crop.tif"
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    assert layer.data.shape == (41, 150, 150)
    np.testing.assert_array_equal(layer.data, tifffile.imread(path))
    assert layer.metadata["axes"] == "ZYX"
    np.testing.assert_allclose(layer.scale, [0.125, 0.0224919, 0.0224919], rtol=1e-5)
    assert [str(u) for u in layer.units] == ["micrometer"] * 3


def test_channel_axis_is_split_into_layers(make_napari_viewer, shared_data):
    path = shared_data / STACKS / "hela-cells.tif"  # (512, 672, 3) uint16, YXC
    raw = tifffile.imread(path)
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 3
    for c, layer in enumerate(layers):
        np.testing.assert_array_equal(layer.data, raw[..., c])
        assert layer.metadata["axes"] == "YX"
        np.testing.assert_allclose(layer.scale, [0.0514931, 0.0514931], rtol=1e-5)
    assert len({layer.name for layer in layers}) == 3


def test_writer_round_trip_of_a_real_stack_with_provenance(
    make_napari_viewer, shared_data, tmp_path
):
    path = shared_data / STACKS / "cancer_cell_migration_crop.tif"  # (48, 130, 130) uint16, TYX
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    layer.scale = (2.0, 0.5, 0.5)  # a calibration to carry through
    provenance = {"software": "napari-denoise", "method": "gaussian", "params": {"sigma": 1.5}}
    layer.metadata[PROVENANCE_KEY] = provenance
    out = tmp_path / "denoised.tif"
    written = viewer.layers.save(str(out), selected=True, plugin=PLUGIN)
    assert sorted(written) == sorted([str(out), str(tmp_path / "denoised.tif.json")])
    assert json.loads((tmp_path / "denoised.tif.json").read_text()) == provenance

    (again,) = viewer.open(out, plugin=PLUGIN)
    np.testing.assert_array_equal(again.data, tifffile.imread(path))
    assert again.data.dtype == np.uint16
    assert again.metadata["axes"] == "TYX"
    np.testing.assert_allclose(again.scale, [2.0, 0.5, 0.5])
    assert again.metadata[PROVENANCE_KEY] == provenance  # also embedded in the TIFF


def test_writer_without_provenance_writes_only_the_image(tmp_path):
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    written = write_tiff(str(tmp_path / "plain.tif"), data, {"metadata": {}, "scale": [1, 1]})
    assert written == [str(tmp_path / "plain.tif")]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "plain.tif"), data)


def test_writer_keeps_colour_channels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    write_tiff(str(tmp_path / "rgb.tif"), rgb, {"metadata": {}, "rgb": True})
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "rgb.tif"), rgb)


def test_writer_error_is_a_sentence_and_leaves_no_file(tmp_path):
    # io raises FileNotFoundError here (an OSError, not yet a DenoiseError): still a sentence
    with pytest.raises(OSError, match="does not exist"):
        write_tiff(
            str(tmp_path / "missing" / "x.tif"), np.zeros((8, 8), np.uint8), {"metadata": {}}
        )
    assert not list(tmp_path.iterdir())


def test_sidecar_names():
    assert sidecar_path("/a/b/x.tif").name == "x.tif.json"
    assert sidecar_path("/a/b/x.ome.tiff").name == "x.ome.tiff.json"  # as the CLI names it


def test_sample_data_loads_real_images(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fmd_pair")
    viewer.open_sample(PLUGIN, "membrane_timelapse")
    names = [layer.name for layer in viewer.layers]
    assert names == ["ground truth (FMD)", "noisy (FMD)", "membrane time-lapse"]
    gt, noisy, stack = viewer.layers
    assert gt.data.shape == noisy.data.shape == (512, 512) and noisy.data.dtype == np.uint8
    assert stack.data.shape == (5, 256, 256) and stack.data.dtype == np.uint16
    assert stack.metadata["axes"] == "TYX"
    # real data: the noisy image is close to, but not equal to, its ground truth
    diff = np.abs(gt.data.astype(int) - noisy.data.astype(int))
    assert 0 < diff.mean() < 20

"""Issue 25, point 1: where training starts.

An imported bioimage.io package made by our own export trains (its state dict is one of
our networks); a TorchScript-only import is listed greyed with the reason and the engine
refuses it with a sentence; "Start from" begins at the shipped default (or the model
trained last), not at whatever sorts first.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("bioimageio.spec")
pytestmark = pytest.mark.gui

import napari_denoise as nd  # noqa: E402
import test_napari_train_widget as trainer  # noqa: E402
from napari_denoise._qt import TrainWidget  # noqa: E402
from napari_denoise._qt._train_inputs import StartModelCombo  # noqa: E402
from napari_denoise.engine.methods import default_method  # noqa: E402
from napari_denoise.engine.training import finetune  # noqa: E402
from napari_denoise.errors import ParameterError  # noqa: E402

model_dir, notes, pair = trainer.model_dir, trainer.notes, trainer.pair  # fixtures
wait_idle = trainer.wait_idle


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """unet-fluo exported as a bioimage.io package (TorchScript and state dict)."""
    from bioimageio.spec import settings

    old = settings.cache_path
    settings.cache_path = tmp_path_factory.mktemp("bioimageio-cache")
    try:
        yield nd.export_model("unet-fluo", tmp_path_factory.mktemp("pkg") / "unet-fluo.zip")
    finally:
        settings.cache_path = old


@pytest.fixture(autouse=True)
def nothing_trained_yet(monkeypatch):
    monkeypatch.setattr(StartModelCombo, "last_trained", None, raising=False)


def _torchscript_only(package: Path, folder: Path) -> Path:
    """The package unpacked without its state dict: only the TorchScript trace is left."""
    import yaml

    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    rdf = folder / "rdf.yaml"
    data = yaml.safe_load(rdf.read_text())
    del data["weights"]["pytorch_state_dict"]
    data["weights"]["torchscript"].pop("parent", None)
    rdf.write_text(yaml.safe_dump(data, sort_keys=False))
    return rdf


def test_training_starts_from_an_imported_package(
    make_napari_viewer, qtbot, model_dir, notes, pair, package
):
    name = nd.import_model(package, name="aaa-imported")  # sorts first among your models
    viewer = make_napari_viewer()
    noisy, gt = pair
    viewer.add_image(gt, name="clean")
    viewer.add_image(noisy, name="noisy")
    widget = TrainWidget(viewer)
    combo = widget.start_model
    assert combo.itemData(0) == name  # listed first (your models come first) ...
    assert combo.start() == default_method().name == "unet-fluo"  # ... but not chosen
    combo.setCurrentIndex(combo.findData(name))
    assert combo.start() == name
    widget.extra_spec = {"patch": 32, "batch_size": 2}
    widget.budget_unit.setCurrentText("steps")
    widget.budget.setValue(2)
    widget.apply.setChecked(False)
    assert widget.start()
    wait_idle(qtbot, widget)
    assert notes["error"] == []
    assert widget.model_name == "aaa-imported-ft"
    card = nd.get_method("aaa-imported-ft").model
    assert card.architecture == "unet"
    # A new Train widget starts from the model trained last: in this session, and (say
    # after a restart) the newest trained model on disk; an imported one does not count.
    other = TrainWidget(viewer)
    assert other.start_model.start() == "aaa-imported-ft"
    StartModelCombo.last_trained = None
    nd.import_model(package, name="zzz-imported-later")
    restarted = TrainWidget(viewer)
    assert restarted.start_model.start() == "aaa-imported-ft"


def test_a_torchscript_only_import_is_not_offered_and_says_why(
    make_napari_viewer, model_dir, package, pair, tmp_path
):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = nd.import_model(
            _torchscript_only(package, tmp_path / "pkg"), name="aaa-traced", allow_code=True
        )
    assert nd.get_method(name).model.architecture == "torchscript"
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    combo = widget.start_model
    item = combo.model().item(combo.findData(name))
    assert not item.isEnabled()
    assert "TorchScript" in item.toolTip() and name in item.toolTip()
    assert combo.start() == "unet-fluo"
    with pytest.raises(ParameterError, match="compiled TorchScript"):
        finetune.prepare(finetune.FinetuneSpec(mode="n2v", start=name, steps=1), pair[0])

"""Load model… / Export… in the Denoise widget, through napari_denoise.import_model and
export_model when the package has them (disabled, saying why, when it has not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

import napari_denoise  # noqa: E402
from napari_denoise._qt._denoise_widget import DenoiseWidget  # noqa: E402
from napari_denoise.engine.methods import Method, ModelInfo, register, unregister  # noqa: E402

WAIT = 30_000


def _widget(viewer):
    viewer.add_image(np.zeros((32, 32), np.float32), name="noisy")
    return DenoiseWidget(viewer)


def test_without_the_functions_the_buttons_are_disabled_and_say_why(
    make_napari_viewer, monkeypatch
):
    monkeypatch.delattr(napari_denoise, "import_model", raising=False)
    monkeypatch.delattr(napari_denoise, "export_model", raising=False)
    files = _widget(make_napari_viewer()).model_files
    assert not files.load_button.isEnabled() and "import_model" in files.load_button.toolTip()
    assert not files.export_button.isEnabled()
    assert "export_model" in files.export_button.toolTip()


def test_a_loaded_model_is_listed_and_chosen_and_can_be_exported(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    calls = []

    def import_model(path, *, name=None, allow_code=False):
        calls.append(("import", path, allow_code))
        card = tmp_path / "imported-cells.json"
        method = Method(
            "imported-cells",
            lambda block: block,
            kind="model",
            title="an imported model",
            model=ModelInfo(
                name="imported-cells", architecture="unet", sha256="0" * 64, card=str(card)
            ),
        )
        register(method, replace=True)
        return "imported-cells"

    def export_model(model_name, path):
        calls.append(("export", model_name, path))
        Path(path).write_bytes(b"zip")
        return Path(path)

    monkeypatch.setattr(napari_denoise, "import_model", import_model, raising=False)
    monkeypatch.setattr(napari_denoise, "export_model", export_model, raising=False)
    try:
        widget = _widget(make_napari_viewer())
        files = widget.model_files
        assert files.load_button.isEnabled()
        assert not files.export_button.isEnabled()  # a shipped model is chosen
        files.load(tmp_path / "cells.zip")
        qtbot.waitUntil(lambda: files.worker is None, timeout=WAIT)
        assert calls[0] == ("import", str(tmp_path / "cells.zip"), False)
        assert widget.picker.method().name == "imported-cells"
        assert "imported-cells" in widget.status.text()
        assert files.export_button.isEnabled()
        files.export(tmp_path / "out.zip")
        qtbot.waitUntil(lambda: files.worker is None, timeout=WAIT)
        assert calls[1] == ("export", "imported-cells", str(tmp_path / "out.zip"))
        assert (tmp_path / "out.zip").exists() and "out.zip" in widget.status.text()
    finally:
        unregister("imported-cells")


def test_load_model_imports_a_real_bioimageio_package_and_export_writes_one(
    make_napari_viewer, qtbot, user_dir, tmp_path
):
    """The real functions, no stand-ins: a package exported from the shipped U-Net is loaded
    through the button's action, listed under Your models and chosen (its Export is off:
    the package it came from is what to share); a model of yours exports as a package."""
    pytest.importorskip("bioimageio.core")
    from napari_denoise.engine.models import build, registry, store

    package = napari_denoise.export_model("unet-fluo", tmp_path / "unet.zip")
    widget = _widget(make_napari_viewer())
    files = widget.model_files
    files.load(package)
    qtbot.waitUntil(lambda: files.worker is None, timeout=120_000)
    chosen = widget.picker.method()
    assert chosen is not None and chosen.model is not None and chosen.model.imported_from
    assert not files.export_button.isEnabled()
    assert "share that package" in files.export_button.toolTip()

    store.save_model(
        build("unet", {"base": 8, "depth": 2}), {"name": "my-net"}, user_dir / "my-net"
    )
    registry.register_models()
    from napari_denoise._qt._method_picker import notify_models_changed

    notify_models_changed(select="my-net")
    assert widget.picker.method().name == "my-net" and files.export_button.isEnabled()
    files.export(tmp_path / "mine.zip")
    qtbot.waitUntil(lambda: files.worker is None, timeout=120_000)
    assert (tmp_path / "mine.zip").is_file()
    assert "mine.zip" in widget.status.text()

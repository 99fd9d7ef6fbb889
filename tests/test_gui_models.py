"""Issue 14, finding 6: the user's models first, under their own names; experimental
networks folded under "More models"; a new model is selected after training."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from qtpy.QtCore import Qt  # noqa: E402

from napari_denoise._qt._method_picker import MethodPicker, notify_models_changed  # noqa: E402
from napari_denoise._qt._train_inputs import StartModelCombo  # noqa: E402
from napari_denoise.engine.methods import Method, ModelInfo, register, unregister  # noqa: E402

TITLE = "U-Net (fluorescence, blind), fine-tuned on noisy/clean pairs"


@pytest.fixture
def user_models(tmp_path):
    names = ["zebrafish-confocal", "my-cells"]
    for name in names:
        card = tmp_path / f"{name}.json"
        register(
            Method(
                name,
                lambda block: block,
                kind="model",
                title=TITLE,
                model=ModelInfo(name=name, architecture="unet", sha256="0" * 64, card=str(card)),
            ),
            replace=True,
        )
    yield names
    for name in names:
        unregister(name)


def _rows(combo):
    model = combo.model()
    return [
        (model.item(i).text().strip(), model.item(i).data(Qt.ItemDataRole.UserRole))
        for i in range(model.rowCount())
    ]


def test_your_models_come_first_under_their_names_and_experimental_ones_last(qtbot, user_models):
    picker = MethodPicker()
    qtbot.addWidget(picker)
    rows = _rows(picker)
    assert rows[0][0] == "Your models"
    assert [r[0] for r in rows[1:3]] == ["my-cells", "zebrafish-confocal"]
    headers = [text for text, data in rows if data is None]
    assert headers[-1].startswith("More models")
    more = [data for _, data in rows[[r[0] for r in rows].index(headers[-1]) + 1 :]]
    assert "dncnn-fluo" in more and "unet-fluo" not in more
    # a user model's tooltip still says what it is
    item = picker.model().item(1)
    assert TITLE in item.toolTip()


def test_the_new_model_is_selected_after_training(qtbot, user_models):
    picker = MethodPicker()
    qtbot.addWidget(picker)
    assert picker.method().name != "my-cells"
    notify_models_changed(select="my-cells")
    assert picker.method().name == "my-cells"


def test_the_train_widget_lists_your_models_first_too(qtbot, user_models):
    combo = StartModelCombo()
    qtbot.addWidget(combo)
    assert [combo.itemData(i) for i in range(2)] == ["my-cells", "zebrafish-confocal"]
    assert combo.itemText(0).startswith("my-cells")

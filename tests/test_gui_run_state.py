"""The Denoise widget's run state and the runner's callbacks are typed records, built by name."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_denoise._qt._command import as_command, as_python  # noqa: E402
from napari_denoise._qt._run_state import Batch, Filling, Task  # noqa: E402
from napari_denoise._qt._runner import Callbacks, Runner  # noqa: E402


def _done(outcome):
    pass


def _failed(message):
    pass


def _cancelled(last):
    pass


def _landed(landed):
    pass


def test_the_runner_takes_a_callbacks_record_or_its_fields_by_name():
    record = Callbacks(done=_done, failed=_failed, cancelled=_cancelled, landed=_landed)
    assert Runner(record).calls is record
    by_keywords = Runner(
        on_done=_done, on_failed=_failed, on_cancelled=_cancelled, on_landed=_landed
    ).calls
    assert by_keywords == record  # the same record, whichever way it was given
    with pytest.raises(TypeError, match="on_land"):
        Runner(on_done=_done, on_failed=_failed, on_cancelled=_cancelled, on_land=_landed)
    with pytest.raises(TypeError):
        Runner(record, on_done=_done)  # one way or the other
    with pytest.raises(TypeError):
        Callbacks(_done, _failed, _cancelled)  # by name only: no order to get wrong


def test_a_task_repeats_its_run_as_the_command_and_the_python_call():
    task = Task(
        layer=object(),
        method="gaussian",
        axes="TYX",
        params={"sigma": 1.5},
        tile=256,
        path="/data/cells.tif",
        channel=1,
    )
    run = task.rerun()
    assert run.command() == as_command(
        method="gaussian",
        params={"sigma": 1.5},
        axes="TYX",
        input_path="/data/cells.tif",
        tile=256,
        channel=1,
    )
    assert run.python() == as_python(
        method="gaussian",
        params={"sigma": 1.5},
        axes="TYX",
        input_path="/data/cells.tif",
        channel=1,
    )
    assert not hasattr(run, "layer")  # a deleted input layer is not kept alive for Copy


def test_a_batch_and_the_filling_record_start_empty():
    batch = Batch()
    assert (batch.landed, batch.skipped, batch.index, batch.ended) == ([], [], 0, 0)
    assert Batch().landed is not batch.landed
    filling = Filling(layer="layer", file="x.tif")
    filling.clear()
    assert (filling.layer, filling.file, filling.refresher) == (None, None, None)

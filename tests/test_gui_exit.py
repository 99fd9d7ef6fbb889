"""Quitting right after opening a widget: the device check is still importing torch in a
worker; the process must wait for it and exit cleanly (it aborted: the worker emitted on
signal objects deleted at interpreter shutdown)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("napari")

SCRIPT = textwrap.dedent(
    """
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_denoise._qt import DenoiseWidget

    viewer = napari.Viewer(show=False)
    viewer.window.add_dock_widget(DenoiseWidget(viewer))
    QApplication.processEvents()
    viewer.close()
    """
)


@pytest.mark.usefixtures("qapp")
def test_closing_napari_right_after_opening_the_widget_exits_cleanly(tmp_path):
    env = dict(os.environ)
    env["NAPARI_DENOISE_MODEL_DIR"] = str(tmp_path)  # the user's models stay untouched
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "has been deleted" not in done.stderr

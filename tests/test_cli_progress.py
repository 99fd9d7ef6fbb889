"""The progress line of `napari-denoise denoise`: whole words on a wide terminal, marked
when cut on a narrow one."""

import io
import os
import shutil
import sys

import pytest

from napari_denoise.cli import _progress_printer, main
from napari_denoise.engine.denoise.tiling import Progress


def test_a_wide_terminal_shows_the_whole_progress_message(
    shared_data, tmp_path, monkeypatch, capsys
):
    src = shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    image = tmp_path / "membrane.tif"
    shutil.copy(src, image)
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["denoise", str(image), "-o", str(tmp_path / "out.tif")]) == 0
    err = capsys.readouterr().err
    # The default model first chooses its settings: the sentence is not cut mid-way.
    assert "choosing its settings from the image" in err


def test_a_narrow_terminal_gets_a_line_that_fits_and_says_it_was_cut(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "40")
    message = "U-Net (fluorescence, blind): choosing its settings from the image"
    _progress_printer()(Progress(0, 1, message))
    line = capsys.readouterr().err.split("\r")[-1]
    assert len(line) < 40
    assert line.rstrip().endswith("…")
    assert "U-Net" in line


MESSAGE = "U-Net (fluorescence, blind): choosing its settings from the image"


@pytest.mark.parametrize("columns", [6, 12, 17])
def test_a_very_narrow_terminal_still_gets_one_line(monkeypatch, capsys, columns):
    """Below 18 columns the line was padded to 10 characters of message anyway, so it
    wrapped and every update started a new line."""
    monkeypatch.setenv("COLUMNS", str(columns))
    _progress_printer()(Progress(0, 1, MESSAGE))
    line = capsys.readouterr().err.split("\r")[-1]
    assert len(line) < max(columns, 6)  # the percentage itself always shows
    assert "0%" in line


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_the_width_is_the_one_of_the_terminal_the_line_goes_to(monkeypatch):
    """The line goes to stderr: its terminal's width counts, not stdout's (redirected to a
    file, stdout has none, and the line was 80 wide on a 40-column terminal)."""
    import fcntl
    import struct
    import termios

    monkeypatch.delenv("COLUMNS", raising=False)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    with open(slave, "w", encoding="utf-8") as tty, open(master, "rb", buffering=0) as out:
        monkeypatch.setattr(sys, "stderr", tty)
        monkeypatch.setattr(sys, "stdout", io.StringIO())  # as when redirected
        monkeypatch.setattr(sys, "__stdout__", io.StringIO())
        _progress_printer()(Progress(0, 1, MESSAGE))
        tty.flush()
        line = out.read(4096).decode("utf-8").split("\r")[-1]
    assert len(line) < 40
    assert line.rstrip().endswith("…")


def test_the_steps_before_the_first_tile_are_said_on_the_command_line(
    shared_data, tmp_path, monkeypatch, capsys
):
    # Issue 25.3 for the CLI: the engine's notes (loading the model, choosing the detail
    # from a sample plane, ...) reach the progress line, not only the GUI.
    src = shared_data / "BioImageAnalysisNotebooks_stacks" / "membrane_2d_timelapse.tif"
    image = tmp_path / "membrane.tif"
    shutil.copy(src, image)
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["denoise", str(image), "-o", str(tmp_path / "out.tif")]) == 0
    err = capsys.readouterr().err
    assert "Loading the model…" in err or "sample plane" in err, err[-2000:]

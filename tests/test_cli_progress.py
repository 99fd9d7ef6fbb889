"""The progress line of `napari-denoise denoise`: whole words on a wide terminal, marked
when cut on a narrow one."""

import shutil

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

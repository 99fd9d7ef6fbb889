"""Copy as command: where the command it gives writes its output."""

from __future__ import annotations

import shlex
from pathlib import Path

import napari_denoise
from napari_denoise._qt._command import as_command

PACKAGE = Path(napari_denoise.__file__).resolve().parent


def _output(command: str) -> Path:
    words = shlex.split(command.split("  #")[0])
    return Path(words[words.index("-o") + 1])


def test_a_user_file_is_denoised_beside_it(tmp_path):
    source = tmp_path / "cells.tif"
    command = as_command(method="gaussian", params={}, axes="YX", input_path=str(source))
    assert _output(command) == tmp_path / "cells_denoised.tif"


def test_a_bundled_sample_is_not_denoised_into_the_installed_package():
    """A sample layer names its file inside the package (read-only in many installs, and
    not a place for a user's results): the output goes to the working directory."""
    source = PACKAGE / "sample_data" / "fmd_confocal_mice_noisy.png"
    assert source.is_file()
    command = as_command(method="gaussian", params={}, axes="YX", input_path=str(source))
    output = _output(command)
    assert not output.resolve().is_relative_to(PACKAGE)
    assert output == Path("fmd_confocal_mice_noisy_denoised.tif")
    assert shlex.split(command)[2] == str(source)  # the input is still the sample's file

"""The command line and Python call that repeat a run made in the Denoise widget (no Qt).

Only the settings the user fixed are written out: parameters left on auto stay automatic,
so that the same command, run on a folder, chooses them again for each image.
"""

from __future__ import annotations

import shlex
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the installed napari_denoise folder


def _output_for(source: Path) -> Path:
    """The output beside the input, unless the input is a file shipped in the package (a
    sample): an installed package is no place for results, and is often read-only, so
    that one goes to the working directory."""
    name = f"{source.name.split('.')[0]}_denoised.tif"
    if source.resolve().is_relative_to(PACKAGE):
        return Path(name)
    return source.with_name(name)


def _value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


def as_command(
    *,
    method: str,
    params: dict,
    axes: str,
    input_path: str | None,
    tile: int | None = None,
    device: str | None = None,
    channel: int | None = None,
) -> str:
    """``napari-denoise denoise INPUT -o OUTPUT --method ... --param k=v ... --axes ...``.

    ``channel``: the layer is that channel of the input file; the command denoises the
    whole file (its own axes, channels included), of which that channel is the layer's run.
    """
    source = Path(input_path) if input_path else Path("INPUT.tif")
    output = _output_for(source)
    words = ["napari-denoise", "denoise", str(source), "-o", str(output), "--method", method]
    for key, value in params.items():
        words += ["--param", f"{key}={_value(value)}"]
    if channel is None:
        words += ["--axes", axes]
    if tile is not None:
        words += ["--tile", str(tile)]
    if device and device != "auto":
        words += ["--device", device]
    note = f"  # every channel; channel {channel + 1} is this layer" if channel is not None else ""
    return shlex.join(words) + note


def as_python(
    *, method: str, params: dict, axes: str, input_path: str | None, channel: int | None = None
) -> str:
    """The same run as a few lines of Python on an array read from the file (``channel``:
    the layer is that channel of the file)."""
    path = input_path or "INPUT.tif"
    args = [f"method={method!r}", f"axes={axes!r}"] + [f"{k}={v!r}" for k, v in params.items()]
    read = f"image = read_image({str(path)!r}).data\n"
    if channel is not None:
        read = (
            f"image = read_image({str(path)!r})\n"
            f"image = image.data.take({channel}, axis=image.axes.index('C'))\n"
        )
    return (
        "import napari_denoise\n"
        "from napari_denoise.io import read_image\n"
        f"{read}"
        f"result = napari_denoise.denoise(image, {', '.join(args)})\n"
    )

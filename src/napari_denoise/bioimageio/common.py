"""What export and import share: the error type, offline validation, the sample image."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DenoiseError

__all__ = [
    "BioimageioError",
    "NetworkBlocked",
    "block_network",
    "offline_validation",
    "sample_image",
]

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "fmd_confocal_mice_noisy.png"


class BioimageioError(DenoiseError, ValueError):
    """A model cannot be exported to, or imported from, the bioimage.io format as asked."""


class NetworkBlocked(OSError):
    """Raised by :func:`block_network` for any attempt to open a connection."""


@contextlib.contextmanager
def block_network(attempts: list | None = None) -> Iterator[list]:
    """Refuse every outgoing connection inside the block (and record where each went).

    Name lookups and socket connections fail at once with :class:`NetworkBlocked`, so
    code that would fetch something fails or falls back straight away instead of waiting
    for a time-out. Yields the list of recorded attempts.
    """
    attempts = [] if attempts is None else attempts
    originals = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise NetworkBlocked(f"napari-denoise blocked a network connection to {args[1:]!r}")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = originals  # type: ignore[method-assign]


@contextlib.contextmanager
def offline_validation(*, io_checks: bool = True) -> Iterator[None]:
    """bioimage.io validation that reads only local files.

    ``bioimageio.spec`` checks every URL of a description by requesting it when
    ``perform_io_checks`` is on; packages written here hold no URL (citations are DOIs),
    and for others the remote checks are turned off (``io_checks=False``) while the local
    files (weights, test tensors) are read and checked by napari-denoise itself.
    """
    from bioimageio.spec import ValidationContext

    with ValidationContext(perform_io_checks=io_checks, log_warnings=False):
        yield


def sample_image() -> np.ndarray:
    """The shipped real image (FMD confocal capture, 512 x 512 uint8) as float32."""
    from PIL import Image

    with Image.open(SAMPLE) as im:
        return np.asarray(im, dtype=np.float32)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` part of a 2-D image."""
    ny, nx = image.shape
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    return np.ascontiguousarray(image[y0 : y0 + size, x0 : x0 + size])


def check_output_path(path: Path, *, overwrite: bool, suffix: str = ".zip") -> Path:
    """An output path that may be written: the right suffix, a folder that exists, and
    no existing file unless ``overwrite``."""
    path = Path(path).expanduser()
    if path.suffix.lower() != suffix:
        raise BioimageioError(
            f"A bioimage.io model package is a {suffix} file; {path} has another suffix."
        )
    if path.is_dir():
        raise BioimageioError(f"{path} is a folder; give the path of a {suffix} file.")
    if path.exists() and not overwrite:
        raise BioimageioError(f"{path} exists; choose another name or pass overwrite.")
    if not path.parent.is_dir():
        raise BioimageioError(f"The folder {path.parent} does not exist.")
    if not os.access(path.parent, os.W_OK):
        raise BioimageioError(f"The folder {path.parent} is not writable.")
    return path

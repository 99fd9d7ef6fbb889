"""One atomic write for every file the package writes: images, sidecars, models, checkpoints.

The bytes go to a hidden ``.<name>.<random>.part`` file beside the target, are flushed to
disk, and the part file is renamed over the target, so a reader never sees a half-written
file and a failure (disk full, Ctrl-C) leaves nothing behind. Unlike ``mkstemp``, the part
file is opened with the process's umask, so the result has the usual permissions.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import WriteError

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], *, make_parents: bool = False
) -> None:
    """Let ``write(fh)`` fill a temporary binary file beside ``path``, then swap it in.

    Parameters
    ----------
    path : path-like
        The file to (re)place.
    write : callable
        Called once with a binary file handle open for writing.
    make_parents : bool
        Create missing parent folders (a model folder); otherwise a missing folder is a
        :class:`~napari_denoise.errors.WriteError`.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.is_dir():
        raise WriteError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        fh = open(tmp, "xb")
    except OSError as exc:
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    try:
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # disk full, permissions: say so, and leave nothing behind
        tmp.unlink(missing_ok=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    except BaseException:  # also Ctrl-C: never leave a half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX only)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

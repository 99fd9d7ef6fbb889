"""One atomic write for every file the package writes: images, sidecars, models, checkpoints.

The bytes go to a hidden part file beside the target (``.<name>.<pid>-<host>.<random>.part``),
are flushed to disk, and the part file is renamed over the target, so a reader never sees a
half-written file and a failure (disk full, Ctrl-C) leaves nothing behind. Unlike
``mkstemp``, the part file is opened with the process's umask, so the result has the usual
permissions.

Files that belong together (an image and its provenance sidecar) are written inside
:func:`atomic_batch`: every part is written first and they are renamed into place only when
all are complete; if any step fails, none of them appears (an existing file they were to
replace is put back). A process killed in the middle can leave a part file behind; it
names the process that wrote it, and :func:`clean_stale_parts` (run before every atomic
write to a folder) removes those whose process no longer runs on this machine.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import WriteError

__all__ = ["atomic_batch", "atomic_write", "clean_stale_parts", "commit_part", "part_path"]

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_PART = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})\.[0-9a-f]{8}\.(part|old|scratch)$")
# The parts waiting to be renamed into place by the innermost atomic_batch, if any.
_BATCH: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "napari_denoise_atomic_batch", default=None
)


def part_path(path: str | os.PathLike, kind: str = "part") -> Path:
    """A hidden name beside ``path`` for its part file (or ``kind="old"``: a set-aside copy;
    ``kind="scratch"``: a working array), named after this process so that a stale one
    (its process gone) is recognised and removed by :func:`clean_stale_parts`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}.{uuid.uuid4().hex[:8]}.{kind}")


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
    clean_stale_parts(path.parent)
    tmp = part_path(path)
    try:
        fh = open(tmp, "xb")
    except OSError as exc:
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    try:
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # disk full, permissions: say so, and leave nothing behind
        tmp.unlink(missing_ok=True)
        raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    except BaseException:  # also Ctrl-C: never leave a half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    commit_part(tmp, path)


def commit_part(tmp: Path, path: Path) -> None:
    """Rename the complete part ``tmp`` (a file or a folder) to ``path``: now, or at the end
    of the enclosing :func:`atomic_batch`."""
    pending = _BATCH.get()
    if pending is not None:
        pending.append((Path(tmp), Path(path)))
        return
    try:
        _commit([(Path(tmp), Path(path))])
    except BaseException:
        _remove(Path(tmp))
        raise


@contextlib.contextmanager
def atomic_batch() -> Iterator[None]:
    """Files written atomically inside the block appear together at its end, or not at all."""
    pending: list[tuple[Path, Path]] = []
    token = _BATCH.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            _remove(tmp)
        raise
    finally:
        _BATCH.reset(token)
    try:
        _commit(pending)
    except BaseException:
        for tmp, _ in pending:
            _remove(tmp)
        raise


def _commit(pending: list[tuple[Path, Path]]) -> None:
    """Rename every part into place; on failure undo the ones done (restoring what they
    replaced) and raise :class:`WriteError`."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, path in pending:
            old = None
            if tmp.is_dir() and path.exists():  # a folder is not renamed over another one
                old = part_path(path, "old")
                path.rename(old)
            try:
                os.replace(tmp, path)
            except BaseException:
                if old is not None:
                    old.rename(path)
                raise
            done.append((path, old))
    except BaseException as exc:
        for path, old in reversed(done):
            with contextlib.suppress(OSError):
                _remove(path)
                if old is not None:
                    old.rename(path)
        if isinstance(exc, OSError):
            raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
        raise
    for _, old in done:
        if old is not None:
            _remove(old)
    for folder in {path.parent for _, path in pending}:
        _fsync_folder(folder)


def clean_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Remove the part files (and set-aside copies) that an earlier run of this package
    left in ``folder`` when it was killed: ours by their name, and made by a process of
    this machine that no longer runs. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _PART.match(entry.name)
        if match is None or match["host"] != _HOST or _running(int(match["pid"])):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            _remove(path)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (another user's), or cannot tell: leave it alone
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # make the renames themselves durable (POSIX only)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

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

Two processes (or threads) writing the same file must not both succeed silently, nor mix
their files ("exists? then write" races). :func:`claim` takes a final name for one run:
a lock file beside it (``.<name>.napari-denoise.lock``), locked with ``flock`` (so the
kernel releases it when the process dies, even by ``kill -9``) and removed when the run
ends; a second claim of the same name, from any process or thread, fails at once with
:class:`OutputBusy`. While a name is claimed without ``replace``, committing a part to it
is an exclusive create (a hard link of the complete part, which fails if the name exists)
instead of a rename over it: :class:`OutputTaken` then, and nothing of the batch stays.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import WriteError

try:
    import fcntl
except ImportError:  # Windows: a byte-range lock, also released when the process ends
    fcntl = None
    import msvcrt

__all__ = [
    "OutputBusy",
    "OutputTaken",
    "atomic_batch",
    "atomic_write",
    "claim",
    "clean_stale_parts",
    "commit_part",
    "lock_path",
    "part_path",
]

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_PART = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<host>[0-9a-f]{6})\.[0-9a-f]{8}\.(part|old|scratch)$")
_LOCK_SUFFIX = ".napari-denoise.lock"
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
    replaced) and raise :class:`WriteError`. A name claimed without ``replace`` is created
    exclusively (:class:`OutputTaken` if it exists)."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for tmp, path in pending:
            old = None
            if not _may_replace(path):
                _create(tmp, path)
                done.append((path, None))
                continue
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
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
        raise
    for _, old in done:
        if old is not None:
            _remove(old)
    for folder in {path.parent for _, path in pending}:
        _fsync_folder(folder)


# Errors of a hard link that say "no hard links here" (FAT, some network shares), not "taken".
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV, errno.EACCES}


def _create(tmp: Path, path: Path) -> None:
    """Move the complete part ``tmp`` to ``path`` only if nothing is there: a file by a hard
    link (the kernel refuses it if ``path`` exists, whoever made it), a folder by a rename
    after a check (the claim keeps our own runs out of that window)."""
    if os.path.lexists(path):
        raise OutputTaken(path)
    if tmp.is_dir():
        os.rename(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputTaken(path) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.replace(tmp, path)  # no hard links on this file system: the check above
        return
    with contextlib.suppress(OSError):  # else a stale part, cleaned by a later write
        tmp.unlink()


# --- claims ----------------------------------------------------------------------------------


class OutputBusy(WriteError):
    """Another run (process or thread) holds the claim on a final name right now."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path, self.pid = Path(path), pid
        who = f" (process {pid})" if pid else ""
        super().__init__(
            f"Another run{who} is writing {path} right now; wait for it to end or choose "
            "another name."
        )


class OutputTaken(WriteError):
    """A name claimed as new was made by someone else before the run's files were committed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"{path} was created by another program while this run worked; it was not replaced."
        )


class _Claim:
    def __init__(self, fd: int | None, lock: Path, guarded: list[str]) -> None:
        self.thread = threading.get_ident()
        self.fd, self.lock, self.guarded, self.depth = fd, lock, guarded, 1


_CLAIMS_LOCK = threading.Lock()
_CLAIMS: dict[str, _Claim] = {}  # lock file -> the claim of this process that holds it
_GUARDED: dict[str, bool] = {}  # claimed final name -> whether it may be replaced


def _key(path: Path) -> str:
    """One spelling of ``path`` (its folder resolved), to compare names within a process."""
    return os.path.join(os.path.realpath(path.parent), path.name)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the final name ``path``: hidden, beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{_LOCK_SUFFIX}")


def _may_replace(path: Path) -> bool:
    with _CLAIMS_LOCK:
        return _GUARDED.get(_key(Path(path)), True)


@contextlib.contextmanager
def claim(
    path: str | os.PathLike,
    *,
    also: Iterable[str | os.PathLike] = (),
    replace: bool = False,
    make_parents: bool = False,
) -> Iterator[Path]:
    """Hold the final name ``path`` (and the names ``also``, e.g. its sidecar) for this run.

    While the block runs, no other process or thread can claim ``path``: it gets
    :class:`OutputBusy` at once. Without ``replace``, the files this process commits to
    the names are created exclusively (:class:`OutputTaken` if one exists by then), so
    "check, then write" cannot replace what another program made in between. A claim of a
    name this thread already holds is a no-op (the outer one rules).

    The lock file (``.<name>.napari-denoise.lock``) is removed at the end; one left by a
    killed process is unlocked by the kernel and taken over or cleaned later. With
    ``make_parents``, missing folders are created, and removed again at the end if they
    are still empty. ``WriteError`` if the lock file cannot be made (the folder is missing
    or not writable).
    """
    path = Path(path)
    lock = lock_path(path)
    key = _key(lock)
    created = _make_parents(path.parent) if make_parents else []
    try:
        with _CLAIMS_LOCK:
            held = _CLAIMS.get(key)
            if held is not None and held.thread != threading.get_ident():
                raise OutputBusy(path, os.getpid())
            if held is not None:
                held.depth += 1
            else:
                try:
                    fd = _acquire(lock)
                except OSError as exc:
                    raise WriteError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
                if fd is False:
                    raise OutputBusy(path, _holder(lock))
                held = _CLAIMS[key] = _Claim(fd, lock, [_key(Path(p)) for p in (path, *also)])
                for name in held.guarded:
                    _GUARDED[name] = replace
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield path
    finally:
        with _CLAIMS_LOCK:
            held.depth -= 1
            last = held.depth == 0
            if last:
                del _CLAIMS[key]
                for name in held.guarded:
                    _GUARDED.pop(name, None)
        if last:
            _release(held.fd, lock)
            _remove_empty(created)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest last."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created = []
    try:
        for f in reversed(missing):
            f.mkdir()
            created.append(f)
    except FileExistsError:
        pass  # made by another run at the same moment: not ours to remove
    except OSError as exc:
        _remove_empty(created)
        raise WriteError(f"Cannot create the folder {f}: {exc.strerror or exc}.") from exc
    return created


def _remove_empty(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):  # not empty: something was written, keep it
            folder.rmdir()


def _acquire(lock: Path) -> int | bool | None:
    """An open descriptor of ``lock``, locked by us; False if another holds it; None if
    this file system has no locks (the exclusive create still guards new names)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        fd = os.open(lock, flags, 0o644)
        try:
            locked = _try_lock(fd)
            if locked is False:
                os.close(fd)
                return False
            if locked is None:
                os.close(fd)
                with contextlib.suppress(OSError):
                    lock.unlink()
                return None
            if _same_file(fd, lock):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {_HOST}\n".encode())
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # its holder removed it while we opened it: take the new one
    raise OSError(errno.EAGAIN, "its lock file keeps changing", str(lock))


def _try_lock(fd: int) -> bool | None:
    """Lock ``fd`` without waiting: True, False (held elsewhere), None (no locks here)."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as exc:
        held = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", -1)}
        if exc.errno in held:
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except OSError:
        return False


def _holder(lock: Path) -> int | None:
    """The process that wrote the lock file ``lock`` (its first line), if it says."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(lock, "rb") as fh:
            return int(fh.read(64).split()[0])
    return None


def _release(fd: int | None, lock: Path) -> None:
    if fd is None:
        return
    if fcntl is not None:  # remove it while still locked: the next run makes a new one
        if _same_file(fd, lock):
            with contextlib.suppress(OSError):
                lock.unlink()
        os.close(fd)
    else:  # an open file cannot be removed on Windows
        os.close(fd)
        with contextlib.suppress(OSError):
            lock.unlink()


def _remove_stale_lock(lock: Path) -> bool:
    """Remove a lock file that nobody holds (left by a killed run)."""
    with _CLAIMS_LOCK:
        if _key(lock) in _CLAIMS:
            return False
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(lock, flags)
    except OSError:
        return False
    try:
        if _try_lock(fd) is True and fcntl is not None and _same_file(fd, lock):
            lock.unlink()
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    return False


def clean_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Remove the part files (and set-aside copies) that an earlier run of this package
    left in ``folder`` when it was killed: ours by their name, and made by a process of
    this machine that no longer runs; and lock files that nobody holds. Returns what was
    removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(_LOCK_SUFFIX):
            if _remove_stale_lock(Path(entry.path)):
                removed.append(Path(entry.path))
            continue
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

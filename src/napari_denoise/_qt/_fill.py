"""A stack's result that fills in as it is computed, in memory or in a file.

The worker plans the run, makes the output array (in memory when it fits comfortably,
else a file-backed ``.npy`` in :func:`results_dir`) and hands it to the GUI thread as
:class:`Started`, which shows it as the result layer at once; then it writes each block
into it as soon as it is done and says so with :class:`Filled`. The GUI thread only
redraws the layer (:class:`Refresher`, a few times a second): no copy of the stack there.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.denoise.driver import Written, drive
from ..engine.denoise.pipeline import DenoiseResult, make_result, plan_iter
from ..engine.denoise.tiling import Progress

# A result is kept in memory when it takes less than this share of the available memory.
MEMORY_SHARE = 0.5
REFRESH_INTERVAL = 0.25  # seconds between redraws of a filling layer
SHOW_WAIT = 2.0  # seconds the worker waits at most for the GUI to show the result layer
RESULT_FILE_KEY = "result_file"  # layer metadata: the file behind a file-backed result


@dataclass(frozen=True)
class Started:
    """The (still empty) result array, and its file when it is file-backed.

    The worker waits (at most :data:`SHOW_WAIT` seconds) until ``shown`` is set: adding a
    layer costs napari's GUI thread 50-150 ms, longer still while the worker's threads
    take every core, so the computing starts once the layer is there.
    """

    data: np.ndarray
    path: str | None
    shown: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class Filled:
    """One more block of the result is written."""

    index: tuple[int, ...]


def available_memory() -> int | None:
    """Bytes of memory available now (None when the system does not say)."""
    try:
        import psutil  # napari depends on it

        return int(psutil.virtual_memory().available)
    except Exception:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None


def fits_in_memory(nbytes: int) -> bool:
    """Whether a result of ``nbytes`` is small enough to be held in memory."""
    free = available_memory()
    return free is None or nbytes < MEMORY_SHARE * free


def results_dir() -> Path:
    """Where results too big for memory are written: ``<user cache>/results``."""
    from ..engine.models.inference import user_cache_dir

    return user_cache_dir() / "results"


def output_array(shape, dtype, name: str = "result") -> tuple[np.ndarray, str | None]:
    """A zero-filled array for a result: in memory if it fits, else a new ``.npy`` file."""
    dtype = np.dtype(dtype)
    if fits_in_memory(int(np.prod(shape)) * dtype.itemsize):
        return np.zeros(shape, dtype), None
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", name).strip("_")[:60] or "result"
    fd, path = tempfile.mkstemp(prefix=f"{stem}-", suffix=".npy", dir=folder)
    os.close(fd)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape)), path


def fill_steps(
    image: Any,
    method: str,
    *,
    axes: str | None,
    tile: int | None,
    params: dict,
    name: str = "result",
) -> Generator[Progress | Started | Filled, None, DenoiseResult]:
    """Denoise like :func:`~napari_denoise.engine.denoise.pipeline.denoise_iter`, but a
    stack (or a result too big for memory) is handed over at once as :class:`Started`
    and each block announced by :class:`Filled` as soon as it is written."""
    start = time.perf_counter()
    plan, view = yield from plan_iter(image, method, axes=axes, tile=tile, params=params)
    nbytes = int(np.prod(plan.shape)) * plan.out_dtype.itemsize
    if int(np.prod(plan.loop_shape)) <= 1 and fits_in_memory(nbytes):
        out, path = np.empty(plan.shape, plan.out_dtype), None  # one plane: shown when done
        announce = False
    else:
        out, path = output_array(plan.shape, plan.out_dtype, name)
        announce = True
        started = Started(out, path)
        yield started
        started.shown.wait(SHOW_WAIT)
    finished = False
    try:  # (a file-backed result's written pages go to the file, not this process)
        for item in drive(plan, view, out):
            if not isinstance(item, Written):
                yield item
            elif announce:
                yield Filled(item.index)
        finished = True
    finally:
        if not finished:  # cancelled or failed: no half-written file stays behind
            remove_file(path)
    return make_result(
        out, plan.axes, plan.method, plan.base, plan.params, start, plan.neighbour_planes()
    )


def remove_file(path: str | None) -> None:
    """Delete a result file (if any); a file the system holds open stays, silently."""
    if path:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError:
            pass


def forget_result_file(event) -> None:
    """On a layer's removal from the viewer: delete the file behind it if this plugin wrote
    it (a ``.npy`` in :func:`results_dir` named in the layer's metadata; never a file
    elsewhere, whatever the metadata says)."""
    metadata = getattr(event.value, "metadata", None) or {}
    path = metadata.get(RESULT_FILE_KEY)
    if not path:
        return
    try:
        inside = Path(path).resolve().parent == results_dir().resolve()
    except (OSError, RuntimeError, TypeError):
        return
    if inside and str(path).endswith(".npy"):
        remove_file(path)


class Refresher:
    """Redraws a filling layer at most every :data:`REFRESH_INTERVAL` seconds, and always
    once after the last request (a slow next plane must not hide a finished one)."""

    def __init__(self, layer, interval: float = REFRESH_INTERVAL):
        from qtpy.QtCore import QTimer

        self.layer, self.interval, self._last = layer, interval, 0.0
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.refresh)

    def request(self) -> None:
        """Ask for a redraw soon."""
        if not self.timer.isActive():
            wait = max(0.0, self._last + self.interval - time.monotonic())
            self.timer.start(int(wait * 1000))

    def refresh(self) -> None:
        """Redraw now."""
        self.timer.stop()
        self._last = time.monotonic()
        self.layer.refresh()

    def stop(self) -> None:
        """No more redraws."""
        self.timer.stop()

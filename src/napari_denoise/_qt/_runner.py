"""Run one denoising job at a time in a napari worker thread, with progress and Cancel.

The job is the engine's :func:`~napari_denoise.engine.denoise.pipeline.denoise_iter` generator,
run by napari's ``create_worker``: each tile is a ``yield``, hence a progress tick in
napari's activity dock and a point where ``quit()`` (Cancel) takes effect, so the
computation itself stops within one tile. The provenance record (which hashes the input
file) is also made in the worker thread, never on the GUI thread.

A batch (several layers, the same method and settings) runs its jobs one after another in
the same worker (:func:`batch_steps`): it says when it moves on to the next input
(:class:`Begun`), hands each finished result over at once (:class:`Landed`), and skips an
input the engine refuses (:class:`Skipped`, with the sentence why); Cancel stops the batch.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import QCoreApplication, QThreadPool, QTimer

from ..engine.denoise.pipeline import DenoiseResult, denoise_iter
from ..engine.denoise.tiling import Progress
from ..engine.notes import Note, listening
from ..errors import DenoiseError
from ._fill import Filled, Started, fill_steps
from ._warm import load_torch, lower_priority, torch_loaded
from ._words import bar_label, bar_text

log = logging.getLogger(__name__)
# Seconds between progress updates on screen: napari's progress bar processes events on
# every update, so thousands of small tiles must not each cost a redraw.
UI_INTERVAL = 0.1


class WorkFailed(Exception):
    """An unexpected error in the worker, carrying a sentence for the user."""


class Stopped(Exception):
    """Raised in the worker by a step's :func:`~..engine.notes.say` after Cancel, so that
    a step of several seconds (choosing settings, measuring speed) stops there."""


@dataclass
class Job:
    """What to denoise and how; ``source`` (input path, shape, dtype) asks for provenance."""

    data: Any
    method: str
    axes: str | None = None
    params: dict = field(default_factory=dict)
    tile: int | None = None
    label: str = "Denoising"
    source: dict | None = None
    device: str = "auto"
    fill: bool = False  # a stack's result is shown at once and fills in (see _fill)


@dataclass(kw_only=True)
class Callbacks:
    """What a :class:`Runner` calls on the GUI thread (built by name).

    ``done(Outcome)`` (a batch: ``done(BatchDone)``), ``failed(str)``,
    ``cancelled(Progress | None)``, ``progress(Progress)`` and ``busy(bool)``; for a job
    that fills its result in, ``started(Started)`` and ``filled(Filled)``; for a batch,
    ``begun(Begun)``, ``landed(Landed)`` and ``skipped(Skipped)``.
    """

    done: Callable[[Outcome], None]
    failed: Callable[[str], None]
    cancelled: Callable[[Progress | None], None]
    progress: Callable[[Progress], None] = lambda p: None
    busy: Callable[[bool], None] = lambda b: None
    started: Callable[[Started], None] = lambda s: None
    filled: Callable[[Filled], None] = lambda f: None
    begun: Callable[[Begun], None] = lambda b: None
    landed: Callable[[Landed], None] = lambda item: None
    skipped: Callable[[Skipped], None] = lambda s: None


@dataclass
class Outcome:
    """A finished job: the engine's result and, for full runs, the provenance record."""

    result: DenoiseResult
    provenance: dict | None = None


@dataclass(frozen=True)
class Begun:
    """A batch starts on its input ``index`` (of ``total``)."""

    index: int
    total: int


@dataclass(frozen=True)
class Landed:
    """The job ``index`` of a batch is finished: its outcome."""

    index: int
    outcome: Outcome


@dataclass(frozen=True)
class Skipped:
    """The job ``index`` of a batch was refused by the engine: the sentence why."""

    index: int
    reason: str


@dataclass(frozen=True)
class BatchDone:
    """A whole batch ran to its end: how many results landed and how many were skipped."""

    landed: int
    skipped: int


# The events of a job that are not progress, and the callback each one goes to.
BATCH_EVENTS = {
    Started: "started",
    Filled: "filled",
    Begun: "begun",
    Landed: "landed",
    Skipped: "skipped",
}
# Runners that may each run one job at once: Denoise, Train and Train's denoising after it.
POOL_THREADS = 3
_pool: list[QThreadPool] = []
_running: set = set()  # the workers started on it, kept alive until they finish


def worker_pool() -> QThreadPool:
    """The threads denoising jobs run on: their own, not napari's shared pool.

    A job lowers its thread's priority (:func:`~._warm.lower_priority`) and a thread keeps
    it, so on napari's pool every later job (napari's histogram, other plugins, Save,
    training) would run at that priority too. Training runs here as well, so the pool has
    a thread for every runner that may be busy at once: Qt sizes a pool to the cores, and
    on one core a Denoise run waited for the whole training to end.
    """
    if _pool:
        try:
            _pool[0].activeThreadCount()
            return _pool[0]
        except RuntimeError:  # deleted with the application it belonged to
            _pool.clear()
    pool = QThreadPool(QCoreApplication.instance())
    pool.setMaxThreadCount(max(pool.maxThreadCount(), POOL_THREADS))
    _pool.append(pool)
    return _pool[0]


def wait_for_workers(timeout_ms: int = 15000) -> None:
    """Let running workers (ours and napari's pool, e.g. the device check importing torch)
    finish before the interpreter shuts down: a worker still running then emits on signal
    objects already deleted, and the process aborts."""
    for pool in (*_pool, QThreadPool.globalInstance()):
        try:
            pool.waitForDone(timeout_ms)
        except RuntimeError:  # deleted with the application
            pass


atexit.register(wait_for_workers)


def start_worker(worker) -> None:
    """Start ``worker`` on :func:`worker_pool` (what ``worker.start()`` does on napari's)."""
    _running.add(worker)
    worker.finished.connect(lambda: _running.discard(worker))
    worker_pool().start(worker)


def guarded(gen: Generator, what: str = "Denoising") -> Generator:
    """Run ``gen``, turning unexpected errors into :class:`WorkFailed` with a sentence.

    Deliberate errors (:class:`~napari_denoise.errors.DenoiseError`) pass unchanged. This
    also matters because a worker swallows a RuntimeError without signalling the end.
    """
    try:
        return (yield from gen)
    except (DenoiseError, WorkFailed, Stopped):  # WorkFailed: an inner job of a batch
        raise
    except MemoryError:
        raise WorkFailed(
            f"{what} ran out of memory. Try a smaller tile size, or crop the stack first."
        ) from None
    except Exception as exc:  # any other error: a sentence, the traceback goes to the log
        log.exception("%s failed", what)
        raise WorkFailed(
            f"{what} stopped because of an unexpected error ({type(exc).__name__}: {exc})."
        ) from exc


def job_steps(job: Job) -> Generator[Progress, None, Outcome]:
    """The worker's generator: the engine's progress ticks, then an :class:`Outcome`."""
    from ..engine.methods import get_method
    from ..provenance import make_provenance

    lower_priority()  # the GUI thread first when both want a core
    params, extra = dict(job.params), {}
    method = get_method(job.method)
    if method.kind == "model":
        if not torch_loaded():  # seconds, once per session: say so before, not after
            message = "Loading PyTorch (once per session)…"
            yield Note(0, 1, message, choosing=True, short="Loading PyTorch (once)")
        load_torch()  # torch's import, paced so that the GUI thread keeps going
    if "device" in {p.name for p in method.params}:
        from ..engine.device import resolve_device  # imports torch: not on the GUI thread

        params["device"] = extra["device"] = resolve_device(job.device)
    if job.fill:
        name = (job.source or {}).get("layer") or "result"
        result = yield from fill_steps(
            job.data, job.method, axes=job.axes, tile=job.tile, params=params, name=name
        )
    else:
        result = yield from denoise_iter(
            job.data, job.method, axes=job.axes, tile=job.tile, params=params
        )
    if job.source is None:
        return Outcome(result)
    if job.source.get("path"):  # hashing a large input file takes a while
        message = "Recording how the result was made (checksum of the input file)…"
        yield Note(0, 1, message, choosing=True, short="Recording provenance")
    info = result.provenance()
    extra.update({k: v for k, v in info.items() if k not in ("method", "params", "axes")})
    if job.tile is not None:
        extra["tile"] = job.tile
    if job.source.get("channel") is not None:  # the layer is that channel of the input file
        extra["input_channel"] = job.source["channel"]
    provenance = make_provenance(
        method=result.method,
        params=result.params,
        input_path=job.source.get("path"),
        input_shape=tuple(np.shape(job.data)),
        input_dtype=job.data.dtype,
        axes=result.axes,
        extra={**extra, "napari_layer": job.source.get("layer")},
    )
    return Outcome(result, provenance)


def _in_batch(tick: Progress, index: int, total: int, name: str) -> Progress:
    """The tick of one input of a batch, its message saying which input it is."""
    where = f"layer {index + 1} of {total} ({name})"
    message = f"{where}: {tick.message}" if tick.message else where
    return dataclasses.replace(tick, message=message)  # the position stays, as data


def batch_steps(jobs: Sequence[Job]) -> Generator[Any, None, BatchDone]:
    """Run ``jobs`` one after another: :class:`Begun`, the job's own ticks (their messages
    prefixed with 'layer 2 of 3 (name)' when there are several), then :class:`Landed`, or
    :class:`Skipped` when the engine refuses that input (a
    :class:`~napari_denoise.errors.DenoiseError`: bad shape, dtype, NaN ...). Any other
    error ends the batch. A cancelled batch stops inside the job it was running."""
    total, landed = len(jobs), 0
    for index, job in enumerate(jobs):
        yield Begun(index, total)
        name = (job.source or {}).get("layer") or f"input {index + 1}"
        steps = guarded(job_steps(job))
        try:
            tick = next(steps)
            while True:
                if total > 1 and isinstance(tick, Progress) and not isinstance(tick, Note):
                    tick = _in_batch(tick, index, total, name)
                tick = steps.send((yield tick))
        except StopIteration as stop:
            landed += 1
            yield Landed(index, stop.value)
        except DenoiseError as err:
            yield Skipped(index, str(err))
        finally:
            steps.close()  # cancelled: the job's generator cleans up (e.g. a half-written file)
    return BatchDone(landed, total - landed)


class Runner:
    """Starts at most one job at a time and reports back through :class:`Callbacks`.

    Give the record (``Runner(Callbacks(done=..., failed=..., cancelled=...))``) or its
    fields as ``on_<name>`` keywords (``Runner(on_done=..., on_failed=...,
    on_cancelled=...)``). They are called on the GUI thread.
    """

    def __init__(self, callbacks: Callbacks | None = None, **on: Callable):
        if callbacks is None:
            names = {f"on_{f.name}": f.name for f in dataclasses.fields(Callbacks)}
            unknown = sorted(set(on) - set(names))
            if unknown:
                raise TypeError(f"Runner got an unexpected keyword argument {unknown[0]!r}")
            callbacks = Callbacks(**{names[key]: fn for key, fn in on.items()})
        elif on:
            raise TypeError("Runner takes a Callbacks record or on_... keywords, not both")
        self.calls = callbacks
        self.worker = None
        self.last: Progress | None = None
        self.ticks = 0
        self._shown = 0.0
        self._outcome: Outcome | None = None
        self._error: Exception | None = None
        self._cancel = False
        self._gen = None
        self._silent = False

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def start(self, job: Job | Sequence[Job]) -> bool:
        """Start ``job`` (or a batch: a list of jobs run one after another); returns False
        (and does nothing) while another one runs."""
        if self.busy:
            return False
        self.last, self.ticks, self._outcome, self._error, self._cancel = None, 0, None, None, False
        if isinstance(job, Job):
            gen = self._gen = guarded(job_steps(job))
        else:
            gen = self._gen = guarded(batch_steps(job))
            job = job[0]  # its label names the progress bar

        relay: list = []  # the worker's relay of the engine's notes, once it exists

        def steps():  # keeps a handle on the generator, to close it once the thread is done
            with listening(relay[0]):  # in the worker thread, around every step of the job
                return (yield from gen)

        worker = create_worker(steps, _progress={"desc": bar_text(job.label)}, _ignore_errors=True)
        relay.append(partial(self._relay, worker))
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.calls.busy(True)
        start_worker(worker)
        return True

    def cancel(self) -> None:
        """Ask the running job to stop after its current tile (nothing is added)."""
        if self.worker is not None:
            self._cancel = True
            self.worker.quit()

    def shutdown(self) -> None:
        """Cancel and report nothing more (the widget is going away)."""
        self._silent = True
        self.cancel()

    def _relay(self, worker, note: Note) -> None:
        """In the worker thread, inside a long step: show ``note`` (as a yield would), or
        stop the step after Cancel."""
        if self._cancel or worker.abort_requested:
            raise Stopped
        worker.yielded.emit(note)

    def _on_yielded(self, tick) -> None:
        worker = self.worker
        if worker is None:
            return  # a tick delivered after the end
        callback = BATCH_EVENTS.get(type(tick))
        if callback is not None:
            if isinstance(tick, Begun | Landed | Skipped):
                self.last = None  # the last tick was of a job that ended: not this one's
            try:
                if not self._silent:
                    getattr(self.calls, callback)(tick)
            finally:
                if isinstance(tick, Started):  # the worker waits until the layer is shown
                    QTimer.singleShot(0, tick.shown.set)
            return
        self.last = tick
        self.ticks += 1
        now = time.monotonic()
        # A note (a step that is not a tile) is rare and says something new: always shown.
        if (
            now - self._shown < UI_INTERVAL
            and tick.done < tick.total
            and not isinstance(tick, Note)
        ):
            return
        self._shown = now
        if not self._silent:
            self.calls.progress(tick)
        # Updating napari's progress bar may process pending events (even the end of
        # this job), so it comes last and only while the job is still running.
        pbar = getattr(worker, "pbar", None)
        if pbar is None or self.worker is not worker:
            return
        if pbar.total != tick.total:
            pbar.total = tick.total
        if tick.done != pbar.n and self.worker is worker:
            pbar.n = tick.done
            pbar.update(0)  # emits the value event with the new count
        short = bar_label(tick)  # the activity dock's label leaves the bar its width
        if short and short != pbar.desc and self.worker is worker:
            pbar.set_description(short)

    def _on_returned(self, outcome: Outcome | BatchDone) -> None:
        self._outcome = outcome

    def _on_errored(self, error: Exception) -> None:
        self._error = error

    def _on_finished(self) -> None:
        calls = self.calls
        outcome, error, cancelled = self._outcome, self._error, self._cancel
        self.worker, self._outcome, self._error = None, None, None
        if self._gen is not None:
            self._gen.close()  # the worker thread is done with it: free its buffers now
            self._gen = None
        if self._silent:
            return
        calls.busy(False)
        if isinstance(error, Stopped):  # Cancel, seen inside a long step
            calls.cancelled(self.last)
        elif error is not None:
            calls.failed(str(error) or type(error).__name__)
        elif outcome is not None and not cancelled:
            calls.done(outcome)
        else:
            calls.cancelled(self.last)

"""Run one fine-tuning job at a time in a napari worker thread, with a Stop that keeps the model.

The job is the engine's :func:`~napari_denoise.engine.training.finetune.finetune_iter` generator,
run by napari's ``create_worker`` (a sibling of :class:`~._runner.Runner`): every
optimisation step is a ``yield``, hence a progress tick (shown in the widget itself, not
in napari's activity dock, whose animated bar would cost repaints). **Stop** does not abort the
worker: it sets a flag that the engine's ``stop`` callable reads before every step, so
training ends within one step and the engine still saves the best weights so far (with
their card) and registers the model. Reading the layers into memory, importing torch and
preparing the patches also happen in the worker, never on the GUI thread.

Also here, without Qt: the rectangles of a Shapes layer in an image layer's pixels.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.qt.threading import create_worker

from ..engine.training.config import FinetuneSpec
from ._method_picker import notify_models_changed
from ._runner import guarded, start_worker
from ._warm import load_torch, lower_priority

# Seconds between progress updates on screen (the plot and the bar). Every update costs a
# repaint of the window (composited through OpenGL, in software on machines without a
# GPU), so a few per second: the curves look live and the interface stays responsive.
UI_INTERVAL = 0.25


@dataclass
class TrainJob:
    """What to train on and how: ``spec`` is the training record (already checked)."""

    spec: FinetuneSpec
    noisy: Any
    clean: Any = None
    regions: list[tuple[float, float, float, float]] | None = None
    axes: str | None = None
    names: tuple[str, str | None] | None = None  # recorded in the model card
    resume: bool = False


def train_steps(job: TrainJob, stop: Callable[[], bool]) -> Generator[Any, None, Any]:
    """The worker's generator: check and prepare the data, train (yielding progress).

    Returns the engine's FinetuneResult; the engine has saved the model and registered
    it as a method.
    """
    from ..engine.training import finetune
    from ..engine.training.options import Phase

    if "torch" not in sys.modules or (_warmed.is_set() and not _warmed_done.is_set()):
        # Importing PyTorch (begun when the widget opened) can take seconds, once.
        yield Phase("Starting PyTorch", one_time=True)
        import torch  # noqa: F401
    layers = [("noisy", job.noisy), ("clean", job.clean)]
    arrays = {}
    for which, data in layers:  # a dask or zarr layer is read here, not on the GUI thread
        if data is not None and not isinstance(data, np.ndarray):
            yield Phase(f"Reading the {which} layer into memory")
        arrays[which] = None if data is None else np.asarray(data)
    prepared = yield from finetune.prepare_iter(
        job.spec, arrays["noisy"], arrays["clean"], job.regions, axes=job.axes, data_names=job.names
    )
    return (yield from finetune.finetune_iter(prepared, stop=stop, resume=job.resume))


_warmed = threading.Event()  # the warm-up was started
_warmed_done = threading.Event()  # ... and has finished


def warm_up() -> None:
    """Import torch and what training imports on first use, once, in a worker thread.

    Importing torch and building its first optimiser (which imports torch's compiler
    stack, several hundred modules) takes seconds and holds the interpreter in bursts
    that can freeze the interface for a few hundred milliseconds. Done when the Train
    widget opens, while the form is being filled in, not after Start.
    """
    if _warmed.is_set():
        return
    _warmed.set()

    def work():
        try:
            load_torch()  # paced so that the GUI thread keeps going
            import torch

            from ..engine.training import finetune, loop  # noqa: F401

            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        except Exception:  # only a warm-up: a real run reports any error
            pass
        finally:
            _warmed_done.set()

    # A plain daemon thread: nothing to report back, so no Qt signals that could outlive
    # a viewer closed meanwhile.
    threading.Thread(target=work, name="napari-denoise-warm-up", daemon=True).start()


class TrainRunner:
    """Starts at most one training at a time; reports through callbacks on the GUI thread.

    ``on_phase(phase)`` for each :class:`~napari_denoise.engine.training.options.Phase`
    (what happens before the first step and after the last), ``on_tick(tick)`` for every
    step (keep it cheap: no drawing), ``on_progress(tick)``
    at most every :data:`UI_INTERVAL` seconds (the last tick always), ``on_done(result)``
    with the engine's FinetuneResult, ``on_failed(str)`` and ``on_busy(bool)``.
    """

    def __init__(
        self,
        *,
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None],
        on_tick: Callable[[Any], None] = lambda tick: None,
        on_progress: Callable[[Any], None] = lambda tick: None,
        on_busy: Callable[[bool], None] = lambda busy: None,
        on_phase: Callable[[Any], None] = lambda phase: None,
    ):
        self._on_tick, self._on_progress, self._on_done = on_tick, on_progress, on_done
        self._on_phase = on_phase
        self._on_failed, self._on_busy = on_failed, on_busy
        self.worker = None
        self.last = None
        self.ticks = 0  # training steps reported
        self.phases = 0  # phases reported (before and after the steps)
        self._stop = threading.Event()
        self._shown = 0.0
        self._outcome = self._error = None
        self._gen = None
        self._silent = False

    @property
    def busy(self) -> bool:
        """Whether a training runs."""
        return self.worker is not None

    @property
    def stopping(self) -> bool:
        """Whether Stop was pressed for the running training."""
        return self.busy and self._stop.is_set()

    def start(self, job: TrainJob) -> bool:
        """Start ``job``; returns False (and does nothing) while another one runs."""
        if self.busy:
            return False
        self.last, self.ticks, self._outcome, self._error = None, 0, None, None
        self.phases = 0
        self._stop.clear()
        stop = self._stop.is_set
        gen = self._gen = guarded(train_steps(job, stop), "Training")

        def steps():
            lower_priority()  # the GUI thread first when both want a core
            return (yield from gen)

        worker = create_worker(steps, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._on_busy(True)
        start_worker(worker)  # our own pool: its threads keep the lowered priority
        return True

    def stop(self) -> None:
        """End the training before its next step; the best model so far is still saved."""
        if self.worker is not None:
            self._stop.set()

    def shutdown(self) -> None:
        """Stop and report nothing more (the widget is going away)."""
        self._silent = True
        self.stop()

    def _on_yielded(self, tick) -> None:
        if self.worker is None:
            return
        if hasattr(tick, "what"):  # a Phase: preparing, timing, checking, saving
            self.phases += 1
            if not self._silent:
                self._on_phase(tick)
            return
        self.last = tick
        self.ticks += 1
        if not self._silent:
            self._on_tick(tick)
        now = time.monotonic()
        if now - self._shown >= UI_INTERVAL and not self._silent:
            self._shown = now
            self._on_progress(tick)

    def _on_returned(self, outcome) -> None:
        self._outcome = outcome

    def _on_errored(self, error: Exception) -> None:
        self._error = error

    def _on_finished(self) -> None:
        outcome, error = self._outcome, self._error
        self.worker, self._outcome, self._error = None, None, None
        if self._gen is not None:
            self._gen.close()  # the thread is done with it: free the training data now
            self._gen = None
        if self._silent:
            if outcome is not None:  # stopped by closing the widget: the model was saved
                notify_models_changed()
            return
        if self.last is not None:
            self._on_progress(self.last)  # the final tick, whatever the throttle skipped
        self._on_busy(False)
        if error is not None:
            self._on_failed(str(error) or type(error).__name__)
        elif outcome is not None:
            self._on_done(outcome)


def rectangles(shapes, layer) -> tuple[list[tuple[int, int, int, int]], int]:
    """The rectangles of ``shapes`` as ``(y0, x0, y1, x1)`` in ``layer``'s pixels.

    Each rectangle is mapped through both layers' transforms (scale, translate, affine)
    and rounded outwards; the engine checks that it lies over the image. Returns the
    boxes and how many shapes were skipped because they are not rectangles.
    """
    boxes, skipped = [], 0
    for vertices, kind in zip(shapes.data, shapes.shape_type, strict=True):
        if kind != "rectangle":
            skipped += 1
            continue
        corners = np.array(
            [np.asarray(layer.world_to_data(shapes.data_to_world(v)))[-2:] for v in vertices]
        )
        (y0, x0), (y1, x1) = np.floor(corners.min(0)), np.ceil(corners.max(0))
        boxes.append((int(y0), int(x0), int(y1), int(x1)))
    return boxes, skipped

"""Say what a long step is doing from inside the engine, to whoever listens in this thread.

The denoising generator yields a tick per tile, but some steps before the first tile are
single calls that take seconds: choosing a model's settings (it runs the network on a
few sample planes), loading a model, measuring once per machine whether bf16 is faster.
A generator cannot yield from inside them, so they :func:`say` what they are doing and
how far they are; a caller that wants to know (the GUI's worker, which shows it and may
stop the step by raising from the listener) wraps its work in :func:`listening`. Without
a listener :func:`say` does nothing, so the engine runs the same with or without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .denoise.tiling import Progress

__all__ = ["Note", "listening", "say"]

_local = threading.local()


@dataclass(frozen=True)
class Note(Progress):
    """A step that is not a tile (loading, measuring, choosing settings), in words:
    ``message`` is a whole phrase, e.g. "Loading the model…"; ``done`` of ``total`` says
    how far it is (0 of 1 when it cannot say); ``short`` says it in two or three words,
    for a progress bar's label ("Loading model")."""

    short: str = ""


@contextmanager
def listening(listener: Callable[[Note], None]) -> Iterator[None]:
    """Call ``listener(note)`` for every :func:`say` in this thread while inside."""
    stack = _local.__dict__.setdefault("listeners", [])
    stack.append(listener)
    try:
        yield
    finally:
        stack.remove(listener)


def say(message: str, done: int = 0, total: int = 1, *, short: str = "") -> None:
    """Tell the innermost listener of this thread (if any) what is being done.

    The listener may raise (e.g. to stop the work): the exception leaves the step here.
    """
    stack = getattr(_local, "listeners", None)
    if stack:
        stack[-1](Note(done, total, message, choosing=True, short=short))

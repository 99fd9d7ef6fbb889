"""What the Denoise widget keeps of a run while it goes, as typed records.

* :class:`Task`: one input of a run (a layer, or a preview's region of it) and how it is
  denoised; the widget turns its result into a layer with it.
* :class:`Batch`: how a run of several inputs goes: results landed, inputs skipped (and
  why), which input is running, how many have ended.
* :class:`Filling`: the result layer that fills in while a stack is denoised (and its
  file, when too big for memory).
* :class:`Rerun`: how a result was made, to repeat it (Copy as command).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._command import as_command, as_python
from ._fill import Refresher, remove_file

__all__ = ["Batch", "Filling", "Rerun", "Task"]


@dataclass(frozen=True)
class Rerun:
    """How a result was made: the keywords of :func:`~._command.as_command`. It names the
    input by its file, not its layer (a deleted input layer is not held)."""

    method: str
    params: dict
    axes: str | None
    input_path: str | None
    tile: int | None = None
    device: str | None = None
    channel: int | None = None

    def command(self) -> str:
        """The command line that repeats the run."""
        return as_command(
            method=self.method,
            params=self.params,
            axes=self.axes,
            input_path=self.input_path,
            tile=self.tile,
            device=self.device,
            channel=self.channel,
        )

    def python(self) -> str:
        """The Python call that repeats the run."""
        return as_python(
            method=self.method,
            params=self.params,
            axes=self.axes,
            input_path=self.input_path,
            channel=self.channel,
        )


@dataclass(frozen=True)
class Task:
    """One input of a run, as the widget keeps it to turn its result into a layer.

    ``layer``: the input layer; ``method``: the method's name; ``axes``: the axes it is
    denoised with; ``region``: a preview's region (None for a whole layer); ``settings``:
    the values that differ from the method's defaults (for the result's name);
    ``params``, ``tile``, ``device`` (None for a filter): as run; ``path`` and
    ``channel``: the input's file and its channel there, when it came from one.
    """

    layer: Any
    method: str
    axes: str | None = None
    region: Any = None
    settings: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    tile: int | None = None
    device: str | None = None
    path: str | None = None
    channel: int | None = None

    def rerun(self) -> Rerun:
        """How to repeat this run (Copy as command)."""
        return Rerun(
            method=self.method,
            params=self.params,
            axes=self.axes,
            input_path=self.path,
            tile=self.tile,
            device=self.device,
            channel=self.channel,
        )


@dataclass
class Batch:
    """How a run goes: ``landed`` result layers and ``skipped`` (layer name, reason) so
    far, the ``index`` of the input running, how many inputs have ``ended`` (landed,
    skipped or dropped: they end in order), and when it began (``start``,
    :func:`time.monotonic`). A preview has an empty one."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    landed: list = field(default_factory=list)
    start: float = field(default_factory=time.monotonic)
    index: int = 0
    ended: int = 0


@dataclass
class Filling:
    """The result being filled in: its ``layer``, its ``file`` (when too big for memory)
    and the ``refresher`` that redraws it. One record per widget, emptied and never
    replaced, so that a teardown can remove a half-filled layer without the widget."""

    layer: Any = None
    file: str | None = None
    refresher: Refresher | None = None

    def clear(self) -> None:
        """Nothing is being filled in (the layer and its file, if any, stay)."""
        self.layer = self.file = self.refresher = None

    def discard(self, viewer) -> None:
        """Cancel, failure or teardown: the half-filled result layer and its file go."""
        if self.refresher is not None:
            self.refresher.stop()
        if self.layer is not None and self.layer in viewer.layers:
            viewer.layers.remove(self.layer)
        remove_file(self.file)
        self.clear()

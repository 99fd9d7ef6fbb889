"""Exceptions with messages meant for people.

Every error raised on purpose by napari-denoise derives from :class:`DenoiseError`,
so the GUI and the CLI can show ``str(err)`` as a sentence (what went wrong and what to
do) instead of a traceback.  They also derive from ``ValueError`` where that is what a
Python caller would expect.
"""

from __future__ import annotations


class DenoiseError(Exception):
    """Base class: the message is a complete, human-readable sentence."""


class InputError(DenoiseError, ValueError):
    """The image (or its axes, dtype, values or shape) cannot be used as given."""


class ReadError(DenoiseError, OSError):
    """A file could not be read: missing, unreadable, truncated or of an unknown format."""


class WriteError(DenoiseError, OSError):
    """A result could not be written (missing folder, no permission, disk full)."""


class UnknownMethodError(DenoiseError, KeyError):
    """No method or model of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(DenoiseError, ValueError):
    """A parameter is unknown for the method, of the wrong type or out of range."""


class ModelFileError(DenoiseError, ValueError):
    """A model file (weights or card) is missing, corrupt or inconsistent."""


class Cancelled(DenoiseError):
    """The consumer stopped a long computation; nothing was written."""

"""Which compute device a model runs on: ``auto`` picks CUDA, then Apple MPS, then the CPU;
and how many CPU threads torch uses (``NAPARI_DENOISE_THREADS``)."""

from __future__ import annotations

import os

from ..errors import ParameterError

__all__ = ["DEVICES", "DEVICE_LABELS", "THREADS_VARIABLE", "env_threads", "resolve_device"]

THREADS_VARIABLE = "NAPARI_DENOISE_THREADS"


def env_threads() -> int | None:
    """The CPU threads ``NAPARI_DENOISE_THREADS`` asks for, or None when it is unset/empty.

    A whole number from 1 up; more than this machine's cores is clamped to the number of
    cores (more threads than cores only wait for each other).

    Raises
    ------
    ParameterError
        For anything that is not a whole number of at least 1 (``0``, ``-1``, ``abc``).
    """
    text = os.environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ParameterError(
            f"{THREADS_VARIABLE}={text!r} is not a number of threads: set it to a whole "
            f"number from 1 to {os.cpu_count() or 1} (this machine's cores), or unset it "
            "to use all cores."
        )
    return min(value, os.cpu_count() or 1)


DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_LABELS = ("Automatic", "CPU", "NVIDIA GPU (CUDA)", "Apple GPU (MPS)")  # for people


def resolve_device(name: str | None = "auto") -> str:
    """The concrete device for ``name`` (``"cpu"``, ``"cuda"`` or ``"mps"``).

    ``auto`` (or None) picks the best available one. Asking for a device that is not
    available raises ParameterError saying which are. Imports torch lazily.
    """
    name = (name or "auto").lower()
    if name not in DEVICES:
        raise ParameterError(f"Unknown device '{name}'; choose one of {', '.join(DEVICES)}.")
    try:
        import torch
    except ImportError:
        if name in ("auto", "cpu"):
            return "cpu"
        raise ParameterError(f"Device '{name}' needs PyTorch, which is not installed.") from None
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if has_cuda else ("mps" if has_mps else "cpu")
    if (name == "cuda" and not has_cuda) or (name == "mps" and not has_mps):
        available = ", ".join(
            d for d, ok in (("cuda", has_cuda), ("mps", has_mps), ("cpu", True)) if ok
        )
        raise ParameterError(
            f"Device '{name}' is not available on this machine; available: {available}."
        )
    return name

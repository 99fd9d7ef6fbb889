"""Which compute device a model runs on: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from ..errors import ParameterError

__all__ = ["DEVICES", "DEVICE_LABELS", "resolve_device"]

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

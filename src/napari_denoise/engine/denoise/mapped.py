"""File-mapped arrays: handing the pages already read back to the system."""

from __future__ import annotations

import contextlib
import mmap
from typing import Any

import numpy as np

__all__ = ["release_mapped"]


def release_mapped(arr: Any) -> None:
    """Tell the system that the pages of the file mapping under ``arr`` (if any) are not
    needed now: they stay in the page cache, but no longer count in this process's
    resident memory, and are read again from the file if touched.

    Only for a shared mapping (``np.memmap`` modes ``r``, ``r+``, ``w+``), whose pages are
    the file's: a copy-on-write map (mode ``c``) holds private changes that must stay.
    """
    base, shared = arr, False
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap) and getattr(base, "mode", None) is not None:
            shared = base.mode in ("r", "r+", "w+")
        base = base.base
    if shared and isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        with contextlib.suppress(OSError, ValueError):  # closed, or not supported here
            base.madvise(mmap.MADV_DONTNEED)

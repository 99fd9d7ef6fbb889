"""napari dock widgets (Qt). The only part of napari-denoise that starts worker threads.

Each widget is imported only when asked for (``napari_denoise._qt:DenoiseWidget`` in the
manifest imports ``_denoise_widget`` alone): opening one widget loads neither the others
nor torch, which loads in a worker thread when a job needs it.
"""

from __future__ import annotations

import importlib

__all__ = ["CompareWidget", "DenoiseWidget", "TrainWidget"]

_HOMES = {
    "CompareWidget": "._compare_widget",
    "DenoiseWidget": "._denoise_widget",
    "TrainWidget": "._train_widget",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

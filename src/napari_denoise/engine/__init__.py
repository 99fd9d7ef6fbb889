"""The engine: pure numpy/torch, no file I/O, napari or Qt.

- :mod:`.methods`: the registry; every filter and model behind one signature.
- :mod:`.metrics`: PSNR, SSIM and friends, plain and range-invariant.
- :mod:`.denoise`: denoising an image: filters, strength without ground truth
  (calibrate), noise models and the VST, the plan and the pipeline generator, tiling, and
  the same plan as a dask graph (lazy).
- :mod:`.models`: one file per network; where models live and their cards (store),
  running them (inference), and making them methods (registry).
- :mod:`.training`: the training loop, fine-tuning, blind spots, datasets, splits, cards.

Module paths from before this layout (``napari_denoise.engine.zoo``, ``.pipeline``,
``.train``, ...) still import, as aliases of their new homes, with a DeprecationWarning
naming the new one. The package itself imports the new paths only.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# Old module name -> new home (relative to this package).
MOVED = {
    "filters": "denoise.filters",
    "calibrate": "denoise.calibrate",
    "noise": "denoise.noise",
    "tiling": "denoise.tiling",
    "pipeline": "denoise.pipeline",
    "lazy": "denoise.lazy",
    "train": "training.loop",
    "finetune": "training.finetune",
    "selfsup": "training.blindspot",
    "datasets": "training.datasets",
    "split": "training.split",
    "training_card": "training.card",
}
# The old ``zoo`` module held what store, inference and registry hold now.
ZOO_PARTS = ("models.store", "models.inference", "models.registry")
_ZOO_RENAMED = {
    "_loaded": "loaded",
    "_set_threads": "set_threads",
    "_coefficients": "noise_coefficients_of",
    "_noise_level": "noise_level_of",
}


def _zoo_module(name: str) -> types.ModuleType:
    parts = [importlib.import_module(f"{__name__}.{p}") for p in ZOO_PARTS]
    module = types.ModuleType(name, "Alias of engine.models.store, .inference and .registry.")

    def __getattr__(attr: str):
        attr = _ZOO_RENAMED.get(attr, attr)
        for part in parts:
            if hasattr(part, attr):
                return getattr(part, attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    module.__getattr__ = __getattr__
    return module


def _caller_level() -> int:
    """The warning's stack level for the line that imported: past this module's frames
    (warnings does not count importlib's own frames)."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        if name != __file__ and not name.startswith("<frozen importlib"):
            return level
        if not name.startswith("<frozen importlib"):
            level += 1
        frame = frame.f_back
    return level


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the pre-restructuring module paths to the modules that replaced them."""

    prefix = __name__ + "."

    def find_spec(self, fullname, path=None, target=None):
        short = fullname[len(self.prefix) :] if fullname.startswith(self.prefix) else None
        if short in MOVED or short == "zoo":
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        short = spec.name[len(self.prefix) :]
        new = MOVED.get(short, "models.store, .models.inference or .models.registry")
        warnings.warn(
            f"{spec.name} is an old module path; import {self.prefix}{new} instead "
            "(the alias will be removed in a future version).",
            DeprecationWarning,
            stacklevel=_caller_level(),
        )
        if short == "zoo":
            return _zoo_module(spec.name)
        return importlib.import_module(f"{__name__}.{MOVED[short]}")

    def exec_module(self, module):
        pass  # the real module is already executed


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())

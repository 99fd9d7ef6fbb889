"""Keep napari's GUI thread going while a worker thread imports torch and computes.

A worker thread shares the interpreter lock with the GUI thread, and two parts of a
first model run hold it for a long time (measured with ``benchmarks/gui_stall.py --why``
on a 2-core machine):

- Python's import opens torch's shared libraries (``libtorch_cpu.so`` is ~400 MB) with
  ``dlopen`` while holding the lock: loading and relocating them takes 150-250 ms.
  The same ``dlopen`` called first through :mod:`ctypes` as a foreign function (which
  releases the lock for the call) does that work without it; the import then finds the
  libraries loaded.
- The hundreds of thousands of objects the import creates trigger full garbage
  collections, and each walks every object of the process (napari's included) with the
  lock held: 130-250 ms each, during the import and when the first network is built.
  The import runs with the collector paused, then every object that exists is frozen
  (:func:`gc.freeze`: later collections skip them). Modules, classes and functions live
  as long as the process anyway. Garbage is collected once before: napari leaves a
  deleted layer (its data included) in reference cycles until the next collection, and a
  frozen cycle is never freed.

:func:`load_torch` does both, once per process; the widgets call it in their workers
before anything imports torch.

The computation itself competes with the GUI thread for the cores, not for the lock
(torch and the filters release it): on a busy 2-core machine the GUI thread waited up to
150-190 ms for a core. :func:`lower_priority` makes the worker thread (and the compute
threads it starts, which inherit it) yield to the GUI thread; it still uses every idle core.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)
# What torch's extension module links to; opening it opens its dependencies (libtorch_cpu,
# libc10 ...) from the same folder, as the import would.
LIBRARIES = ("libtorch_python.so",)
NICE = 10  # the worker's scheduling niceness (the GUI thread keeps the process's, usually 0)
_lock = threading.Lock()
_loaded: list[bool] = []  # [whether torch imported] once tried


def torch_library_dir() -> Path | None:
    """The folder of torch's shared libraries (None without torch), found without importing it."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "lib"
    return folder if folder.is_dir() else None


def preload_libraries(folder: Path | None) -> list[str]:
    """Open torch's shared libraries without holding the interpreter lock; the names opened.

    Linux only (elsewhere, and for any library that fails to open, the import opens
    them as usual).
    """
    if folder is None or not sys.platform.startswith("linux"):
        return []
    libc = ctypes.CDLL(None)  # a CDLL call releases the interpreter lock while it runs
    dlopen = libc.dlopen
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    opened = []
    for name in LIBRARIES:
        path = folder / name
        if path.is_file() and dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL):
            opened.append(name)
    return opened


def load_torch() -> bool:
    """Import torch and the engine's networks once per process, in the calling thread,
    holding the interpreter lock as little as possible; whether torch is available."""
    with _lock:
        if _loaded:
            return _loaded[0]
        try:
            preload_libraries(torch_library_dir())
        except (OSError, AttributeError) as exc:  # only a head start: the import still works
            log.debug("could not preload torch's libraries: %s", exc)
        # One full collection of what exists now (napari's objects, not yet torch's), so
        # that no garbage, e.g. a deleted layer's array, is frozen with the rest.
        gc.collect()
        collecting = gc.isenabled()
        gc.disable()
        try:
            import torch  # noqa: F401

            from ..engine import models

            models.list_architectures()  # imports every network module
            _loaded.append(True)
        except ImportError:  # not installed
            _loaded.append(False)
        except Exception as exc:  # unloadable (a missing CUDA library ...): not tried again;
            # the run that needs torch reports the error in its own words
            log.warning("torch could not be imported: %s", exc)
            _loaded.append(False)
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
        return _loaded[0]


def warm_model(card_path: str, device: str = "auto") -> bool:
    """In a worker thread when a model is chosen: import torch, load the model and decide
    its CPU precision now, at a low priority, so that the first run need not (these take
    seconds once per session, and the precision once per machine). Whether it worked; a
    failure is left for the run to report in its own words."""
    lower_priority()
    if not load_torch():
        return False
    # The noise estimation the choice of settings starts with imports scipy.stats and
    # pywt (seconds on a busy machine, once per session): now, not after Run.
    from ..engine.denoise import noise  # noqa: F401
    from ..engine.models.inference import warm

    try:
        warm(card_path, device)
    except Exception as exc:  # a broken model file ...: the run says it
        log.debug("could not warm %s: %s", card_path, exc)
        return False
    return True


def torch_loaded() -> bool:
    """Whether :func:`load_torch` has already run in this process (so it returns at once)."""
    return bool(_loaded)


def lower_priority(nice: int = NICE) -> bool:
    """Give the calling worker thread a niceness of at least ``nice`` (Linux: per thread);
    whether it has it. Raising niceness needs no privilege; the thread keeps it, so it is
    for the threads of :func:`~._runner.worker_pool`, which run only denoising jobs."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is threading.main_thread()
    ):
        return False  # never the GUI thread (e.g. a job run directly, in a test)
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except OSError:  # not allowed here: run at the usual priority
        return False

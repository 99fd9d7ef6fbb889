"""Issue 14: torch loads in a worker without holding napari's GUI thread for long.

Each check runs in a fresh interpreter (torch must not be imported yet).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")


def run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


OPEN_LIBRARIES = """
import json, sys, threading, time
from napari_denoise._qt import _warm

ticks, stop = [], threading.Event()
def tick():  # a thread that needs the interpreter lock to run
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.002)
ticker = threading.Thread(target=tick)
ticker.start()
time.sleep(0.05)
begin = time.perf_counter()
opened = _warm.preload_libraries(_warm.torch_library_dir())
end = time.perf_counter()
stop.set(); ticker.join()
maps = open("/proc/self/maps").read()
print(json.dumps({
    "opened": opened,
    "seconds": end - begin,
    "ticks_inside": sum(begin + 0.01 < t < end - 0.01 for t in ticks),
    "mapped": "libtorch_cpu.so" in maps,
    "torch_imported": "torch" in sys.modules,
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dlopen preloading is Linux-only")
def test_torch_libraries_open_while_other_threads_keep_running():
    report = run(OPEN_LIBRARIES)
    assert report["opened"] == ["libtorch_python.so"]
    assert report["mapped"] and not report["torch_imported"]
    if report["seconds"] < 0.05:
        pytest.skip("the libraries opened too fast to tell (already in this process?)")
    # With the lock held for the whole dlopen (Python's import, ctypes.CDLL(path)) the
    # other thread could not run at all in the middle of it.
    assert report["ticks_inside"] >= 1, report


LOAD_TORCH = """
import gc, json, sys
import numpy  # objects that exist before, as napari's do in a GUI process
from napari_denoise._qt import _warm

frozen_before = gc.get_freeze_count()
enabled = gc.isenabled()
ok = _warm.load_torch()
print(json.dumps({
    "ok": ok,
    "again": _warm.load_torch(),
    "torch": "torch" in sys.modules,
    "unet": "napari_denoise.engine.models.unet" in sys.modules,
    "frozen": gc.get_freeze_count() - frozen_before,
    "walked": sum(len(gc.get_objects(generation=g)) for g in range(3)),
    "enabled_kept": gc.isenabled() == enabled,
}))
"""


def test_load_torch_leaves_the_imported_objects_out_of_later_collections():
    report = run(LOAD_TORCH)
    assert report["ok"] and report["again"] and report["torch"] and report["unet"]
    assert report["enabled_kept"]
    # A full collection walks only what is not frozen: a small share of the process.
    assert report["frozen"] > 100_000
    assert report["walked"] < 0.1 * report["frozen"], report


GARBAGE_BEFORE = """
import gc, json, weakref
import numpy as np
from napari_denoise._qt import _warm

class Node:  # a reference cycle, as napari leaves behind a deleted layer
    pass

node = Node()
node.cycle, node.data = node, np.zeros(1000)
alive = weakref.ref(node)
del node
_warm.load_torch()
gc.collect()
print(json.dumps({"alive": alive() is not None}))
"""


def test_garbage_that_exists_before_load_torch_is_not_frozen_forever():
    # A deleted napari layer (its data included) waits in a reference cycle for the next
    # collection; freezing it would keep it for the rest of the session.
    assert not run(GARBAGE_BEFORE)["alive"]


BROKEN_TORCH = """
import gc, json, sys
from napari_denoise._qt import _warm

class Broken:  # torch installed but unloadable, e.g. a missing CUDA library
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise OSError("libcudnn.so.9: cannot open shared object file")

sys.meta_path.insert(0, Broken())
freezes, freeze = [], gc.freeze
gc.freeze = lambda: freezes.append(1) or freeze()
answers = []
for _ in range(3):
    try:
        answers.append(_warm.load_torch())
    except OSError as err:
        answers.append(str(err))
print(json.dumps({"answers": answers, "freezes": len(freezes), "enabled": gc.isenabled()}))
"""


def test_torch_that_fails_to_load_is_tried_once(monkeypatch):
    # Each try collects and freezes the whole process: not on every run of a model.
    report = run(BROKEN_TORCH)
    assert report["answers"] == [False, False, False] and report["freezes"] == 1, report
    assert report["enabled"]


def test_a_model_run_loads_torch_through_load_torch(monkeypatch):
    from napari_denoise._qt import _runner
    from napari_denoise.engine.methods import default_method

    calls = []
    monkeypatch.setattr(_runner, "load_torch", lambda: calls.append(1) or True)
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    job = _runner.Job(image, default_method().name, "YX")
    steps = _runner.job_steps(job)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        outcome = stop.value
    assert calls == [1]
    assert outcome.result.data.shape == image.shape


@pytest.mark.gui
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_the_worker_yields_the_cores_to_the_gui_thread(make_napari_viewer, qtbot):
    import os
    import threading

    pytest.importorskip("napari")
    from napari_denoise._qt._denoise_widget import DenoiseWidget
    from napari_denoise.engine.methods import Method, register, unregister

    seen = []

    def niceness(block):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return block

    register(Method("test_niceness", niceness, title="Niceness (test)"), replace=True)
    try:
        viewer = make_napari_viewer()
        viewer.add_image(np.zeros((2, 16, 16), np.float32), name="stack")
        widget = DenoiseWidget(viewer)
        widget.picker.set_method("test_niceness")
        assert widget.run()
        qtbot.waitUntil(lambda: not widget.runner.busy, timeout=30_000)
    finally:
        unregister("test_niceness")
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen and min(seen) > gui


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_a_job_run_on_the_main_thread_keeps_its_priority():
    import os
    import threading

    from napari_denoise._qt import _warm

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert not _warm.lower_priority()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@pytest.mark.gui
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_later_work_on_napari_thread_pool_keeps_its_priority(make_napari_viewer, qtbot):
    # A thread keeps its niceness: the denoising worker must not leave one of napari's
    # shared pool threads (napari's histogram, other plugins, Save, Train) at niceness 10.
    import os
    import threading

    pytest.importorskip("napari")

    from napari_denoise._qt._denoise_widget import DenoiseWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 16, 16), np.float32), name="stack")
    widget = DenoiseWidget(viewer)
    widget.picker.set_method("gaussian")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.runner.busy, timeout=30_000)
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert napari_pool_priorities(qtbot) == [gui] * 3


@pytest.mark.gui
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_training_yields_the_cores_to_the_gui_thread_and_leaves_napari_pool_alone(
    make_napari_viewer, qtbot, monkeypatch
):
    # Training runs minutes at full speed: like denoising it must leave the GUI thread
    # first in line for a core, on a thread of its own pool (a niced thread of napari's
    # shared pool would slow napari's later jobs).
    import os
    import threading

    pytest.importorskip("napari")

    from napari_denoise._qt import _train_job

    make_napari_viewer()
    seen, done = [], []

    def fake_steps(job, stop):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        yield "tick"
        return "trained"

    monkeypatch.setattr(_train_job, "train_steps", fake_steps)
    runner = _train_job.TrainRunner(on_done=done.append, on_failed=done.append)
    assert runner.start(_train_job.TrainJob(spec={}, noisy=np.zeros((8, 8))))
    qtbot.waitUntil(lambda: not runner.busy, timeout=30_000)
    gui = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert done == ["trained"] and seen and min(seen) > gui
    assert napari_pool_priorities(qtbot) == [gui] * 3


@pytest.mark.gui
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sched_setaffinity is Linux's")
def test_a_denoising_job_is_not_queued_behind_a_training_on_one_core(
    make_napari_viewer, qtbot, monkeypatch
):
    """Training and denoising share our pool; Qt sizes a pool to the cores, so on a
    one-core machine a Denoise run waited, silently, for the whole training to end."""
    import os
    import threading

    from napari.qt.threading import create_worker

    from napari_denoise._qt import _runner, _train_job

    make_napari_viewer()
    release, done = threading.Event(), []

    def fake_steps(job, stop):
        while not (release.is_set() or stop()):
            yield "tick"
            release.wait(0.05)
        return "trained"

    monkeypatch.setattr(_train_job, "train_steps", fake_steps)
    monkeypatch.setattr(_runner, "_pool", [])  # a pool made on the machine below
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})  # a one-core machine, as Qt sees it
    try:
        runner = _train_job.TrainRunner(on_done=done.append, on_failed=done.append)
        assert runner.start(_train_job.TrainJob(spec={}, noisy=np.zeros((8, 8))))
        worker = create_worker(lambda: "denoised")
        worker.returned.connect(done.append)
        with qtbot.waitSignal(worker.finished, timeout=5_000):
            _runner.start_worker(worker)
        assert done == ["denoised"] and runner.busy  # while the training still runs
    finally:
        os.sched_setaffinity(0, cores)
        release.set()
        qtbot.waitUntil(lambda: not runner.busy, timeout=30_000)
    assert done == ["denoised", "trained"]


def napari_pool_priorities(qtbot, jobs: int = 3) -> list[int]:
    """The niceness of napari's shared pool threads, seen by ``jobs`` jobs one after another."""
    import os
    import threading

    from napari.qt.threading import create_worker

    seen = []
    for _ in range(jobs):
        worker = create_worker(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        worker.returned.connect(seen.append)
        with qtbot.waitSignal(worker.finished, timeout=10_000):
            worker.start()
    return seen

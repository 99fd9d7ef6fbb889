"""How long does napari's GUI thread freeze while the Denoise widget works?

Opens napari (needs a display: run under ``xvfb-run`` on a headless machine), docks the
Denoise widget through napari's plugin manager, and denoises a 10 x 2048 x 2048 uint16
stack (the real membrane time-lapse sample tiled 8 x 8 and its 5 frames repeated) with the
default method, while a QTimer set to tick every 10 ms records the gap between ticks.
A gap well over 10 ms means the GUI thread was blocked. The run includes adding the
result layer (what the user waits for), and ends 0.5 s after that.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_stall.py

Prints the longest gap (and separately the longest one while computing, the one in which
napari adds the result layer and the one in which the widget takes the finished result),
the 99th percentile, the number of gaps over 100 ms, and the time from Run to the result
layer and to its first plane shown (the viewer stays on the first frame); exits with
status 1 if the longest gap is 100 ms or more (the target of issue 3). ``--why`` says
what the other threads were doing after each long gap, and every run reports its longest
garbage collection (which holds the interpreter lock, whichever thread runs it).

``--save RUNS.json --label NAME`` adds the runs to a JSON file under NAME (e.g. the
version measured); ``--docs RUNS.json docs/benchmarks.md`` writes the GUI section of the
benchmarks page from it, between ``<!-- gui_stall:begin -->`` and ``<!-- gui_stall:end -->``
(kept as they are when ``napari-denoise bench`` rewrites the page)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_stall.py \
        --save /tmp/stall.json --label "this version"   # twice: two fresh sessions
    .venv/bin/python benchmarks/gui_stall.py --docs /tmp/stall.json docs/benchmarks.md

``--train SECONDS`` measures the Train widget instead: it fine-tunes the default model on
the FMD sample pair for SECONDS, presses Stop, and also reports how many steps ran after
Stop (the target: at most one)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_stall.py --train 30

``--open`` measures opening each widget instead (issue 25: 0.6-1.1 s, the target is under
:data:`OPEN_TARGET_MS`): each in a fresh napari process (so every import is paid, as by a
user opening it for the first time), with and without an image open (napari's own image
layer imports ``scipy.ndimage``, so without one the widget's own imports show), the wall
time of the GUI thread from the menu call to the widget drawn, and whether it imported
``scipy.ndimage`` or torch::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python benchmarks/gui_stall.py --open
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

TARGET_MS = 100.0
OPEN_TARGET_MS = 200.0  # opening a widget (issue 25)
WIDGETS = ("Denoise", "Compare", "Train")
TICK_MS = 10
WHY_MS = 60  # gaps this long get the other threads' stacks with --why


def make_stack(frames: int = 10, side: int = 2048) -> np.ndarray:
    """A real noisy time-lapse, tiled up to ``frames`` x ``side`` x ``side`` (uint16)."""
    from napari_denoise._napari import SAMPLES
    from napari_denoise.io import read_image

    real = np.asarray(read_image(SAMPLES / "membrane_timelapse.tif").data)  # (5, 256, 256)
    reps = (-(-frames // real.shape[0]), -(-side // real.shape[1]), -(-side // real.shape[2]))
    return np.ascontiguousarray(np.tile(real, reps)[:frames, :side, :side])


def pump(app, seconds: float) -> None:
    """Run the Qt event loop for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def tick_timer(ticks: list[float], why: list | None = None):
    """A started QTimer that appends the time of each of its ticks to ``ticks``.

    ``why``: for each gap of :data:`WHY_MS` or more, what the other threads are doing
    when the GUI thread gets going again (where a worker that held the interpreter lock
    stands just after its long step), appended as (gap in ms, {thread: frames}).
    """
    from qtpy.QtCore import QTimer

    def tick():
        now = time.perf_counter()
        if why is not None and ticks and (now - ticks[-1]) * 1000 >= WHY_MS:
            why.append(((now - ticks[-1]) * 1000, other_threads()))
        ticks.append(now)

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()
    return timer


class Collections:
    """Records every garbage collection (generation, start, end, thread) while on."""

    def __init__(self):
        import gc

        self.gc, self.spans, self._start = gc, [], 0.0

    def __enter__(self):
        self.gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc):
        self.gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        import threading

        now = time.perf_counter()
        if phase == "start":
            self._start = now
        else:
            name = threading.current_thread().name
            self.spans.append((info["generation"], self._start, now, name))

    def longest(self) -> tuple[float, str]:
        """The longest collection in ms and the thread it ran in."""
        if not self.spans:
            return 0.0, ""
        _, begin, end, name = max(self.spans, key=lambda s: s[2] - s[1])
        return (end - begin) * 1000.0, name


def other_threads(depth: int = 4) -> dict[str, list[str]]:
    """The innermost ``depth`` frames of every thread but this one, as 'file:line func'."""
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    here = threading.get_ident()
    return {
        names.get(ident, str(ident)): [
            f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno} {f.name}"
            for f in traceback.extract_stack(frame)[-depth:]
        ]
        for ident, frame in sys._current_frames().items()
        if ident != here
    }


def timed(call, spans: list):
    """``call``, recording the (start, end) time of each of its calls in ``spans``."""

    def wrapper(*args):
        begin = time.perf_counter()
        try:
            return call(*args)
        finally:
            spans.append((begin, time.perf_counter()))

    return wrapper


def spanning(times: np.ndarray, spans: list) -> np.ndarray:
    """Which gaps between ``times`` overlap one of the (start, end) ``spans``."""
    hit = np.zeros(len(times) - 1, bool)
    for begin, end in spans:
        hit |= (times[:-1] <= end) & (begin <= times[1:])
    return hit


def plane_shown(viewer, first_result: int) -> bool:
    """Whether the first result layer is there and its displayed plane has data."""
    layers = list(viewer.layers)
    if len(layers) <= first_result:
        return False
    raw = layers[first_result]._slice.image.raw
    return raw is not None and bool(np.asarray(raw).any())


def measure(
    method: str | None, frames: int, side: int, tile: int | None, why: bool = False
) -> dict:
    """Run one denoising through the widget and return the timer statistics."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.add_image(make_stack(frames, side), name="stack", metadata={"axes": "TYX"})
    viewer.dims.set_current_step(0, 0)  # the user looks at the first frame
    before = list(viewer.layers)
    _, widget = viewer.window.add_plugin_dock_widget("napari-denoise", "Denoise")
    if method:
        widget.picker.set_method(method)
    if tile:
        widget.settings.tile.set_value(tile)
    pump(app, 1.0)  # let the window settle before measuring

    ticks: list[float] = []
    inserted: list[float] = []
    landed: list[tuple[float, float]] = []  # (start, end) of the widget taking each result
    viewer.layers.events.inserted.connect(lambda e: inserted.append(time.perf_counter()))
    calls = widget.runner.calls
    for name in ("landed", "done"):  # the result lands: the widget finishes its layer
        if hasattr(calls, name):
            setattr(calls, name, timed(getattr(calls, name), landed))
    stacks: list = []
    timer = tick_timer(ticks, stacks if why else None)
    with Collections() as collections:
        start = time.perf_counter()
        assert widget.run(), "the run did not start"
        first_plane = None
        while widget.runner.busy:
            app.processEvents()
            if first_plane is None and plane_shown(viewer, len(before)):
                first_plane = time.perf_counter() - start
            time.sleep(0.001)
        seconds = time.perf_counter() - start
        pump(app, 0.5)  # the new layer's first draws are part of the cost
        if first_plane is None and plane_shown(viewer, len(before)):
            first_plane = time.perf_counter() - start  # a single plane: shown when it lands
    timer.stop()
    times = np.array([start, *ticks])
    gaps = np.diff(times) * 1000.0
    # The gap in which the result layer was inserted is napari's own add_image (layer
    # controls, vispy visual, first slice); the one in which the widget took the finished
    # result is the landing; the others are the time the work runs.
    adding = spanning(times, [(t, t) for t in inserted])
    landing = spanning(times, landed)
    computing = gaps[~(adding | landing)] if (~(adding | landing)).any() else np.zeros(1)
    # A garbage collection holds the interpreter lock, whichever thread runs it.
    collecting = spanning(times, [(b, e) for g, b, e, _ in collections.spans if e - b > 0.02])
    gc_ms, gc_thread = collections.longest()
    added = [layer.name for layer in viewer.layers][len(before) :]
    status = widget.status.text()
    viewer.close()
    return {
        "stack": [frames, side, side],
        "method": method or "default",
        "run_seconds": round(seconds, 2),
        "max_gap_ms": round(float(gaps.max()), 1),
        "max_gap_while_computing_ms": round(float(computing.max()), 1),
        "gap_adding_layer_ms": round(float(gaps[adding].max()), 1) if adding.any() else None,
        "gap_landing_ms": round(float(gaps[landing].max()), 1) if landing.any() else None,
        "first_layer_s": round(inserted[0] - start, 2) if inserted else None,
        "first_plane_s": None if first_plane is None else round(first_plane, 2),
        "load_1min": round(os.getloadavg()[0], 1),  # other work on the machine
        "longest_gc_ms": round(gc_ms, 1),
        "longest_gc_thread": gc_thread,
        "gaps_over_100ms_with_gc": int(((gaps >= TARGET_MS) & collecting).sum()),
        "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
        "gaps_over_100ms": int((gaps >= TARGET_MS).sum()),
        "ticks": len(ticks),
        "layers_added": added,
        "status": status,
        **({"why": stacks} if why else {}),
    }


def measure_training(seconds: float) -> dict:
    """Fine-tune the default model in the Train widget for ``seconds`` on the FMD sample
    pair (the whole image), and return the timer statistics and what Stop cost.

    The widget warms torch up when it opens; the measure starts 3 s later, as a user
    fills in the form first. Stop is pressed after ``seconds``; the steps run after it
    are counted (the target: at most one).
    """
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    # The model trained here goes to a throw-away folder, not the user's.
    os.environ["NAPARI_DENOISE_MODEL_DIR"] = tempfile.mkdtemp(prefix="napari-denoise-stall-")
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.open_sample("napari-denoise", "fmd_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-denoise", "Train")
    widget.budget_unit.setCurrentText("steps")
    widget.budget.setValue(100000)
    widget.name.setText(f"gui-stall-{int(time.time())}")
    widget.apply.setChecked(False)
    pump(app, 3.0)  # the form is filled in; torch warms up meanwhile

    ticks: list[float] = []
    steps: list[int] = []
    timer = tick_timer(ticks)
    start = time.perf_counter()
    assert widget.start(), "the run did not start"
    stopped_at = None
    while widget.runner.busy:
        app.processEvents()
        time.sleep(0.001)
        last = widget.runner.last
        if last is not None:
            steps.append(last.step)
        if stopped_at is None and time.perf_counter() - start > seconds:
            widget.stop()
            stopped_at = max(steps) if steps else 0
    timer.stop()
    final = widget.runner.last.step if widget.runner.last is not None else 0
    gaps = np.diff(np.array([start, *ticks])) * 1000.0
    viewer.close()
    return {
        "training_seconds": seconds,
        "steps": final,
        "steps_after_stop": None if stopped_at is None else final - stopped_at,
        "max_gap_ms": round(float(gaps.max()), 1),
        "p99_gap_ms": round(float(np.percentile(gaps, 99)), 1),
        "gaps_over_100ms": int((gaps >= TARGET_MS).sum()),
        "ticks": len(ticks),
    }


COLUMNS = (
    ("run_seconds", "run (s)"),
    ("first_layer_s", "result layer shown after (s)"),
    ("first_plane_s", "first plane shown after (s)"),
    ("max_gap_ms", "longest stall (ms)"),
    ("p99_gap_ms", "99th percentile gap (ms)"),
    ("max_gap_while_computing_ms", "while computing (ms)"),
    ("gap_adding_layer_ms", "napari adding the result layer (ms)"),
    ("gap_landing_ms", "the result landing (ms)"),
    ("longest_gc_ms", "longest garbage collection (ms)"),
    ("load_1min", "machine load (1 min)"),
)


def section(saved: dict) -> str:
    """The benchmarks page's GUI section: one row per run of every label in ``saved``."""
    head = "| version | " + " | ".join(title for _, title in COLUMNS) + " |"
    rows = [head, "|" + " --- |" * (len(COLUMNS) + 1)]
    notes = []
    for label, entry in saved.items():
        for run in entry["runs"]:
            cells = ["-" if run.get(key) is None else f"{run[key]:g}" for key, _ in COLUMNS]
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
        notes.append(f"*{label}*: {entry.get('source') or 'the working tree'}, {entry['date']}")
    first = next(iter(saved.values()))["runs"][0]
    stack = " x ".join(str(n) for n in first["stack"])
    return "\n".join(
        [
            "## GUI responsiveness (napari)",
            "",
            f"`benchmarks/gui_stall.py`: the Denoise widget denoises a {stack} uint16 stack "
            f"with the {first['method']} method while a 10 ms Qt timer ticks on the GUI "
            "thread; a stall is the longest gap between two ticks (target: under 100 ms). "
            "Each row is the first run of a fresh napari session (torch not yet loaded). "
            "The result layer appears when the run starts and fills in plane by plane; "
            "*the result landing* is the gap in which the widget takes the finished result. "
            "The machine load is the system's 1-minute load average at the end of the run "
            "(other programs competing for the cores).",
            "",
            *rows,
            "",
            "; ".join(notes) + ".",
        ]
    )


def save(path: Path, label: str, source: str, runs: list[dict]) -> None:
    """Add ``runs`` to the JSON file ``path`` under ``label`` (after those already there:
    run the script once per napari session to compare first runs)."""
    saved = json.loads(path.read_text()) if path.exists() else {}
    kept = [{k: v for k, v in r.items() if k not in ("why", "status")} for r in runs]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    earlier = saved.get(label, {}).get("runs", [])
    saved[label] = {"runs": earlier + kept, "date": date, "source": source}
    path.write_text(json.dumps(saved, indent=2) + "\n")


OPEN_ONE = """
import json, os, sys, time
import napari, numpy as np
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer()
if {image}:
    viewer.add_image(np.zeros((64, 64), np.uint16), name="noisy")
for _ in range(20):
    QApplication.processEvents()
    time.sleep(0.01)
before = set(sys.modules)
wall, cpu = time.perf_counter(), time.thread_time()
viewer.window.add_plugin_dock_widget("napari-denoise", {name!r})
QApplication.processEvents()
wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
new = set(sys.modules) - before
print(json.dumps({{"wall_ms": round(1e3 * wall, 1), "cpu_ms": round(1e3 * cpu, 1),
    "imported_ndimage": "scipy.ndimage" in new, "imported_torch": "torch" in new}}))
sys.stdout.flush()
os._exit(0)  # a widget's background work (the device check) need not finish
"""


def measure_opening(repeat: int = 1) -> list[dict]:
    """Open each widget in a fresh napari process, with and without an image: its cost.

    Python's compiled bytecode is cached (in a temporary folder) and a first, unmeasured
    run of each fills it, as an installed package has it: with PYTHONDONTWRITEBYTECODE
    set, every process would compile the plugin's modules again (~200 ms)."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        for name in WIDGETS:
            for image in (False, True):
                code = OPEN_ONE.format(name=name, image=image)
                for i in range(repeat + 1):
                    out = subprocess.run(
                        [sys.executable, "-c", code],
                        capture_output=True,
                        text=True,
                        check=True,
                        env=env,
                    )
                    if i:  # the first run compiles
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                        rows.append({"widget": name, "image_open": image, **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: measure, print, and fail when the target is missed."""
    parser = argparse.ArgumentParser(description="Longest GUI-thread stall during a denoise run.")
    parser.add_argument("--method", default=None, help="method name (default: the default method)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=None, help="tile size in pixels")
    parser.add_argument("--repeat", type=int, default=1, help="runs (the median is judged)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--why",
        action="store_true",
        help=f"for each gap of {WHY_MS} ms or more, print what the other threads were doing",
    )
    parser.add_argument(
        "--train",
        type=float,
        default=None,
        metavar="SECONDS",
        help="measure the Train widget instead: fine-tune for SECONDS, then press Stop",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="measure opening each widget instead (fresh process each, see the docstring)",
    )
    parser.add_argument("--save", type=Path, help="add the runs to this JSON file (see --label)")
    parser.add_argument("--label", default="this version", help="names the runs in --save")
    parser.add_argument("--source", default="", help="what the measured code is (with --save)")
    parser.add_argument(
        "--docs",
        nargs=2,
        type=Path,
        metavar=("RUNS_JSON", "DOC"),
        help="write the GUI section of DOC (docs/benchmarks.md) from saved runs; run nothing",
    )
    args = parser.parse_args(argv)
    if args.open:
        rows = measure_opening(args.repeat)
        for r in rows:
            print(
                f"{r['widget']:8s} ({'an image open' if r['image_open'] else 'no image':13s}): "
                f"{r['wall_ms']:7.1f} ms wall, {r['cpu_ms']:7.1f} ms GUI-thread CPU; imported "
                f"scipy.ndimage: {r['imported_ndimage']}, torch: {r['imported_torch']}"
            )
        worst = max(r["wall_ms"] for r in rows)
        return 0 if worst < OPEN_TARGET_MS and not any(r["imported_torch"] for r in rows) else 1
    if args.docs:
        from report import write_section

        write_section(args.docs[1], "gui_stall", section(json.loads(args.docs[0].read_text())))
        return 0
    if args.train is not None:
        runs = [measure_training(args.train) for _ in range(args.repeat)]
        for r in runs:
            print(
                f"training {r['training_seconds']:g} s ({r['steps']} steps): longest GUI stall "
                f"{r['max_gap_ms']} ms (p99 {r['p99_gap_ms']} ms, {r['gaps_over_100ms']} gaps >= "
                f"{TARGET_MS:g} ms); steps run after Stop: {r['steps_after_stop']}"
            )
        worst = float(np.median([r["max_gap_ms"] for r in runs]))
        return 0 if worst < TARGET_MS and all(r["steps_after_stop"] <= 1 for r in runs) else 1
    results = [
        measure(args.method, args.frames, args.side, args.tile, args.why)
        for _ in range(args.repeat)
    ]
    if args.save:
        save(args.save, args.label, args.source, results)
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results if not args.json else ():
        print(
            f"{r['stack']} with {r['method']}: {r['run_seconds']} s; "
            f"longest GUI stall {r['max_gap_ms']} ms (p99 {r['p99_gap_ms']} ms, "
            f"{r['gaps_over_100ms']} gaps >= {TARGET_MS:g} ms); while computing "
            f"{r['max_gap_while_computing_ms']} ms; napari adding the result layer "
            f"{r['gap_adding_layer_ms']} ms; the result landing {r['gap_landing_ms']} ms; "
            f"result layer after {r['first_layer_s']} s, first plane shown after "
            f"{r['first_plane_s']} s; longest garbage collection {r['longest_gc_ms']} ms (in "
            f"{r['longest_gc_thread']}; {r['gaps_over_100ms_with_gc']} of the long gaps had one); "
            f"added {r['layers_added']}"
        )
    for r in results if args.why and not args.json else ():
        for gap, threads in r["why"]:
            print(f"gap of {gap:.0f} ms; the other threads then:")
            for name, frames in threads.items():
                print(f"  {name}: " + " <- ".join(reversed(frames)))
    worst = float(np.median([r["max_gap_ms"] for r in results]))
    if args.repeat > 1 and not args.json:
        print(f"median of the longest stalls over {args.repeat} runs: {worst:.1f} ms")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())

"""How long is the walk from a command to the first tile? (issue 21's "stops" and "climbs")

Traces one trip with :func:`sys.settrace` until the first tile is denoised
(``engine.denoise.tiling.run_tiled`` entered) and counts, within ``napari_denoise``:

* stops: distinct functions entered (comprehensions and the method's own numerics,
  filters/calibrate/noise, left out) (one per code object; a generator resumed is the
  same stop);
* climbs: returns from a package function to a shallower package frame, i.e. how often
  the walk has to come back up before it can go on down.

Trips: ``cli`` (``cli.main(["denoise", in.tif, "-o", out.tif, "--method", "gaussian"])``)
and ``gui`` (the Denoise widget's worker: ``_runner.batch_steps([Job(..., fill=True)])``,
what napari's worker runs after Run; the widget's own handler is not traced).

    PYTHONPATH=src python scripts/walk_lengths.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

PKG = "napari_denoise"


class Walk(BaseException):  # not caught by the code under trace
    pass


# The method's own numerics (choosing its parameters) are not the walk's structure.
NUMERICS = ("engine/denoise/filters.py", "engine/denoise/calibrate.py", "engine/denoise/noise.py")


def _counted(frame) -> bool:
    code = frame.f_code
    path = code.co_filename.replace("\\", "/")
    return not code.co_name.startswith("<") and not path.endswith(NUMERICS)


def trace_trip(fn) -> dict:
    entered: list[str] = []
    climbs = 0

    def in_pkg(frame) -> bool:
        return PKG in frame.f_code.co_filename.replace("\\", "/").split("/")

    def tracer(frame, event, arg):
        nonlocal climbs
        if event == "call" and in_pkg(frame) and _counted(frame):
            name = f"{frame.f_code.co_filename.split(PKG + '/')[-1]}:{frame.f_code.co_name}"
            if name not in entered:
                entered.append(name)
            if frame.f_code.co_name == "run_tiled":
                raise Walk
            return local
        return None

    def local(frame, event, arg):
        nonlocal climbs
        back = frame.f_back
        if event == "return" and back is not None and in_pkg(back) and _counted(back):
            climbs += 1
        return local

    sys.settrace(tracer)
    try:
        fn()
    except Walk:
        pass
    finally:
        sys.settrace(None)
    return {"stops": len(entered), "climbs": climbs, "path": entered}


def cli_trip(tmp: Path):
    import tifffile

    src = tmp / "in.tif"
    tifffile.imwrite(src, np.random.default_rng(0).poisson(30, (3, 64, 64)).astype(np.uint16))

    def run():
        from napari_denoise.cli import main

        main(["denoise", str(src), "-o", str(tmp / "out.tif"), "--method", "gaussian", "-q"])

    return run


def gui_trip():
    data = np.random.default_rng(0).poisson(30, (3, 64, 64)).astype(np.uint16)

    def run():
        from napari_denoise._qt._fill import Started
        from napari_denoise._qt._runner import Job, batch_steps

        job = Job(data, "gaussian", "ZYX", {}, None, "Denoising", None, "cpu", fill=True)
        gen = batch_steps([job])
        item = next(gen)
        while True:
            if isinstance(item, Started):
                item.shown.set()
            item = gen.send(None)

    return run


def main() -> None:
    import napari_denoise.engine.methods as methods

    methods.get_method("gaussian")  # registration is not part of the walk
    import napari_denoise._qt._runner
    import napari_denoise.cli
    import napari_denoise.files  # noqa: F401

    verbose = "-v" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("cli", cli_trip(Path(tmp))), ("gui", gui_trip())):
            walk = trace_trip(fn)
            print(f"{name}: {walk['stops']} stops, {walk['climbs']} climbs")
            if verbose:
                print("   " + "\n   ".join(walk["path"]))


if __name__ == "__main__":
    main()

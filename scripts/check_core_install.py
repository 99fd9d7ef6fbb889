"""Run by `make test-core` in a venv that has napari-denoise WITHOUT its napari extra.

Checks that the engine, the API and the CLI import and denoise there (as on a dask
worker or a headless server), and that no GUI package was installed along the way.
Exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

GUI = ("napari", "npe2", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6")


def main() -> int:
    installed = [name for name in GUI if importlib.util.find_spec(name) is not None]
    if installed:
        print(f"core install pulled GUI packages: {', '.join(installed)}", file=sys.stderr)
        return 1
    import numpy as np

    import napari_denoise as nd

    rng = np.random.default_rng(0)
    noisy = rng.poisson(20, (96, 96)).astype(np.uint16)
    for method in (None, "gaussian"):  # the default model, and a classical filter
        out = nd.denoise(noisy, method)
        if out.shape != noisy.shape or out.dtype != noisy.dtype:
            print(f"denoise({method}) gave {out.shape} {out.dtype}", file=sys.stderr)
            return 1
    cli = Path(sys.executable).with_name("napari-denoise")
    with tempfile.TemporaryDirectory() as tmp:
        import tifffile

        src, dst = Path(tmp) / "in.tif", Path(tmp) / "out.tif"
        tifffile.imwrite(src, noisy)
        for args in (["list"], ["denoise", str(src), "-o", str(dst)]):
            done = subprocess.run([str(cli), *args], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"napari-denoise {' '.join(args)} failed:\n{done.stderr}", file=sys.stderr)
                return 1
        if not dst.is_file():
            print("the CLI wrote no output", file=sys.stderr)
            return 1
    print("core install: engine, API and CLI work without napari or Qt")
    return 0


if __name__ == "__main__":
    sys.exit(main())

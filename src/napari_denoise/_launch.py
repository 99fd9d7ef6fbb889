"""``make napari``: open napari with the sample pair loaded and both widgets docked.

``python -m napari_denoise._launch [--sample fmd_pair|membrane_timelapse] [FILE ...]``
"""

from __future__ import annotations

import argparse

PLUGIN = "napari-denoise"


def open_viewer(sample: str = "fmd_pair", files: list[str] | None = None, *, show: bool = True):
    """A viewer with ``files`` (or the ``sample``) open and the Denoise, Compare and Train
    widgets docked."""
    import napari

    viewer = napari.Viewer(title="napari-denoise", show=show)
    if files:
        viewer.open(files, plugin=PLUGIN)
    else:
        viewer.open_sample(PLUGIN, sample)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Compare")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Train", tabify=True)
    # Added last into the same tab group, Denoise is the tab shown: it is where one starts.
    _, denoise = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise", tabify=True)
    return viewer, denoise


def main(argv: list[str] | None = None) -> None:
    """Command-line entry (see the module docstring)."""
    import napari

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="TIFF files to open instead of the sample")
    parser.add_argument("--sample", default="fmd_pair", choices=["fmd_pair", "membrane_timelapse"])
    args = parser.parse_args(argv)
    open_viewer(args.sample, args.files)
    napari.run()


if __name__ == "__main__":
    main()

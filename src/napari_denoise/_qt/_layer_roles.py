"""What an image layer is for: a ground truth, a noisy input, or something we made.

One home for these guesses, used by the Compare and Train widgets to preselect layers.
A layer made by napari-denoise (a result, a preview, a difference) carries a marker in
its metadata and is never taken for a ground truth or an input, whatever its name.
"""

from __future__ import annotations

import re
from pathlib import PurePath

from .._napari import PROVENANCE_KEY
from ._layers import DIFFERENCE_KEY, PREVIEW_KEY, RESULT_KEY

GT_NAME = re.compile(r"ground.?truth|\bgt\b|clean|target|\bavg\d*\b|average", re.IGNORECASE)
NOISY_NAME = re.compile(r"noisy|\braw\b|input", re.IGNORECASE)
# Metadata keys that mark a layer as made by this plugin (results, previews, differences).
MADE_HERE = (PROVENANCE_KEY, RESULT_KEY, PREVIEW_KEY, DIFFERENCE_KEY)


def made_here(layer) -> bool:
    """Whether ``layer`` was produced by napari-denoise (or read back from a file it wrote)."""
    return any(key in layer.metadata for key in MADE_HERE)


def _words(layer) -> str:
    """The layer's name and the folders/file name it was read from."""
    path = layer.source.path or layer.metadata.get("source_path") or ""
    parts = PurePath(path).parts[-3:] if path else ()
    return " ".join((layer.name, *parts))


def looks_like_ground_truth(layer) -> bool:
    """A layer named (or stored in a folder named) like a ground truth, and not ours."""
    return not made_here(layer) and bool(GT_NAME.search(_words(layer)))


def looks_like_noisy(layer) -> bool:
    """A layer named (or stored in a folder named) like a noisy input, and not ours."""
    return (
        not made_here(layer)
        and bool(NOISY_NAME.search(_words(layer)))
        and not looks_like_ground_truth(layer)
    )

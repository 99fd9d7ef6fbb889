"""Where a preview runs: the visible part of the current plane, or a drawn rectangle.

Plain geometry on napari layers (no Qt): find the current plane of a layer, the Y/X box
to preview (the canvas's field of view, or the bounding box of a rectangle in a Shapes
layer), cut the block the engine needs (for 3-D methods a few neighbouring planes) and
say where the denoised plane goes back so that it lies exactly over the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.denoise.plan import POSITION_WORDS
from ..errors import InputError

MAX_SIDE = 1024  # a preview is for tuning: at most this many pixels in Y and in X
MIN_SIDE = 32
DEPTH_REACH = 8  # planes on each side that a 3-D method sees in a preview


@dataclass
class Region:
    """A preview crop: ``index`` into the layer data, the crop's axes, and its placement."""

    index: tuple
    axes: str
    offset: tuple[int, ...]  # layer data coordinates of the crop's first pixel, per layer axis
    plane: tuple  # index into the denoised crop giving the displayed Y/X plane
    description: str

    def cut(self, data) -> np.ndarray:
        """The crop as a contiguous array (the input layer is only read)."""
        return np.ascontiguousarray(data[self.index])

    def place(self, plane: np.ndarray, layer) -> tuple[np.ndarray, dict]:
        """Data and layer keywords that put a denoised plane over ``layer``."""
        data = plane.reshape((1,) * (layer.ndim - 2) + plane.shape)
        translate = np.asarray(layer.translate) + np.asarray(self.offset) * np.asarray(layer.scale)
        return data, {"scale": layer.scale, "translate": translate, "affine": layer.affine}


def current_index(viewer, layer) -> list[int]:
    """The data index of the plane shown for ``layer``, one integer per layer axis."""
    point = np.asarray(layer.world_to_data(viewer.dims.point))
    shape = layer.data.shape
    return [int(np.clip(np.round(p), 0, n - 1)) for p, n in zip(point, shape, strict=True)]


def _displayed_yx(viewer, layer, axes: str) -> tuple[int, int]:
    if viewer.dims.ndisplay != 2:
        raise InputError("Preview works in the 2D view; switch the viewer back to 2D.")
    shift = viewer.dims.ndim - layer.ndim
    dims = [d - shift for d in viewer.dims.displayed]
    if sorted(axes[d] for d in dims if d >= 0) != ["X", "Y"]:
        raise InputError(
            "Preview needs the Y/X plane on screen; reset the displayed axes (Transpose / Roll) "
            "so that Y and X are shown."
        )
    return axes.index("Y"), axes.index("X")


def shapes_box(shapes, viewer, layer) -> tuple[float, float, float, float]:
    """(y0, y1, x0, x1) in ``layer`` data coordinates of the selected (else last) shape."""
    if shapes is None or len(shapes.data) == 0:
        raise InputError(
            "Draw a rectangle first: use the rectangle tool of the 'preview region' layer."
        )
    selected = sorted(shapes.selected_data)
    vertices = np.asarray(shapes.data[selected[-1] if selected else -1])
    corners = []
    for vertex in vertices:
        world = np.asarray(viewer.dims.point, dtype=float)
        world[-2:] = np.asarray(shapes.data_to_world(vertex))[-2:]
        corners.append(np.asarray(layer.world_to_data(world))[-2:])
    corners = np.asarray(corners)
    (y0, x0), (y1, x1) = corners.min(axis=0), corners.max(axis=0)
    return y0, y1, x0, x1


def _span(lo: float, hi: float, n: int) -> tuple[int, int]:
    lo, hi = max(0, int(np.floor(lo))), min(n, int(np.ceil(hi)))
    if hi - lo < MIN_SIDE:  # too small to judge (or outside the image): widen around it
        mid = min(max((lo + hi) // 2, 0), n)
        lo, hi = max(0, mid - MIN_SIDE // 2), min(n, mid + MIN_SIDE // 2)
    if hi - lo > MAX_SIDE:
        mid = (lo + hi) // 2
        lo, hi = mid - MAX_SIDE // 2, mid + MAX_SIDE // 2
    return lo, hi


def preview_region(viewer, layer, axes: str, *, method_ndim: int = 2, box=None) -> Region:
    """The crop for a preview of ``layer`` (axes ``axes``) on the current plane.

    ``box`` is (y0, y1, x0, x1) in layer data coordinates; by default the part of the
    plane visible on the canvas (all of it before the canvas was first drawn).
    """
    iy, ix = _displayed_yx(viewer, layer, axes)
    shape = layer.data.shape
    if box is None:
        corners = np.asarray(layer.corner_pixels)
        if corners[1, iy] > corners[0, iy] and corners[1, ix] > corners[0, ix]:
            box = (corners[0, iy], corners[1, iy] + 1, corners[0, ix], corners[1, ix] + 1)
        else:
            box = (0, shape[iy], 0, shape[ix])
    y0, y1 = _span(box[0], box[1], shape[iy])
    x0, x1 = _span(box[2], box[3], shape[ix])
    current = current_index(viewer, layer)
    depth = next((axes.index(a) for a in "ZT" if a in axes), None) if method_ndim == 3 else None
    if method_ndim == 3 and depth is None:
        raise InputError("This method works on Z or T stacks; the layer has no Z or T axis.")

    index, offset, crop_axes, plane, where = [], [], "", [], []
    for d, letter in enumerate(axes):
        if d == iy or d == ix:
            lo, hi = (y0, y1) if d == iy else (x0, x1)
            index.append(slice(lo, hi))
            offset.append(lo)
            crop_axes += letter
        elif d == depth:
            lo = max(0, current[d] - DEPTH_REACH)
            hi = min(shape[d], current[d] + DEPTH_REACH + 1)
            index.append(slice(lo, hi))
            offset.append(current[d])
            crop_axes += letter
            plane.append(current[d] - lo)
            where.append(f"{POSITION_WORDS.get(letter, letter)} {current[d]}")
        else:
            index.append(current[d])
            offset.append(current[d])
            where.append(f"{POSITION_WORDS.get(letter, letter)} {current[d]}")
    plane += [slice(None), slice(None)]
    # The plane as napari's sliders number it ('frame 3'), not as axis letters ('T=3').
    text = f"{y1 - y0} × {x1 - x0} px" + (" at " + ", ".join(where) if where else "")
    return Region(tuple(index), crop_axes, tuple(offset), tuple(plane), text)

"""How far a model's tiles reach: the tile size, overlap rule and halo of the registry's
model methods, in a leaf module that the single-frame registry and the multi-frame stack
methods (:mod:`..denoise.stack`) both read without importing each other."""

from __future__ import annotations

import numpy as np

from ..denoise.selfcheck import DETAIL_MAX_WIDTH, SMOOTH_TRUNCATE

__all__ = ["DETAIL_CROP", "MODEL_TILE", "TILE_PER_OVERLAP", "_halo"]

MODEL_TILE = 1024
TILE_PER_OVERLAP = 6


def _halo(params, *, network: int) -> int:
    """The tiles' halo: the network's, plus the reach of the detail put back (if any)."""
    detail, width = params.get("detail"), params.get("detail_width")
    if not detail or float(detail) <= 0 or not width:
        return network
    return network + int(np.ceil(SMOOTH_TRUNCATE * min(float(width), DETAIL_MAX_WIDTH)))


DETAIL_CROP = 512  # the detail restoration is judged on the central crop of each sample plane

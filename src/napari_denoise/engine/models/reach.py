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
    """The tiles' halo: the network's, plus the reach of the detail put back (if any), and
    at least the reach of the Gaussian mixed in (if any: it blurs the input itself)."""
    detail, width = params.get("detail"), params.get("detail_width")
    halo = network
    if detail and float(detail) > 0 and width:
        halo += int(np.ceil(SMOOTH_TRUNCATE * min(float(width), DETAIL_MAX_WIDTH)))
    share, sigma = params.get("gaussian_share"), params.get("gaussian_sigma")
    if share and float(share) > 0 and sigma:
        halo = max(halo, int(np.ceil(SMOOTH_TRUNCATE * float(sigma))) + 1)
    return halo


DETAIL_CROP = 512  # the detail restoration is judged on the central crop of each sample plane

"""Scoring layers against a ground truth for the Compare widget (no Qt).

The numbers are exactly those of :func:`napari_denoise.engine.metrics.compare`, per
2-D plane for stacks; this module only runs it for each layer (as a generator, so the
widget can run it in a worker thread) and lays the results out as table rows.
"""

from __future__ import annotations

import csv
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..engine.denoise.tiling import Progress

COLUMNS = (  # (key in compare's result and in the CSV, column title on screen)
    ("layer", "Layer"),
    ("slice", "Plane"),
    ("psnr", "PSNR\n(dB)"),
    ("ssim", "SSIM"),
    ("psnr_ri", "PSNR RI\n(dB)"),
    ("ssim_ri", "SSIM\nRI"),
)
COLUMN_HELP = {
    "layer": "The layer scored against the ground truth.",
    "slice": "Which plane of the stack ('mean': the average over all planes).",
    "psnr": "Peak signal-to-noise ratio in decibels: higher is closer to the ground truth.",
    "ssim": "Structural similarity, from 0 to 1: higher is closer to the ground truth.",
    "psnr_ri": "PSNR after rescaling the layer's brightness to the ground truth "
    "(RI: range-invariant), so a change of brightness is not penalised.",
    "ssim_ri": "SSIM after rescaling the layer's brightness to the ground truth "
    "(RI: range-invariant).",
}
BASELINE = "baseline"


def data_range_for(gt: np.ndarray, given: float | None) -> tuple[float, str]:
    """The data range to pass to ``compare`` and a sentence saying where it comes from:
    the one rule of :func:`napari_denoise.engine.metrics.data_range_of` (given, else the
    ground truth's own max - min)."""
    from ..engine.metrics import data_range_of  # imports scipy: not when Compare opens

    return data_range_of(gt, given)


def score_layers(
    gt, tests: list[tuple[str, object]], *, data_range: float | None = None
) -> Generator[Progress, None, tuple[dict, str]]:
    """``compare(gt, test)`` for each (name, data), per plane.

    Yields progress; returns ``({name: compare result}, data range sentence)``.
    """
    from ..engine.metrics import compare  # imports scipy.ndimage: in the worker, not at open

    gt = np.asarray(gt)
    data_range, note = data_range_for(gt, data_range)
    results = {}
    for i, (name, data) in enumerate(tests):
        yield Progress(i, len(tests), f"scoring {name}")
        results[name] = compare(gt, np.asarray(data), data_range=data_range, slice_axes=gt.ndim - 2)
    yield Progress(len(tests), len(tests), "scored")
    return results, note


def table_rows(results: dict, *, per_slice: bool, baseline: str | None = None) -> list[dict]:
    """One row per layer (mean over planes), or per layer and plane; the baseline first."""
    names = sorted(results, key=lambda n: n != baseline)
    rows = []
    for name in names:
        res = results[name]
        label = f"{name} ({BASELINE})" if name == baseline else name
        if per_slice and len(res["per_slice"]) > 1:
            for k, entry in enumerate(res["per_slice"]):
                rows.append({"layer": label, "slice": k, **{c: entry[c] for c, _ in COLUMNS[2:]}})
        else:
            plane = "mean" if len(res["per_slice"]) > 1 else ""
            rows.append({"layer": label, "slice": plane, **{c: res[c] for c, _ in COLUMNS[2:]}})
    return rows


def write_csv(path: str | Path, rows: list[dict], *, note: str = "") -> Path:
    """Write the table as CSV (full precision), with the data range as a comment line."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        if note:
            fh.write(f"# {note}\n")
        writer = csv.writer(fh)
        writer.writerow([key for key, _ in COLUMNS])
        for row in rows:
            writer.writerow([row[key] for key, _ in COLUMNS])
    return path

"""Provenance records: what produced a result, so that every output can be trusted and redone."""

from __future__ import annotations

import getpass
import hashlib
import platform
import socket
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["file_sha256", "make_provenance", "package_versions"]

_PACKAGES = (
    "napari-denoise",
    "numpy",
    "scipy",
    "scikit-image",
    "tifffile",
    "torch",
    "bm3d",
    "napari",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a result."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: str | Path, *, chunk: int = 2**20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_provenance(
    *,
    method: str,
    params: dict[str, Any],
    input_path: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    input_dtype: Any = None,
    axes: str | None = None,
    series: int | str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-able provenance record for a denoised result.

    Holds the method and its resolved parameters, the input (path, SHA-256, shape, dtype,
    axes), package versions, the machine and the time (UTC, ISO 8601). ``extra`` is merged
    in last (model name and weights hash, per-channel parameters, timings ...).
    """
    record: dict[str, Any] = {
        "software": "napari-denoise",
        "method": method,
        "params": params,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "host": {
            "machine": platform.machine(),
            "system": platform.system(),
            "node": socket.gethostname(),
        },
    }
    try:
        record["user"] = getpass.getuser()
    except Exception:  # no user name in some containers; provenance must not fail for it
        pass
    source: dict[str, Any] = {}
    if input_path is not None:
        p = Path(input_path)
        source["path"] = str(p.resolve())
        if p.is_file():
            source["sha256"] = file_sha256(p)
    if input_shape is not None:
        source["shape"] = list(input_shape)
    if input_dtype is not None:
        source["dtype"] = str(input_dtype)
    if axes is not None:
        source["axes"] = axes
    if series is not None:
        source["series"] = series
    if source:
        record["input"] = source
    if extra:
        record.update(extra)
    return record

"""Reading a model package as untrusted input: bounded, and only the package's own files.

Everything :func:`~.import_.import_model` reads of a package goes through here:

- :func:`open_package` takes a ``.zip``, a folder or its ``rdf.yaml``. A zip is unpacked
  into a private temporary folder member by member: at most :data:`MAX_MEMBERS` members,
  each at most :data:`MAX_FILE_BYTES` and all together at most :data:`MAX_PACKAGE_BYTES`
  by their declared sizes, checked before reading, and again while reading (declared
  sizes can lie); names that are absolute, climb out with ``..`` or are links are
  refused. The package file itself must be a regular file (a pipe would block).
- :func:`read_rdf` reads ``rdf.yaml`` (at most :data:`MAX_RDF_BYTES`) with PyYAML's safe
  loader and a budget: the document with every alias expanded may have at most
  :data:`MAX_YAML_NODES` nodes and :data:`MAX_YAML_DEPTH` levels (a few kB of nested
  aliases expand to gigabytes in whatever walks the data), checked on the composed node
  graph before anything is built from it.
- :func:`package_file` reads a file the description names (weights, test tensors,
  architecture code) only if it lies inside the package: a relative path that stays in
  the package folder once resolved, with no link on the way, a regular file of bounded
  size, whose SHA-256 matches the description's when it gives one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .common import BioimageioError

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_MEMBERS",
    "MAX_PACKAGE_BYTES",
    "MAX_RDF_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "open_package",
    "package_file",
    "read_rdf",
]

MAX_RDF_BYTES = 1 << 20  # a description is a few kB
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64
MAX_MEMBERS = 1_000
MAX_FILE_BYTES = 256 << 20  # weights of a 2-D denoiser: a few MB to tens of MB
MAX_PACKAGE_BYTES = 512 << 20  # everything unpacked from one zip
CHUNK = 1 << 20


def _refuse(source: Path, what: str) -> BioimageioError:
    return BioimageioError(f"{source.name} cannot be imported: {what}")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.3g} MB"


# --- YAML without aliases, with a budget ------------------------------------------------------


def _bounded_loader():
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader whose document, with every alias expanded, has at most
        :data:`MAX_YAML_NODES` nodes and :data:`MAX_YAML_DEPTH` levels (checked on the
        composed node graph, before anything is constructed or handed on)."""

        def compose_document(self):
            node = super().compose_document()
            _expanded_size(node, {}, set())
            return node

    return BoundedLoader


def _expanded_size(node, memo: dict[int, tuple[int, int]], active: set[int]) -> tuple[int, int]:
    """(nodes, depth) of ``node`` with aliases expanded (an alias shares its anchor's
    node object, so each shared node is counted once per reference); ValueError over
    the budget or for a recursive structure."""
    import yaml

    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ValueError("its YAML refers to itself (a recursive alias)")
    active.add(key)
    nodes, depth = 1, 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        n, d = _expanded_size(child, memo, active)
        nodes += n
        depth = max(depth, d + 1)
        if nodes > MAX_YAML_NODES:
            raise ValueError(
                f"its YAML expands to more than {MAX_YAML_NODES} nodes (nested aliases?)"
            )
        if depth > MAX_YAML_DEPTH:
            raise ValueError(f"its YAML is nested deeper than {MAX_YAML_DEPTH} levels")
    active.discard(key)
    memo[key] = (nodes, depth)
    return nodes, depth


def parse_yaml(text: str) -> Any:
    """YAML ``text`` parsed safely (no tags; size, expanded size and depth bounded);
    ValueError with the reason otherwise."""
    import yaml

    if len(text) > MAX_RDF_BYTES:
        raise ValueError(f"it is longer than {_mb(MAX_RDF_BYTES)}")
    loader = _bounded_loader()(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ValueError(" ".join(str(err).split())[:300]) from None
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    finally:
        loader.dispose()


# --- the package and its files --------------------------------------------------------------


def _read_regular(path: Path, limit: int, what: str, source: Path) -> bytes:
    from ..engine.models.store import read_regular

    try:
        return read_regular(path, limit, what)
    except Exception as err:  # ModelFileError: re-worded for the package
        raise _refuse(source, str(err)[0].lower() + str(err)[1:]) from None


def read_rdf(root: Path, source: Path) -> dict[str, Any]:
    """The description in ``root/rdf.yaml`` (or ``bioimageio.yaml``) as plain data."""
    names = [n for n in ("rdf.yaml", "bioimageio.yaml") if (root / n).exists()]
    if not names:
        raise _refuse(source, "it has no rdf.yaml.")
    path = root / names[0]
    if path.is_symlink():
        raise _refuse(source, f"its {names[0]} is a link; a package's files must be its own.")
    data = _read_regular(path, MAX_RDF_BYTES, f"its description {names[0]}", source)
    try:
        content = parse_yaml(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _refuse(source, f"its {names[0]} is not UTF-8 text.") from None
    except ValueError as err:
        raise _refuse(source, f"its {names[0]} is not accepted YAML ({err}).") from None
    if not isinstance(content, dict):
        raise _refuse(source, f"its {names[0]} does not describe anything (not a mapping).")
    return content


def _safe_member_name(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return (
        bool(name)
        and not path.is_absolute()
        and ":" not in path.parts[0]
        and ".." not in path.parts
        and "\0" not in name
    )


def _unpack(source: Path, folder: Path) -> None:
    """Unpack the zip ``source`` into ``folder``, bounded before and while reading."""
    st = os.stat(source)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(source, "it is not a regular file (a pipe, device or socket).")
    if st.st_size > MAX_PACKAGE_BYTES:
        raise _refuse(source, f"it is {_mb(st.st_size)}, more than {_mb(MAX_PACKAGE_BYTES)}.")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise _refuse(source, f"it is not a readable zip file ({err}).") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise _refuse(source, f"it has {len(members)} files, more than {MAX_MEMBERS}.")
        declared = 0
        for m in members:
            kind = stat.S_IFMT(m.external_attr >> 16)
            if not _safe_member_name(m.filename):
                raise _refuse(
                    source,
                    f"its member {m.filename[:80]!r} would be written outside the package.",
                )
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(
                    source, f"its member {m.filename[:80]!r} is a link or a special file."
                )
            if m.file_size > MAX_FILE_BYTES:
                raise _refuse(
                    source,
                    f"its member {m.filename[:80]!r} unpacks to {_mb(m.file_size)}, more than "
                    f"{_mb(MAX_FILE_BYTES)}.",
                )
            declared += m.file_size
        if declared > MAX_PACKAGE_BYTES:
            raise _refuse(
                source, f"it unpacks to {_mb(declared)}, more than {_mb(MAX_PACKAGE_BYTES)}."
            )
        written = 0
        for m in members:
            target = folder.joinpath(*PurePosixPath(m.filename.replace("\\", "/")).parts)
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            got = 0
            try:
                with archive.open(m) as src, open(target, "xb") as dst:
                    while chunk := src.read(CHUNK):
                        got += len(chunk)
                        written += len(chunk)
                        if got > m.file_size or written > MAX_PACKAGE_BYTES:
                            raise _refuse(
                                source,
                                f"its member {m.filename[:80]!r} holds more than it declares.",
                            )
                        dst.write(chunk)
            except FileExistsError:
                raise _refuse(source, f"it holds {m.filename[:80]!r} twice.") from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
                raise _refuse(
                    source, f"its member {m.filename[:80]!r} cannot be unpacked ({err})."
                ) from None


@contextlib.contextmanager
def open_package(path: str | os.PathLike) -> Iterator[tuple[Path, Path]]:
    """``(source, root)``: the package given (resolved) and the folder holding its files
    (a temporary folder for a zip, removed afterwards)."""
    source = Path(path).expanduser()
    if not source.exists():
        raise BioimageioError(f"{source} does not exist.")
    source = source.resolve()
    if source.is_dir():
        yield source, source
        return
    if source.name in ("rdf.yaml", "bioimageio.yaml") or source.suffix in (".yaml", ".yml"):
        if source.name not in ("rdf.yaml", "bioimageio.yaml"):
            raise _refuse(source, "a description must be named rdf.yaml.")
        yield source, source.parent
        return
    work = Path(tempfile.mkdtemp(prefix="napari-denoise-import-"))
    try:
        _unpack(source, work)
        yield source, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def package_file(
    source: Path, root: Path, entry, what: str, *, limit: int = MAX_FILE_BYTES
) -> bytes:
    """The bytes of the file a description entry (``entry.source``, ``entry.sha256``)
    names, if it is the package's own: see the module docstring."""
    text = str(getattr(entry, "source", entry))
    if text.startswith(("http://", "https://", "ftp://")) or "://" in text:
        raise _refuse(
            source,
            f"its {what} are on the internet ({text[:120]}); napari-denoise imports only "
            "self-contained packages, without downloading.",
        )
    rel = Path(text)
    if rel.is_absolute() or rel.drive:
        raise _refuse(
            source, f"its {what} are given by the absolute path {text[:120]}, outside the package."
        )
    root_real = root.resolve()
    target = root / rel
    resolved = target.resolve()
    if root_real != resolved and root_real not in resolved.parents:
        raise _refuse(source, f"its {what} ({text[:120]}) lie outside the package.")
    step = root
    for part in rel.parts:
        step = step / part
        if step.is_symlink():
            raise _refuse(
                source, f"its {what} ({text[:120]}) are reached through a link; not read."
            )
    data = _read_regular(target, limit, f"its {what}", source)
    want = getattr(entry, "sha256", None)
    if want is not None and hashlib.sha256(data).hexdigest() != str(want):
        raise _refuse(
            source,
            f"its {what} ({text[:120]}) do not match the SHA-256 the package gives "
            "(corrupt or replaced).",
        )
    return data

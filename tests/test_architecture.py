"""The layout's rules, checked on the source: data flows one way, no import cycle, the
engine never imports file I/O, napari or Qt, and the package runs without napari."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_denoise"
GUI_ONLY = ("napari", "npe2", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6")


def _module_name(path: Path) -> str:
    parts = ["napari_denoise", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of the modules ``path`` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under top-level if/try (not inside functions)
        more = []
        for node in nodes:
            if isinstance(node, (ast.If, ast.Try)):
                more += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        nodes = list(nodes) + more
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            for alias in node.names:  # "from . import x" may import the submodule x
                found.add(f"{mod}.{alias.name}")
    return found


def _package_files():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_the_engine_imports_no_file_io_napari_or_qt():
    forbidden_own = {
        "napari_denoise.io",
        "napari_denoise.io_zarr",
        "napari_denoise.files",
        "napari_denoise.cli",
        "napari_denoise._napari",
        "napari_denoise._qt",
    }
    offenders = []
    for path in _package_files():
        if "engine" not in path.relative_to(PACKAGE).parts:
            continue
        for mod in _imports(path, top_level_only=False):  # function-level imports too
            root = mod.split(".")[0]
            if root in GUI_ONLY or any(mod == f or mod.startswith(f + ".") for f in forbidden_own):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {mod}")
    assert not offenders, "\n".join(offenders)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, reading EVERY import: top level, under
    if/try, and inside functions (a loop closed by a function-level import is a loop).

    ``from X import a`` is an arrow to the module ``X.a`` where that is a module, else to
    ``X`` (the name lives there): ``from .. import __version__`` is an arrow to the
    package ``__init__``.
    """
    modules = {_module_name(p): p for p in _package_files()}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    if sub in modules:
                        out.add(sub)
                    elif mod in modules:
                        out.add(mod)
        graph[name] = out - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """One line per import cycle found by a depth-first walk ('a -> b -> a')."""
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle_between_the_package_modules():
    # Every import counts, those inside functions too: a loop closed by a function-level
    # import (and held apart by a "loading" flag) is still a loop. The package __init__
    # is in the graph: a module that takes __version__ from it closes a loop through the
    # public functions that import that module.
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_version_is_a_leaf_that_modules_import_directly():
    graph = _import_graph()
    assert graph["napari_denoise._version"] == set()
    import napari_denoise
    from napari_denoise._version import __version__

    assert napari_denoise.__version__ == __version__


def test_the_import_graph_sees_imports_inside_functions():
    # The check must see what it guards: the function-level import in cli.py's commands
    # is an arrow, and a loop is reported.
    graph = _import_graph()
    assert "napari_denoise.files" in graph["napari_denoise.cli"]  # imported in _cmd_denoise
    assert _cycles({"a": {"b"}, "b": {"a"}}) == ["a -> b -> a"]


def test_every_engine_module_imports_on_its_own_in_any_order():
    # Registration used to depend on which module was imported first; each module must
    # now work when imported alone into a fresh package state.
    names = [
        _module_name(p)
        for p in _package_files()
        if "engine" in p.relative_to(PACKAGE).parts or p.name in ("axes.py", "atomic.py")
    ]
    code = textwrap.dedent(
        f"""
        import importlib, sys
        failures = []
        for name in {names!r}:
            for mod in [m for m in sys.modules if m.startswith("napari_denoise")]:
                del sys.modules[mod]
            sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_AliasFinder"]
            try:
                importlib.import_module(name)
                if name.endswith("engine.methods"):
                    m = sys.modules[name]
                    assert m.get_method("gaussian").name == "gaussian"
                    assert m.default_method().kind == "model"
            except Exception as err:
                failures.append(f"{{name}}: {{err!r}}")
        print("\\n".join(failures) or "OK")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "OK", out.stdout + out.stderr


BLOCK_GUI = textwrap.dedent(
    f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {(*GUI_ONLY, "matplotlib")!r}:
                raise ImportError(f"{{name}} is not installed (blocked by the test)")
    sys.meta_path.insert(0, Block())
    """
)


def test_engine_and_cli_run_where_napari_and_qt_are_not_installed(tmp_path):
    import numpy as np
    import tifffile

    src = tmp_path / "in.tif"
    tifffile.imwrite(src, (np.random.default_rng(0).poisson(30, (96, 96))).astype(np.uint16))
    code = BLOCK_GUI + textwrap.dedent(
        f"""
        import numpy as np
        import napari_denoise as nd
        from napari_denoise.cli import main
        x = np.random.default_rng(1).poisson(20, (64, 64)).astype(np.float32)
        assert nd.denoise(x).shape == x.shape  # the default model
        assert nd.denoise(x, "gaussian").shape == x.shape
        for args in (["list"], ["denoise", {str(src)!r}, "-o", {str(tmp_path / "out.tif")!r}]):
            try:
                main(args)
            except SystemExit as exit:
                assert not exit.code, (args, exit.code)
        bad = [m for m in sys.modules if m.split(".")[0] in {GUI_ONLY!r}]
        print("OK" if not bad else bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("OK"), out.stdout + out.stderr
    assert (tmp_path / "out.tif").is_file()


def test_core_dependencies_leave_napari_and_qt_to_an_extra():
    from importlib.metadata import requires

    core = [r for r in requires("napari-denoise") if "extra ==" not in r]
    names = {
        r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in core
    }
    assert not names & {"napari", "npe2", "magicgui", "qtpy", "pyqt6", "pyqt5", "matplotlib"}
    napari_extra = [r for r in requires("napari-denoise") if 'extra == "napari"' in r]
    assert any(r.startswith("napari") for r in napari_extra)


def test_module_paths_from_before_the_restructuring_still_import():
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # (warned: see the test below)
    from napari_denoise.engine.pipeline import denoise_iter
    from napari_denoise.engine.train import train_iter

    import napari_denoise.engine.denoise.pipeline as pipeline
    import napari_denoise.engine.models.inference as inference
    import napari_denoise.engine.models.store as store
    import napari_denoise.engine.training.loop as loop
    from napari_denoise.engine import finetune, selfsup, zoo

    assert denoise_iter is pipeline.denoise_iter and train_iter is loop.train_iter
    assert zoo.read_card is store.read_card and zoo.run_model is inference.run_model
    assert finetune.finetune_iter and selfsup.blind_spot_batch


def test_old_module_paths_warn_that_they_are_deprecated():
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error", DeprecationWarning)
        import napari_denoise.engine.methods  # the new paths: no warning
        import napari_denoise.engine.denoise.pipeline
        for old in ("napari_denoise.engine.pipeline", "napari_denoise.engine.zoo"):
            try:
                __import__(old)
            except DeprecationWarning as warning:
                print(warning)
            else:
                print("no warning for", old)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert "import napari_denoise.engine.denoise.pipeline instead" in lines[0]
    assert "napari_denoise.engine.zoo is an old module path" in lines[1]


def test_the_package_imports_the_new_module_paths_only():
    from napari_denoise.engine import MOVED

    old = {f"napari_denoise.engine.{name}" for name in (*MOVED, "zoo")}
    offenders = []
    for path in _package_files():
        for mod in _imports(path, top_level_only=False):
            if mod in old:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {mod}")
    # "from ..io import infer_axes": the axes helpers have their home in axes.py
    axes_names = {"infer_axes", "normalize_axes", "cast_to_dtype", "AXES_LETTERS"}
    for path in _package_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "io":
                names = {a.name for a in node.names} & axes_names
                if names:
                    offenders.append(f"{path.relative_to(PACKAGE)} takes {names} from io")
    assert not offenders, "\n".join(offenders)


def test_docstrings_name_modules_that_exist():
    # A cross-reference (:mod:`.x`, :func:`~..y.f`) resolves to a module of the package
    # and, past it, to a name that module defines or imports.
    import re

    modules = {_module_name(p): p for p in _package_files()}
    role = re.compile(r":(?:mod|func|class|meth|data|attr):`~?(\.+[\w.]*|napari_denoise[\w.]*)`")
    bad = []
    for path in _package_files():
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        text = path.read_text(encoding="utf-8")
        for ref in role.findall(text):
            if ref.startswith("."):
                lead = len(ref) - len(ref.lstrip("."))
                base = package.split(".")[: len(package.split(".")) - (lead - 1)]
                parts = base + [p for p in ref.lstrip(".").split(".") if p]
            else:
                parts = ref.split(".")
            k = max(k for k in range(1, len(parts) + 1) if ".".join(parts[:k]) in modules)
            rest = parts[k:]
            if rest:
                home = modules[".".join(parts[:k])].read_text(encoding="utf-8")
                defined = rf"(def|class)\s+{rest[0]}\b|^{rest[0]}\b|\b{rest[0]}\s*[:=]|\b{rest[0]},|import .*\b{rest[0]}\b"
                if not re.search(defined, home, re.M):
                    bad.append(f"{path.relative_to(PACKAGE)}: {ref}")
    assert not bad, "docstrings naming what does not exist:\n" + "\n".join(bad)


def test_no_import_is_hidden_from_the_cycle_check():
    # importlib.import_module(f"...{name}") is an import the graph above cannot read; only
    # the alias finder for old paths and _qt's lazy attributes (names in a constant
    # table, nothing imports them back) may import by a computed name.
    allowed = {"engine/__init__.py", "_qt/__init__.py"}
    hidden = []
    for path in _package_files():
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                and rel not in allowed
            ):
                hidden.append(f"{rel}:{node.lineno}")
    assert not hidden, "imports by computed name: " + ", ".join(hidden)

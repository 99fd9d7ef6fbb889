"""The registry of denoising methods: every filter and model behind one signature.

The records (:class:`Method`, :class:`Param`, :class:`ModelInfo`) and the store
(:func:`register`, :func:`unregister`, :func:`is_registered`) live in :mod:`.method_base`
and are re-exported here. This module adds the built-in methods.

Registration is explicit: :func:`load_builtin` is the one place that knows the
built-in methods (the classical filters of :mod:`.denoise.filters`, then every model card
in the model folders, :mod:`.models.registry`); :func:`get_method`, :func:`list_methods`
and :func:`default_method` call it once, lazily, so ``import napari_denoise`` stays light.
Nothing registers itself as a side effect of being imported, and no module that makes
methods imports this one (they import :mod:`.method_base`): no import loop.
"""

from __future__ import annotations

import difflib

from ..errors import UnknownMethodError
from .method_base import (
    REGISTRY,
    Method,
    ModelInfo,
    Param,
    check_ranges,
    highest_ranked,
    is_registered,
    register,
    unregister,
)

__all__ = [
    "Method",
    "ModelInfo",
    "Param",
    "check_ranges",
    "default_method",
    "get_method",
    "is_registered",
    "list_methods",
    "load_builtin",
    "register",
    "unregister",
]

_builtin_loaded = False


def load_builtin() -> None:
    """Register the built-in methods once: the classical filters first (a model never
    shadows one), then every model card in the shipped and user model folders."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    # Imported here, not at the top: ``import napari_denoise`` stays light. Neither
    # imports this module back (they build on .method_base), so this closes no loop.
    from .denoise.filters import FILTERS
    from .models.registry import register_models

    for method in FILTERS:
        register(method, replace=True)
    register_models()
    _builtin_loaded = True


def list_methods(*, kind: str | None = None, include_unavailable: bool = True) -> list[Method]:
    """All registered methods: models first, then classical filters; within each, those
    with a ``default_rank`` first (highest first, so the default leads), then by name."""
    load_builtin()
    methods = [
        m
        for m in REGISTRY.values()
        if (kind is None or m.kind == kind) and (include_unavailable or m.available)
    ]
    return sorted(
        methods,
        key=lambda m: (m.kind != "model", m.default_rank is None, -(m.default_rank or 0), m.name),
    )


def get_method(name: str) -> Method:
    """The method registered as ``name``, or UnknownMethodError listing close matches."""
    load_builtin()
    if isinstance(name, Method):
        return name
    try:
        method = REGISTRY[name]
    except KeyError:
        names = sorted(REGISTRY)
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownMethodError(
            f"Unknown method '{name}'.{hint} Available methods: {', '.join(names)}."
        ) from None
    if not method.available:
        raise UnknownMethodError(
            f"Method '{name}' is not available here: {method.unavailable_reason}"
        )
    return method


def default_method() -> Method:
    """The method :func:`napari_denoise.denoise` uses when none is given."""
    load_builtin()
    chosen = highest_ranked()
    if chosen is None:
        raise RuntimeError("no default method is registered")
    return chosen

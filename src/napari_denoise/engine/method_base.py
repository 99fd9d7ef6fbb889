"""What a denoising method is, and the store of registered ones; knows no method itself.

A :class:`Method` is a plain record: a function that denoises one float32 block
(a 2D ``YX`` slice, or a 3D ``ZYX`` volume for methods with ``ndim == 3``), the
parameters it declares (from which the CLI parses ``--param`` and the GUI builds its
controls), how far its output at a pixel reaches into its input (``halo``, used for
tiling), and an optional ``auto`` hook that picks unset parameters from the image.

:func:`register`, :func:`unregister` and :func:`is_registered` change or ask the store
and nothing else. The modules that make methods (:mod:`.denoise.filters`,
:mod:`.models.registry`) import this module; :mod:`.methods` imports them to load the
built-in ones: the arrows all point here, so there is no import loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ParameterError

__all__ = [
    "REGISTRY",
    "Method",
    "ModelInfo",
    "Param",
    "highest_ranked",
    "is_registered",
    "register",
    "registered",
    "unregister",
]


@dataclass(frozen=True)
class Param:
    """A declared parameter of a method.

    ``default=None`` means *automatic*: the method's ``auto`` hook chooses the value
    from the image (noise estimate or self-supervised calibration).

    ``name`` is what the CLI (``--param NAME=VALUE``) and the Python API take; ``label``
    is what people read (the GUI's form, status lines and layer names), in plain words
    with the unit, e.g. ``"Blur width (pixels)"``; ``choice_labels`` likewise says each
    of ``choices`` in words (``"np"`` -> ``"Normal"``).
    """

    name: str
    type: type
    default: Any = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    odd: bool = False  # a window width: even widths have no centre pixel
    label: str = ""
    choice_labels: tuple[str, ...] | None = None  # one per choice, in the same order
    # Where a number the user takes off "auto" starts before the method has chosen one
    # (None: 1, a pixel or a unit); e.g. 0 for a share where 1 would mean "all of it".
    start: float | None = None

    def __post_init__(self) -> None:
        if self.choice_labels is not None and (
            self.choices is None or len(self.choice_labels) != len(self.choices)
        ):
            raise ValueError(f"parameter '{self.name}': one choice label per choice")

    @property
    def auto(self) -> bool:
        """Whether leaving the parameter unset lets the method choose it from the image."""
        return self.default is None and self.type is not bool

    def choice_text(self, value: Any) -> str:
        """How the choice ``value`` is shown to people (itself when it has no label)."""
        if self.choice_labels is not None and value in self.choices:
            return self.choice_labels[self.choices.index(value)]
        return str(value)

    def coerce(self, value: Any, *, method: str = "") -> Any:
        """Convert ``value`` (possibly a CLI string) to this parameter's type and check range.

        ``None`` (or the string ``"auto"`` for automatic parameters) stays ``None``.
        """
        where = f"parameter '{self.name}' of method '{method}'" if method else self.name
        if value is None or (self.auto and isinstance(value, str) and value.lower() == "auto"):
            return None
        try:
            if self.type is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                        raise ValueError(value)
                    value = low in {"true", "1", "yes", "on"}
                else:
                    value = bool(value)
            elif self.type is int:
                as_float = float(value)
                if not np.isfinite(as_float):
                    raise ParameterError(f"{where} must be a finite number, got {value!r}.")
                if as_float != int(as_float):
                    raise ValueError(value)
                value = int(as_float)
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ParameterError(
                f"{where} must be of type {self.type.__name__}, got {value!r}."
            ) from None
        if isinstance(value, float) and not np.isfinite(value):
            raise ParameterError(f"{where} must be a finite number, got {value!r}.")
        if self.odd and value % 2 == 0:
            raise ParameterError(
                f"{where} must be odd (a window centred on its pixel), got {value!r}; "
                f"use {value - 1} or {value + 1}."
            )
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{where} must be one of {list(self.choices)}, got {value!r}.")
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"{where} must be at least {self.minimum}, got {value!r}.")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"{where} must be at most {self.maximum}, got {value!r}.")
        return value

    def describe(self) -> dict[str, Any]:
        """JSON-able description (used by ``napari-denoise list --json`` and the GUI)."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type.__name__,
            "default": "auto" if self.auto else self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "choices": list(self.choices) if self.choices is not None else None,
            **({"choice_labels": list(self.choice_labels)} if self.choice_labels else {}),
            **({"start": self.start} if self.start is not None else {}),
            "help": self.help,
        }


BlockFn = Callable[..., np.ndarray]
BatchFn = Callable[..., list[np.ndarray]]
AutoFn = Callable[[Sequence[np.ndarray], dict], dict]


@dataclass(frozen=True)
class ModelInfo:
    """What a model-backed method runs: its card's identity (recorded in provenance)."""

    name: str
    architecture: str
    sha256: str
    card: str
    parameters: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    imported_from: Mapping[str, Any] | None = None  # a bioimage.io package's id, version, hashes

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record (as written in provenance and ``list --json``)."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "sha256": self.sha256,
            "parameters": self.parameters,
            "config": dict(self.config),
            "card": self.card,
            **({"imported_from": dict(self.imported_from)} if self.imported_from else {}),
        }


@dataclass(frozen=True)
class Method:
    """A denoising method behind the common signature ``fn(block, **params) -> block``.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"gaussian"``.
    fn : callable
        ``fn(block, **params)`` with ``block`` a float32 array of ``ndim`` dimensions
        (``YX`` or ``ZYX``) returning an array of the same shape.
    params : tuple of Param
        Declared parameters.
    kind : {"classical", "model"}
    ndim : {2, 3}
        2 works per ``YX`` slice; 3 works on ``ZYX`` (or ``TYX``) volumes.
    halo : callable
        ``halo(params) -> int``: how many pixels around a pixel its output depends on.
        Tiles are read with at least this margin, so local filters tile exactly.
    auto : callable, optional
        ``auto(samples, params) -> params`` fills parameters left as ``None`` from a
        few sample blocks of the image (all of the same channel).
    tile : int, optional
        Default tile size in pixels (Y and X) when the caller gives none.
    multiple : int
        Tiles start at multiples of this (a network's downsampling factor: a U-Net is
        only equivariant to such shifts).
    batch_fn, tile_batch : callable, optional
        ``batch_fn(blocks, **params)`` runs several same-sized blocks at once;
        ``tile_batch(params)`` says how many (e.g. more on a GPU).
    model : ModelInfo, optional
        The model behind a method of kind ``"model"``.
    slow : bool
        Much slower than the others (the GUI says so; the benchmark may skip it).
    experimental : bool
        A shipped model its card calls experimental (the GUI folds it under "More models").
    planes_fallback : bool
        A 3-D method that also denoises lone ``YX`` planes (frame by frame): an image
        without a Z or T axis is not refused.
    plane_reach : int
        How many neighbouring planes on each side of a plane (along T, else Z) the method
        looks at: 0 denoises each plane alone; ``k`` gives ``fn`` a window of ``2k + 1``
        planes (the plane in the middle) and takes the middle plane's result back. The
        driver reads the window, streaming (see :mod:`.denoise.driver`). A callable
        ``plane_reach(params)`` gives it per run (e.g. 0 when the user turns neighbours off).
    combine : callable, optional
        With a plane reach: ``combine(window, neighbours, **params)`` turns the window of
        ``2k + 1`` whole planes into the one plane that ``fn`` then denoises, tile by tile
        (``neighbours``: the slots holding a distinct plane other than the middle one;
        e.g. :func:`.denoise.fusion.fuse`). Its parameters are those named in
        ``combine_keys``, which ``fn`` does not get.
    """

    name: str
    fn: BlockFn
    params: tuple[Param, ...] = ()
    kind: Literal["classical", "model"] = "classical"
    ndim: int = 2
    halo: Callable[[Mapping[str, Any]], int] = lambda params: 0
    auto: AutoFn | None = None
    title: str = ""
    description: str = ""
    default_rank: int | None = None
    available: bool = True
    unavailable_reason: str = ""
    tile: int | None = None
    multiple: int = 1
    batch_fn: BatchFn | None = None
    tile_batch: Callable[[Mapping[str, Any]], int] | None = None
    model: ModelInfo | None = None
    slow: bool = False
    experimental: bool = False
    # A 3-D method that also takes YX blocks (a multi-frame network falls back to frame by
    # frame): an image without a Z or T axis is cut into planes instead of refused.
    planes_fallback: bool = False
    plane_reach: int | Callable[[Mapping[str, Any]], int] = 0
    combine: Callable[..., Any] | None = None
    combine_keys: tuple[str, ...] = ()

    def reach(self, params: Mapping[str, Any]) -> int:
        """The plane reach for a run with ``params`` (see ``plane_reach``)."""
        reach = self.plane_reach
        return int(reach(params) if callable(reach) else reach)

    @property
    def is_default(self) -> bool:
        """Whether this is the method used when none is named (among those registered)."""
        chosen = highest_ranked()
        return chosen is not None and chosen.name == self.name

    def param(self, name: str) -> Param:
        """The declared parameter ``name``; ParameterError naming the valid ones otherwise."""
        for p in self.params:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.params) or "none"
        raise ParameterError(
            f"Method '{self.name}' has no parameter '{name}'. Its parameters are: {valid}."
        )

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each checked and converted; unknown names fail,
        and so do values that contradict each other (:func:`check_ranges`)."""
        given = dict(given or {})
        for name in given:
            self.param(name)  # raises for unknown names
        resolved = {
            p.name: p.coerce(given.get(p.name, p.default), method=self.name) for p in self.params
        }
        check_ranges(self.name, resolved)
        return resolved

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the method."""
        return {
            "name": self.name,
            "kind": self.kind,
            "default": self.is_default,
            "title": self.title or self.name,
            "description": self.description,
            "ndim": self.ndim,
            "available": self.available,
            "unavailable_reason": self.unavailable_reason,
            "params": [p.describe() for p in self.params],
            **({"model": self.model.as_dict()} if self.model is not None else {}),
        }


def check_ranges(method: str, params: Mapping[str, Any]) -> None:
    """Refuse an inverted range: a ``<x>_low`` (or ``<x>_min``) parameter set at or above
    its ``<x>_high`` (``<x>_max``) twin, e.g. ``norm_low >= norm_high``, which would
    flip or divide by zero whatever it scales."""
    for name, low in params.items():
        for lo, hi in (("_low", "_high"), ("_min", "_max")):
            if not name.endswith(lo) or low is None:
                continue
            twin = name[: -len(lo)] + hi
            high = params.get(twin)
            if isinstance(high, int | float) and isinstance(low, int | float) and low >= high:
                raise ParameterError(
                    f"parameter '{name}' of method '{method}' ({low!r}) must be below "
                    f"'{twin}' ({high!r})."
                )


REGISTRY: dict[str, Method] = {}  # name -> method: the store (read it; change it by register)


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace=True`` to overwrite a name)."""
    if method.name in REGISTRY and not replace:
        raise ValueError(f"a method named '{method.name}' is already registered")
    REGISTRY[method.name] = method
    return method


def is_registered(name: str) -> bool:
    """Whether a method of that name is registered (without loading filters or models)."""
    return name in REGISTRY


def registered(name: str) -> Method:
    """The method registered as ``name`` (KeyError when absent), without loading anything:
    for code that runs after registration and must not import the registries."""
    return REGISTRY[name]


def unregister(name: str) -> None:
    """Remove a method from the registry (no error when absent)."""
    REGISTRY.pop(name, None)


def highest_ranked() -> Method | None:
    """The available registered method with the highest ``default_rank`` (None if none):
    the default method once the built-in ones are loaded."""
    # Every method may claim a rank; the available one with the highest rank wins, so a
    # shipped model takes over from the best classical filter as soon as it is registered.
    ranked = [m for m in REGISTRY.values() if m.available and m.default_rank is not None]
    return max(ranked, key=lambda m: m.default_rank) if ranked else None

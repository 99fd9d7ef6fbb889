"""The store of network architectures: :func:`register_model` files a class by name.

The network modules (``unet.py``, ``dncnn.py`` ...) import this module to register
themselves; the package ``__init__`` imports them on the first lookup (:func:`build`,
:func:`get_model_class`) and reads the store. The arrows point here: no import loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["ARCHITECTURES", "config_dict", "register_model"]

ARCHITECTURES: dict[str, type] = {}  # name -> network class


def register_model(name: str):
    """Class decorator: register a network under ``name``.

    The class needs a ``config_class`` attribute (a dataclass) and a constructor that
    takes one instance of it.
    """

    def decorator(cls: type) -> type:
        if name in ARCHITECTURES and ARCHITECTURES[name] is not cls:
            raise ValueError(f"an architecture named '{name}' is already registered")
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"{cls.__name__} needs a dataclass 'config_class' attribute")
        cls.architecture = name
        ARCHITECTURES[name] = cls
        return cls

    return decorator


def config_dict(model) -> dict[str, Any]:
    """The JSON-able config a network was built from."""
    return dataclasses.asdict(model.config)

"""The new model's name: chosen when a run is prepared, claimed when it starts.

:func:`resolve_name` checks a name the user gave (characters, not a method of someone
else) or derives one from the start model and the mode (``unet-fluo-n2v``, then ``-2``,
``-3`` ...). :func:`claim_name` holds it for the run that trains it, so two runs never
save under one name, and :func:`free_name` checks it against the model folder (an
existing model is never overwritten, except by the resumed run that saved it).

``prepared`` below is a :class:`~.finetune_data.Prepared` run (its ``name``,
``name_given`` and ``spec.mode``).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from ...errors import ParameterError
from .config import FinetuneSpec

__all__ = ["NAME_SUFFIX", "claim_name", "free_name", "resolve_name"]

NAME_SUFFIX = {
    "supervised": "ft",
    "n2v": "n2v",
    "n2v2": "n2v2",
    "n2v-psf": "n2v-psf",
    "n2n-frames": "n2n",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")


def _taken(name: str, folder: Path) -> bool:
    from ..methods import is_registered, list_methods

    list_methods()  # loads filters and models
    return is_registered(name) or (folder / f"{name}.json").exists()


def _owner(name: str, folder: Path) -> str | None:
    """What else holds ``name``: None (free, or a model of ``folder``), "model" or "method"."""
    from ..methods import list_methods

    for method in list_methods():
        if method.name == name:
            card = method.model.card if method.model is not None else None
            if card and Path(card).parent.resolve() == folder.resolve():
                return None
            return "model" if card else "method"
    return None


def resolve_name(spec: FinetuneSpec, started: dict, folder: Path) -> tuple[str, bool]:
    """(name, given): the requested name, checked, or a new one derived from the start."""
    if spec.name is not None:
        name = str(spec.name).strip()
        if not _NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
            raise ParameterError(
                f"The model name {spec.name!r} cannot be used: use letters, digits, '.', '_', "
                "'-' or '+' (at most 80), starting with a letter or digit."
            )
        owner = _owner(name, folder)
        if owner is not None:
            raise ParameterError(
                f"A {owner} named '{name}' already exists and is not one of your models; "
                "choose another name."
            )
        return name, True
    base = started["name"].split(":", 1)[-1]
    stem = f"{Path(base).stem}-{NAME_SUFFIX[spec.mode]}"
    name, k = stem, 2
    while _taken(name, folder) or (
        spec.mode == "n2v-psf" and _taken(f"{name}-deconvolved", folder)
    ):
        name, k = f"{stem}-{k}", k + 1
    return name, False


def claim_name(prepared, folder: Path, checkpoint, resume: bool, held) -> str:
    """The model name (see :func:`free_name`), held in ``held`` for this run (with the
    deconvolved twin's, for n2v-psf): a derived name busy in another run moves on to the
    next free one; a given one is refused. Also the check, before any training, that the
    folder can be written."""
    from ..models import store

    busy: set[str] = set()
    while True:
        name = free_name(prepared, folder, checkpoint, resume, busy)
        names = [name, f"{name}-deconvolved"] if prepared.spec.mode == "n2v-psf" else [name]
        try:
            with contextlib.ExitStack() as stack:
                for n in names:
                    card = folder / f"{n}.json"
                    # a resumed run replaces the model it saved when stopped (free_name)
                    replace = resume and card.exists()
                    stack.enter_context(store.claim_model_name(card, overwrite=replace))
                if free_name(prepared, folder, checkpoint, resume, busy) != name:
                    continue  # saved by a run that ended just before the claim: look again
                held.enter_context(stack.pop_all())
            return name
        except store.ModelNameBusy:
            if prepared.name_given:
                raise
            busy.add(name)


def free_name(
    prepared, folder: Path, checkpoint, resume: bool, busy: set[str] = frozenset()
) -> str:
    """The model name, checked against the files already in ``folder``.

    An existing model is never overwritten, except by the resumed run that saved it
    (stopped early, with the same checkpoint). A derived name moves on to ``-2``, ``-3``
    ...; a name the user gave is refused.
    """

    def checkpoint_of(n: str) -> str:
        return str(Path(checkpoint) if checkpoint is not None else folder / ".checkpoints" / n)

    def clash(n: str) -> str | None:
        if n in busy:  # held by another run right now
            return n
        twins = [n, f"{n}-deconvolved"] if prepared.spec.mode == "n2v-psf" else [n]
        for m in twins:
            path = folder / f"{m}.json"
            if not path.exists():
                continue
            if resume:
                try:
                    old = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    return m
                if old.get("training", {}).get("checkpoint") == checkpoint_of(n):
                    continue
            return m
        return None

    name = prepared.name
    taken = clash(name)
    if taken is None:
        return name
    if prepared.name_given:
        raise ParameterError(
            f"A model named '{taken}' already exists in {folder}; choose another name or delete "
            f"its files ({taken}.json and {taken}.safetensors)."
        )
    stem, k = name, 2
    while clash(name) is not None:
        name, k = f"{stem}-{k}", k + 1
    return name

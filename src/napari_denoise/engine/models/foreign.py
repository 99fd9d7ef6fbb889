"""A network from elsewhere (a bioimage.io package) as TorchScript, behind the engine's contract.

An imported package whose network is TorchScript is stored in the user model folder as
``<name>.torchscript.pt`` (the package's bytes, unchanged) beside a model card whose
``weights.format`` is ``"torchscript"``. :func:`load_torchscript` is what
:func:`~.store.load_model` calls for such a card once it has checked the file's SHA-256,
and wraps the network in :class:`ForeignNetwork`, which speaks the engine's contract:
``(N, 1, H, W)`` in normalised units, the same shape out, with ``multiple`` and ``reach``.

**TorchScript is code.** A TorchScript archive holds programs that the TorchScript
interpreter runs (no pickled Python objects, no Python imports), but those programs can
call any registered operator: ``torch.save`` writes files, ``torch.from_file`` maps
them, a ``while`` loop need not end, a factory op can allocate without bound, and a
class's ``__setstate__`` runs inside ``torch.jit.load`` itself. So nothing is trusted
from its origin; every archive goes through :func:`load_checked` (at import and every
time a stored model is loaded):

1. before ``torch.jit.load``, the archive is read as a zip: its members' declared sizes
   (what torch allocates) at most :data:`MAX_ARCHIVE_BYTES` in all, and no code that defines ``__setstate__`` (the only code run by loading) or
   uses a C++ class (``torch.classes``);
2. after loading, every node of every method of the module and of each submodule
   (inlined, nested blocks included) must be an operator of the allow-list: the tensor
   operators of ``aten`` less those with effects outside the tensors
   (:data:`DENIED_ATEN`: files, storage, random seeds, streams, futures, printing) and
   the control and container nodes of ``prim`` in :data:`ALLOWED_PRIM`; loops must have
   a trip count (a ``while`` loop, whose count is unbounded, is refused) and calls that
   cannot be inlined are refused.

What this does not bound: the time and memory of the allowed operators themselves (a
network may still be slow or large for its input). Import therefore needs the user's
``allow_code=True`` (CLI ``--allow-code``) for TorchScript whenever the package offers
no state dict of an architecture napari-denoise builds itself.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelFileError

__all__ = [
    "ForeignNetwork",
    "UnsafeTorchScript",
    "check_archive",
    "check_graphs",
    "load_checked",
    "load_torchscript",
]

STANDARD_AXES = ("batch", "channel", "y", "x")
MAX_ARCHIVE_BYTES = 512 << 20  # uncompressed, all members (the store's weights limit)
MAX_ARCHIVE_MEMBERS = 10_000
MAX_CONSTANT_TRIPS = 1 << 20  # a loop with a constant trip count above this is a while loop
# aten operators with effects beyond their tensors: files, storages, seeds, streams,
# futures, printing. Every other aten operator computes on tensors and numbers.
DENIED_ATEN = frozenset(
    {
        "aten::save",
        "aten::from_file",
        "aten::_print",
        "aten::set_",
        "aten::set_data",
        "aten::manual_seed",
        "aten::seed",
        "aten::record_stream",
        "aten::wait",
        "aten::_cufft_set_plan_cache_max_size",
        "aten::_cufft_clear_plan_cache",
        "aten::_set_cached_tensors_enabled",
        "aten::_add_cached_tensor",
        "aten::_remove_cached_tensor",
    }
)
# prim nodes of plain programs: constants, containers, attribute reads, conditionals,
# loops (checked further), numbers and tensor properties, errors.
ALLOWED_PRIM = frozenset(
    f"prim::{k}"
    for k in (
        "Constant",
        "ListConstruct",
        "ListUnpack",
        "TupleConstruct",
        "TupleUnpack",
        "TupleIndex",
        "TupleSlice",
        "DictConstruct",
        "DictIndex",
        "GetAttr",
        "If",
        "Loop",
        "NumToTensor",
        "device",
        "dtype",
        "layout",
        "is_cuda",
        "is_cpu",
        "is_xpu",
        "is_mps",
        "is_meta",
        "is_sparse",
        "is_quantized",
        "requires_grad",
        "unchecked_cast",
        "Uninitialized",
        "RaiseException",
        "isinstance",
        "min",
        "max",
        "abs",
        "shape",
        "data",
        "grad",
        "tolist",
        "StringIndex",
        "EnumName",
        "EnumValue",
        "AutogradZero",
        "AutogradAdd",
    )
)
CODE_DENIED = (
    (re.compile(r"\b__setstate__\b"), "a __setstate__ method (code run by loading)"),
    (re.compile(r"\btorch\.classes\b|__torch__\.torch\.classes"), "C++ classes (torch.classes)"),
)


class UnsafeTorchScript(ModelFileError):
    """A TorchScript archive that napari-denoise will not load or run (the message says why)."""


class ForeignNetwork(nn.Module):
    """A network described by a bioimage.io package, behind the engine's contract.

    Pads each input by reflection to a size the package accepts (``min + n * step``),
    reorders ``(N, 1, H, W)`` to the package's axis order (batch and channel axes may be
    absent) and back, and crops the output to the input's size.
    """

    takes_noise_level = False
    noise_input = None

    def __init__(
        self,
        net: nn.Module,
        *,
        step: int,
        min_size: int,
        reach: int,
        input_axes: Sequence[str] = STANDARD_AXES,
        output_axes: Sequence[str] = STANDARD_AXES,
    ):
        super().__init__()
        self.net = net
        self.multiple = int(step)
        self.min_size = int(min_size)
        self.reach = int(reach)
        self.input_axes = tuple(input_axes)
        self.output_axes = tuple(output_axes)
        # Parameters of a ScriptModule count; a weightless one still needs a device probe.
        self.register_buffer("_device_probe", torch.zeros(1), persistent=False)

    def parameters(self, recurse: bool = True):  # run_model asks the device of the first
        yield self._device_probe
        yield from super().parameters(recurse)

    def _valid(self, n: int) -> int:
        if n <= self.min_size:
            return self.min_size
        return self.min_size + -(-(n - self.min_size) // self.multiple) * self.multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "batch" not in self.input_axes and x.shape[0] > 1:  # one image at a time
            return torch.cat([self(x[i : i + 1]) for i in range(x.shape[0])])
        ny, nx = x.shape[-2:]
        py, px = self._valid(ny) - ny, self._valid(nx) - nx
        if py or px:
            mode = "reflect" if py < ny and px < nx else "replicate"
            x = F.pad(x, (0, px, 0, py), mode=mode)
        x = _to_axes(x.contiguous(), self.input_axes)
        y = self.net(x)
        y = _from_axes(y, self.output_axes)
        return y[..., :ny, :nx]


def _to_axes(x: torch.Tensor, axes: Sequence[str]) -> torch.Tensor:
    """``(N, 1, H, W)`` in the order of ``axes`` (ids among batch, channel, y, x)."""
    if tuple(axes) == STANDARD_AXES:
        return x
    present = [a for a in STANDARD_AXES if a in axes]
    for gone in ("channel", "batch"):  # dropped axes have size 1
        if gone not in axes:
            x = x.squeeze(STANDARD_AXES.index(gone))
    return x.permute([present.index(a) for a in axes]).contiguous()


def _from_axes(y: torch.Tensor, axes: Sequence[str]) -> torch.Tensor:
    if tuple(axes) == STANDARD_AXES:
        return y
    present = [a for a in STANDARD_AXES if a in axes]
    y = y.permute([list(axes).index(a) for a in present])
    for gone in ("batch", "channel"):
        if gone not in axes:
            y = y.unsqueeze(STANDARD_AXES.index(gone))
    return y


def check_archive(data: bytes) -> None:
    """Refuse (UnsafeTorchScript) an archive that is not a zip whose declared contents are
    bounded, or whose code runs at load (``__setstate__``) or uses C++ classes. Only the
    code files are unpacked (each to at most its declared, bounded size)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UnsafeTorchScript("it is not a TorchScript archive (not a zip file)") from None
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise UnsafeTorchScript(f"its archive has {len(members)} files")
    total = 0
    for m in members:  # torch allocates each record by its declared size: bound those
        total += m.file_size
        # only code and its debug info are compressed by torch.jit.save (text, small)
        if total > min(MAX_ARCHIVE_BYTES, len(data) + (16 << 20)):
            raise UnsafeTorchScript(
                f"its archive declares more than {MAX_ARCHIVE_BYTES >> 20} MB of contents"
            )
        if m.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnsafeTorchScript(
                f"its archive member {m.filename[:80]} is not a plain zip entry"
            )
    code = [m for m in members if "/code/" in f"/{m.filename}" and m.filename.endswith(".py")]
    if not code:
        raise UnsafeTorchScript("its archive holds no TorchScript code")
    for m in code:
        try:
            text = archive.read(m).decode("utf-8", "replace")
        except (zipfile.BadZipFile, OSError, ValueError):
            raise UnsafeTorchScript(f"its archive member {m.filename[:80]} is corrupt") from None
        for pattern, what in CODE_DENIED:
            if pattern.search(text):
                raise UnsafeTorchScript(f"its code ({m.filename[:80]}) has {what}")


def _loop_bounded(node) -> bool:
    """A loop whose trip count is not a huge constant (a ``while`` loop's is 2**63 - 1)."""
    trips = next(iter(node.inputs()))
    producer = trips.node()
    if producer.kind() != "prim::Constant":
        return True  # counted from the data (``for i in range(x.shape[0])``)
    try:
        value = producer.i("value")
    except RuntimeError:
        return False
    return 0 <= value <= MAX_CONSTANT_TRIPS


def _check_block(block, where: str) -> None:
    for node in block.nodes():
        kind = node.kind()
        namespace = kind.split("::", 1)[0]
        if kind == "prim::Print" or kind in DENIED_ATEN:
            raise UnsafeTorchScript(f"its {where} calls {kind}, which acts outside the tensors")
        if namespace == "aten":
            pass
        elif kind in ("prim::CallMethod", "prim::CallFunction"):
            raise UnsafeTorchScript(
                f"its {where} makes a call ({kind}) that cannot be inspected before running"
            )
        elif kind not in ALLOWED_PRIM:
            raise UnsafeTorchScript(
                f"its {where} uses {kind}, which is not among the tensor operators allowed"
            )
        if kind == "prim::Loop" and not _loop_bounded(node):
            raise UnsafeTorchScript(f"its {where} has a loop without a bound (a while loop)")
        for inner in node.blocks():
            _check_block(inner, where)


def check_graphs(module) -> None:
    """Refuse (UnsafeTorchScript) a loaded ScriptModule any of whose methods, or of its
    submodules' methods, inlined, uses an operator outside the allow-list (see the module
    docstring) or a loop without a bound."""
    modules = [("", module)]
    try:
        modules += list(module.named_modules())[1:]
    except RuntimeError:
        pass
    seen = 0
    for prefix, sub in modules:
        for name in sub._c._method_names():
            method = getattr(sub, name, None)
            graph = getattr(method, "inlined_graph", None)
            if graph is None:
                graph = sub._c._get_method(name).graph
            _check_block(graph.block(), f"method {prefix + '.' if prefix else ''}{name}")
            seen += 1
    if not seen:
        raise UnsafeTorchScript("it has no method to run")


def load_checked(data: bytes):
    """A ScriptModule from TorchScript archive bytes that passed :func:`check_archive`
    and then :func:`check_graphs` (UnsafeTorchScript otherwise)."""
    check_archive(data)
    try:
        net = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, OSError, ValueError) as err:
        raise UnsafeTorchScript(
            f"its TorchScript cannot be loaded ({str(err).strip().splitlines()[0][:200]})"
        ) from None
    check_graphs(net)
    return net


def load_torchscript(
    weights: str | os.PathLike, data: bytes, card: dict[str, Any], *, device: str = "cpu"
):
    """The wrapped network and its card, from the TorchScript file ``weights`` (its bytes
    ``data``, read bounded by :func:`~.store.load_model` and checked against the card's
    SHA-256), checked again as any TorchScript is (:func:`load_checked`): the model folder
    is untrusted input."""
    try:
        net = load_checked(data)
    except UnsafeTorchScript as err:
        raise ModelFileError(f"The TorchScript file {weights} is not run: {err}.") from None
    config = card["config"]
    model = ForeignNetwork(
        net,
        step=int(config["step"]),
        min_size=int(config["min"]),
        reach=int(card.get("halo", config.get("halo", 0))),
        input_axes=config.get("input_axes", STANDARD_AXES),
        output_axes=config.get("output_axes", STANDARD_AXES),
    )
    return model.eval().to(device), card

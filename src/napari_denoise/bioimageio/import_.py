"""Import a bioimage.io denoising model (2-D, one channel in and out) as a method.

What is accepted, and how it runs here:

- Weights: TorchScript (stored as the package's bytes and run through
  :class:`~napari_denoise.engine.models.foreign.ForeignNetwork`), or ``pytorch_state_dict`` whose architecture we can
  build without running code from the package: napari-denoise's own architectures
  (``napari_denoise.engine.models.build``) and CAREamics' U-Net
  (``careamics.models.unet.UNet``, rebuilt by :mod:`~napari_denoise.engine.models.careamics_unet`).
  A state dict is read with ``torch.load(weights_only=True)`` and stored as safetensors.
  An architecture defined by a Python file inside the package runs arbitrary code: it is
  refused unless ``allow_code=True``; then the code runs once, here, the network is
  traced to TorchScript, checked, and only the TorchScript is kept.
- Pre-processing: at most one affine normalisation (``scale_range``,
  ``zero_mean_unit_variance``, ``fixed_zero_mean_unit_variance``, ``scale_linear``) and
  ``ensure_dtype`` to a float type. It becomes the model card's ``normalisation``, computed
  once per image (never per tile), as the engine does for its own models.
- Post-processing: none, or the exact inverse of a fixed normalisation. The engine maps the
  network's output back with the inverse of the input normalisation, so the output is in
  the input's units; the package's own output differs from it by that affine map when it
  has no post-processing (recorded in the card).
- One input and one output, axes among batch, channel (size 1), y and x; y and x of
  parameterised size (``min + n * step``); output the size of the input.

Everything else is refused with a sentence naming it. Nothing is fetched: the description
is read without remote checks, weights and test tensors must be inside the package.

Before the model is registered, its own test input is run through our reading of the
package and must give its test output; the tile halo is taken from the description and
then checked (and enlarged if needed) by running the network tiled and whole on the
shipped real image: seam-free means at most :data:`SEAM_TOLERANCE` grey levels (on a
0-255 scale) apart.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .common import BioimageioError, center_crop, offline_validation, sample_image

__all__ = ["import_model", "read_package"]

SEAM_TOLERANCE = 0.5  # grey levels on a 0-255 scale; the engine's contract is 1
MAX_IMPORT_HALO = 64
OUR_ARCHITECTURES = ("napari_denoise.engine.models", "build")
CAREAMICS_UNET = ("careamics.models.unet", "UNet")
CAREAMICS_ACCEPTED = {
    "architecture",
    "conv_dims",
    "num_classes",
    "in_channels",
    "depth",
    "num_channels_init",
    "residual",
    "final_activation",
    "n2v2",
    "independent_channels",
    "use_batch_norm",
    "dropout",
    "pool_kernel",
}
FLOAT_DTYPES = ("float32", "float64")


def _refuse(source: Path, what: str) -> BioimageioError:
    return BioimageioError(f"{source.name} cannot be imported: {what}")


# --- reading the description ----------------------------------------------------------------


def read_package(path: str | os.PathLike):
    """The format-0.5 model description of a package (.zip, folder or rdf.yaml), read
    without fetching anything; BioimageioError for what is not a valid model package."""
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model import v0_5

    source = Path(path).expanduser()
    if not source.exists():
        raise BioimageioError(f"{source} does not exist.")
    with offline_validation(io_checks=False):
        try:
            descr = load_description(source, format_version="latest")
        except Exception as err:  # the library raises many kinds for unreadable files
            raise BioimageioError(
                f"{source} is not a readable bioimage.io package ({type(err).__name__}: {err})."
            ) from None
    if isinstance(descr, InvalidDescr):
        errors = descr.validation_summary.errors
        first = f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}" if errors else "invalid"
        raise _refuse(source, f"its description is not valid ({first}).")
    if not isinstance(descr, v0_5.ModelDescr):
        raise _refuse(source, f"it describes a {descr.type}, not a model.")
    return descr


def _axes_and_size(source: Path, tensor, kind: str) -> tuple[list[str], dict[str, Any]]:
    from bioimageio.spec.model import v0_5

    ids = [str(a.id) for a in tensor.axes]
    types = {str(a.id): a.type for a in tensor.axes}
    extra = [a for a in ids if a not in ("batch", "channel", "y", "x")]
    if any(types[a] == "space" for a in extra):
        raise _refuse(
            source,
            f"its {kind} has a third spatial axis ({', '.join(extra)}); only 2-D models are supported.",
        )
    if extra:
        raise _refuse(
            source,
            f"its {kind} has axes {', '.join(extra)} besides y and x; only 2-D single-image models are supported.",
        )
    if "y" not in ids or "x" not in ids:
        raise _refuse(source, f"its {kind} lacks a y or x axis.")
    for a in tensor.axes:
        if a.type == "channel" and len(a.channel_names) != 1:
            raise _refuse(
                source,
                f"its {kind} has {len(a.channel_names)} channels; only single-channel models (one channel in, one out) are supported.",
            )
    sizes = {}
    for a in tensor.axes:
        if str(a.id) in ("y", "x"):
            sizes[str(a.id)] = a.size
            if isinstance(a, v0_5.WithHalo):
                sizes[f"halo_{a.id}"] = int(a.halo)
    return ids, sizes


def _normalisation(source: Path, steps) -> dict[str, Any]:
    """The card's ``normalisation`` for the input's preprocessing steps."""
    from bioimageio.spec.model import v0_5

    found: list[dict[str, Any]] = []
    for step in steps:
        kind = step.id
        kw = step.kwargs
        if kind == "ensure_dtype":
            if kw.dtype not in FLOAT_DTYPES:
                raise _refuse(
                    source,
                    f"its preprocessing converts the input to {kw.dtype}; only float inputs are supported.",
                )
            continue
        if kind == "scale_range":
            if kw.reference_tensor is not None:
                raise _refuse(
                    source,
                    "its preprocessing scales the input by another tensor's range; that is not supported.",
                )
            found.append(
                {
                    "kind": "percentile",
                    "low": float(kw.min_percentile),
                    "high": float(kw.max_percentile),
                    "eps": float(kw.eps),
                }
            )
        elif kind == "zero_mean_unit_variance":
            found.append({"kind": "mean_std", "eps": float(kw.eps)})
        elif kind == "fixed_zero_mean_unit_variance":
            mean, std = _fixed_mean_std(source, kw, v0_5)
            found.append({"kind": "fixed", "low": mean, "high": mean + std + 1e-6})
        elif kind == "scale_linear":
            gain, offset = _gain_offset(source, kw, v0_5)
            if not gain > 0:
                raise _refuse(
                    source,
                    f"its preprocessing multiplies the input by {gain}; only a positive gain is supported.",
                )
            found.append({"kind": "fixed", "low": -offset / gain, "high": (1.0 - offset) / gain})
        else:
            raise _refuse(
                source,
                f"its preprocessing step '{kind}' is not supported (supported: scale_range, zero_mean_unit_variance, fixed_zero_mean_unit_variance, scale_linear, ensure_dtype to float).",
            )
    if len(found) > 1:
        raise _refuse(
            source,
            f"its preprocessing has {len(found)} normalisation steps; at most one is supported.",
        )
    return found[0] if found else {"kind": "fixed", "low": 0.0, "high": 1.0}


def _fixed_mean_std(source: Path, kw, v0_5) -> tuple[float, float]:
    if isinstance(kw, v0_5.FixedZeroMeanUnitVarianceAlongAxisKwargs):
        if len(kw.mean) != 1:
            raise _refuse(
                source,
                "its normalisation has several values along an axis; only one channel is supported.",
            )
        return float(kw.mean[0]), float(kw.std[0])
    return float(kw.mean), float(kw.std)


def _gain_offset(source: Path, kw, v0_5) -> tuple[float, float]:
    if isinstance(kw, v0_5.ScaleLinearAlongAxisKwargs):
        if len(kw.gain) != 1 or len(kw.offset) != 1:
            raise _refuse(
                source,
                "its linear scaling has several values along an axis; only one channel is supported.",
            )
        return float(kw.gain[0]), float(kw.offset[0])
    return float(kw.gain), float(kw.offset)


def _postprocessing(source: Path, steps, norm: dict[str, Any]) -> str:
    """How the package's output relates to napari-denoise's (which maps the network's
    output back with the inverse of the input normalisation)."""
    from bioimageio.spec.model import v0_5

    affine = []
    for step in steps:
        kw = step.kwargs
        if step.id == "ensure_dtype":
            if kw.dtype not in FLOAT_DTYPES:
                raise _refuse(
                    source,
                    f"its postprocessing converts the output to {kw.dtype}; only float outputs are supported.",
                )
        elif step.id == "fixed_zero_mean_unit_variance":
            mean, std = _fixed_mean_std(source, kw, v0_5)
            affine.append((1.0 / (std + 1e-6), -mean / (std + 1e-6)))
        elif step.id == "scale_linear":
            affine.append(_gain_offset(source, kw, v0_5))
        else:
            raise _refuse(
                source,
                f"its postprocessing step '{step.id}' is not supported (supported: none, or the inverse of a fixed input normalisation).",
            )
    if not affine:
        if norm["kind"] == "fixed" and (norm["low"], norm["high"]) == (0.0, 1.0):
            return "same"
        return "affine: napari-denoise output = package output x (high - low) + low of the input normalisation"
    gain, offset = 1.0, 0.0
    for g, o in affine:
        gain, offset = g * gain, g * offset + o
    if norm["kind"] != "fixed":
        raise _refuse(
            source,
            "its postprocessing rescales the output by fixed values after a per-image input normalisation; that is not supported.",
        )
    span = norm["high"] - norm["low"]
    if not (
        np.isclose(gain, span, rtol=1e-3)
        and np.isclose(offset, norm["low"], rtol=1e-3, atol=1e-3 * abs(span))
    ):
        raise _refuse(
            source,
            "its postprocessing is not the inverse of its input normalisation; only that case is supported.",
        )
    return "same"


# --- weights --------------------------------------------------------------------------------


def _local_bytes(source: Path, entry, what: str) -> bytes:
    src = str(entry.source)
    if src.startswith(("http://", "https://")):
        raise _refuse(
            source,
            f"its {what} are on the internet ({src}); napari-denoise imports only self-contained packages, without downloading.",
        )
    with offline_validation(io_checks=False):
        return entry.get_reader().read()


def _state_dict(source: Path, data: bytes) -> dict:
    import io

    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError ... for bad files
        raise _refuse(
            source,
            f"its state dict cannot be read safely (weights_only=True: {str(err).splitlines()[0]}).",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise _refuse(source, "its pytorch_state_dict file does not hold a state dict.")
    return state


def _careamics_config(source: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - CAREAMICS_ACCEPTED)
    if unknown:
        raise _refuse(
            source,
            f"its CAREamics U-Net has options napari-denoise does not know ({', '.join(unknown)}).",
        )
    if int(kwargs.get("conv_dims", 2)) != 2:
        raise _refuse(source, "its CAREamics U-Net is 3-D; only 2-D models are supported.")
    if int(kwargs.get("in_channels", 1)) != 1 or int(kwargs.get("num_classes", 1)) != 1:
        raise _refuse(
            source,
            "its CAREamics U-Net has several channels; only single-channel models are supported.",
        )
    if int(kwargs.get("pool_kernel", 2)) != 2:
        raise _refuse(source, "its CAREamics U-Net pools by other than 2.")
    return {
        "depth": int(kwargs.get("depth", 3)),
        "num_channels_init": int(kwargs.get("num_channels_init", 64)),
        "use_batch_norm": bool(kwargs.get("use_batch_norm", True)),
        "n2v2": bool(kwargs.get("n2v2", False)),
        "final_activation": str(kwargs.get("final_activation", "None")),
        "residual": bool(kwargs.get("residual", False)),
    }


def _network_from_state_dict(source: Path, entry, allow_code: bool):
    """(kind, module or traced module, architecture, config) for a state-dict entry."""
    from bioimageio.spec.model import v0_5

    from ..engine import models

    arch = entry.architecture
    where = (getattr(arch, "import_from", None), str(arch.callable))
    kwargs = dict(arch.kwargs)
    if isinstance(arch, v0_5.ArchitectureFromFileDescr):
        if not allow_code:
            raise _refuse(
                source,
                f"its network is defined by the Python file {arch.source} inside the package. "
                "Running it would execute arbitrary code with your permissions. Import it only "
                "if you trust its authors: pass allow_code=True (CLI: --allow-code).",
            )
        return "code", _network_from_code(source, entry, arch, kwargs), None, None
    if where == OUR_ARCHITECTURES:
        name, config = kwargs.get("name"), kwargs.get("config") or {}
    elif where == CAREAMICS_UNET:
        name, config = "careamics_unet", _careamics_config(source, kwargs)
    else:
        raise _refuse(
            source,
            f"its network is {where[1]} from the Python package '{where[0]}'; napari-denoise "
            "builds only its own architectures and CAREamics' U-Net without running other "
            "packages' code. Export the model with TorchScript weights instead.",
        )
    try:
        module = models.build(name, config)
    except (KeyError, TypeError, ValueError) as err:
        raise _refuse(source, f"its architecture cannot be built ({err}).") from None
    state = _state_dict(source, _local_bytes(source, entry, "weights"))
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    bad = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad:
        detail = (
            (missing and f"missing '{missing[0]}'")
            or (unexpected and f"unexpected '{unexpected[0]}'")
            or f"shape of '{bad[0]}'"
        )
        raise _refuse(
            source, f"its state dict does not fit the {name} architecture it names ({detail})."
        )
    module.load_state_dict(state, strict=True)
    return "state_dict", module.eval(), name, config


def _network_from_code(source: Path, entry, arch, kwargs):
    """Run the package's architecture file (allowed by the user) and load the weights
    safely; the caller traces it to TorchScript, so the code runs once, here, never again."""
    code = _local_bytes(source, arch, "architecture code")
    work = Path(tempfile.mkdtemp(prefix="napari-denoise-code-"))
    file = work / Path(str(arch.source)).name
    file.write_bytes(code)
    spec = importlib.util.spec_from_file_location(f"_napari_denoise_foreign_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(work))
    try:
        spec.loader.exec_module(module)  # the user allowed this code to run
        net = getattr(module, str(arch.callable))(**kwargs)
    except Exception as err:
        raise _refuse(
            source, f"its architecture code failed ({type(err).__name__}: {err})."
        ) from None
    finally:
        sys.path.remove(str(work))
    state = _state_dict(source, _local_bytes(source, entry, "weights"))
    try:
        net.load_state_dict(state, strict=bool(getattr(entry, "strict", True)))
    except RuntimeError as err:
        raise _refuse(
            source, f"its state dict does not fit its architecture ({str(err).splitlines()[0]})."
        ) from None
    return net.eval()


# --- checks ---------------------------------------------------------------------------------


def _normalise_like_engine(image: np.ndarray, norm: dict[str, Any]) -> tuple[float, float]:
    """(low, high) the engine will use for ``image`` (see the zoo's ``_auto``)."""
    if norm["kind"] == "percentile":
        lo, hi = np.percentile(image, [norm["low"], norm["high"]])
        return float(lo), float(hi + norm.get("eps", 0.0))
    if norm["kind"] == "mean_std":
        return float(image.mean()), float(image.mean() + image.std() + norm.get("eps", 0.0))
    return float(norm["low"]), float(norm["high"])


def _run(network, image: np.ndarray, low: float, high: float) -> np.ndarray:
    """The network's output for ``image`` normalised by (low, high), in normalised units."""
    import torch

    x = torch.from_numpy(((image - low) / (high - low)).astype(np.float32))[None, None]
    with torch.inference_mode():
        return network(x)[0, 0].float().numpy()


def _check_test_tensors(source: Path, descr, network, norm, relation: str) -> float:
    """Run the package's test input; its test output must come back. Returns the error."""
    from bioimageio.spec.utils import load_array

    inp, out = descr.inputs[0], descr.outputs[0]
    with offline_validation(io_checks=False):
        try:
            x = np.asarray(load_array(inp.test_tensor), np.float32)
            want = np.asarray(load_array(out.test_tensor), np.float32)
        except Exception as err:
            raise _refuse(source, f"its test tensors cannot be read ({err}).") from None
    x, want = np.squeeze(x), np.squeeze(want)
    if x.ndim != 2 or want.shape != x.shape:
        raise _refuse(
            source,
            f"its test tensors are not one 2-D image in and out ({x.shape} -> {want.shape}).",
        )
    low, high = _normalise_like_engine(x, norm)
    z = _run(network, x, low, high)
    # "same": the package maps the output back as the engine does; else it stays normalised
    got = z * (high - low) + low if relation == "same" else z
    tolerance = _tolerance(descr)
    scale = float(np.abs(want).max()) or 1.0
    bad = np.abs(got - want) > tolerance[0] + tolerance[1] * np.abs(want)
    error = float(np.abs(got - want).max() / scale)
    if bad.mean() * 1e6 > tolerance[2]:
        raise _refuse(
            source,
            "napari-denoise's reading of the package does not reproduce its own test output "
            f"({int(bad.sum())} of {bad.size} pixels differ; largest difference "
            f"{float(np.abs(got - want).max()):.3g}). The package is not imported.",
        )
    return error


def _tolerance(descr) -> tuple[float, float, float]:
    tol = (1e-3, 1e-3, 100.0)
    try:
        for t in descr.config.bioimageio.reproducibility_tolerance:
            tol = (
                float(t.absolute_tolerance),
                float(t.relative_tolerance),
                float(t.mismatched_elements_per_million),
            )
            break
    except AttributeError:
        pass
    return tol


def measure_halo(network, norm: dict[str, Any], *, step: int, start: int) -> dict[str, Any]:
    """A halo (a multiple of ``step``, from ``start``, grown by half each try) for which
    the engine's tiling gives the whole-image result within :data:`SEAM_TOLERANCE` grey
    levels, on the central 256 x 256 of the shipped real image cut into tiles 32 pixels
    larger than their overlap, so that every try crosses about seven seams per axis (a
    crop with one seam per axis passed a halo that left 1.3 grey levels on the whole
    image)."""
    from ..engine.denoise.pipeline import RAMP, drain
    from ..engine.denoise.tiling import plan_tiles, run_tiled

    image = center_crop(sample_image(), 256)
    low, high = _normalise_like_engine(image, norm)
    whole = _run(network, image, low, high)
    scale = 255.0 / max(float(whole.max() - whole.min()), 1e-12)
    halo = max(-(-max(start, 8) // step) * step, step)
    trail = []
    while True:
        overlap = 2 * halo + RAMP
        tile = overlap + max(32, 4 * step)
        geometry = {"tile": (tile, tile), "overlap": (overlap,) * 2, "halo": (halo, halo)}
        tiles = plan_tiles(image.shape, multiple=step, grow=False, **geometry)
        assert len(tiles) > 1
        gen = run_tiled(
            image,
            lambda t, lo=low, hi=high: _run(network, t, lo, hi),
            multiple=step,
            grow=False,  # many seams on this small image: stricter than the engine's tiles
            **geometry,
        )
        tiled = drain(gen)
        error = float(np.abs(tiled - whole).max() * scale)
        trail.append({"halo": halo, "tile": tile, "max_error_grey_levels": round(error, 4)})
        if error <= SEAM_TOLERANCE or halo >= MAX_IMPORT_HALO:
            return {"halo": halo, "trail": trail, "seam_free": error <= SEAM_TOLERANCE}
        halo = min(-(-int(halo * 1.5) // step) * step, MAX_IMPORT_HALO)  # few trials


# --- the import -----------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "imported-model"


def import_model(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    allow_code: bool = False,
    overwrite: bool = False,
) -> str:
    """Register a bioimage.io model package as a method; return the method's name.

    Parameters
    ----------
    path : path
        The package: a ``.zip``, a folder or its ``rdf.yaml``.
    name : str, optional
        The method's name (default: the package's id, else its name, as lower-case words
        joined by ``-``).
    allow_code : bool
        Run an architecture defined by a Python file inside the package. That code can do
        anything your user account can; allow it only for packages from people you trust.
    overwrite : bool
        Replace an imported model of the same name.

    The model goes into the user model folder (:func:`~napari_denoise.engine.models.store.user_model_dir`)
    with a card recording where it came from (package file and its SHA-256, the model's
    id, version and weights hash), which every output's provenance carries.
    """
    import torch

    from ..engine.models import registry, store

    source = Path(path).expanduser().resolve()
    descr = read_package(source)
    if len(descr.inputs) != 1:
        raise _refuse(
            source,
            f"it has {len(descr.inputs)} inputs; only models with one input image are supported.",
        )
    if len(descr.outputs) != 1:
        raise _refuse(
            source,
            f"it has {len(descr.outputs)} outputs; only models with one output image are supported.",
        )
    in_axes, in_sizes = _axes_and_size(source, descr.inputs[0], "input")
    out_axes, out_sizes = _axes_and_size(source, descr.outputs[0], "output")
    step, min_size = _size_rule(source, in_sizes, out_sizes, descr.inputs[0].id)
    norm = _normalisation(source, descr.inputs[0].preprocessing)
    relation = _postprocessing(source, descr.outputs[0].postprocessing, norm)

    method_name = _slug(name or str(descr.id or "") or descr.name)
    _check_name(source, method_name, overwrite)

    weights = descr.weights
    if weights.torchscript is not None:
        kind, entry = "torchscript", weights.torchscript
    elif weights.pytorch_state_dict is not None:
        kind, entry = "pytorch_state_dict", weights.pytorch_state_dict
    else:
        formats = [f for f, e in weights if e is not None]
        raise _refuse(
            source,
            f"its weights are {', '.join(formats)}; napari-denoise runs TorchScript or pytorch_state_dict weights.",
        )
    if kind == "pytorch_state_dict" and (
        in_axes != list(("batch", "channel", "y", "x")) or out_axes != in_axes
    ):
        raise _refuse(
            source, f"its state-dict network takes axes {in_axes}, not batch, channel, y, x."
        )
    data = _local_bytes(source, entry, "weights")
    weights_sha = hashlib.sha256(data).hexdigest()

    from ..engine.models.foreign import ForeignNetwork

    if kind == "torchscript":
        import io

        try:
            net = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as err:
            raise _refuse(
                source, f"its TorchScript weights cannot be loaded ({str(err).splitlines()[0]})."
            ) from None
        stored, architecture = "torchscript", None
    else:
        stored, net, architecture, _ = _network_from_state_dict(source, entry, allow_code)
    if stored in ("torchscript", "code"):
        network = ForeignNetwork(
            net, step=step, min_size=min_size, reach=0, input_axes=in_axes, output_axes=out_axes
        ).eval()
    else:
        network = net
        step = max(step, int(getattr(net, "multiple", 1)))

    test_error = _check_test_tensors(source, descr, padded(network, step, min_size), norm, relation)
    if stored == "code":
        net, data = _trace(source, network, step, min_size)
        network = ForeignNetwork(
            net, step=step, min_size=min_size, reach=0, input_axes=in_axes, output_axes=out_axes
        ).eval()
        stored = "torchscript"
        # the traced network is kept; its own test must still pass
        test_error = _check_test_tensors(source, descr, network, norm, relation)

    described = max(out_sizes.get("halo_y", 0), out_sizes.get("halo_x", 0))
    halo = measure_halo(padded(network, step, min_size), norm, step=step, start=described)
    if stored == "torchscript":
        network.reach = halo["halo"]
    if not halo["seam_free"]:
        warnings.warn(
            f"Model '{method_name}' from {source.name} is not seam-free with a halo of "
            f"{halo['halo']} pixels (tiles differ from the whole image by up to "
            f"{halo['trail'][-1]['max_error_grey_levels']:.2g} grey levels): its output "
            "depends on the whole image (attention or global pooling), so it will run each "
            "plane whole, never in tiles.",
            stacklevel=2,
        )

    card = {
        "name": method_name,
        "title": f"{descr.name} (bioimage.io)",
        "description": (descr.description or descr.name)[:500],
        "normalisation": norm,
        "halo": halo["halo"],
        # Never a silent seam: a model no halo makes exact runs whole planes.
        **(
            {}
            if halo["seam_free"]
            else {
                "tileable": False,
                "tileable_reason": "tiles differ from the whole image whatever the halo "
                "(measured at import): the output depends on the whole image",
            }
        ),
        "halo_measured": {
            "criterion": f"tiled vs whole max error <= {SEAM_TOLERANCE} grey levels (0-255 scale)",
            "data": "the shipped real sample image (FMD confocal), central 256 x 256",
            "described": described,
            **halo,
        },
        "imported_from": {
            "source": str(source),
            "package_sha256": _file_sha256(source) if source.is_file() else None,
            "id": str(descr.id) if descr.id else None,
            "name": descr.name,
            "version": str(descr.version) if descr.version else None,
            "format_version": descr.format_version,
            "weights_format": kind,
            "weights_sha256": weights_sha,
            "architecture_code_run": kind == "pytorch_state_dict" and architecture is None,
            "output_relation": relation,
            "test_output_max_relative_error": round(test_error, 8),
            "authors": [a.name for a in descr.authors],
            "license": str(descr.license) if descr.license else None,
            "cite": [c.text for c in descr.cite],
            "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "training": {"data": [f"unknown (imported from bioimage.io package {source.name})"]},
    }
    folder = store.user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if stored == "torchscript":
        _save_torchscript(folder, method_name, data, card, step, min_size, in_axes, out_axes)
    else:
        store.save_model(network, card, folder / f"{method_name}.safetensors")
    registry.register_models()
    return method_name


def _size_rule(source, in_sizes, out_sizes, input_id) -> tuple[int, int]:
    from bioimageio.spec.model import v0_5

    rules = []
    for a in ("y", "x"):
        size = in_sizes[a]
        if isinstance(size, int):
            raise _refuse(
                source,
                f"its input has a fixed {a} size of {size} pixels; napari-denoise needs a model that accepts images of varying size (min + n x step).",
            )
        if not isinstance(size, v0_5.ParameterizedSize):
            raise _refuse(
                source,
                f"its input {a} size is given as a reference to another tensor; that is not supported.",
            )
        rules.append((int(size.step), int(size.min)))
        out = out_sizes[a]
        if not (
            isinstance(out, v0_5.SizeReference)
            and str(out.tensor_id) == str(input_id)
            and str(out.axis_id) == a
            and int(out.offset) == 0
        ):
            raise _refuse(
                source,
                f"its output's {a} size is not the input's; only models whose output has the input's size are supported.",
            )
    if rules[0] != rules[1]:
        raise _refuse(source, "its y and x size rules differ; that is not supported.")
    return rules[0]


def _check_name(source: Path, name: str, overwrite: bool) -> None:
    from ..engine.methods import is_registered, list_methods
    from ..engine.models import store

    list_methods()  # load filters and models
    card = store.user_model_dir() / f"{name}.json"
    if card.exists():
        if not overwrite:
            raise _refuse(
                source,
                f"a user model named '{name}' exists ({card}); pass another name or overwrite.",
            )
        return
    if is_registered(name):
        raise _refuse(source, f"a method named '{name}' exists; pass another name.")


def padded(network, step: int, min_size: int = 1):
    """A network that accepts any size (pads to a multiple of ``step`` like run_model)."""
    import torch.nn.functional as F

    multiple = int(getattr(network, "multiple", step))

    def run(x):
        ny, nx = x.shape[-2:]
        py, px = (-ny) % multiple, (-nx) % multiple
        if py or px:
            x = F.pad(x, (0, px, 0, py), mode="reflect")
        return network(x)[..., :ny, :nx]

    return run


def _trace(source: Path, network, step: int, min_size: int):
    import io

    import torch

    size = min_size + 4 * step
    example = torch.rand(1, 1, size, size)
    other = torch.rand(1, 1, size + 2 * step, size + step)
    with torch.no_grad():
        traced = torch.jit.trace(network.net, _to(network, example), check_trace=False)
        err = float((network.net(_to(network, other)) - traced(_to(network, other))).abs().max())
    if not err < 1e-4:
        raise _refuse(
            source,
            f"its network cannot be traced to TorchScript reliably (error {err:.3g} at another size).",
        )
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return traced, buffer.getvalue()


def _to(network, x):
    from ..engine.models.foreign import _to_axes

    return _to_axes(x, network.input_axes)


def _file_sha256(path: Path) -> str:
    from ..engine.models.store import sha256_file

    return sha256_file(path)


def _save_torchscript(folder, name, data, card, step, min_size, in_axes, out_axes) -> None:
    from ..atomic import atomic_write
    from ..engine.models import store

    weights = folder / f"{name}.torchscript.pt"
    atomic_write(weights, lambda fh: fh.write(data), make_parents=True)
    out = dict(card)
    out.update(
        format=store.CARD_FORMAT,
        architecture="torchscript",
        config={"step": step, "min": min_size, "input_axes": in_axes, "output_axes": out_axes},
        multiple=step,
        reach=card["halo"],
        takes_noise_level=False,
        noise_input=None,
        weights={
            "file": weights.name,
            "format": "torchscript",
            "sha256": store.sha256_file(weights),
            "bytes": weights.stat().st_size,
        },
    )
    text = json.dumps(out, indent=2) + "\n"
    atomic_write(folder / f"{name}.json", lambda fh: fh.write(text.encode("utf-8")))

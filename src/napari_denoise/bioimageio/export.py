"""Export a blind 2-D model as a bioimage.io model package (format 0.5).

The intensity contract
----------------------
napari-denoise normalises each image by its own 0.1 and 99.9 percentiles, runs the network
in those units and maps the result back. The percentiles belong to the whole image, not
to a tile: a consumer that tiles (deepImageJ, bioimageio.core with blocks) must compute
them once per image. The format's ``scale_range`` preprocessing says exactly that (per
sample, over ``y`` and ``x``), so the package carries the normalisation in its
description, and the TorchScript / state-dict network is the bare network (normalised in,
normalised out). The format has no step that undoes a per-image ``scale_range``, so the
package's output stays in the normalised units: 0 is the input's 0.1th percentile and 1
its 99.9th. napari-denoise's own output is that times (p99.9 - p0.1) plus p0.1, an affine
map of the package's output; the README says so, and the tests check the agreement with
range-invariant PSNR.

Size rules: ``y`` and ``x`` are ``min + n * step`` with ``step`` the network's
downsampling factor (a U-Net of depth 3: 8) and ``min`` the smallest such size larger than
twice the halo; the output's halo is measured by the importer's max-error rule (tiled vs
whole within half a grey level on the real sample image), from the card's halo up, in
multiples of ``step``:
bioimageio.core pads every input by the halo, and a U-Net shifted by a number of pixels
that is not a multiple of its downsampling factor gives another result (measured: up to 9
grey levels inside a 512 x 512 image for unet-fluo with a halo of 12 instead of 16).

Models that need a second input (the noise-map U-Net, DRUNet's noise level) are refused:
their extra input is estimated from the image by napari-denoise, an estimate no other
consumer of the package would make.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    BioimageioError,
    center_crop,
    check_output_path,
    offline_validation,
    sample_image,
)

__all__ = ["export_model", "package_geometry"]

LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9
SCALE_RANGE_EPS = 1e-6  # the format's default, in (x - lo) / (hi - lo + eps)
TEST_SIZE = 256

# Citations by architecture (DOIs only: a DOI is checked by its form, a URL would be
# fetched by the validator).
ARCHITECTURE_CITATIONS = {
    "unet": [
        (
            "Weigert et al., Content-aware image restoration, Nature Methods 2018",
            "10.1038/s41592-018-0216-7",
        ),
        (
            "Krull et al., Noise2Void - learning denoising from single noisy images, CVPR 2019",
            "10.1109/CVPR.2019.00223",
        ),
    ],
    "dncnn": [
        (
            "Zhang et al., Beyond a Gaussian denoiser: residual learning of deep CNN for image denoising, IEEE TIP 2017",
            "10.1109/TIP.2017.2662206",
        ),
    ],
    "ridnet": [
        (
            "Anwar & Barnes, Real image denoising with feature attention, ICCV 2019",
            "10.1109/ICCV.2019.00325",
        ),
    ],
    "restormer_lite": [
        (
            "Zamir et al., Restormer: efficient transformer for high-resolution image restoration, CVPR 2022",
            "10.1109/CVPR52688.2022.00564",
        ),
    ],
    "msred": [],
}
DATA_CITATIONS = [
    (
        "Zhou et al., W2S: microscopy data with joint denoising and super-resolution for widefield to SIM mapping, ECCV Workshops 2020 (training data)",
        "10.1007/978-3-030-66415-2_31",
    ),
    (
        "Martin et al., A database of human segmented natural images (BSD), ICCV 2001 (training data)",
        "10.1109/ICCV.2001.937655",
    ),
    (
        "Zhang et al., A Poisson-Gaussian denoising dataset with real fluorescence microscopy images (FMD), CVPR 2019 (test image only)",
        "10.1109/CVPR.2019.01198",
    ),
]


def package_geometry(card: dict, module) -> dict[str, Any]:
    """``step``, ``min`` and ``halo`` of the package's spatial axes for a model, and the
    halo measurement (``measured``).

    The halo starts from the card's (measured by PSNR when the model was made) or the
    reach capped as the zoo caps it, and is then checked, and grown if needed, by the
    importer's max-error criterion (:func:`.import_.measure_halo`: tiled vs whole on the
    real sample image within half a grey level), so a consumer that tiles with it is
    seam-free by the same rule as napari-denoise.
    """
    from ..engine.models.registry import MAX_HALO
    from .import_ import measure_halo, padded

    step = int(card.get("multiple", getattr(module, "multiple", 1)) or 1)
    start = int(card.get("halo", min(int(card.get("reach", MAX_HALO)), MAX_HALO)))
    norm = {"kind": "percentile", "low": LOW_PERCENTILE, "high": HIGH_PERCENTILE}
    measured = measure_halo(padded(module, step), norm, step=step, start=start)
    # A consumer pads the input by the halo (bioimageio.core does, even for a whole image)
    # or starts tiles at multiples of it; a U-Net is only equivariant to shifts by its
    # downsampling factor, so the halo is a multiple of the step (measure_halo keeps it so).
    halo = max(-(-measured["halo"] // step) * step, 1)
    size = step
    while size - 2 * halo < 1:
        size += step
    return {"step": step, "min": size, "halo": halo, "measured": measured}


def _valid_size(target: int, geometry: dict[str, int]) -> int:
    n = max(0, round((target - geometry["min"]) / geometry["step"]))
    return geometry["min"] + n * geometry["step"]


def normalise(image: np.ndarray) -> np.ndarray:
    """The package's preprocessing, as bioimageio.core applies it (``scale_range``)."""
    lo, hi = np.percentile(image, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return ((image - lo) / (hi - lo + SCALE_RANGE_EPS)).astype(np.float32)


def _bare_network(name: str):
    """The model (contiguous layout, CPU, eval) and its card; refuses what cannot go out."""
    from ..engine.methods import get_method
    from ..engine.models.store import load_model, read_card

    method = get_method(name)
    if method.kind != "model":
        raise BioimageioError(
            f"'{name}' is a classical filter; only models (networks) can be exported."
        )
    card_path = method.model.card
    card = read_card(card_path)
    if card.get("imported_from"):
        raise BioimageioError(
            f"Model '{name}' was imported from a bioimage.io package "
            f"({card['imported_from'].get('source', 'unknown file')}); share that package "
            "instead of exporting it again."
        )
    if card.get("window"):
        raise BioimageioError(
            f"Model '{name}' restores each frame from a window of "
            f"{card['window'].get('frames', '?')} neighbouring frames that napari-denoise builds "
            "(reflected at the stack's ends, all normalised as the stack); a bioimage.io "
            "package could carry them as channels, but its consumers would not build the "
            "windows the same way, so it is not exported; export unet-fluo for single frames."
        )
    if card.get("noise_input") or card.get("takes_noise_level"):
        raise BioimageioError(
            f"Model '{name}' is not blind: it takes a second input, the image's noise "
            f"({card.get('noise_input') or 'noise level'}) that napari-denoise estimates from "
            "each image. A bioimage.io package would need every consumer to make that same "
            "estimate, so it is not exported; export a blind model such as unet-fluo."
        )
    import torch

    model, card = load_model(card_path, device="cpu")
    model = model.to(memory_format=torch.contiguous_format).eval()
    return model, card


def _torchscript(model, example, check):
    """Trace the network, then check the trace on an input of another size."""
    import torch

    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        want = model(check)
        got = traced(check)
    err = float((want - got).abs().max())
    if not err < 1e-4:
        raise BioimageioError(
            f"The TorchScript trace of this network depends on the input size (error "
            f"{err:.3g} on a {tuple(check.shape[-2:])} input); it cannot be exported."
        )
    return traced


def _cover(noisy: np.ndarray, denoised: np.ndarray, path: Path) -> None:
    """Input and output side by side (2:1), each scaled by its own percentiles."""
    from PIL import Image

    def to_uint8(a):
        lo, hi = np.percentile(a, [0.5, 99.5])
        return (np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255).round().astype(np.uint8)

    gap = np.full((noisy.shape[0], 4), 255, np.uint8)
    side = np.concatenate([to_uint8(noisy), gap, to_uint8(denoised)], axis=1)
    pad = 2 * side.shape[0] - side.shape[1]
    side = np.pad(side, ((0, 0), (0, max(pad, 0))), constant_values=255)
    Image.fromarray(side).save(path)


def _readme(card: dict, geometry: dict, citations: list[tuple[str, str]]) -> str:
    training = card.get("training", {})
    validation = card.get("validation", {})
    lines = [
        f"# {card.get('title', card['name'])}",
        "",
        card.get("description", ""),
        "",
        f"Exported by napari-denoise from its model `{card['name']}` "
        f"(architecture `{card['architecture']}`, {card.get('parameters', '?')} parameters, "
        f"safetensors SHA-256 `{card['weights']['sha256']}`).",
        "",
        "## Input and output intensities",
        "",
        "- Input: one 2-D single-channel image (axes batch, channel, y, x) in any units. "
        f"The package's preprocessing scales each image by its own {LOW_PERCENTILE} and "
        f"{HIGH_PERCENTILE} percentiles (`scale_range` over y and x, per sample): "
        "`(x - p0.1) / (p99.9 - p0.1 + 1e-6)`. Compute these percentiles on the whole image, "
        "not per tile.",
        "- Output: the denoised image in the same normalised units: 0 is the input's "
        f"{LOW_PERCENTILE}th percentile, 1 its {HIGH_PERCENTILE}th. To get the input's units, "
        "multiply by (p99.9 - p0.1) and add p0.1: that is what `napari-denoise denoise` "
        + (
            "returns with this model and `--param detail=0 --param gaussian_share=0` (by "
            "default napari-denoise also puts back part of what the network removed and, "
            "where it is estimated better, mixes in a Gaussian blur of the input, both "
            "chosen per image; the package holds the network alone)."
            if card.get("detail") and card.get("gaussian_fallback")
            else "returns with this model and `--param detail=0` (by default napari-denoise "
            "also puts back part of what the network removed, chosen per image; the "
            "package holds the network alone)."
            if card.get("detail")
            else "returns with this model."
        )
        + (
            " On a time-lapse or z-stack, napari-denoise first averages each plane with the "
            "matching parts of its neighbouring planes (`--param neighbours=off` turns that "
            "off); the package denoises each plane alone, as a bioimage.io model sees one "
            "image at a time."
            if card.get("fuse_neighbours")
            else ""
        ),
        f"- Sizes: y and x are {geometry['min']} + n x {geometry['step']} pixels "
        f"(the network downsamples by {geometry['step']}); tiles need a halo of "
        f"{geometry['halo']} pixels per side to be seam-free (measured: tiled and whole "
        "within half a grey level on a real image; see below).",
        "",
        "## Training data",
        "",
    ]
    lines += [f"- {d}" for d in training.get("data", [])] or ["- not recorded"]
    if training.get("validation_data"):
        lines += [f"- validation: {training['validation_data']}"]
    if training.get("not_used"):
        lines += [f"- not used: {training['not_used']}"]
    lines += ["", "## Training recipe", ""]
    recipe = {
        k: training[k] for k in ("recipe", "seed", "steps", "seconds", "command") if k in training
    }
    lines += ["```json", json.dumps(recipe, indent=2), "```", ""]
    lines += ["## Validation", ""]
    if validation:
        lines += [f"- {k}: {v}" for k, v in validation.items()]
    else:
        lines += ["- no validation numbers were recorded for this model"]
    lines += ["", f"Halo measurement: `{json.dumps(geometry['measured'])}`"]
    lines += [
        "",
        "The test tensors of this package are a 2-D crop of a real confocal capture "
        "(FMD, mouse brain, shipped with napari-denoise as sample data) and this model's "
        "output for it.",
        "",
        "## Citations",
        "",
    ]
    lines += [f"- {text}, doi:{doi}" for text, doi in citations]
    lines += [
        "",
        "## Licence and authors",
        "",
        "Weights and code: BSD-3-Clause, the napari-denoise developers.",
        "",
    ]
    return "\n".join(lines)


def export_model(
    model_name: str,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    test_size: int = TEST_SIZE,
) -> Path:
    """Write model ``model_name`` as a bioimage.io model package (a ``.zip``, format 0.5).

    Parameters
    ----------
    model_name : str
        A registered model (shipped, or trained or fine-tuned by the user) that is blind:
        one image in, one out.
    path : path
        The ``.zip`` to write; refused if it exists unless ``overwrite``. Written
        atomically: a failed export leaves nothing behind.
    test_size : int
        Side of the test tensors (a crop of the shipped real sample image), rounded to a
        size the network accepts.

    Returns
    -------
    Path
        The package written.
    """
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    from .._version import __version__

    out = check_output_path(Path(path), overwrite=overwrite)
    model, card = _bare_network(model_name)
    geometry = package_geometry(card, model)
    size = _valid_size(min(test_size, 512), geometry)
    noisy = center_crop(sample_image(), size)
    x = torch.from_numpy(normalise(noisy))[None, None]
    check_size = _valid_size(size // 2 + geometry["step"], geometry)
    check = torch.from_numpy(normalise(center_crop(sample_image(), check_size)))[None, None]
    traced = _torchscript(model, x, check)
    with torch.no_grad():
        y = traced(x).numpy().astype(np.float32)

    work = Path(tempfile.mkdtemp(prefix="napari-denoise-export-"))
    try:
        files = {
            "input": work / "test_input.npy",
            "output": work / "test_output.npy",
            "torchscript": work / f"{card['name']}.torchscript.pt",
            "state_dict": work / f"{card['name']}.state_dict.pt",
            "cover": work / "cover.png",
            "readme": work / "README.md",
            "card": work / "napari-denoise-card.json",
        }
        np.save(files["input"], noisy[None, None].astype(np.float32))
        np.save(files["output"], y)
        traced.save(str(files["torchscript"]))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        torch.save(state, files["state_dict"])
        _cover(noisy, y[0, 0], files["cover"])
        citations = ARCHITECTURE_CITATIONS.get(card["architecture"], []) + DATA_CITATIONS
        files["readme"].write_text(_readme(card, geometry, citations), encoding="utf-8")
        files["card"].write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")

        tmp = out.with_name(f".{out.name}.partial")
        with offline_validation():
            descr = _description(spec, card, geometry, files, citations, __version__)
            save_bioimageio_package(descr, output_path=tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(out.with_name(f".{out.name}.partial")).unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _description(spec, card: dict, geometry: dict, files: dict, citations, version: str):
    """The format-0.5 model description (raises BioimageioError if the format refuses it)."""
    import torch
    from pydantic import ValidationError

    pytorch_version = spec.Version(torch.__version__.split("+")[0])
    space = spec.ParameterizedSize(min=geometry["min"], step=geometry["step"])
    input_id, output_id = spec.TensorId("input"), spec.TensorId("output")
    channel = spec.ChannelAxis(channel_names=[spec.Identifier("intensity")])
    try:
        inputs = spec.InputTensorDescr(
            id=input_id,
            description="One noisy 2-D fluorescence image, any intensity units.",
            axes=[
                spec.BatchAxis(),
                channel,
                spec.SpaceInputAxis(id=spec.AxisId("y"), size=space),
                spec.SpaceInputAxis(id=spec.AxisId("x"), size=space),
            ],
            test_tensor=spec.FileDescr(source=files["input"]),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            # mode given explicitly: a default-only node is written as `pad: {}`, which
            # bioimageio.spec 0.5.12 reads back as constant (zero) padding
            pad=spec.ReflectPadding(mode="reflect"),  # as napari-denoise pads
            preprocessing=[
                spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32")),
                spec.ScaleRangeDescr(
                    kwargs=spec.ScaleRangeKwargs(
                        axes=[spec.AxisId("y"), spec.AxisId("x")],
                        min_percentile=LOW_PERCENTILE,
                        max_percentile=HIGH_PERCENTILE,
                        eps=SCALE_RANGE_EPS,
                    )
                ),
            ],
        )
        out_axes = [
            spec.BatchAxis(),
            channel,
            *(
                spec.SpaceOutputAxisWithHalo(
                    id=spec.AxisId(a),
                    size=spec.SizeReference(tensor_id=input_id, axis_id=spec.AxisId(a)),
                    halo=geometry["halo"],
                )
                for a in ("y", "x")
            ),
        ]
        outputs = spec.OutputTensorDescr(
            id=output_id,
            description="Denoised image in normalised units: 0 = input's p0.1, 1 = input's p99.9 (see README).",
            axes=out_axes,
            test_tensor=spec.FileDescr(source=files["output"]),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
        )
        architecture = spec.ArchitectureFromLibraryDescr(
            import_from="napari_denoise.engine.models",
            callable=spec.Identifier("build"),
            kwargs={"name": card["architecture"], "config": card["config"]},
        )
        weights = spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=files["state_dict"],
                architecture=architecture,
                pytorch_version=pytorch_version,
            ),
            torchscript=spec.TorchscriptWeightsDescr(
                source=files["torchscript"],
                pytorch_version=pytorch_version,
                parent="pytorch_state_dict",
            ),
        )
        return spec.ModelDescr(
            name=_display_name(card),
            description=_short(
                f"{card.get('title', card['name'])}: blind 2-D fluorescence denoiser "
                "exported by napari-denoise"
            ),
            authors=[spec.Author(name="napari-denoise developers")],
            cite=[spec.CiteEntry(text=t, doi=spec.Doi(d)) for t, d in citations],
            license=spec.LicenseId("BSD-3-Clause"),
            documentation=spec.FileDescr(source=files["readme"]),
            covers=[spec.FileDescr(source=files["cover"])],
            attachments=[spec.FileDescr(source=files["card"])],
            tags=["denoising", "fluorescence-light-microscopy", "2d", "pytorch", "napari-denoise"],
            version=spec.Version(version),
            inputs=[inputs],
            outputs=[outputs],
            weights=weights,
            config=spec.Config(
                bioimageio=spec.BioimageioConfig(),
                **{
                    "napari-denoise": {
                        "model": card["name"],
                        "architecture": card["architecture"],
                        "config": card["config"],
                        "safetensors_sha256": card["weights"]["sha256"],
                        "normalisation": card.get("normalisation"),
                        "halo": geometry["halo"],
                        "halo_measured": geometry["measured"],
                        "output_units": "normalised (0 = input p0.1, 1 = input p99.9)",
                    }
                },
            ),
        )
    except ValidationError as err:
        raise BioimageioError(
            f"The bioimage.io format refused the description of '{card['name']}': "
            f"{_first_error(err)}"
        ) from None


def _display_name(card: dict[str, Any]) -> str:
    # The format allows letters, digits, spaces and a few signs in a name.
    title = card.get("title", card["name"])
    keep = "".join(c if c.isalnum() or c in " _-()" else " " for c in title)
    return " ".join(keep.split())[:128] or card["name"]


def _short(text: str, limit: int = 128) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _first_error(err) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg')}"

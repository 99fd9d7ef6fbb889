"""bioimage.io model packages: export, validation and test_model offline, import, round trip.

The packages are written once per session (``exported``); every bioimage.io call runs under
:func:`block_network`, which makes any connection attempt fail at once and records it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bioimageio.core")

import napari_denoise as nd
from napari_denoise.bioimageio import BioimageioError
from napari_denoise.bioimageio.common import (
    block_network,
    center_crop,
    offline_validation,
    sample_image,
)
from napari_denoise.cli import main
from napari_denoise.engine.metrics import compare
from napari_denoise.engine.models.store import sha256_file

BLIND_SHIPPED = ["unet-fluo", "dncnn-fluo", "msred-fluo", "restormer-fluo", "ridnet-fluo"]


@pytest.fixture(scope="session", autouse=True)
def bioimageio_cache(tmp_path_factory):
    """bioimageio.spec's download cache in a temporary folder (nothing under ~)."""
    from bioimageio.spec import settings

    old = settings.cache_path
    settings.cache_path = tmp_path_factory.mktemp("bioimageio-cache")
    yield
    settings.cache_path = old


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(name)``: the package of a shipped model, written once per session."""
    folder = tmp_path_factory.mktemp("packages")
    done: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in done:
            with block_network() as attempts:
                done[name] = nd.export_model(name, folder / f"{name}.zip")
            assert attempts == []
        return done[name]

    return get


def _rdf(package: Path) -> dict:
    import yaml

    with zipfile.ZipFile(package) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _core_predict(package: Path, image: np.ndarray, weight_format: str = "torchscript"):
    from bioimageio.core import create_prediction_pipeline, predict
    from bioimageio.spec import load_description

    with offline_validation():
        descr = load_description(package)
    pp = create_prediction_pipeline(descr, weight_format=weight_format)
    out = predict(model=pp, inputs=image[None, None].astype(np.float32))
    return out.members[next(iter(out.members))].data.values[0, 0]


# --- export ---------------------------------------------------------------------------------


def test_export_is_a_valid_0_5_package_with_the_size_rules_and_a_readme(exported):
    package = exported("unet-fluo")
    rdf = _rdf(package)
    assert rdf["format_version"].startswith("0.5")
    assert set(rdf["weights"]) == {"torchscript", "pytorch_state_dict"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] == (
        "napari_denoise.engine.models"
    )
    y = rdf["inputs"][0]["axes"][2]
    assert y["id"] == "y" and y["size"]["step"] == 8  # depth-3 U-Net: sides multiple of 8
    halo = rdf["outputs"][0]["axes"][2]["halo"]
    assert halo % 8 == 0 and halo >= 12  # card's measured 12, rounded up to the step
    assert y["size"]["min"] > 2 * halo
    # written out in full: bioimageio.spec 0.5.12 writes a default-only ReflectPadding as
    # `pad: {}` and reads that back as zero padding
    assert rdf["inputs"][0]["pad"] == {"mode": "reflect"}
    pre = [p["id"] for p in rdf["inputs"][0]["preprocessing"]]
    assert "scale_range" in pre
    with zipfile.ZipFile(package) as z:
        readme = z.read("README.md").decode()
        test_input = np.load(z.open("test_input.npy"))
        assert "cover.png" in z.namelist()
    for words in ("## Validation", "W2S", "normalised units", "BSD-3-Clause", "doi:"):
        assert words in readme
    # The package is the network alone; napari-denoise's default also puts detail back,
    # so the README names the setting that matches the package (not the default's output).
    assert "--param detail=0" in readme
    # nor does it fuse a stack's neighbouring planes, as the default does (issue 24)
    assert "--param neighbours=off" in readme and "each plane alone" in readme
    # the test input is a crop of the real shipped image, not a synthetic one
    size = test_input.shape[-1]
    np.testing.assert_array_equal(test_input[0, 0], center_crop(sample_image(), size))


def test_validation_and_test_model_pass_offline(exported):
    from bioimageio.core import test_model
    from bioimageio.spec import load_description

    package = exported("unet-fluo")
    with block_network() as attempts:
        with offline_validation():  # with io checks: the local files are read and hashed
            descr = load_description(package)
        summary = test_model(package)
    assert descr.validation_summary.status == "valid-format"
    failed = [(d.name, d.errors[:1]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    assert attempts == []


def test_bioimageio_core_prediction_matches_our_denoise(exported):
    image = center_crop(sample_image(), 256)
    ours = nd.denoise(image, "unet-fluo")
    with block_network():
        for weights in ("torchscript", "pytorch_state_dict"):
            theirs = _core_predict(exported("unet-fluo"), image, weights)
            # the package's output is in normalised units: an affine map of ours
            score = compare(ours, theirs, data_range=float(ours.max() - ours.min()))
            assert score["psnr_ri"] >= 45, (weights, score["psnr_ri"])


@pytest.mark.parametrize("model", ["unet-fluo-nm", "drunet-fluo"])
def test_export_refuses_models_with_a_second_input(model, tmp_path):
    with pytest.raises(BioimageioError, match="not blind"):
        nd.export_model(model, tmp_path / "x.zip")
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_filters_and_existing_files(tmp_path):
    with pytest.raises(BioimageioError, match="classical filter"):
        nd.export_model("gaussian", tmp_path / "g.zip")
    existing = tmp_path / "mine.zip"
    existing.write_bytes(b"precious")
    with pytest.raises(BioimageioError, match="exists"):
        nd.export_model("unet-fluo", existing)
    assert existing.read_bytes() == b"precious"
    with pytest.raises(BioimageioError, match="zip"):
        nd.export_model("unet-fluo", tmp_path / "model.tif")


# --- import ---------------------------------------------------------------------------------


def _imported_agrees(name: str, original: str | None, image: np.ndarray) -> None:
    """Imported equals the original model, and runs through our tiling seam-free when its
    card says so; when not (attention, global pooling), the original shows the same seams."""
    card = json.loads(Path(nd.get_method(name).model.card).read_text())
    whole = nd.denoise(image, name)
    halo = card["halo"]  # what the import measured (a whole-plane model ignores tiles)
    tile = 2 * halo + 8 + 32  # more than the overlap the engine asks, several tiles
    assert tile < max(image.shape)
    tiled = nd.denoise(image, name, tile=tile)
    assert whole.dtype == np.uint8
    seams = np.abs(whole.astype(int) - tiled.astype(int)).max()
    if card["halo_measured"]["seam_free"]:
        assert seams <= 1
    else:  # never a silent seam: a model no halo makes exact runs whole planes
        assert card["tileable"] is False and seams == 0
    if original is not None:
        # The package holds the network alone: the shipped default's per-image detail
        # restoration (chosen without ground truth) is off for this comparison.
        names = [p.name for p in nd.get_method(original).params]
        ref = nd.denoise(image, original, **({"detail": 0.0} if "detail" in names else {}))
        assert np.abs(whole.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("model", BLIND_SHIPPED)
def test_round_trip_of_each_shipped_blind_model(model, exported, user_dir, tmp_path):
    import warnings

    from bioimageio.core import test_model

    package = exported(model)
    # Our packages import their state dict (trainable); the TorchScript path is checked
    # for every model on the package without it, as a package from elsewhere may be.
    traced = _edit(_unpacked(package, tmp_path / "pkg"), _no_state_dict)
    with block_network() as attempts, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the state-dict weights are tested for unet-fluo above; TorchScript for every model
        summary = test_model(package, weight_format="torchscript")
        name = nd.import_model(package, name=f"{model}-bmz")
        traced_name = nd.import_model(traced, name=f"{model}-bmz-ts", allow_code=True)
    assert attempts == []
    assert summary.status == "passed"
    assert name in [m.name for m in nd.list_methods()]
    record = nd.get_method(name).model.imported_from
    # the state dict is preferred whenever a package has one (no package code runs) ...
    assert record["weights_format"] == "pytorch_state_dict"
    assert record["architecture_code_run"] is False and record["code_allowed"] is False
    # ... and the package's TorchScript would pass the operator inspection
    from napari_denoise.engine.models.foreign import load_checked

    with zipfile.ZipFile(package) as z:
        load_checked(z.read(f"{model}.torchscript.pt"))
    # ... and, allowed knowingly, the package without a state dict imports its TorchScript
    traced_record = nd.get_method(traced_name).model.imported_from
    assert traced_record["weights_format"] == "torchscript" and traced_record["code_allowed"]
    assert len(record["weights_sha256"]) == 64 and record["version"] == nd.__version__
    card = json.loads(Path(nd.get_method(name).model.card).read_text())
    warned = any("not seam-free" in str(w.message) for w in caught)
    assert warned == (not card["halo_measured"]["seam_free"])
    _imported_agrees(name, model, sample_image().astype(np.uint8))


def test_import_records_provenance_and_refuses_a_second_import(exported, user_dir, tmp_path):
    package = exported("unet-fluo")
    assert main(["import", str(package), "--name", "from-zip"]) == 0
    listed = subprocess.run(
        [sys.executable, "-m", "napari_denoise.cli", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "NAPARI_DENOISE_MODEL_DIR": str(user_dir)},
    )
    assert "from-zip" in [m["name"] for m in json.loads(listed.stdout)]
    image = tmp_path / "in.tif"
    nd.write_image(image, center_crop(sample_image(), 128).astype(np.uint8), axes="YX")
    assert (
        main(["denoise", str(image), "-o", str(tmp_path / "out.tif"), "--method", "from-zip", "-q"])
        == 0
    )
    side = json.loads((tmp_path / "out.tif.json").read_text())
    record = side["model"]["imported_from"]
    assert record["weights_sha256"] and record["source"] == str(package.resolve())
    assert record["package_sha256"] == sha256_file(package)
    with pytest.raises(BioimageioError, match="exists"):
        nd.import_model(package, name="from-zip")
    with pytest.raises(BioimageioError, match="exists"):
        nd.import_model(package, name="gaussian")


def test_cli_export_and_bad_import_fail_with_one_line(tmp_path, capsys):
    assert main(["export", "unet-fluo-nm", "-o", str(tmp_path / "nm.zip")]) == 2
    err = capsys.readouterr().err
    assert "not blind" in err and "Traceback" not in err
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    assert main(["import", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.zip" in err
    assert not (tmp_path / "nm.zip").exists()


# --- packages napari-denoise did not write ----------------------------------------------------


def _unpacked(package: Path, folder: Path) -> Path:
    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    return folder


def _edit(folder: Path, change) -> Path:
    import yaml

    rdf = folder / "rdf.yaml"
    data = yaml.safe_load(rdf.read_text())
    change(data)
    rdf.write_text(yaml.safe_dump(data, sort_keys=False))
    return rdf


def _no_torchscript(data):
    del data["weights"]["torchscript"]


def _no_state_dict(data):
    del data["weights"]["pytorch_state_dict"]
    data["weights"]["torchscript"].pop("parent", None)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["inputs"].append({**d["inputs"][0], "id": "second"}), "2 inputs"),
        (
            lambda d: d["inputs"][0]["axes"].insert(2, {"type": "space", "id": "z", "size": 8}),
            "2-D",
        ),
        (
            lambda d: d["inputs"][0]["axes"][1].update(channel_names=["a", "b"]),
            "channels",
        ),
        (
            lambda d: d["inputs"][0]["preprocessing"].append(
                {"id": "clip", "kwargs": {"min": 0, "max": 1}}
            ),
            "'clip'",
        ),
        (
            lambda d: d["outputs"][0].update(postprocessing=[{"id": "sigmoid"}]),
            "'sigmoid'",
        ),
    ],
)
def test_import_refuses_what_it_cannot_run_with_a_sentence(
    change, words, exported, user_dir, tmp_path
):
    folder = _unpacked(exported("unet-fluo"), tmp_path / "pkg")
    rdf = _edit(folder, change)
    with pytest.raises(BioimageioError, match=words):
        nd.import_model(rdf)
    assert not list(user_dir.glob("*")) if user_dir.exists() else True  # nothing written


ARCH_FILE = '''
from napari_denoise.engine.models import build


def Net(**config):
    """An architecture shipped as code (here a napari-denoise U-Net, built by the file)."""
    with open(MARKER, "a") as f:
        f.write("this code ran\\n")
    return build("unet", config)
'''


def test_architecture_from_a_python_file_needs_allow_code(exported, user_dir, tmp_path):
    from bioimageio.spec.utils import get_sha256

    folder = _unpacked(exported("unet-fluo"), tmp_path / "pkg")
    marker = tmp_path / "code-ran.txt"
    (folder / "arch.py").write_text(f"MARKER = {str(marker)!r}\n" + ARCH_FILE)
    config = json.loads((folder / "napari-denoise-card.json").read_text())["config"]

    def from_file(d):
        _no_torchscript(d)
        d["weights"]["pytorch_state_dict"]["architecture"] = {
            "source": "arch.py",
            "sha256": str(get_sha256(folder / "arch.py")),
            "callable": "Net",
            "kwargs": config,
        }

    rdf = _edit(folder, from_file)
    with pytest.raises(BioimageioError, match="arbitrary code"):
        nd.import_model(rdf)
    assert not marker.exists()  # refused before running anything
    name = nd.import_model(rdf, allow_code=True, name="from-code")
    assert marker.read_text().count("ran") == 1  # ran once, at import
    card = json.loads((user_dir / f"{name}.json").read_text())
    assert card["weights"]["format"] == "torchscript"  # only the trace is kept
    assert card["imported_from"]["architecture_code_run"] is True
    _imported_agrees(name, "unet-fluo", center_crop(sample_image(), 160).astype(np.uint8))
    assert marker.read_text().count("ran") == 1  # running the model runs no package code


def _careamics_package(folder: Path, *, n2v2: bool) -> Path:
    """A package as CAREamics writes one (bioimageio.spec's own objects, state dict of
    CAREamics' U-Net layout, fixed mean/std normalisation undone by the postprocessing);
    its test output is computed by bioimageio.core from a TorchScript twin."""
    import torch
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    from napari_denoise.engine.models import build

    torch.manual_seed(0)
    kwargs = {
        "architecture": "UNet",
        "conv_dims": 2,
        "num_classes": 1,
        "in_channels": 1,
        "depth": 2,
        "num_channels_init": 16,
        "residual": False,
        "final_activation": "None",
        "n2v2": n2v2,
        "independent_channels": True,
        "use_batch_norm": True,
    }
    net = build(
        "careamics_unet",
        {
            k: kwargs[k]
            for k in ("depth", "num_channels_init", "n2v2", "use_batch_norm", "final_activation")
        },
    )
    for m in net.modules():  # trained-looking batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    folder.mkdir()
    image = center_crop(sample_image(), 128)
    np.save(folder / "input.npy", image[None, None])
    np.save(folder / "output.npy", image[None, None])  # replaced below
    torch.save(net.state_dict(), folder / "weights.pth")
    traced = torch.jit.trace(net, torch.rand(1, 1, 64, 64))
    traced.save(str(folder / "twin.pt"))
    mean, std = float(image.mean()), float(image.std())

    def descr(weights, output):
        axes_in = [
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("channel")]),
            spec.SpaceInputAxis(id=spec.AxisId("y"), size=spec.ParameterizedSize(min=8, step=4)),
            spec.SpaceInputAxis(id=spec.AxisId("x"), size=spec.ParameterizedSize(min=8, step=4)),
        ]
        ref = [
            spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=spec.AxisId(a))
            for a in "yx"
        ]
        axes_out = [
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("channel")]),
            spec.SpaceOutputAxis(id=spec.AxisId("y"), size=ref[0]),
            spec.SpaceOutputAxis(id=spec.AxisId("x"), size=ref[1]),
        ]
        inv = spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=[-mean / (std + 1e-6)], std=[1 / (std + 1e-6) - 1e-6], axis=spec.AxisId("channel")
        )
        return spec.ModelDescr(
            name="N2V careamics like",
            description="A CAREamics-style N2V model built in a test",
            authors=[spec.Author(name="test")],
            cite=[
                spec.CiteEntry(
                    text="Krull et al., Noise2Void", doi=spec.Doi("10.1109/CVPR.2019.00223")
                )
            ],
            license=spec.LicenseId("BSD-3-Clause"),
            documentation=spec.FileDescr(source=_doc(folder)),
            inputs=[
                spec.InputTensorDescr(
                    id=spec.TensorId("input"),
                    axes=axes_in,
                    test_tensor=spec.FileDescr(source=folder / "input.npy"),
                    preprocessing=[
                        spec.FixedZeroMeanUnitVarianceDescr(
                            kwargs=spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
                                mean=[mean], std=[std], axis=spec.AxisId("channel")
                            )
                        )
                    ],
                )
            ],
            outputs=[
                spec.OutputTensorDescr(
                    id=spec.TensorId("prediction"),
                    axes=axes_out,
                    test_tensor=spec.FileDescr(source=output),
                    postprocessing=[spec.FixedZeroMeanUnitVarianceDescr(kwargs=inv)],
                )
            ],
            weights=weights,
            version=spec.Version("0.3.5"),
        )

    version = spec.Version(torch.__version__.split("+")[0])
    with offline_validation():
        twin = descr(
            spec.WeightsDescr(
                torchscript=spec.TorchscriptWeightsDescr(
                    source=folder / "twin.pt", pytorch_version=version
                )
            ),
            folder / "output.npy",
        )
        save_bioimageio_package(twin, output_path=folder / "twin.zip")
    expected = _core_predict(folder / "twin.zip", image)
    np.save(folder / "output.npy", expected[None, None].astype(np.float32))
    state = spec.PytorchStateDictWeightsDescr(
        source=folder / "weights.pth",
        architecture=spec.ArchitectureFromLibraryDescr(
            import_from="careamics.models.unet", callable=spec.Identifier("UNet"), kwargs=kwargs
        ),
        pytorch_version=version,
    )
    with offline_validation():
        package = descr(spec.WeightsDescr(pytorch_state_dict=state), folder / "output.npy")
        return save_bioimageio_package(package, output_path=folder / "careamics.zip")


def _doc(folder: Path) -> Path:
    doc = folder / "README.md"
    doc.write_text("# N2V\n\n## Validation\n\nNone: built in a test.\n")
    return doc


@pytest.mark.parametrize("n2v2", [False, True])
def test_a_careamics_state_dict_package_imports_and_runs(n2v2, user_dir, tmp_path):
    with block_network() as attempts:
        package = _careamics_package(tmp_path / "careamics", n2v2=n2v2)
        name = nd.import_model(package)
    assert attempts == []
    card = json.loads((user_dir / f"{name}.json").read_text())
    assert card["architecture"] == "careamics_unet" and card["config"]["n2v2"] is n2v2
    assert card["weights"]["file"].endswith(".safetensors")  # stored as safetensors
    assert card["imported_from"]["output_relation"] == "same"
    image = center_crop(sample_image(), 128)
    ours = nd.denoise(image, name)
    with block_network():
        theirs = _core_predict(tmp_path / "careamics" / "twin.zip", image)
    # same units as the package (its postprocessing undoes the normalisation)
    assert np.abs(ours - theirs).max() <= 1e-3 * float(np.ptp(theirs))
    _imported_agrees(name, None, image.astype(np.uint8))


def test_importing_napari_denoise_stays_free_of_bioimageio_and_torch():
    code = (
        "import sys, napari_denoise as nd; nd.export_model; nd.import_model; "
        "print(sorted(m for m in ('torch', 'bioimageio.spec', 'bioimageio.core', 'xarray') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_block_network_blocks():
    import socket

    with block_network() as attempts, pytest.raises(OSError):
        socket.create_connection(("example.org", 80), timeout=1)
    assert attempts


def test_a_model_trained_here_exports_and_passes_test_model(user_dir, tmp_path):
    """A user model (no measured halo in its card: the reach, capped, is used)."""
    from bioimageio.core import test_model

    from napari_denoise.engine import zoo
    from napari_denoise.engine.models import build

    net = build("unet", {"base": 8, "depth": 2})
    zoo.save_model(net, {"training": {"data": ["a test"]}}, user_dir / "tiny-mine.safetensors")
    zoo.register_models()
    with block_network() as attempts:
        package = nd.export_model("tiny-mine", tmp_path / "tiny.zip")
        summary = test_model(package)
    assert attempts == [] and summary.status == "passed"
    rdf = _rdf(package)
    assert rdf["inputs"][0]["axes"][2]["size"]["step"] == 4
    assert rdf["outputs"][0]["axes"][2]["halo"] % 4 == 0


def test_our_state_dict_package_imports_as_safetensors(exported, user_dir, tmp_path):
    folder = _unpacked(exported("unet-fluo"), tmp_path / "pkg")
    rdf = _edit(folder, _no_torchscript)
    with block_network() as attempts:
        name = nd.import_model(rdf, name="from-state-dict")
    assert attempts == []
    card = json.loads((user_dir / f"{name}.json").read_text())
    assert card["architecture"] == "unet" and card["weights"]["file"].endswith(".safetensors")
    assert card["imported_from"]["weights_format"] == "pytorch_state_dict"
    image = center_crop(sample_image(), 160).astype(np.uint8)
    diff = nd.denoise(image, name).astype(int) - nd.denoise(image, "unet-fluo").astype(int)
    assert np.abs(diff).max() <= 1


def test_foreign_network_reorders_axes_pads_to_valid_sizes_and_crops():
    import torch

    from napari_denoise.engine.models.foreign import ForeignNetwork

    seen = []

    class YXC(torch.nn.Module):  # a package network with axes y, x, channel (no batch)
        def forward(self, x):
            seen.append(tuple(x.shape))
            return 2 * x + torch.arange(x.shape[1], dtype=x.dtype)[None, :, None]

    net = ForeignNetwork(
        YXC(),
        step=4,
        min_size=10,
        reach=0,
        input_axes=("y", "x", "channel"),
        output_axes=("y", "x", "channel"),
    )
    x = torch.rand(3, 1, 11, 5)
    y = net(x)
    assert y.shape == x.shape
    assert seen == [(14, 10, 1)] * 3  # one image at a time, sizes 10 + n * 4
    torch.testing.assert_close(y, 2 * x + torch.arange(5, dtype=x.dtype))


@pytest.mark.parametrize(
    ("norm", "expected"),
    [
        ({"kind": "fixed", "low": 3.0, "high": 7.0}, lambda a: (3.0, 7.0)),
        ({"kind": "mean_std", "eps": 0.0}, lambda a: (a.mean(), a.mean() + a.std())),
        (
            {"kind": "percentile", "low": 1.0, "high": 99.0},
            lambda a: tuple(np.percentile(a, [1, 99])),
        ),
    ],
)
def test_the_engine_normalises_as_an_imported_card_says(norm, expected):
    from napari_denoise.engine import zoo

    image = center_crop(sample_image(), 64)
    params = zoo._auto([image], {"norm_low": None, "norm_high": None}, card={"normalisation": norm})
    np.testing.assert_allclose(
        (params["norm_low"], params["norm_high"]), expected(image), rtol=1e-5
    )

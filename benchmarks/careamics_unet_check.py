"""Check our CAREamics U-Net against CAREamics' own code: same state-dict keys and shapes,
same output for the same weights.

CAREamics (with lightning and its other dependencies) is not a dependency; this loads only
its U-Net files from an unpacked wheel (``pip download --no-deps careamics==0.3.5`` and
unzip it), with the three modules they import, and compares for several configurations.

    python benchmarks/careamics_unet_check.py /path/to/unpacked/wheel
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def load_careamics_unet(root: Path):
    """``careamics.models.unet.unet`` from the files under ``root``, nothing else of it."""

    def load(name: str, file: Path):
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    base = root / "careamics"
    for pkg in ("careamics", "careamics.config", "careamics.models", "careamics.models.unet"):
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(base.joinpath(*pkg.split(".")[1:]))]
        sys.modules[pkg] = mod
    support = load("careamics.config.support", base / "config/support/supported_activations.py")
    sys.modules["careamics.config"].support = support
    utils = load("careamics.models.model_utils", base / "models/model_utils/activation.py")
    sys.modules["careamics.models"].model_utils = utils
    load("careamics.models.unet.layers", base / "models/unet/layers.py")
    return load("careamics.models.unet.unet", base / "models/unet/unet.py")


def main() -> None:
    import torch

    from napari_denoise.engine.models import build

    reference = load_careamics_unet(Path(sys.argv[1]))
    torch.manual_seed(0)
    for config in (
        {"depth": 2, "num_channels_init": 32, "use_batch_norm": True, "n2v2": False},
        {"depth": 3, "num_channels_init": 16, "use_batch_norm": True, "n2v2": True},
        {
            "depth": 2,
            "num_channels_init": 8,
            "use_batch_norm": False,
            "n2v2": False,
            "residual": True,
        },
        {
            "depth": 1,
            "num_channels_init": 8,
            "use_batch_norm": True,
            "n2v2": False,
            "final_activation": "Sigmoid",
        },
    ):
        theirs = reference.UNet(conv_dims=2, num_classes=1, in_channels=1, **config).eval()
        for m in theirs.modules():  # trained-looking statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        ours = build("careamics_unet", config).eval()
        state = theirs.state_dict()
        keys_equal = sorted(state) == sorted(ours.state_dict())
        shapes_equal = all(state[k].shape == v.shape for k, v in ours.state_dict().items())
        ours.load_state_dict(state, strict=True)
        x = torch.rand(2, 1, 64, 96)
        with torch.no_grad():
            err = float((theirs(x) - ours(x)).abs().max())
        print(
            f"{config}: keys equal {keys_equal}, shapes equal {shapes_equal}, max |diff| {err:.2e}"
        )


if __name__ == "__main__":
    main()

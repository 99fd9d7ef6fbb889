"""The choices a training run offers, without torch: modes, losses and their ranges.

The Train widget builds its controls from these on the GUI thread, so this module imports
nothing heavy; the training code (:mod:`.loop`, :mod:`.blindspot`, :mod:`.finetune`) takes
its names from here too, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLIND_MODES",
    "DEFAULT_MASK_FRACTION",
    "FRAME_MODES",
    "LOSS_NAMES",
    "MAX_BLIND_RADIUS",
    "MAX_FRACTION",
    "MIN_FRACTION",
    "MODES",
    "MODE_LABELS",
    "SELF_SUPERVISED_LOSSES",
    "Phase",
    "passes_input_through",
    "untrainable_reason",
]

MODES = ("supervised", "n2v", "n2v2", "n2v-psf", "n2n-frames")
BLIND_MODES = ("n2v", "n2v2", "n2v-psf")
# Noise2Noise between neighbouring planes of a noisy stack (:mod:`.frame_pairs`).
FRAME_MODES = ("n2n-frames",)
MODE_LABELS = {
    "supervised": "fine-tuned on noisy/clean pairs",
    "n2v": "Noise2Void",
    "n2v2": "N2V2",
    "n2v-psf": "Noise2Void with PSF",
    "n2n-frames": "Noise2Noise between neighbouring frames",
}
LOSS_NAMES = ("l1", "l2", "l1+ssim")
SELF_SUPERVISED_LOSSES = ("l1", "l2")  # the blind-spot loss sees single pixels: no SSIM
# 1 pixel in 64: the N2V paper's 64 blind spots per 64 x 64 patch (a grid spacing of 8).
DEFAULT_MASK_FRACTION = 1 / 64
MIN_FRACTION, MAX_FRACTION = 0.002, 0.04  # grid spacings 22 ... 5
MAX_BLIND_RADIUS = 3  # a 7x7 blind block at most


def passes_input_through(config) -> bool:
    """Whether a network built from ``config`` adds its input to its output (N2V2 cannot
    start from such a network). Every network of :mod:`..models` does unless its config
    says ``residual=False``."""
    return dict(config).get("residual", True) is not False


# Architectures whose weights training cannot start from, and why (in the user's words).
# A TorchScript network (imported from a bioimage.io package) is compiled code: it runs,
# but its copy for training has no trainable weights (torch raises "can't optimize a
# non-leaf Tensor") and it could not be saved as a network of ours.
UNTRAINABLE = {
    "torchscript": (
        "Training cannot start from '{name}': it was imported as compiled TorchScript, "
        "which can denoise but not be trained. Packages that also hold PyTorch state-dict "
        "weights of a known network (napari-denoise's own exports do) now import "
        "trainable: remove '{name}' from your model folder (its .json and .torchscript.pt "
        "files) and load the package again, or start from another model."
    ),
}


def untrainable_reason(architecture: str | None, name: str) -> str | None:
    """Why training cannot start from model ``name`` of ``architecture``; None if it can."""
    reason = UNTRAINABLE.get(str(architecture))
    return None if reason is None else reason.format(name=name)


@dataclass(frozen=True)
class Phase:
    """What a training run does before (and after) its steps, and how far it is.

    Yielded by the training generators between phases that can take a while, so that
    nothing waits in silence: ``what`` in the user's words, ``done`` of ``total`` (0:
    no count), and ``one_time`` for costs that are not part of the training itself
    (e.g. timing the computer to turn minutes into steps), which no time budget pays for.
    """

    what: str
    done: int = 0
    total: int = 0
    one_time: bool = False

    @property
    def message(self) -> str:
        count = f": {self.done} of {self.total}" if self.total else ""
        note = " (once, not counted in your time)" if self.one_time else ""
        return f"{self.what}{count}{note}…"

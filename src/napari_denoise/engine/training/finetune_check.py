"""Is the fine-tuned model better than the one it started from? Checked without ground truth.

After self-supervised fine-tuning of a trained model, :func:`compare_with_start` estimates
the error of both networks on the held-out stripes with Stein's unbiased risk estimate
(:mod:`..denoise.selfcheck`), or, after Noise2Noise between neighbouring frames, with
the squared error against the held-out stripes' aligned neighbours (whose noise is
independent of the input: the difference of two models' losses is the difference of
their errors against the clean image); the verdict goes into the new model's card.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from .options import FRAME_MODES

if TYPE_CHECKING:
    from .finetune_data import Prepared

__all__ = ["SELFCHECK_MIN_SIDE", "SELFCHECK_MODES", "compare_with_start"]

# trained without ground truth, from a trained model
SELFCHECK_MODES = ("n2v", "n2v2", "n2n-frames")
SELFCHECK_MIN_SIDE = 16  # the noise model needs tiles of at least this size


def compare_with_start(prepared: Prepared, model, *, name: str = "the new model") -> dict | None:
    """Is the fine-tuned network better than the one it started from? Checked without
    ground truth: Stein's unbiased risk estimate (:mod:`..denoise.selfcheck`) of both on
    the held-out validation stripes (pixels neither trained on).

    Returns None when not applicable (supervised training, which has its ground truth;
    a fresh network; no validation stripes), else a record for the card: both
    estimated mean squared errors (normalised units), the verdict (``"new"`` or
    ``"start"``) and a message naming both models.
    """
    if (
        prepared.spec.mode not in SELFCHECK_MODES
        or prepared.start_card is None
        or not prepared.val_images
    ):
        return None
    start = copy.deepcopy(prepared.model).eval()
    model.eval()
    if prepared.spec.mode in FRAME_MODES:
        from .frame_pairs import frame_validation_loss

        start_mse = frame_validation_loss(start, prepared.val_images)
        new_mse = frame_validation_loss(model, prepared.val_images)
        how = "squared error against the aligned neighbour of the held-out stripes"
        return _verdict(prepared, name, start_mse, new_mse, how)
    from ..denoise.selfcheck import estimate_noise_covariance, risk
    from ..models.inference import noise_for, run_model

    totals = {"start": 0.0, "new": 0.0}
    pixels = 0
    for image in prepared.val_images:
        image = np.asarray(image, np.float32)
        if min(image.shape[-2:]) < SELFCHECK_MIN_SIDE or image.ndim != 2:
            continue
        noise = estimate_noise_covariance(image)
        for label, net in (("start", start), ("new", model)):
            level = noise_for(net, image)  # fixed: the perturbed copy must not move it

            def run(im, net=net, level=level):
                return run_model(net, im, low=0.0, high=1.0, noise_level=level)

            totals[label] += risk(image, run, noise=noise) * image.size
        pixels += image.size
    if not pixels:
        return None
    start_mse, new_mse = totals["start"] / pixels, totals["new"] / pixels
    return _verdict(
        prepared,
        name,
        start_mse,
        new_mse,
        "SURE (Monte-Carlo divergence) on the held-out validation stripes",
        short="SURE on the held-out stripes",
    )


def _verdict(prepared, name, start_mse, new_mse, method, short=None) -> dict:
    """The card's record and message for two estimated errors (lower is better)."""
    short = short or "held-out neighbour loss"
    verdict = "new" if new_mse < start_mse else "start"
    begun = prepared.started_from.get("name", "the start model")
    if verdict == "new":
        message = (
            f"Check without ground truth ({short}): '{name}' is better "
            f"than '{begun}' (estimated error {new_mse:.3g} vs {start_mse:.3g})."
        )
    else:
        message = (
            f"Check without ground truth ({short}): '{name}' is NOT "
            f"better than '{begun}' it started from (estimated error {new_mse:.3g} vs "
            f"{start_mse:.3g}); keep using '{begun}'."
        )
    return {
        "method": method,
        "start_model": begun,
        "start_mse": start_mse,
        "new_mse": new_mse,
        "better": verdict,
        "message": message,
    }

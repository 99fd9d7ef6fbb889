"""Supervised and self-supervised training as one generator shared by the CLI, GUI and tests.

How to train is one record, :class:`~.config.TrainConfig` (checked when it is made);
:func:`train_iter` runs it, yields a :class:`TrainProgress` after every optimisation step and
returns the model with the weights that scored best on validation (or the last weights
without validation). The consumer stops it by passing ``stop``, a callable checked
before every step (as CAREamics checks its stop callback at every batch): training then
ends within one step, writes a checkpoint and returns the best weights so far. With
``patience`` it also stops by itself once validation has not improved for that many
validations (early stopping).

Modes: ``"supervised"`` learns noisy -> clean patches; ``"n2v"``, ``"n2v2"`` and
``"n2v-psf"`` learn from noisy patches alone with blind-spot masking (Noise2Void, N2V2,
and the PSF + positivity variant of Goncharova et al. 2020; see :mod:`.blindspot`);
``"n2n-frames"`` learns each plane of a noisy stack from its aligned neighbour
(Noise2Noise, :mod:`.frame_pairs`: the sampler gives the pairs, the loss is L2).
Validation is the PSNR on held-out (noisy, clean) images where there are any, otherwise,
for the blind-spot modes, the masked loss on held-out noisy images, and for
``"n2n-frames"`` the squared error against the aligned neighbour of held-out stripes.

The recipe: Adam, a linear warm-up and a cosine decay of the learning rate to 1% of its
peak, gradient-norm clipping, random flips and 90-degree rotations of every patch, and
an L1, L2 or L1+SSIM loss in the normalised units the zoo feeds the network. Patches come
from a sampler of :mod:`.datasets`; all randomness flows from one seeded
``torch.Generator``, so on the CPU the same seed and thread count give the same weights.
Checkpoints (weights, best weights, optimiser state and random state in safetensors, the
rest in JSON) are written atomically and can be resumed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ModelFileError, ParameterError
from ..models import config_dict
from .config import TrainConfig
from .options import FRAME_MODES, LOSS_NAMES, MODES

__all__ = [
    "LOSSES",
    "MODES",
    "TrainConfig",
    "TrainOutcome",
    "TrainProgress",
    "augment",
    "lr_factor",
    "train_iter",
    "validate",
]


# --- losses ---------------------------------------------------------------------------------


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (Gaussian window 11, sigma 1.5) for data in about 0..1."""
    g = torch.exp(-0.5 * ((torch.arange(11, dtype=x.dtype, device=x.device) - 5) / 1.5) ** 2)
    g = g / g.sum()

    def blur(t):
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
    # Zhao, Gallo, Frosio, Kautz, "Loss functions for image restoration with neural networks" (2017).
    "l1+ssim": lambda p, t: 0.84 * (1 - _ssim(p, t)) + 0.16 * F.l1_loss(p, t),
}
assert tuple(LOSSES) == LOSS_NAMES  # the widget offers the names from .options


# --- progress -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TrainProgress:
    """One training tick: where training is, how it is going, and how long it will take
    (built by name: every field is a keyword)."""

    step: int
    steps: int
    loss: float
    lr: float
    val_psnr: float | None
    best_val_psnr: float | None
    best_step: int
    seconds: float
    eta_s: float
    val_loss: float | None = None  # masked loss on held-out images (self-supervised modes)
    best_val_loss: float | None = None
    validated: bool = False  # whether this step ran a validation

    @property
    def fraction(self) -> float:
        return self.step / self.steps if self.steps else 1.0

    @property
    def message(self) -> str:
        if self.val_psnr is not None:
            val = f", validation {self.val_psnr:.2f} dB"
        elif self.val_loss is not None:
            val = f", validation loss {self.val_loss:.4g}"
        else:
            val = ""
        return f"step {self.step}/{self.steps}: loss {self.loss:.4g}{val}, {self.eta_s:.0f} s left"


def haar_sigma(x: torch.Tensor) -> torch.Tensor:
    """Per-sample noise std from the finest diagonal Haar detail (median absolute value /
    0.6745, Donoho's robust estimate), as the zoo estimates it for a whole image."""
    from ..denoise.calibrate import diagonal_detail

    return diagonal_detail(x).flatten(1).abs().median(dim=1).values / 0.6745


# --- augmentation and validation ------------------------------------------------------------


def augment(noisy: torch.Tensor, clean: torch.Tensor, generator: torch.Generator):
    """The same random flip / 90-degree rotation (one of 8) applied to each pair."""
    choice = torch.randint(8, (noisy.shape[0],), generator=generator)
    out_n, out_c = noisy.clone(), clean.clone()
    for t in range(1, 8):
        idx = (choice == t).nonzero().flatten()
        if len(idx) == 0:
            continue
        for src, dst in ((noisy, out_n), (clean, out_c)):
            x = src[idx]
            if t >= 4:
                x = x.flip(-1)
            dst[idx] = torch.rot90(x, t % 4, dims=(-2, -1))
    return out_n, out_c


def validate(model, pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, bf16: bool = False) -> float:
    """Mean PSNR (dB) of the model on (noisy, clean) pairs, as the zoo would run it.

    Each noisy image is normalised by its own 0.1/99.9 percentiles; the PSNR uses the
    clean image's span as data range.
    """
    from ..metrics import psnr
    from ..models.inference import noise_for, run_model

    was_training = model.training
    model.eval()
    scores = []
    try:
        for noisy, clean in pairs:
            lo, hi = np.percentile(noisy, [0.1, 99.9])
            span = float(hi - lo) if hi > lo else 1.0  # as run_model: no absolute floor
            level = noise_for(model, (noisy - lo) / span)
            pred = run_model(model, noisy, low=lo, high=hi, bf16=bf16, noise_level=level)
            scores.append(psnr(clean, pred, data_range=float(clean.max() - clean.min()) or 1.0))
    finally:
        model.train(was_training)
    return float(np.mean(scores))


# --- checkpoints ----------------------------------------------------------------------------


def _save_checkpoint(path: Path, model, best_state, optimizer, generator, info: dict) -> None:
    from safetensors.torch import save

    from ...atomic import atomic_write

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    for i, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"optim.{i}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng"] = generator.get_state()
    weights = path.with_suffix(".safetensors")
    atomic_write(weights, lambda fh: fh.write(save(tensors)), make_parents=True)
    text = json.dumps(info, indent=2) + "\n"
    atomic_write(
        path.with_suffix(".json"), lambda fh: fh.write(text.encode("utf-8")), make_parents=True
    )


def _check_checkpoint(path: Path, model, mode: str) -> None:
    """ModelFileError unless the checkpoint was written for this network and mode."""
    try:
        info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFileError(
            f"The checkpoint {path.with_suffix('.json')} cannot be read ({err})."
        ) from None
    if not path.with_suffix(".safetensors").exists():
        raise ModelFileError(
            f"The checkpoint {path.with_suffix('.json')} has no weights file beside it "
            f"({path.with_suffix('.safetensors').name}); start without resuming."
        )
    here = json.loads(json.dumps(config_dict(model)))
    if info.get("architecture") != model.architecture or info.get("config") != here:
        raise ModelFileError(
            f"The checkpoint {path} was written for a '{info.get('architecture')}' network "
            f"{info.get('config')}, not for this '{model.architecture}' {here}; resume it "
            "with the model it started from, or start without resuming."
        )
    if info.get("mode", "supervised") != mode:
        raise ModelFileError(
            f"The checkpoint {path} was written by a '{info.get('mode', 'supervised')}' run, "
            f"not '{mode}'; resume it in the same mode, or start without resuming."
        )


def _load_checkpoint(path: Path, model, optimizer, generator) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    tensors = load_file(path.with_suffix(".safetensors"))
    info = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = value
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng"])
    return info, best


# --- the loop -------------------------------------------------------------------------------


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """The learning rate at 0-based ``step`` as a share of its peak: a linear warm-up over
    ``warmup`` steps, then a cosine decay to 1% at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class TrainOutcome:
    """What :func:`train_iter` returns: the model with its best weights, and how it went.

    ``stop_reason`` is ``"completed"``, ``"stopped"`` (the consumer's ``stop``) or
    ``"patience"`` (early stopping); ``validations`` lists ``{"step", "psnr" or "loss"}``.
    """

    model: Any
    best_step: int
    best_val_psnr: float | None
    best_val_loss: float | None
    steps_done: int
    stop_reason: str
    validations: list[dict]


class _Validation:
    """Keeps the best weights by validation: PSNR on (noisy, clean) pairs, else the masked
    loss on held-out noisy images, else (no held-out data) the latest weights."""

    def __init__(self, model, *, pairs, masked, loss: str, bf16: bool, masked_loss):
        self.model, self.pairs, self.masked = model, pairs, masked
        self.loss, self.bf16, self._masked_loss = loss, bf16, masked_loss
        self.best_state = copy.deepcopy(model.state_dict())
        self.best_psnr: float | None = None
        self.best_loss: float | None = None
        self.best_step = 0
        self.psnr: float | None = None
        self.value: float | None = None  # masked loss
        self.stale = 0  # validations since the best one
        self.history: list[dict] = []
        self.last_step = -1

    def restore(self, info: dict, best_state: dict) -> None:
        """Continue from a checkpoint's record."""
        self.best_state, self.best_step = best_state, info["best_step"]
        self.best_psnr, self.best_loss = info["best_val_psnr"], info.get("best_val_loss")
        self.stale, self.history = info.get("stale", 0), list(info.get("validations", []))

    def check(self, step: int) -> None:
        """Validate at ``step``; keep the weights when they are the best so far."""
        self.last_step = step
        if self.pairs:
            self.psnr = validate(self.model, self.pairs, bf16=self.bf16)
            better = self.best_psnr is None or self.psnr > self.best_psnr
            self.history.append({"step": step, "psnr": round(self.psnr, 4)})
        elif self.masked:
            self.value = self._masked_loss(self.model, self.masked, loss=self.loss)
            better = self.best_loss is None or self.value < self.best_loss
            self.history.append({"step": step, "loss": round(self.value, 6)})
        else:
            self.best_state, self.best_step = copy.deepcopy(self.model.state_dict()), step
            return
        if better:
            self.best_step, self.stale = step, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            if self.pairs:
                self.best_psnr = self.psnr
            else:
                self.best_loss = self.value
        else:
            self.stale += 1


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Use ``threads`` torch threads while training, and give back the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_iter(
    model,
    dataset,
    config: TrainConfig | None = None,
    *,
    val_pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    val_images: Sequence[np.ndarray] | None = None,
    stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    **settings,
) -> Generator[TrainProgress, None, TrainOutcome]:
    """Train ``model`` on patches from ``dataset``; yield progress, return a :class:`TrainOutcome`.

    Parameters
    ----------
    model : torch.nn.Module
        A network from :mod:`napari_denoise.engine.models` (trained in place). In mode
        ``"n2v-psf"`` a network that is not yet a :class:`~..models.psf_wrap.PsfWrap` is
        wrapped in one (Gaussian PSF of ``psf_sigma``) and the outcome holds the wrapper.
    dataset : sampler
        Anything with ``batch(n, patch, generator) -> (noisy, clean)`` (:mod:`.datasets`);
        the self-supervised modes use only the noisy patches.
    config : TrainConfig, optional
        How to train (:class:`~.config.TrainConfig`: mode, loss, steps, batch size,
        patch, learning rate, seed, blind spots, PSF, patience, cadences, threads).
        Its settings may also be given as keywords (``steps=100, mode="n2v"``), alone
        or to replace those of ``config``; either way they are checked once, by the record.
    val_pairs : sequence of (noisy, clean) arrays, optional
        Held-out images in image units; their mean PSNR is validated every ``val_every``
        steps and at the end, and the best weights are returned.
    val_images : sequence of arrays, optional
        Held-out noisy images in normalised units, for the self-supervised modes when
        there are no ``val_pairs``: validation is then the masked loss on them (fixed
        masks; lower is better); for ``"n2n-frames"``, ``(2, h, w)`` arrays (a stripe and
        its aligned neighbour) and the squared error between them.
    stop : callable, optional
        Checked before every step; when it returns True training ends, writes the
        checkpoint and returns the best weights so far.
    checkpoint : path, optional
        Stem of ``.safetensors`` + ``.json`` checkpoint files written every
        ``checkpoint_every`` steps, at the end and when stopped; ``resume=True``
        continues from them (the same network and mode only).

    Modes: Noise2Void masks pixels with a random neighbour, N2V2 with the median of the
    5x5 window without its centre; "n2v-psf" adds the PSF and the positivity penalty
    ``positivity * mean(relu(-deconvolved))`` (:mod:`.blindspot`). ``blind_radius`` 0
    gives one-pixel blind spots, ``r`` hides the ``(2r+1)``-square around each one
    (spatially correlated noise; :func:`.blindspot.blind_spot_batch`).

    Examples
    --------
    >>> from napari_denoise.engine.models import build
    >>> from napari_denoise.engine.training.datasets import SyntheticNoiseDataset
    >>> ds = SyntheticNoiseDataset([np.random.default_rng(0).random((64, 64))], region=32)
    >>> gen = train_iter(build("msred"), ds, TrainConfig(steps=2, batch_size=2, patch=32))
    >>> [p.step for p in gen]
    [1, 2]
    """
    from . import blindspot

    if config is None:
        config = TrainConfig(**settings)
    elif not isinstance(config, TrainConfig):
        raise ParameterError(
            f"train_iter takes its settings as a TrainConfig (or as keywords), not a "
            f"{type(config).__name__}."
        )
    elif settings:
        config = dataclasses.replace(config, **settings)
    cfg = config.filled()
    steps = cfg.steps
    generator = torch.Generator().manual_seed(int(cfg.seed))
    if cfg.mode == "n2v-psf" and getattr(model, "architecture", None) != "psf-wrap":
        from ..models.psf_wrap import wrap

        model = wrap(model, cfg.psf_sigma)
    model = model.to("cpu").to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    masked = None
    if cfg.blind and not val_pairs and val_images:
        masked = blindspot.masked_validation_set(
            val_images,
            multiple=int(getattr(model, "multiple", 1)),
            fraction=cfg.mask_fraction,
            replace=_replacement(cfg.mode),
            radius=cfg.blind_radius,
            seed=int(cfg.seed) + 7919,  # its own stream: validation never shifts the training's
        )
    masked_loss = blindspot.masked_validation_loss
    if cfg.mode in FRAME_MODES and not val_pairs and val_images:
        from .frame_pairs import frame_validation_loss

        masked, masked_loss = list(val_images), frame_validation_loss
    val = _Validation(
        model,
        pairs=val_pairs,
        masked=masked,
        loss=cfg.loss,
        bf16=cfg.bf16,
        masked_loss=masked_loss,
    )
    start_step, running = 0, None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.with_suffix(".json").exists():
        _check_checkpoint(ckpt, model, cfg.mode)
        info, best_state = _load_checkpoint(ckpt, model, optimizer, generator)
        val.restore(info, best_state)
        start_step, running = info["step"], info.get("loss")
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(start_step + i, steps, cfg.warmup)
    )
    step_fn = _Step(model, optimizer, cfg)

    def record(step):
        return {
            "step": step,
            "steps": steps,
            "seed": cfg.seed,
            "lr": cfg.lr,
            "loss_name": cfg.loss,
            "loss": running,
            "batch_size": cfg.batch_size,
            "patch": cfg.patch,
            "mode": cfg.mode,
            "blind_radius": cfg.blind_radius,
            "best_step": val.best_step,
            "best_val_psnr": val.best_psnr,
            "best_val_loss": val.best_loss,
            "stale": val.stale,
            "validations": val.history,
            "architecture": model.architecture,
            "config": config_dict(model),
        }

    def save(step):
        _save_checkpoint(ckpt, model, val.best_state, optimizer, generator, record(step))

    reason = "completed"
    last_ckpt = start_step
    t0 = time.perf_counter()
    step = start_step
    with _torch_threads(cfg.threads), step_fn:
        for step in range(start_step + 1, steps + 1):
            if stop is not None and stop():
                reason = "stopped"
                step -= 1
                break
            if cfg.patience and val.stale >= cfg.patience:
                reason = "patience"
                step -= 1
                break
            current_lr = optimizer.param_groups[0]["lr"]
            v = step_fn(dataset.batch, generator)
            schedule.step()
            running = v if running is None else 0.98 * running + 0.02 * v
            validated = step % cfg.val_every == 0 or step == steps
            if validated:
                val.check(step)
            if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == steps):
                save(step)
                last_ckpt = step
            elapsed = time.perf_counter() - t0
            done = step - start_step
            yield TrainProgress(
                step=step,
                steps=steps,
                loss=running,
                lr=current_lr,
                val_psnr=val.psnr,
                best_val_psnr=val.best_psnr,
                best_step=val.best_step,
                seconds=elapsed,
                eta_s=elapsed / done * (steps - step),
                val_loss=val.value,
                best_val_loss=val.best_loss,
                validated=validated,
            )
        else:
            step = steps

        if start_step < step < steps:  # stopped early: validate and keep the last step
            if val.last_step != step:
                val.check(step)
            if ckpt is not None and last_ckpt != step:
                save(step)
    model.load_state_dict(val.best_state)
    model.eval()
    return TrainOutcome(
        model=model,
        best_step=val.best_step,
        best_val_psnr=val.best_psnr,
        best_val_loss=val.best_loss,
        steps_done=step,
        stop_reason=reason,
        validations=val.history,
    )


def _replacement(mode: str) -> str:
    """What a blind spot is filled with: N2V2 the median of its window, else a neighbour."""
    return "median" if mode == "n2v2" else "random"


class _Step:
    """One optimisation step (sample, augment, blind spots, forward, loss, backward, clip,
    update); a context manager that holds the positivity hook of ``"n2v-psf"``."""

    def __init__(self, model, optimizer, config: TrainConfig):
        from . import blindspot

        self.model, self.optimizer, self.config = model, optimizer, config
        self.loss_fn, self.blindspot = LOSSES[config.loss], blindspot
        self.replace = _replacement(config.mode)
        self.takes_level = getattr(model, "takes_noise_level", False)
        self.noisy_target = config.blind or config.mode in FRAME_MODES
        self.noise_input = getattr(model, "noise_input", "level" if self.takes_level else None)
        self.deconvolved: dict[str, torch.Tensor] = {}  # before the PSF, for the positivity
        self.use_hook = config.mode == "n2v-psf" and bool(config.positivity)
        self.hook = None

    def __enter__(self):
        if self.use_hook:
            self.hook = self.model.net.register_forward_hook(
                lambda m, i, out: self.deconvolved.update(d=out)
            )
        return self

    def __exit__(self, *exc):
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def __call__(self, batch, generator) -> float:
        model, cfg = self.model, self.config
        if self.noise_input == "poisson-gaussian":
            noisy, clean, coeffs = batch(cfg.batch_size, cfg.patch, generator, with_noise=True)
        else:
            noisy, clean = batch(cfg.batch_size, cfg.patch, generator)
        noisy, clean = augment(noisy, clean, generator)
        mask = None
        if cfg.blind:  # the input with blind spots, the noisy target, where the loss counts
            noisy, clean, mask = self.blindspot.blind_spot_batch(
                noisy,
                generator,
                fraction=cfg.mask_fraction,
                replace=self.replace,
                radius=cfg.blind_radius,
            )
        noisy = noisy.contiguous(memory_format=torch.channels_last)
        clean = clean.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", torch.bfloat16, enabled=cfg.bf16):
            if self.noise_input == "poisson-gaussian":
                pred = model(noisy, coeffs)
            elif self.takes_level:
                # Supervised: the true noise std of each patch. Blind spot and frames: the
                # target is noisy too; estimate the input's from the finest scale.
                if self.noisy_target:
                    level = haar_sigma(clean if cfg.blind else noisy)
                else:
                    level = (noisy - clean).flatten(1).std(dim=1)
                pred = model(noisy, level)
            else:
                pred = model(noisy)
        if mask is None:
            value = self.loss_fn(pred.float(), clean)
        else:
            value = self.blindspot.masked_loss(pred.float(), clean, mask, cfg.loss)
            if self.hook is not None:
                value = value + cfg.positivity * self.blindspot.positivity_penalty(
                    self.deconvolved["d"].float()
                )
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return float(value.detach())

"""``napari-denoise``: the headless commands (list, denoise, compare, train, bench, demo,
export and import of bioimage.io model packages).

Errors that napari-denoise raises on purpose are printed as one sentence on stderr with
exit status 2; nothing is written for an input that fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .errors import Cancelled, DenoiseError, ParameterError

__all__ = ["main"]


def _parse_params(pairs: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param expects KEY=VALUE, got '{pair}'.")
        params[key.strip()] = value.strip()
    return params


def _cmd_list(args: argparse.Namespace) -> int:
    from .engine.methods import list_methods

    methods = list_methods()
    if args.json:
        print(json.dumps([m.describe() for m in methods], indent=2))
        return 0
    width = max(len(m.name) for m in methods)
    for m in methods:
        flag = " (default)" if m.is_default else ""
        state = "" if m.available else f"  [unavailable: {m.unavailable_reason}]"
        print(f"{m.name:<{width}}  {m.kind:<9}  {m.title or m.name}{flag}{state}")
        for p in m.params:
            d = p.describe()
            # The label is what the napari widget shows for this parameter; choices too.
            label = f"{p.label}. " if p.label else ""
            words = ""
            if p.choice_labels:
                pairs = zip(p.choices, p.choice_labels, strict=True)
                words = " (" + "; ".join(f"{c} = {w}" for c, w in pairs) + ")"
            print(
                f"{'':<{width}}    --param {p.name}=<{d['type']}> (default {d['default']}): "
                f"{label}{p.help}{words}"
            )
    return 0


def _columns() -> int:
    """The width of the terminal the progress goes to: COLUMNS, else stderr's terminal
    (stdout may be redirected while stderr is not), else shutil's answer (80 off a tty)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return shutil.get_terminal_size().columns


def _progress_printer():
    from .engine.notes import Note

    last = {"pct": -1}

    def show(tick) -> None:
        if isinstance(tick, Note):  # a step before the tiles (loading, choosing): its words
            last["pct"] = -1  # the next tile prints its percentage again
            room = _columns() - 2
            text = tick.message if len(tick.message) <= room else tick.message[: room - 1] + "…"
            print(f"\r  {text:<{max(room, 1)}}", end="", file=sys.stderr, flush=True)
            return
        pct = int(100 * tick.fraction)
        if pct != last["pct"]:
            last["pct"] = pct
            # As wide as the terminal, less the "  100% " in front and one column so that
            # the cursor does not wrap; a cut message says so. A line that wraps would
            # start a new line at every update: too narrow for words, the percentage only.
            room = _columns() - 8
            if room < 2:
                print(f"\r{pct:3d}%", end="", file=sys.stderr, flush=True)
                return
            text = tick.message
            if len(text) > room:
                text = text[: room - 1].rstrip() + "…"
            print(f"\r  {pct:3d}% {text:<{room}}", end="", file=sys.stderr, flush=True)

    return show


def _device_asked(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """The device asked for by ``--device`` or ``--param device=...`` (one, not both)."""
    from .engine.device import DEVICES

    flag = (args.device or "auto").strip().lower()
    param = params.pop("device", None)
    if param is None:
        return flag
    param = str(param).strip().lower()
    if param not in DEVICES:
        raise ParameterError(f"Unknown device '{param}'; choose one of {', '.join(DEVICES)}.")
    if flag != "auto" and flag != param:
        raise ParameterError(
            f"--device {flag} and --param device={param} ask for different devices; give one."
        )
    return param


def _check_output_name(text: str) -> None:
    """Refuse ``-o -`` (and an empty name): images go to files, never to standard output,
    and a folder named '-' is never what was meant."""
    if text.strip() in ("", "-"):
        raise ParameterError(
            f"-o {text!r} names no file: writing an image to standard output is not "
            "supported; name an output file (out.tif) or folder (results/)."
        )


def _cmd_denoise(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .engine.methods import default_method, get_method
    from .engine.notes import listening
    from .files import check_outputs, denoise_file, plan_jobs, sidecar_path

    _check_output_name(args.output)
    method = get_method(args.method) if args.method else default_method()
    params: dict[str, Any] = _parse_params(args.param)
    method.resolve_params(params)  # fail early on unknown or bad parameters
    asked = _device_asked(args, params)  # --param device=cuda is honoured, never dropped
    if args.scheduler:
        from .engine.denoise.lazy import check_scheduler

        check_scheduler(args.scheduler)
        device = asked  # on a dask cluster each worker resolves it for itself
    else:
        device = resolve_device(asked)  # a device this machine lacks: refused here
    if "device" in {p.name for p in method.params}:
        params["device"] = device
    inputs = [Path(p) for p in args.inputs]
    jobs = plan_jobs(inputs, args.output)  # one per input, or per series of a TIFF
    # Every output, before anything is computed; every input is protected.
    check_outputs([j.source for j in jobs], [j.output for j in jobs], overwrite=args.overwrite)

    failures = 0
    for src, series, dst in jobs:
        try:
            which = f" (series {series})" if series is not None else ""
            print(f"{src}{which} -> {dst} [{method.name}]", file=sys.stderr)
            show = None if args.quiet else _progress_printer()
            with listening(show or (lambda note: None)):  # the engine's steps before tiles
                image, result, _ = denoise_file(
                    src,
                    dst,
                    method,
                    axes=args.axes,
                    tile=args.tile,
                    output_dtype=args.dtype,
                    params=params,
                    on_progress=show,
                    extra={"device": device},
                    scheduler=args.scheduler,
                    overwrite=args.overwrite,
                    series=series,
                )
            if not args.quiet:
                print(file=sys.stderr)
            print(
                f"  {image.axes} {'x'.join(map(str, image.data.shape))} {image.data.dtype}: "
                f"wrote {dst} and {sidecar_path(dst).name} in {result.seconds:.1f} s",
                file=sys.stderr,
            )
            if result.neighbours:  # a stack: its planes were not denoised alone
                word = "frame" if "T" in result.axes else "plane"
                print(
                    f"  each {word} denoised with its {result.neighbours} neighbouring "
                    f"{word}{'' if result.neighbours == 1 else 's'}, where they match "
                    f"(--param neighbours=off: each {word} alone)",
                    file=sys.stderr,
                )
        except DenoiseError as err:
            failures += 1
            print(f"\nerror: {src}: {err}", file=sys.stderr)
        except (MemoryError, RuntimeError) as err:
            if not _out_of_memory(err):
                raise
            failures += 1  # the output was never committed: nothing of it is left
            print(f"\nerror: {src}: {_MEMORY_SENTENCE}", file=sys.stderr)
    return 2 if failures else 0


_MEMORY_SENTENCE = (
    "out of memory: nothing was written for this input; try a smaller --tile, "
    "--device cpu (for a GPU), or fewer programs running at once."
)


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says memory ran out (MemoryError, torch's OutOfMemoryError, or a
    RuntimeError of an allocator that could not allocate)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


def _cmd_compare(args: argparse.Namespace) -> int:
    from .engine.metrics import compare
    from .errors import InputError
    from .io import read_image

    pred = read_image(args.pred, axes=args.axes)
    gt = read_image(args.gt, axes=args.axes)
    if pred.data.shape != gt.data.shape:
        raise InputError(
            f"The images have different shapes: {args.pred} is {pred.data.shape}, "
            f"{args.gt} is {gt.data.shape}."
        )
    slice_axes = max(0, gt.data.ndim - 2) if gt.axes.endswith("YX") else 0
    res = compare(gt.data, pred.data, data_range=args.data_range, slice_axes=slice_axes)
    if args.json:
        # nan (a range-invariant score of a constant ground truth) is null, not invalid JSON
        print(json.dumps(_json_safe(res), indent=2, default=float))
        return 0
    print(f"{res['data_range_note']} (ground truth: {args.gt})")
    print(f"PSNR  {res['psnr']:.2f} dB    SSIM  {res['ssim']:.4f}")
    ri = (
        f"PSNR* {res['psnr_ri']:.2f} dB    SSIM* {res['ssim_ri']:.4f}"
        if res["psnr_ri"] == res["psnr_ri"]
        else "PSNR* n/a         SSIM* n/a   "
    )
    print(f"{ri}   (* range-invariant: prediction affinely fitted to the ground truth)")
    print(f"NRMSE {res['nrmse']:.4f}       SNR   {res['snr']:.2f} dB")
    return 0


def _json_safe(value):
    """``value`` with every float nan as None (JSON has no nan)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _parse_region(text: str) -> tuple[int, int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        y0, x0, y1, x1 = (int(p) for p in parts)
    except ValueError:
        raise ParameterError(
            f"--region expects y0,x0,y1,x1 (four whole numbers, pixels), got '{text}'."
        ) from None
    return y0, x0, y1, x1


def train_spec(args: argparse.Namespace):
    """The training record (:class:`~.engine.training.config.FinetuneSpec`) that the
    ``train`` command's options describe: each option is the record's field of the same
    name (the Train widget builds the same record from its controls)."""
    from .engine.training.config import FinetuneSpec

    config = None
    if args.config:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as err:
            raise ParameterError(f"--config is not valid JSON ({err.msg}): {args.config}") from None
        if not isinstance(config, dict):
            raise ParameterError("--config must be a JSON object such as '{\"base\": 16}'.")
    start = args.start
    if start is None:  # N2V2 cannot start from a network that passes its input through
        start = "new:unet" if args.mode == "n2v2" else FinetuneSpec.start
    settings = {k: v for k, v in vars(args).items() if k in FinetuneSpec.field_names()}
    settings.update(
        start=start,
        config=config,
        blind_radius=None if args.blind_radius == "auto" else int(args.blind_radius),
    )
    return FinetuneSpec(**settings)


def _cmd_train(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from .engine.denoise.pipeline import drain
    from .engine.models.store import check_model_folder, user_model_dir
    from .engine.training.finetune import Phase, finetune_iter, prepare
    from .io import read_image

    spec = train_spec(args)  # every setting checked here, before any file is read
    # Where the model goes must be writable: found now, not after the training.
    check_model_folder(args.out_dir if args.out_dir else user_model_dir())
    noisy = read_image(args.noisy, axes=args.axes)
    # The noisy image's axes describe the pair; the clean file is read once, as it is
    # (one plane for a stack of a still sample, or the stack's own shape).
    clean = read_image(args.clean) if args.clean else None
    names = (
        str(Path(args.noisy).resolve()),
        str(Path(args.clean).resolve()) if args.clean else None,
    )
    prepared = prepare(
        spec,
        noisy.data,
        clean.data if clean is not None else None,
        [_parse_region(r) for r in args.region or []],
        axes=noisy.axes,
        data_names=names,
    )
    data = prepared.data
    print(
        f"{args.noisy}: {noisy.axes} {'x'.join(map(str, noisy.data.shape))}, {data['training_crops']} "
        f"training area(s), validation: {data['validation']['kind'] or 'none'}; "
        f"{spec.mode} from {spec.start} -> '{prepared.name}'",
        file=sys.stderr,
    )
    for note in prepared.notes:  # choices made from the data (e.g. a blind block)
        print(f"note: {note}", file=sys.stderr)

    interrupted: list[bool] = []

    def on_interrupt(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("\nstopping after this step (Ctrl-C again to abort) ...", file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if main_thread else None
    try:
        gen = finetune_iter(
            prepared,
            stop=lambda: bool(interrupted),
            checkpoint=args.checkpoint,
            resume=args.resume,
            out_dir=args.out_dir,
        )
        last = [0.0]

        def report(tick):
            now = time.perf_counter()
            if isinstance(tick, Phase):  # preparing, timing, checking, saving: once each
                if not args.quiet and tick.done <= 1:
                    print(f"  {tick.message}", file=sys.stderr, flush=True)
                return
            if not args.quiet and (tick.validated or tick.step == 1 or now - last[0] > 10):
                last[0] = now
                print(f"  {tick.message}", file=sys.stderr, flush=True)

        result = drain(gen, report)
    except Cancelled as err:
        print(f"stopped: {err}", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)

    card = result.card
    val = card.get("validation", {})
    score = (
        f"validation PSNR {val['psnr']:.2f} dB"
        if "psnr" in val
        else (
            f"validation masked loss {val['masked_loss']:.4g}"
            if "masked_loss" in val
            else (
                f"validation neighbour loss {val['neighbour_loss']:.4g}"
                if "neighbour_loss" in val
                else "no validation"
            )
        )
    )
    training = card["training"]
    note = f", stopped early ({training['stop_reason']})" if result.stopped else ""
    print(
        f"saved model '{result.name}' to {result.path} ({training['steps']} steps in "
        f"{training['seconds']:.0f} s, {score}, best step {val.get('best_step')}{note})"
    )
    if result.recommendation:  # the no-ground-truth check: new vs start model
        print(result.recommendation)
    if result.deconvolved_path is not None:
        print(
            f"saved its deconvolved twin '{result.deconvolved_path.stem}' to {result.deconvolved_path}"
        )
    if not result.registered:
        print(
            f"note: {result.path.parent} is not the user model folder; set "
            "NAPARI_DENOISE_MODEL_DIR to it to use the model as a method.",
            file=sys.stderr,
        )
    return 130 if interrupted else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    run_bench(
        out=Path(args.out),
        quick=args.quick,
        methods=args.methods,
        data=args.data,
        update=args.update,
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .bioimageio import export_model

    out = export_model(args.model, args.output, overwrite=args.overwrite)
    print(f"wrote bioimage.io model package {out} (format 0.5) for model '{args.model}'")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .bioimageio import import_model
    from .engine.models.store import user_model_dir

    name = import_model(
        args.package, name=args.name, allow_code=args.allow_code, overwrite=args.overwrite
    )
    print(f"imported {args.package} as method '{name}' (in {user_model_dir()})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), method=args.method)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and the tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-denoise", description="Denoise fluorescence microscopy images."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list methods and models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("denoise", help="denoise one or more images")
    p.add_argument("inputs", nargs="+", help="TIFF, OME-TIFF, PNG or NPY files, or Zarr folders")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output file for one input (.tif, .ome.tif, .png, .npy or .zarr), or a folder "
        "that receives NAME_denoised.tif per input; a .json provenance sidecar is written "
        "beside each output, named after it (out.tif.json)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (an input is never written over)",
    )
    p.add_argument("--method", help="method name (default: the best shipped method)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter")
    p.add_argument("--axes", help="axes of the input, e.g. TYX, ZYX, YXC (default: from file)")
    p.add_argument("--tile", type=int, help="tile size in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--dtype", choices=["float32"], help="output dtype (default: the input's)")
    p.add_argument(
        "--scheduler",
        metavar="NAME|ADDRESS",
        help="compute with dask, one task per plane: threads, processes, or the address of a "
        "dask scheduler (tcp://host:8786) to run on a cluster (needs napari-denoise[cluster])",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("compare", help="PSNR/SSIM of a prediction against ground truth")
    p.add_argument("pred")
    p.add_argument("gt")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--data-range",
        type=float,
        help="span of possible intensities (default: the ground truth's own max - min, "
        "whatever its dtype; needed for a constant ground truth)",
    )
    p.add_argument("--axes")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "train",
        help="fine-tune a model on noisy/clean pairs, or train on noisy images alone "
        "(Noise2Void, or Noise2Noise between a stack's neighbouring frames)",
        description=(
            "Train a model on your own images and save it (with its card) in the user model "
            "folder, where it becomes a method at once. A spatially disjoint stripe of each "
            "region is held out for validation. Ctrl-C stops after the current step and "
            "saves the best weights so far."
        ),
    )
    # The defaults and choices are the training record's (engine/training/config.py).
    from .engine.training import options
    from .engine.training.config import FinetuneSpec

    d = FinetuneSpec()
    p.add_argument("noisy", help="noisy image (TIFF, PNG, NPY; a stack trains on every slice)")
    p.add_argument(
        "--clean",
        help="ground truth of the same shape, or one plane for a stack of a still sample "
        "(needed for --mode supervised)",
    )
    p.add_argument(
        "--mode",
        default=d.mode,
        choices=options.MODES,
        help="supervised: noisy + --clean; n2v, n2v2, n2v-psf: blind spot on noisy images; "
        "n2n-frames: a noisy time-lapse or z-stack alone, each plane learnt from its "
        "aligned neighbours (Noise2Noise; needs a T or Z axis of at least 2 planes)",
    )
    p.add_argument(
        "--start",
        default=None,
        help="model to start from, or new:ARCHITECTURE (e.g. new:unet); default: unet-fluo, "
        "or a new U-Net for n2v2 (which cannot train a network that adds its input to its "
        "output)",
    )
    p.add_argument(
        "--config", help="JSON options of a new:ARCHITECTURE network, e.g. '{\"base\": 16}'"
    )
    p.add_argument(
        "--name", help="name of the new model (default: derived from --start and --mode)"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimisation steps")
    length.add_argument("--minutes", type=float, help="time budget (default: 2 minutes)")
    p.add_argument(
        "--loss",
        default=None,
        choices=options.LOSS_NAMES,
        help="default: l2 for n2n-frames (the only one it takes), else l1",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--lr", type=float, help="peak learning rate (default: 3e-4 fine-tuning, 1e-3 otherwise)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patch", type=int, default=d.patch, help="patch side in pixels")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share held out for validation (0: none)",
    )
    p.add_argument(
        "--patience", type=int, help="stop after this many validations without improvement"
    )
    p.add_argument(
        "--psf-sigma",
        type=float,
        default=d.psf_sigma,
        help="Gaussian PSF sigma in pixels (n2v-psf)",
    )
    p.add_argument(
        "--positivity",
        type=float,
        default=d.positivity,
        help="weight of the penalty on negative values (n2v-psf)",
    )
    p.add_argument(
        "--mask-fraction",
        type=float,
        default=d.mask_fraction,
        help="share of blind-spot pixels per patch",
    )
    p.add_argument(
        "--blind-radius",
        default="auto",
        choices=("auto", *(str(r) for r in range(options.MAX_BLIND_RADIUS + 1))),
        help="blind-spot modes: 0 hides one pixel, r the (2r+1)-square around it (for "
        "spatially correlated noise); auto decides from the noise (default)",
    )
    p.add_argument(
        "--region",
        action="append",
        metavar="Y0,X0,Y1,X1",
        help="train only inside this rectangle (pixels; repeat for several)",
    )
    p.add_argument("--axes", help="axes of the input, e.g. TYX, ZYX (default: from file)")
    p.add_argument(
        "--threads", type=int, help="CPU threads (default: NAPARI_DENOISE_THREADS or all)"
    )
    p.add_argument("--checkpoint", help="checkpoint path stem (default: in the model folder)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--out-dir", help="folder for the model (default: the user model folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("bench", help="benchmark every method on the real data sets")
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument(
        "--quick", action="store_true", help="one capture per FMD type, fewer W2S images"
    )
    p.add_argument("--methods", nargs="*", help="methods to run (default: all available)")
    p.add_argument("--data", help="folder of the real data (default: ../shared/data)")
    p.add_argument(
        "--update", action="store_true", help="add to / replace rows of the saved results"
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "export", help="write a model as a bioimage.io model package (.zip, format 0.5)"
    )
    p.add_argument("model", help="a blind model: shipped, trained or fine-tuned here")
    p.add_argument("-o", "--output", required=True, help="the .zip to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing .zip")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "import", help="make a bioimage.io denoising model (2-D, one channel) a method"
    )
    p.add_argument("package", help="the model package: .zip, folder or rdf.yaml")
    p.add_argument("--name", help="method name (default: from the package's id or name)")
    p.add_argument(
        "--allow-code",
        action="store_true",
        help="run the package's own code. Without it, only a state dict of an architecture "
        "napari-denoise builds itself is imported and no package code runs. With it: "
        "TorchScript weights (code: inspected first, only tensor operators, no file access, "
        "no while loop, but its time and memory are not bounded), or an architecture defined "
        "by a Python file in the package (runs once, here, and can do anything your account "
        "can). Use only for packages from people you trust",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an imported model")
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("demo", help="denoise the bundled sample and print a table")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--method")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-denoise`` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("denoise", "train", "bench", "demo"):
            from .engine.device import env_threads

            env_threads()  # NAPARI_DENOISE_THREADS=abc: one sentence now, not mid-run
        return int(args.func(args) or 0)
    except DenoiseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file-system failure not foreseen by the checks: still one line
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"error:{where} {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing more was written", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as err:
        if not _out_of_memory(err):
            raise
        print(f"\nerror: {_MEMORY_SENTENCE}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``napari-denoise``: the headless commands (list, denoise, compare, bench, demo).

Errors that napari-denoise raises on purpose are printed as one sentence on stderr with
exit status 2; nothing is written for an input that fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import DenoiseError, ParameterError

__all__ = ["main"]

TIFF_SUFFIXES = (".tif", ".tiff")


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
            print(
                f"{'':<{width}}    --param {p.name}=<{d['type']}> (default {d['default']}): {p.help}"
            )
    return 0


def _output_paths(inputs: list[Path], out: Path) -> list[Path]:
    """One output TIFF per input: ``out`` itself for one input with a TIFF suffix, else a folder."""
    if len(inputs) == 1 and out.suffix.lower() in TIFF_SUFFIXES and not out.is_dir():
        return [out]
    if out.suffix.lower() in TIFF_SUFFIXES:
        raise ParameterError(
            f"{len(inputs)} inputs need an output folder, but -o {out} names a TIFF file."
        )
    stems = [p.name.split(".")[0] for p in inputs]
    if len(set(stems)) < len(stems):
        raise ParameterError(
            "Two inputs have the same name; their outputs would overwrite each other."
        )
    return [out / f"{stem}_denoised.tif" for stem in stems]


def _progress_printer(enabled: bool):
    last = {"pct": -1}

    def show(tick) -> None:
        pct = int(100 * tick.fraction)
        if enabled and pct != last["pct"]:
            last["pct"] = pct
            print(f"\r  {pct:3d}% {tick.message[:60]:<60}", end="", file=sys.stderr, flush=True)

    return show


def _cmd_denoise(args: argparse.Namespace) -> int:
    from .engine.device import resolve_device
    from .engine.methods import default_method, get_method
    from .files import denoise_file, sidecar_path

    method = get_method(args.method) if args.method else default_method()
    params: dict[str, Any] = _parse_params(args.param)
    method.resolve_params(params)  # fail early on unknown or bad parameters
    device = resolve_device(args.device)
    if "device" in {p.name for p in method.params}:
        params["device"] = device
    inputs = [Path(p) for p in args.inputs]
    outputs = _output_paths(inputs, Path(args.output))

    failures = 0
    for src, dst in zip(inputs, outputs, strict=True):
        try:
            print(f"{src} -> {dst} [{method.name}]", file=sys.stderr)
            image, result, _ = denoise_file(
                src,
                dst,
                method,
                axes=args.axes,
                tile=args.tile,
                output_dtype=args.dtype,
                params=params,
                on_progress=_progress_printer(not args.quiet),
                extra={"device": device},
            )
            if not args.quiet:
                print(file=sys.stderr)
            print(
                f"  {image.axes} {'x'.join(map(str, image.data.shape))} {image.data.dtype}: "
                f"wrote {dst} and {sidecar_path(dst).name} in {result.seconds:.1f} s",
                file=sys.stderr,
            )
        except DenoiseError as err:
            failures += 1
            print(f"\nerror: {src}: {err}", file=sys.stderr)
    return 2 if failures else 0


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
        print(json.dumps(res, indent=2, default=float))
        return 0
    print(f"data range {res['data_range']:g} (ground truth: {args.gt})")
    print(f"PSNR  {res['psnr']:.2f} dB    SSIM  {res['ssim']:.4f}")
    print(
        f"PSNR* {res['psnr_ri']:.2f} dB    SSIM* {res['ssim_ri']:.4f}   "
        "(* range-invariant: prediction affinely fitted to the ground truth)"
    )
    print(f"NRMSE {res['nrmse']:.4f}       SNR   {res['snr']:.2f} dB")
    return 0


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
    p.add_argument("inputs", nargs="+", help="TIFF, OME-TIFF, PNG or NPY files")
    p.add_argument("-o", "--output", required=True, help="output TIFF (one input) or folder")
    p.add_argument("--method", help="method name (default: the best shipped method)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter")
    p.add_argument("--axes", help="axes of the input, e.g. TYX, ZYX, YXC (default: from file)")
    p.add_argument("--tile", type=int, help="tile size in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--dtype", choices=["float32"], help="output dtype (default: the input's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_denoise)

    p = sub.add_parser("compare", help="PSNR/SSIM of a prediction against ground truth")
    p.add_argument("pred")
    p.add_argument("gt")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-range", type=float, help="default: the dtype's range for integers")
    p.add_argument("--axes")
    p.set_defaults(func=_cmd_compare)

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

    p = sub.add_parser("demo", help="denoise the bundled sample and print a table")
    p.add_argument("--out", default="demo_output")
    p.add_argument("--method")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-denoise`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DenoiseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing more was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

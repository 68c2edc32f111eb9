"""``translate export``: write a generator as ONNX or TorchScript for deployment.

The exported graph takes ``input``, float32 NCHW (B, C, H, W) in [-1, 1], and returns
``output``, float32 NCHW in [-1, 1]; B, H and W are dynamic, H and W multiples of the
network's size multiple (4 for ResNet generators, 128/256 for U-Nets). TorchScript files
carry code: they are for deployment, translate itself never loads them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from translate.errors import UserError

SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from translate.commands.common import add_model_arguments

    p = sub.add_parser(
        "export",
        help="export a generator as ONNX or TorchScript",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p, tiling=False)
    p.add_argument(
        "--format",
        choices=["onnx", "torchscript"],
        help="onnx (opset >= 17, dynamic batch/height/width) or torchscript (traced); default from OUT's suffix (.onnx, or .pt/.ts/.torchscript)",
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18, at least 17)")
    p.add_argument(
        "--exporter",
        choices=["dynamo", "legacy"],
        default="dynamo",
        help="ONNX exporter tried first (torch.export-based dynamo, or the TorchScript-based legacy one); the other is the fallback",
    )
    p.add_argument("--no-check", action="store_true", help="skip running the exported file against PyTorch")
    p.add_argument("out", metavar="OUT", help="file to write (float32 NCHW input/output in [-1, 1])")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from translate.commands.common import load_translator
    from translate.infer.export import CHECK_TOLERANCE, MIN_OPSET, export_generator

    out = Path(args.out)
    fmt = args.format or SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"{out}: cannot tell the format from the suffix; pass --format onnx or --format torchscript")
    if args.opset < MIN_OPSET:
        raise UserError(f"--opset {args.opset}: must be at least {MIN_OPSET}")
    translator = load_translator(args)
    result = export_generator(
        translator.net,
        translator.net_config,
        out,
        fmt,
        opset=args.opset,
        exporter=args.exporter,
        check=not args.no_check,
        protect=[args.model],
    )
    detail = f"{result.format} via {result.exporter}"
    if result.max_abs_diff is not None:
        shape = "x".join(map(str, result.check_shape or ()))
        detail += f"; max abs difference to PyTorch {result.max_abs_diff:.2g} on a {shape} input"
    print(f"wrote {result.path} ({detail}) from {translator.source}")
    if result.max_abs_diff is not None and result.max_abs_diff > CHECK_TOLERANCE:
        print(f"warning: the exported model differs from PyTorch by more than {CHECK_TOLERANCE}", flush=True)
        return 1
    return 0

"""``translate apply``: translate a folder (recursively, into a mirrored tree) or one image file.

::

    translate apply --model runs/day2night --direction AtoB  photos/  out/     # a folder
    translate apply --model g.safetensors  image.jpg  out.png                  # one file

Re-running after an interruption skips finished outputs (``--overwrite`` redoes them). Each image
keeps its size unless ``--max-side``/``--size`` resize it first; the output then has the resized
size. Unreadable files are reported one line each and the exit status is 1; the others are
translated. Under ``torchrun`` each rank translates every world-th file from its rank on and
prints its own summary line, prefixed ``[rank r/w]`` (there is no process group to gather counts over).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from translate.commands.common import add_model_arguments, load_translator
from translate.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "apply",
        help="translate a folder of images (recursively) or one image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="image folder (searched recursively) or one image file")
    p.add_argument("output", help="output folder (mirrors the input tree), or an output image file for one input file")
    add_model_arguments(p)
    p.add_argument(
        "--format",
        dest="output_format",
        choices=["keep", "png", "jpg", "webp"],
        default="keep",
        help="output format; keep (default) writes each file in its own format, PNG where ours cannot",
    )
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95)")
    resize = p.add_mutually_exclusive_group()
    resize.add_argument("--max-side", type=int, metavar="N", help="first downscale images whose longer side exceeds N; outputs have the resized size")
    resize.add_argument("--size", metavar="WxH", help="first resize every image to W x H pixels; outputs have that size")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them)")
    p.add_argument("--workers", type=int, default=2, help="decoding threads and encoding threads, each (default 2)")
    p.set_defaults(run=run)


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` → ``(640, 480)``, or a UserError naming ``--size``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. --size 512x384")
    return int(match[1]), int(match[2])


def run(args: argparse.Namespace) -> int:
    from translate.infer.folder import check_folder_paths, file_output_path, translate_file, translate_folder
    from translate.runtime import dist_from_env

    size = parse_size(args.size) if args.size else None
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality {args.quality}: must be between 1 and 100")
    if args.max_side is not None and args.max_side < 1:
        raise UserError(f"--max-side {args.max_side}: must be at least 1")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    src = Path(args.input)
    # Check the paths before loading the model, so a typo costs no model load.
    if src.is_dir():
        check_folder_paths(src, Path(args.output))
    elif src.exists():
        file_output_path(src, args.output, args.output_format)
    else:
        raise UserError(f"{src}: not found — give an existing image file or folder of images")

    info = dist_from_env()
    if info.enabled and args.device == "auto":
        import torch

        if torch.cuda.is_available():  # one GPU per rank, as torchrun lays them out
            args.device = f"cuda:{info.local_rank}"
    translator = load_translator(args)
    options = dict(output_format=args.output_format, quality=args.quality, max_side=args.max_side, size=size, overwrite=args.overwrite)
    if src.is_dir():
        report = translate_folder(translator, src, Path(args.output), batch_size=args.batch_size, workers=args.workers, **options)
    else:
        report = translate_file(translator, src, args.output, **options)
    print(f"{report.summary()} → {args.output}")
    if report.failed:
        print(f"{len(report.failed)} file(s) failed; the 'failed:' lines name each one and say what to do")
        return 1
    return 0

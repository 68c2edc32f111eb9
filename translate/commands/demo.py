"""``translate demo``: translate real photos and a real video with a real pretrained model, offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="translate sample photos and a video with a pretrained model (no downloads)", description=__doc__)
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out/)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 where the hardware computes it natively (AVX512-BF16/AMX CPUs, recent GPUs), else fp32",
    )
    p.add_argument("--frames", type=int, default=48, help="video frames to translate (default 48)")
    p.add_argument("--video-width", type=int, default=320, help="width of the demo clip (default 320)")
    p.add_argument("--photo-side", type=int, default=384, help="longest side of the demo photos (default 384)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from translate.infer.demo import run_demo

    report = run_demo(
        Path(args.out), device=args.device, precision=args.precision, frames=args.frames, video_width=args.video_width, photo_side=args.photo_side
    )
    print(f"demo: {report.photos} photos and {report.video_frames} video frames translated in {report.seconds:.0f} s")
    print(f"open {report.out / 'index.html'} (or {report.out / 'contact_sheet.png'}) to see input beside output")
    return 0

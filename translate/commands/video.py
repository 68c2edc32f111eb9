"""``translate video``: translate a video file (or a folder of frames) with a trained generator.

::

    translate video --model runs/day2night clip.mp4 clip_night.mp4
    translate video --model runs/day2night clip.mov compare.mp4 --side-by-side
    translate video --model runs/day2night frames/ frames_night/     # folder of images → folder
    translate video --model runs/day2night clips/ clips_night/       # folder of videos → folder, mirrored

Frames are stabilised over time unless ``--temporal off``: each frame's instance-norm
statistics are carried from the frames before it and the previous output, moved along the
input's optical flow, is blended in where the flow is reliable; scene cuts reset both. Measure
it with ``translate eval --video INPUT OUTPUT`` (the flicker ratio).

The output keeps every frame with its timestamp (variable frame rate included), the duration,
the displayed orientation (frames are translated upright and written upright) and every audio
stream, copied without re-encoding. Video is written as H.264 (``--codec``) in yuv420p; an odd
height or width is padded by one repeated row or column. The file appears under its final name
only when complete. A truncated file is translated as far as it decodes, with a warning.

A folder of videos is translated into a mirrored tree; running the command again skips the
videos already done (``--overwrite`` redoes them), a video that cannot be read is reported and
the others go on, and under torchrun each process takes its share of the files.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from translate.commands.common import add_model_arguments, load_translator
from translate.errors import UserError

log = logging.getLogger("translate")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video",
        help="translate a video (audio, timing and orientation kept)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="INPUT", help="video file (mp4, mkv, mov, avi, webm, …), folder of videos or folder of frames")
    p.add_argument("dst", metavar="OUTPUT", help="output video (format from its suffix: .mp4, .mkv, .mov) or folder")
    add_model_arguments(p)
    p.add_argument("--codec", default="libx264", help="video encoder (default libx264; e.g. libx265, libvpx-vp9 for .webm)")
    p.add_argument("--crf", type=int, default=18, help="quality for x264/x265/vpx/av1: lower is better, 18 ≈ visually lossless (default 18)")
    p.add_argument("--side-by-side", action="store_true", help="write input | translation side by side")
    p.add_argument(
        "--temporal",
        choices=["off", "stable"],
        default="stable",
        help="stable (default): tie each frame to the ones before it so the video does not flicker "
        "(carried instance-norm statistics, flow-guided blending, reset at scene cuts); off: every frame on its own",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="folder of videos: redo videos whose output exists (default: skip them)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from translate.data.video import probe_video
    from translate.infer.video import VideoReport, check_paths, translate_video

    if not 0 <= args.crf <= 63:
        raise UserError(f"--crf {args.crf}: must be between 0 and 51 (x264/x265) or 63 (vpx/av1); 18 is a good default")
    src, dst = Path(args.src), Path(args.dst)
    check_paths(src, dst)
    if not src.is_dir():
        probe_video(src)  # a bad input fails in milliseconds, before the model loads
    translator = load_translator(args)
    report = translate_video(
        translator,
        src,
        dst,
        codec=args.codec,
        crf=args.crf,
        side_by_side=args.side_by_side,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        temporal=args.temporal,
        overwrite=args.overwrite,
    )
    if isinstance(report, VideoReport):
        audio = f", {report.audio_streams} audio stream(s) copied" if report.audio_streams else ""
        audio += f", stabilised ({report.cuts} scene cut(s))" if report.cuts is not None else ""
        print(
            f"{dst}: {report.frames} frames {report.width}x{report.height}{audio} in {report.seconds:.1f} s ({report.frames_per_second:.1f} frames/s)"
        )
        return 0
    print(f"{dst}: {report.summary()}")  # a folder of videos or frames: a FolderReport
    for path, reason in report.failed:
        log.error("%s: %s", path, reason)
    return 0 if report.ok else 1

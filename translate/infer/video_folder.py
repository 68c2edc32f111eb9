"""A folder of videos in, a folder of videos out (``translate video DIR OUT_DIR``).

The tree is mirrored: ``DIR/trips/a.mov`` becomes ``OUT_DIR/trips/a.mov`` (a container that
cannot hold H.264, such as .webm or .avi, becomes .mp4). Each video is written atomically by
:func:`~translate.infer.video.translate_video`, so an interrupted run leaves only complete
outputs, and running the command again skips them (``overwrite`` redoes them). A video that
cannot be read is reported and the others go on. Under ``torchrun`` rank ``r`` translates
``videos[r::world]`` of the sorted list, as ``translate apply`` shards images.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from translate.data.media import list_videos
from translate.errors import UserError
from translate.infer.folder import FolderReport

log = logging.getLogger("translate")

KEEP_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov"})  # containers that hold H.264 and AAC


def output_path(src_dir: Path, video: Path, dst_dir: Path) -> Path:
    relative = video.relative_to(src_dir)
    return dst_dir / (relative if relative.suffix.lower() in KEEP_SUFFIXES else relative.with_suffix(".mp4"))


def translate_video_folder(
    translate_one: Callable[..., Any], translator: Any, src_dir: Path, dst_dir: Path, *, overwrite: bool = False, **video_options: Any
) -> FolderReport:
    """Translate every video under ``src_dir`` into the mirrored tree ``dst_dir``.

    Args:
        translate_one: translates one video file: :func:`~translate.infer.video.translate_video`
            (which calls this for folders of videos; passed in, so neither imports the other).
        translator: what :func:`~translate.infer.video.translate_video` takes.
        src_dir: a folder holding video files (searched recursively).
        dst_dir: the output folder (created); not inside ``src_dir``.
        overwrite: translate videos whose output already exists (default: skip them).
        video_options: passed to :func:`~translate.infer.video.translate_video` (``temporal``,
            ``codec``, ``crf``, ``side_by_side``, ``batch_size``, ``progress``, …).

    Returns:
        A :class:`~translate.infer.folder.FolderReport` of this rank's share (paths are inputs).

    Raises:
        UserError: no video under ``src_dir``, ``dst_dir`` inside it, or two inputs that would
            write the same output.
    """
    from translate.runtime import dist_from_env

    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    videos = list_videos(src_dir)
    if not videos:
        raise UserError(f"{src_dir}: no video files found (mp4, mkv, mov, avi, webm, m4v); pass a video, a folder of videos or a folder of frames")
    if dst_dir.resolve().is_relative_to(src_dir.resolve()):
        raise UserError(f"{dst_dir}: is inside the input folder {src_dir}; choose an output folder outside it")
    targets: dict[Path, Path] = {}
    for video in videos:
        target = output_path(src_dir, video, dst_dir)
        if target in targets:
            raise UserError(f"{video} and {targets[target]} would both be written to {target}; rename one of them")
        targets[target] = video
    info = dist_from_env()
    report = FolderReport(rank=info.rank, world_size=info.world_size)
    started = time.perf_counter()
    for target, video in list(targets.items())[info.rank :: info.world_size]:
        if target.exists() and not overwrite:
            report.skipped.append(video)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            done = translate_one(translator, video, target, **video_options)
        except UserError as exc:
            report.failed.append((video, str(exc)))
            log.error("%s", exc)
            continue
        report.translated.append(video)
        log.info("%s: %d frames", target, done.frames)
    report.seconds = time.perf_counter() - started
    return report

"""A dataset domain's samples: its images, and every frame of its video files.

A domain folder (``trainA``, ``train/A``, …) may hold video files beside images, in nested
folders too. Each image is one sample; each video contributes one sample per frame, read on
demand (seek to the keyframe before it, decode forward): no frame-extraction step, and never
a whole video in memory. A video's frame table (presentation timestamps, read from its packets
without decoding) is built once when the dataset is made.

With ``next_frame`` a video sample also gives the frame after it (for the temporal loss); the
last frame of a video pairs with the one before it instead, so every pair is consecutive.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from translate.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, read_headers, read_image
from translate.errors import UserError
from translate.files import to_channels

log = logging.getLogger("translate")

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm"})


@dataclass(frozen=True)
class Sample:
    """One training sample: an image (``frame`` None) or one frame of a video."""

    path: Path
    frame: int | None = None
    size: tuple[int, int] = (0, 0)  # (width, height), upright

    def __str__(self) -> str:
        return str(self.path) if self.frame is None else f"{self.path}#frame{self.frame}"


@dataclass(frozen=True)
class VideoTable:
    """What reading a frame of a video needs: its frames' timestamps, in display order."""

    pts: tuple[int, ...]
    ops: tuple[str, ...]  # to turn frames upright
    stored_size: tuple[int, int]  # (width, height) before turning


def list_videos(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursive, hidden ones skipped), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in filenames if not n.startswith(".") and Path(n).suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def video_table(path: Path) -> VideoTable:
    """The frame table of ``path`` (UserError naming it when it holds no decodable video)."""
    import av

    from translate.data.video import open_input, probe_video, video_stream

    probe = probe_video(path)
    with open_input(path) as container:
        stream = video_stream(container)
        pts = []
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
        except av.error.FFmpegError:
            pass  # a truncated file: the frames before the damage
    if not pts:
        raise UserError(f"{path}: no video frame found; re-export the video or remove it from the dataset")
    return VideoTable(tuple(sorted(set(pts))), probe.ops, (probe.width, probe.height))


def domain_samples(folder: Path) -> tuple[list[Sample], dict[Path, VideoTable]]:
    """Every sample of a domain folder: its readable images and every frame of its videos.

    Returns:
        ``(samples, tables)``: samples sorted by relative path (a video's frames in order), and
        the frame table of each video.

    Raises:
        UserError: the folder is missing or holds neither a readable image nor a video.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found — see datasets/README.md for the layouts")
    images, videos = list_images(folder), list_videos(folder)
    if not images and not videos:
        raise UserError(
            f"{folder}: no images or videos found (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}) "
            "— put the images or video files of this domain there"
        )
    sizes = read_headers(images) if images else {}
    samples = [Sample(path, None, sizes[path]) for path in images if path in sizes]
    tables = {}
    for path in videos:
        table = video_table(path)
        tables[path] = table
        width, height = table.stored_size
        upright = (height, width) if any(op.startswith("rot90") or op.endswith("transpose") for op in table.ops) else (width, height)
        samples += [Sample(path, index, upright) for index in range(len(table.pts))]
    if not samples:
        raise UserError(
            f"{folder}: no readable images (found {len(images)} files, none readable) — see the warnings above and replace or re-save them"
        )
    samples.sort(key=lambda s: (s.path.relative_to(folder).as_posix(), s.frame or 0))
    return samples, tables


def read_frames(path: Path, table: VideoTable, first: int, count: int, channels: int) -> list[np.ndarray]:
    """Frames ``first`` .. ``first + count - 1`` of a video, float32 (H, W, channels) in [0, 1], upright.

    Raises:
        ImageReadError: the frames cannot be decoded (a damaged file).
    """
    import av

    from translate.data.video import apply_ops, open_input, video_stream

    wanted = table.pts[first : first + count]
    found: list[np.ndarray] = []
    try:
        with open_input(path) as container:
            stream = video_stream(container)
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None or frame.pts < wanted[len(found)]:
                    continue
                width, height = table.stored_size
                pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
                image = apply_ops(pixels, table.ops).astype(np.float32) / 255.0
                found.append(to_channels(image, channels))
                if len(found) == len(wanted):
                    break
    except (av.error.FFmpegError, UserError) as exc:
        raise ImageReadError(f"{path}: frame {first} cannot be decoded ({exc})") from None
    if len(found) != len(wanted):
        raise ImageReadError(f"{path}: frame {first + len(found)} cannot be decoded (the file ends early)")
    return found


def read_sample(sample: Sample, channels: int, tables: dict[Path, VideoTable], *, next_frame: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """A sample's pixels, float32 (H, W, channels) in [0, 1], and with ``next_frame`` the
    following frame of its video (None for an image); the last frame pairs with the one before."""
    if sample.frame is None:
        return read_image(sample.path, channels), None
    table = tables[sample.path]
    if not next_frame:
        return read_frames(sample.path, table, sample.frame, 1, channels)[0], None
    if len(table.pts) < 2:
        return read_frames(sample.path, table, sample.frame, 1, channels)[0], None
    first = min(sample.frame, len(table.pts) - 2)
    current, following = read_frames(sample.path, table, first, 2, channels)
    return current, following


def temporal_pair(current: np.ndarray, following: np.ndarray | None) -> dict[str, np.ndarray]:
    """What the temporal loss needs of two consecutive (augmented) frames, float32 (H, W, C) in
    [0, 1]: the next frame, the flow from it back to the current one ((H, W, 2), pixels) and the
    pixels where that flow is reliable ((H, W, 1), 0 or 1). An image has no next frame: itself,
    zero flow and an empty mask, so it adds nothing to the loss."""
    from translate.data.flow import FlowEstimator, gray, motion

    if following is None:
        height, width = current.shape[:2]
        return {"next": current, "flow": np.zeros((height, width, 2), np.float32), "mask": np.zeros((height, width, 1), np.float32)}
    backward, reliable = motion(gray(current), gray(following), FlowEstimator())  # (a DIS instance is cheap to make)
    return {"next": following, "flow": backward, "mask": reliable[..., None].astype(np.float32)}

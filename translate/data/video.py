"""Reading video files: their stream, frame count, timing and display rotation, and their frames.

Used by inference (``translate video``), the video metrics (``translate eval --video``) and
datasets whose domains hold video files. Rotation is read from the stream's display matrix (or ``rotate`` tag) and turned into the
flips/transposes that make frames upright, as FFmpeg's autorotate does; the networks were
trained on upright images, so frames are translated upright and written without rotation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from translate.errors import UserError

log = logging.getLogger("translate")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
NOT_FOUND = "{src}: not found; pass an existing video file (mp4, mkv, mov, avi, webm) or a folder of frames"


def upright_ops(matrix: np.ndarray | None, rotation: float) -> tuple[str, ...]:
    """Array operations that show a stored frame upright, as FFmpeg's autorotate does.

    Args:
        matrix: the 9 int32 of the frame's DISPLAYMATRIX side data (None when absent).
        rotation: its counter-clockwise rotation in degrees (``VideoFrame.rotation``).

    Returns:
        Names among ``rot90_ccw``, ``rot90_cw``, ``transpose``, ``antitranspose``, ``hflip``
        and ``vflip`` for :func:`apply_ops`. Angles that are not multiples of 90° would need
        resampling; they are ignored with a warning.
    """
    if matrix is None:
        return ()
    # the decision table of fftools/ffmpeg_filter.c; theta: clockwise degrees in [0, 360)
    theta = -round(rotation)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return ("transpose",) if matrix[3] > 0 else ("rot90_cw",)
    if abs(theta - 180) < 1:
        return tuple(op for op, flip in (("hflip", matrix[0] < 0), ("vflip", matrix[4] < 0)) if flip)
    if abs(theta - 270) < 1:
        return ("antitranspose",) if matrix[3] < 0 else ("rot90_ccw",)
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return ("vflip",) if matrix[4] < 0 else ()
    log.warning("display rotation of %s degrees is not a multiple of 90; frames are kept as stored", rotation)
    return ()


_OPS = {
    "rot90_ccw": lambda a: np.rot90(a, 1),
    "rot90_cw": lambda a: np.rot90(a, -1),
    "transpose": lambda a: a.transpose(1, 0, 2),
    "antitranspose": lambda a: np.rot90(a, -1)[::-1],
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
}


def apply_ops(image: np.ndarray, ops: tuple[str, ...]) -> np.ndarray:
    """Apply :func:`upright_ops` to an (H, W, C) array; returns a contiguous array."""
    for op in ops:
        if op not in _OPS:
            raise ValueError(f"unknown orientation op {op!r}; expected one of {', '.join(_OPS)}")
        image = _OPS[op](image)
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------
# probing


@dataclass
class VideoProbe:
    """What :func:`probe_video` found out about a video file's first video stream."""

    width: int  # stored size of the frames (before turning upright)
    height: int
    ops: tuple[str, ...]
    rotation: int
    time_base: Fraction
    rate: Fraction
    announced_frames: int | None  # frame count in the container's index (mp4, mov, avi)
    announced_seconds: float | None  # the container's duration
    stream_end: int | None  # start + duration of the video stream, in its time base

    @property
    def expected_frames(self) -> int | None:
        if self.announced_frames or not self.announced_seconds:
            return self.announced_frames
        return round(self.announced_seconds * self.rate) or None


def error_reason(exc: BaseException) -> str:
    """A short reason for a message: the OS/FFmpeg error text, without its final period."""
    return str(getattr(exc, "strerror", None) or exc).strip().rstrip(".") or type(exc).__name__


def open_input(src: Path) -> Any:
    """Open ``src`` for reading with PyAV (``UserError`` naming it if missing, an image or unreadable)."""
    import av

    if not src.exists():
        raise UserError(NOT_FOUND.format(src=src))
    if src.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"{src}: is an image, not a video; translate images with `translate apply`")
    try:
        return av.open(str(src), "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UserError(
            f"{src}: cannot be read as a video ({error_reason(exc)}): it is damaged, truncated or not a video; "
            "pass a file FFmpeg decodes (mp4, mkv, mov, avi, webm)"
        ) from None


def video_stream(container: Any) -> Any:
    """The first video stream that is not a cover picture (music files carry those)."""
    import av

    return next((s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic), None)


def probe_video(src: Path) -> VideoProbe:
    """Open ``src``, decode its first video frame and describe the stream (``UserError`` if unusable)."""
    import av

    with open_input(src) as container:
        stream = video_stream(container)
        if stream is None:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no stream"
            raise UserError(f"{src}: has no video stream (it holds {kinds}); pass a file with a video track")
        first = None
        try:
            for packet in container.demux(stream):
                try:
                    first = next(iter(packet.decode()), None)
                except av.error.FFmpegError:
                    continue
                if first is not None:
                    break
        except av.error.FFmpegError:
            pass
        if first is None:
            raise UserError(f"{src}: no video frame could be decoded (damaged, truncated or an unsupported codec); re-export or repair the video")
        side_data = first.side_data.get("DISPLAYMATRIX")
        matrix = None if side_data is None else np.frombuffer(bytes(side_data), dtype=np.int32)
        return VideoProbe(
            width=first.width,
            height=first.height,
            ops=upright_ops(matrix, first.rotation),
            rotation=int(first.rotation) if matrix is not None else 0,
            time_base=stream.time_base or Fraction(1, 90000),
            rate=Fraction(stream.guessed_rate or stream.average_rate or 30),
            announced_frames=stream.frames or None,
            announced_seconds=container.duration / 1e6 if container.duration else None,
            stream_end=(stream.start_time or 0) + stream.duration if stream.duration else None,
        )


def iter_frames(src: Path, probe: VideoProbe | None = None) -> Iterator[np.ndarray]:
    """The upright RGB frames of ``src``'s video stream, uint8 (H, W, 3), one at a time (memory
    stays flat over any length); damaged packets are skipped, as ``translate video`` does."""
    import av

    probe = probe or probe_video(src)
    with open_input(src) as container:
        stream = video_stream(container)
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    size = {} if (frame.width, frame.height) == (probe.width, probe.height) else {"width": probe.width, "height": probe.height}
                    yield apply_ops(frame.to_ndarray(format="rgb24", **size), probe.ops)
        except av.error.FFmpegError:
            return  # a truncated file: the frames that decode

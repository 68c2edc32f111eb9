"""Make small real video files for tests with PyAV, and read them back.

``make_clip`` writes a clip whose frames are an upright picture (:func:`clip_frame`) stored so
that a player shows it upright: with ``rotation`` the stored frames are turned the other way and
the display matrix says how to turn them back, as phones do. Other helpers damage files
(:func:`truncate_file`) or make files without video (:func:`make_audio_only`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# frame durations (ms) cycled through by variable-frame-rate clips
VFR_PATTERN_MS = (33, 67, 20, 100, 41)


def has_encoder(name: str) -> bool:
    """Whether this FFmpeg build can encode with ``name`` (e.g. libvpx-vp9, libopus)."""
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def clip_frame(index: int, width: int, height: int) -> np.ndarray:
    """An upright (H, W, 3) uint8 frame whose orientation can be read back after lossy coding.

    Bright top half, a red band on the left quarter, a green level that grows with ``index``:
    no rotation or flip of it looks like itself.
    """
    image = np.full((height, width, 3), 30, np.uint8)
    image[: height // 2] = 200
    image[:, : max(1, width // 4), 0] = 255
    image[..., 1] = (index * 9) % 256
    return image


def _stored(image: np.ndarray, rotation: int) -> np.ndarray:
    # the display matrix rotates the stored frame counter-clockwise by `rotation` to show it,
    # so the stored frame is the upright one turned clockwise by that much
    return np.ascontiguousarray(np.rot90(image, -(rotation // 90) % 4))


def make_clip(
    path: Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: int = 24,
    audio: bool = True,
    vfr: bool = False,
    rotation: int = 0,
    codec: str = "libx264",
    container: str | None = None,
    audio_codec: str | None = None,
    faststart: bool = False,
) -> Path:
    """Write a short clip and return its path.

    Args:
        path: output file; the container comes from its suffix unless ``container`` is given.
        frames: number of video frames.
        size: (width, height) as displayed (upright); odd sides need a codec that takes them
            (libx264 does not with yuv420p: use even sides or ``codec="mpeg4"`` …).
        fps: frame rate (constant frame rate clips).
        audio: add a mono sine audio stream covering the clip (AAC, or ``audio_codec``).
        vfr: variable frame rate: frame durations cycle through :data:`VFR_PATTERN_MS`.
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270).
        codec: video encoder (libx264, libvpx-vp9, mpeg4, …).
        container: FFmpeg format name (mp4, matroska, webm, mov, avi) when the suffix is not enough.
        audio_codec: audio encoder (default aac; libopus for webm).
        faststart: put the mp4 index first, so a truncated copy still decodes partly.
    """
    width, height = size
    stored_w, stored_h = (height, width) if rotation % 180 else (width, height)
    time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = stored_w, stored_h, "yuv420p"
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio_codec or ("libopus" if out.format.name == "webm" else "aac"), rate=48000)
            sound.layout = "mono"
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_stored(clip_frame(i, width, height), rotation), format="rgb24")
            step = VFR_PATTERN_MS[i % len(VFR_PATTERN_MS)] if vfr else 1
            frame.pts, frame.time_base, frame.duration = pts, time_base, step
            pts += step
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _write_tone(out, sound, seconds=float(pts * time_base))
    return path


def _write_tone(out: av.container.OutputContainer, sound: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = sound.codec_context.sample_rate
    total, start, chunk = int(rate * seconds), 0, 960
    while start < total:
        count = min(chunk, total - start)
        t = np.arange(start, start + count) / rate
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(sound.encode(frame))
        start += count
    out.mux(sound.encode(None))


def make_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An .m4a-like file (AAC in mp4) with no video stream."""
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        _write_tone(out, sound, seconds)
    return path


def truncate_file(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a download cut short)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return dst


@dataclass
class ClipInfo:
    """What a video file holds, read back with PyAV."""

    frames: list[np.ndarray]  # decoded (H, W, 3) uint8, as stored (no rotation applied)
    times: list[Fraction]  # presentation time of each frame, seconds
    rotation: int  # display rotation of the first frame, degrees counter-clockwise
    duration: Fraction | None  # video stream duration, seconds
    width: int
    height: int
    codec: str
    audio_packets: list[list[bytes]]  # per audio stream, the payload of each packet


def read_clip(path: Path) -> ClipInfo:
    """Decode every video frame and collect every audio packet of ``path``."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio_index = {s.index: i for i, s in enumerate(container.streams.audio)}
        info = ClipInfo([], [], 0, None, video.width, video.height, video.codec_context.name, [[] for _ in audio_index])
        if video.duration is not None:
            info.duration = video.duration * video.time_base
        for packet in container.demux(video, *container.streams.audio):
            if packet.stream.index in audio_index:
                if packet.size:
                    info.audio_packets[audio_index[packet.stream.index]].append(bytes(packet))
                continue
            for frame in packet.decode():
                if not info.frames:
                    info.rotation = int(frame.rotation)
                info.frames.append(frame.to_ndarray(format="rgb24"))
                info.times.append(frame.pts * frame.time_base)
    return info


def upright(info: ClipInfo, index: int) -> np.ndarray:
    """Frame ``index`` of ``info`` as a player shows it (display rotation applied)."""
    return np.ascontiguousarray(np.rot90(info.frames[index], (info.rotation // 90) % 4))


def pan_frames(photo: np.ndarray, frames: int, size: tuple[int, int], step: tuple[float, float] = (1.3, 0.4)) -> list[np.ndarray]:
    """A camera panning over ``photo`` (uint8 (H, W, 3)): ``frames`` crops of ``size`` (width,
    height) moving by ``step`` pixels (sub-pixel) per frame, resampled bilinearly."""
    import cv2

    width, height = size
    out = []
    for i in range(frames):
        shift = np.float32([[1, 0, -step[0] * i - 2], [0, 1, -step[1] * i - 2]])
        out.append(cv2.warpAffine(photo, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return out


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 25, crf: int = 12) -> Path:
    """Encode RGB uint8 frames (even sides) as H.264 (yuv420p) at a high quality."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode(None))
    return path

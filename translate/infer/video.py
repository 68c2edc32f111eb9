"""Video translation with PyAV: decode → batched inference → encode, as a bounded pipeline.

::

    decoder thread ──► queue ──► main thread: batches through ──► queue ──► encoder thread
    (demux, decode, turn          translator.translate_batch              (encode + mux video,
     upright, RGB uint8)                                                   remux audio packets)

Memory stays flat over any length of video: each queue holds at most ``queue_bound`` items
and one batch is in the network; no list of frames is kept anywhere.

What the output keeps from the input:

- every frame, with its own timestamp: the pts, in the input stream's time base, goes to an
  encoder and output stream with that time base (exact in mp4/mov; mkv/webm store
  milliseconds), so variable frame rate survives;
- the duration: each packet gets its frame's real display duration (the last frame lasts until
  the stream's announced end). Exact at constant frame rate; at variable frame rate mp4 derives
  the duration from the encoder's decode timestamps, so it may differ by less than a frame;
- every audio stream, remuxed packet by packet without re-encoding (other streams are dropped);
- the displayed orientation: frames are turned upright first, as a player applies the display
  matrix, and translated upright, because the networks were trained on upright images; they are
  written upright without rotation metadata, so every player shows them the same way.

Sides must be even for yuv420p: an odd height or width is padded by repeating the last row or
column (no input pixel is lost; the output is one pixel larger on that side).

A truncated or damaged file is translated as far as it decodes, with a warning that gives the
frame count (damaged packets are skipped, as players do); a file from which no frame decodes is
refused with a ``UserError``.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from translate.data.video import NOT_FOUND, VideoProbe, apply_ops, error_reason, open_input, probe_video, video_stream
from translate.errors import UserError
from translate.files import atomic_path, grey_tensor, remove_stale_temps, signed_to_uint8, to_unit, unit_to_signed
from translate.infer.temporal import TemporalSettings, TemporalStabilizer

Temporal = Literal["off", "stable"]

log = logging.getLogger("translate")

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".ogv", ".gif"})
CRF_CODECS = frozenset({"libx264", "libx265", "libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"})
_END = object()  # closes a queue


@dataclass
class VideoReport:
    """What :func:`translate_video` did.

    Attributes:
        frames: frames translated and written.
        expected_frames: frames the container announces or implies (None when unknown).
        seconds: wall time end to end (probe, decode, inference, encode).
        model_seconds: time spent in ``translate_batch``.
        audio_streams: audio streams copied without re-encoding.
        width, height: size of the written frames.
        rotation: display rotation of the input (degrees counter-clockwise), undone.
        truncated: fewer frames decoded than the file announces (damaged or cut short).
        queue_bound: capacity of each of the two queues.
        peak_queued: most items ever waiting in one queue (at most ``queue_bound``).
        cuts: scene cuts found (``temporal="stable"``: state reset there); None when ``off``.
    """

    src: Path
    dst: Path
    frames: int = 0
    expected_frames: int | None = None
    seconds: float = 0.0
    model_seconds: float = 0.0
    audio_streams: int = 0
    width: int = 0
    height: int = 0
    rotation: int = 0
    cuts: int | None = None
    truncated: bool = False
    queue_bound: int = 0
    peak_queued: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------------------
# the pipeline's queues and threads


class _Stopped(Exception):
    """Raised in a thread blocked on a queue when another part of the pipeline failed."""


class _Pipe:
    """A bounded queue whose put and get give up once the pipeline is stopped."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.stop = stop
        self.peak = 0

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            self.peak = max(self.peak, self.queue.qsize())
            return
        raise _Stopped

    def get(self) -> Any:
        while not self.stop.is_set():
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped


class _Worker(threading.Thread):
    """Runs ``target``; an exception is kept for the main thread and stops the pipeline."""

    def __init__(self, target: Any, stop: threading.Event, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.target, self.stop, self.error = target, stop, None

    def run(self) -> None:
        try:
            self.target()
        except _Stopped:
            pass
        except BaseException as exc:
            self.error = exc
            self.stop.set()


def _decode(container: Any, probe: VideoProbe, audio_map: dict[int, Any], out: _Pipe, status: dict[str, Any]) -> None:
    """Decoder thread: video frames → ("video", pts, duration, upright RGB), audio packets as they are."""
    import av

    stream = video_stream(container)
    default_duration = max(1, round(1 / (probe.rate * probe.time_base)))
    held = None  # [pts, duration, image]: a frame's display duration is known when the next one arrives
    count = 0
    try:
        for packet in container.demux(stream, *[container.streams[i] for i in audio_map]):
            if packet.stream.index in audio_map:
                if packet.size and packet.dts is not None:  # size 0: end-of-stream marker
                    out.put(("audio", packet))
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                status["bad_packets"] += 1
                continue
            for frame in frames:
                pts = frame.pts if frame.pts is not None else (0 if held is None else held[0] + held[1])
                if held is not None:
                    pts = max(pts, held[0] + 1)  # encoders refuse repeated timestamps
                    held[1] = pts - held[0]
                    out.put(("video", *held))
                size = {} if (frame.width, frame.height) == (probe.width, probe.height) else {"width": probe.width, "height": probe.height}
                held = [pts, frame.duration or default_duration, apply_ops(frame.to_ndarray(format="rgb24", **size), probe.ops)]
                count += 1
    except av.error.FFmpegError as exc:
        status["read_error"] = error_reason(exc)
    if held is not None:
        complete = not status["read_error"] and count >= (probe.announced_frames or 0)
        if complete and probe.stream_end is not None and 0 < probe.stream_end - held[0] <= 10 * default_duration:
            held[1] = probe.stream_end - held[0]  # the last frame lasts until the stream's announced end
        status["end_seconds"] = float((held[0] + held[1]) * probe.time_base)
        out.put(("video", *held))
    out.put(_END)


def _encode(container: Any, stream: Any, audio_map: dict[int, Any], source: _Pipe) -> None:
    """Encoder thread: encode and mux video frames, mux audio packets, close (finish) the file."""
    import av

    durations: dict[int, int] = {}  # pts → duration of the frames inside the encoder (its delay)

    def with_durations(packets: list[Any]) -> list[Any]:
        # x264 derives packet durations from its own clock; the container's duration and each
        # frame's display time come from them, so every packet gets its frame's real duration
        for packet in packets:
            if packet.pts in durations:
                packet.duration = durations.pop(packet.pts)
        return packets

    try:
        while (item := source.get()) is not _END:
            if item[0] == "audio":
                packet = item[1]
                packet.stream = audio_map[packet.stream.index]
                container.mux(packet)
                continue
            _, pts, duration, image = item
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base, frame.duration = pts, stream.codec_context.time_base, duration
            durations[pts] = duration
            container.mux(with_durations(stream.encode(frame)))
        container.mux(with_durations(stream.encode(None)))
    except BaseException:
        try:
            container.close()  # releases the file; the caller deletes it
        except Exception:  # the error being raised is the one to report
            pass
        raise
    container.close()  # writes the trailer (the mp4 index): the file is complete only now


def _open_output(
    tmp: Path, dst: Path, probe: VideoProbe, codec: str, crf: int, size: tuple[int, int], in_container: Any
) -> tuple[Any, Any, dict[int, Any]]:
    import av

    try:
        av.codec.Codec(codec, "w")
    except (av.error.FFmpegError, ValueError):
        raise UserError(f"--codec {codec}: no such encoder in this FFmpeg build; use libx264 (default), libx265, libvpx-vp9 or mpeg4") from None
    try:
        container = av.open(str(tmp), "w")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise UserError(f"{dst}: cannot write a video with suffix {dst.suffix!r} ({error_reason(exc)}); use .mp4, .mkv or .mov") from None
    try:
        if codec not in container.supported_codecs:
            raise UserError(
                f"{dst}: a {dst.suffix} file cannot hold --codec {codec}; use an .mp4/.mkv output or a codec it holds (libvpx-vp9 for .webm)"
            )
        stream = container.add_stream(codec, rate=probe.rate)
        formats = [f.name for f in stream.codec_context.codec.video_formats or []]
        stream.pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
        stream.width, stream.height = size
        # the encoder and the stream work in the input's time base: every pts is copied unchanged
        stream.codec_context.time_base = stream.time_base = probe.time_base
        if codec in CRF_CODECS:
            stream.options = {"crf": str(crf), **({"b:v": "0"} if "vpx" in codec else {})}
        audio_map = {}
        for in_stream in in_container.streams.audio:
            try:
                audio_map[in_stream.index] = container.add_stream_from_template(in_stream)
            except ValueError:
                raise UserError(
                    f"{dst}: a {dst.suffix} file cannot hold the input's {in_stream.codec_context.name} audio; use an .mkv output, which holds any codec"
                ) from None
    except BaseException:
        container.close()
        raise
    return container, stream, audio_map


# ----------------------------------------------------------------------------------------
# the public function


def check_paths(src: Path, dst: Path) -> None:
    """``UserError`` when ``src`` is missing or ``dst`` is ``src`` itself (a link to it included)."""
    if not src.exists():
        raise UserError(NOT_FOUND.format(src=src))
    if src.resolve() == dst.resolve() or (dst.exists() and os.path.samefile(src, dst)):
        raise UserError(f"{dst}: is the input itself; choose another output path")


def translate_video(
    translator: Any,
    src: Path,
    dst: Path,
    *,
    codec: str = "libx264",
    crf: int = 18,
    side_by_side: bool = False,
    batch_size: int = 4,
    progress: bool = True,
    queue_bound: int | None = None,
    temporal: Temporal = "stable",
    temporal_settings: TemporalSettings | None = None,
    overwrite: bool = False,
) -> Any:
    """Translate a video file into ``dst`` (or a folder of frames into a folder of frames).

    Args:
        translator: a :class:`~translate.infer.translator.Translator` (anything with ``in_channels``
            and ``translate_batch((B, C_in, H, W) in [-1, 1]) -> (B, C_out, H, W) in [-1, 1]``).
        src: a video file FFmpeg decodes (mp4, mkv, mov, avi, webm, …), a folder of videos
            (translated one by one into a mirrored tree, resumable, sharded under torchrun), or
            a folder of frames (images).
        dst: the output video (its suffix picks the format), or a folder when ``src`` is one.
            Written to a temporary file beside it and renamed when complete.
        codec: video encoder, written as yuv420p.
        crf: constant rate factor of x264/x265/vpx/aom/svt-av1 (lower is better; 18 ≈ visually lossless).
        side_by_side: write input | translation side by side (twice as wide).
        batch_size: frames per ``translate_batch`` call.
        progress: show a tqdm bar in frames/s (only when stderr is a terminal).
        queue_bound: items each queue may hold (default ``2 * batch_size``).
        temporal: ``stable`` ties each frame to the ones before it (carried instance-norm
            statistics, flow-guided blending, reset at cuts: :mod:`translate.infer.temporal`);
            ``off`` translates every frame on its own. Folders of frames are always ``off``.
        temporal_settings: the strengths of ``stable`` (default :class:`TemporalSettings`).
        overwrite: for a folder of videos, translate those whose output exists (default: skip).

    Returns:
        A :class:`VideoReport`; for a folder, a ``FolderReport`` (of its videos:
        :func:`~translate.infer.video_folder.translate_video_folder`, or of its frames).

    Raises:
        UserError: missing, non-video or undecodable input, no video stream, output == input,
            an output format that cannot hold the codec or the audio.
    """
    src, dst = Path(src), Path(dst)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_paths(src, dst)
    if temporal not in ("off", "stable"):
        raise UserError(f"--temporal {temporal!r}: choose off or stable")
    if src.is_dir():
        if dst.suffix.lower() in VIDEO_SUFFIXES:
            raise UserError(f"{dst}: a folder is translated into a folder; pass an output folder, not a video file")
        from translate.data.media import list_videos

        if list_videos(src):  # a folder of videos: each one into the mirrored tree
            from translate.infer.video_folder import translate_video_folder

            options = dict(codec=codec, crf=crf, side_by_side=side_by_side, batch_size=batch_size, progress=progress, queue_bound=queue_bound)
            return translate_video_folder(
                translate_video, translator, src, dst, overwrite=overwrite, temporal=temporal, temporal_settings=temporal_settings, **options
            )
        from translate.infer.folder import translate_folder

        # like a video file, the frames of an earlier run are replaced, not kept
        return translate_folder(translator, src, dst, batch_size=batch_size, progress=progress, overwrite=True)
    started = time.perf_counter()
    probe = probe_video(src)
    if getattr(translator, "device", None) is not None and translator.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every frame has the same size: tune cuDNN once
    if dst.is_dir():
        raise UserError(f"{dst}: is a folder; pass an output video file such as {dst / (src.stem + '_translated.mp4')}")
    # a killed earlier run leaves its temporary file behind; a live run's is claimed, and kept
    remove_stale_temps(dst)
    # the temporary keeps dst's suffix, from which PyAV picks the container
    with atomic_path(dst, claim=True) as tmp:
        report = _run_pipeline(
            translator,
            src,
            dst,
            tmp,
            probe,
            codec=codec,
            crf=crf,
            side_by_side=side_by_side,
            batch_size=batch_size,
            progress=progress,
            queue_bound=queue_bound or 2 * batch_size,
            stabilizer=TemporalStabilizer(translator, temporal_settings or TemporalSettings()) if temporal == "stable" else None,
        )
    report.seconds = time.perf_counter() - started
    return report


def _to_tensor(images: list[np.ndarray], in_channels: int) -> torch.Tensor:
    """(H, W, 3) uint8 images → (B, in_channels, H, W) float32 in [-1, 1]."""
    batch = unit_to_signed(torch.from_numpy(to_unit(np.stack(images))).permute(0, 3, 1, 2))
    return grey_tensor(batch) if in_channels == 1 else batch


def _to_images(batch: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] → (B, H, W, 3) uint8; one channel becomes gray RGB."""
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    return signed_to_uint8(batch).transpose(0, 2, 3, 1)


def _even(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    if h % 2 or w % 2:  # yuv420p needs even sides: repeat the last row / column
        image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return image


def _run_pipeline(
    translator: Any,
    src: Path,
    dst: Path,
    tmp: Path,
    probe: VideoProbe,
    *,
    codec: str,
    crf: int,
    side_by_side: bool,
    batch_size: int,
    progress: bool,
    queue_bound: int,
    stabilizer: TemporalStabilizer | None,
) -> VideoReport:
    from tqdm import tqdm

    turned = any(op.startswith("rot90") or op.endswith("transpose") for op in probe.ops)
    upright_w, upright_h = (probe.height, probe.width) if turned else (probe.width, probe.height)
    width = upright_w * (2 if side_by_side else 1)
    width, height = width + width % 2, upright_h + upright_h % 2
    report = VideoReport(
        src=src, dst=dst, expected_frames=probe.expected_frames, width=width, height=height, rotation=probe.rotation, queue_bound=queue_bound
    )
    in_container = open_input(src)
    try:
        out_container, out_stream, audio_map = _open_output(tmp, dst, probe, codec, crf, (width, height), in_container)
    except BaseException:
        in_container.close()
        raise
    report.audio_streams = len(audio_map)
    stop = threading.Event()
    frames_in, frames_out = _Pipe(queue_bound, stop), _Pipe(queue_bound, stop)
    status: dict[str, Any] = {"bad_packets": 0, "read_error": None, "end_seconds": 0.0}
    decoder = _Worker(lambda: _decode(in_container, probe, audio_map, frames_in, status), stop, "translate-decode")
    encoder = _Worker(lambda: _encode(out_container, out_stream, audio_map, frames_out), stop, "translate-encode")
    bar = tqdm(total=probe.expected_frames, unit="frame", desc=src.name, disable=not (progress and sys.stderr.isatty()))
    pending: list[tuple[int, int, np.ndarray]] = []  # (pts, duration, upright RGB): one batch at most

    def flush() -> None:
        if not pending:
            return
        tick = time.perf_counter()
        images = [image for _, _, image in pending]
        batch = _to_tensor(images, translator.in_channels)
        if stabilizer is None:
            outputs = _to_images(translator.translate_batch(batch))
        else:
            outputs = stabilizer(images, batch)
            outputs = np.repeat(outputs, 3, axis=3) if outputs.shape[3] == 1 else outputs
        report.model_seconds += time.perf_counter() - tick
        for (pts, duration, real), out in zip(pending, outputs, strict=True):
            frames_out.put(("video", pts, duration, _even(np.concatenate([real, out], axis=1) if side_by_side else out)))
        report.frames += len(pending)
        bar.update(len(pending))
        pending.clear()

    decoder.start()
    encoder.start()
    try:
        while (item := frames_in.get()) is not _END:
            if item[0] == "audio":
                frames_out.put(item)
                continue
            if pending and pending[0][2].shape != item[3].shape:
                flush()
            pending.append(item[1:])
            if len(pending) >= batch_size:
                flush()
        flush()
        frames_out.put(_END)
    except _Stopped:
        pass  # a thread failed: its error is raised below
    except BaseException:
        stop.set()
        raise
    finally:
        encoder.join()  # on success it finishes the file; after a failure the stop event ends it
        stop.set()
        decoder.join()
        in_container.close()
        bar.close()
    import av

    for worker in (decoder, encoder):
        if isinstance(worker.error, av.error.FFmpegError) and worker is encoder:
            raise UserError(
                f"{dst}: writing the video failed ({error_reason(worker.error)}); try another --codec or an .mkv output"
            ) from worker.error
        if worker.error is not None:
            raise worker.error
    report.peak_queued = max(frames_in.peak, frames_out.peak)
    report.cuts = stabilizer.cuts if stabilizer is not None else None
    return _check_complete(report, probe, status)


def _check_complete(report: VideoReport, probe: VideoProbe, status: dict[str, Any]) -> VideoReport:
    if report.frames == 0:
        raise UserError(f"{report.src}: no video frame could be decoded; re-export or repair the video")
    if probe.announced_frames:
        report.truncated = report.frames < probe.announced_frames
    elif probe.announced_seconds:  # mkv/webm announce only a duration, shared with the audio
        report.truncated = status["end_seconds"] < 0.9 * probe.announced_seconds
    if status["read_error"] or report.truncated:
        report.truncated = True
        announced = f"{report.expected_frames} frames" if report.expected_frames else "more"
        log.warning(
            "%s: only %d frames decode where the file announces %s%s: it is truncated or damaged; the output holds the %d frames that decode",
            report.src,
            report.frames,
            announced,
            f" ({status['read_error']})" if status["read_error"] else "",
            report.frames,
        )
    if status["bad_packets"]:
        log.warning("%s: skipped %d damaged video packets", report.src, status["bad_packets"])
    return report

"""``translate eval --video``: a source video, its translation, and how stable the translation is.

Reads the videos in lockstep, one frame each at a time, measures the optical flow between
consecutive *source* frames once, and from it the warping error of the source and of the
translation (:mod:`translate.metrics.video`); with ``against`` (the frame-by-frame
translation of the same source, when the translation is a stabilised one) also the PSNR of
every frame to it, so that smoothing that smears shows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translate.errors import UserError
from translate.files import atomic_write
from translate.metrics.report import output_folder
from translate.metrics.video import MotionTracker, WarpingError, psnr

log = logging.getLogger("translate")


@dataclass
class VideoEvalReport:
    """Warping errors (mean squared difference in [0, 1] units) and the flicker ratio."""

    source: str
    translated: str
    against: str | None
    frames: int = 0
    cuts: int = 0  # scene cuts: the pair across each is not measured
    source_error: float = math.nan
    translated_error: float = math.nan
    psnr_to_against: float | None = None  # mean over frames, dB
    rows: list[dict[str, Any]] = field(default_factory=list)  # per frame

    @property
    def flicker_ratio(self) -> float:
        """Warping error of the translation over the source's: 1.0 = as stable as the source."""
        if not (self.source_error > 0):
            return math.nan
        return self.translated_error / self.source_error

    def table(self) -> str:
        lines = [
            f"source      {self.source}",
            f"translated  {self.translated}",
            f"frames      {self.frames}" + (f" ({self.cuts} scene cut(s): the frame pairs across them are not measured)" if self.cuts else ""),
            f"warping error  source {self.source_error:.6f}   translation {self.translated_error:.6f}",
            f"flicker ratio  {self.flicker_ratio:.3f}  (1.0 = as temporally stable as the source; lower is steadier)",
        ]
        if self.psnr_to_against is not None:
            lines.append(f"PSNR to {self.against}  {self.psnr_to_against:.2f} dB (mean over frames)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "translated": self.translated,
            "against": self.against,
            "frames": self.frames,
            "cuts": self.cuts,
            "source_warping_error": self.source_error,
            "warping_error": self.translated_error,
            "flicker_ratio": self.flicker_ratio,
            "psnr_to_against": self.psnr_to_against,
        }
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        columns = ["frame", "source_warping_error", "warping_error"] + (["psnr_to_against"] if self.against else [])
        writer = csv.DictWriter(buffer, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return buffer.getvalue()

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """``video_metrics.json`` (summary) and ``video_metrics.csv`` (per frame) in ``out_dir``."""
        out_dir = output_folder(out_dir)
        json_path, csv_path = out_dir / "video_metrics.json", out_dir / "video_metrics.csv"
        atomic_write(json_path, json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write(csv_path, self.to_csv())
        return json_path, csv_path


def fit(frame: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """A translated frame at the source frame's size: ``translate video`` pads odd sides by one
    pixel (yuv420p), which is cropped; any other size is an error naming the file."""
    if frame.shape == shape:
        return frame
    height, width = shape[:2]
    if frame.shape[0] - height in (0, 1) and frame.shape[1] - width in (0, 1):
        return frame[:height, :width]
    raise UserError(
        f"{path}: its frames are {frame.shape[1]}x{frame.shape[0]}, the source's {width}x{height}; "
        "pass the translation of this source (not a side-by-side video)"
    )


def evaluate_video(source: Path, translated: Path, against: Path | None = None) -> VideoEvalReport:
    """Measure ``translated`` (and ``source``) against the motion of ``source``.

    Args:
        source: the input video.
        translated: its translation (same frames; ``translate video``'s output).
        against: optionally another translation of ``source`` (e.g. frame by frame) to give
            the PSNR of every translated frame to.

    Returns:
        A :class:`VideoEvalReport`; frames beyond the shortest video are ignored (with a warning).
    """
    from translate.data.video import iter_frames, probe_video

    paths = [Path(source), Path(translated)] + ([Path(against)] if against else [])
    probes = [probe_video(p) for p in paths]  # each one UserError naming its file when unusable
    report = VideoEvalReport(str(source), str(translated), str(against) if against else None)
    streams = [iter_frames(p, probe) for p, probe in zip(paths, probes, strict=True)]
    tracker, source_error, translated_error = MotionTracker(), WarpingError(), WarpingError()
    psnrs: list[float] = []
    for frames in zip(*streams, strict=False):  # stops at the shortest video
        src = frames[0]
        out = fit(frames[1], src.shape, paths[1])
        motion = tracker.next(src)
        row: dict[str, Any] = {
            "frame": report.frames,
            "source_warping_error": source_error.add(src, motion),
            "warping_error": translated_error.add(out, motion),
        }
        if against:
            row["psnr_to_against"] = psnr(out, fit(frames[2], src.shape, paths[2]))
            psnrs.append(row["psnr_to_against"])
        report.rows.append(row)
        report.frames += 1
    counts = {str(p): probe.expected_frames for p, probe in zip(paths, probes, strict=True) if probe.expected_frames}
    if len(set(counts.values())) > 1:
        log.warning("the videos announce different frame counts (%s); compared the first %d frames", counts, report.frames)
    report.source_error, report.translated_error = source_error.value, translated_error.value
    report.cuts = tracker.cuts
    if against:
        finite = [v for v in psnrs if math.isfinite(v)]
        report.psnr_to_against = sum(finite) / len(finite) if finite else math.inf
    if report.frames < 2:
        raise UserError(f"{source}: fewer than two frames decode together with the translation; nothing to measure")
    return report

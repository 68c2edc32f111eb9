"""Video metrics: warping error and flicker ratio on real panned photos and real footage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.media import pan_frames, write_frames
from translate.cli import main
from translate.errors import UserError
from translate.metrics.video import MotionTracker, WarpingError, psnr, warp
from translate.metrics.video_report import evaluate_video


@pytest.fixture(scope="module")
def pan(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A real photo (scikit-image's coffee) under a panning camera: 12 frames of 96x64."""
    from skimage import data

    frames = pan_frames(data.coffee(), 12, (96, 64))
    return write_frames(tmp_path_factory.mktemp("pan") / "pan.mp4", frames), frames


def _errors(source: list[np.ndarray], *videos: list[np.ndarray]) -> list[float]:
    tracker, meters = MotionTracker(), [WarpingError() for _ in range(1 + len(videos))]
    for frames in zip(source, *videos, strict=True):
        motion = tracker.next(frames[0])
        for meter, frame in zip(meters, frames, strict=True):
            meter.add(frame, motion)
    return [m.value for m in meters]


def test_a_still_video_has_zero_warping_error(pan) -> None:
    still = [pan[1][0]] * 5
    (error,) = _errors(still)
    assert error == pytest.approx(0.0, abs=1e-9)


def test_warping_follows_the_camera_motion(pan) -> None:
    _, frames = pan
    (error,) = _errors(frames)
    # what the frames differ by without following the motion
    plain = np.mean([np.square(a.astype(np.float32) / 255 - b.astype(np.float32) / 255).mean() for a, b in zip(frames, frames[1:], strict=False)])
    assert error < 0.1 * plain
    # the flow between two frames finds the known shift (1.3, 0.4) px inside the frame
    motion = MotionTracker()
    motion.next(frames[0])
    found = motion.next(frames[1])
    inner = found.backward[8:-8, 8:-8]
    # (the content of frame t+1 sits 1.3, 0.4 px further right and down in frame t)
    assert np.median(inner[..., 0]) == pytest.approx(1.3, abs=0.15) and np.median(inner[..., 1]) == pytest.approx(0.4, abs=0.15)
    assert found.mask[8:-8, 8:-8].mean() > 0.9
    aligned = warp(frames[0].astype(np.float32), found.backward)
    assert psnr(aligned[8:-8, 8:-8] / 255, frames[1][8:-8, 8:-8].astype(np.float32) / 255) > 30


def test_a_flickering_translation_has_a_high_flicker_ratio(pan) -> None:
    _, frames = pan
    rng = np.random.default_rng(0)
    flicker = [np.clip(f.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8) for f in frames]
    source, same, flickering = _errors(frames, frames, flicker)
    assert same == source  # a translation that is the source: ratio exactly 1
    assert flickering / source > 5


def test_eval_video_reports_ratio_psnr_csv_and_json(pan, tmp_path: Path, capsys) -> None:
    path, frames = pan
    darker = write_frames(tmp_path / "darker.mp4", [(f * 0.8).astype(np.uint8) for f in frames])
    report = evaluate_video(path, darker, against=path)
    assert report.frames == 12 and report.source_error > 0
    assert 0.4 < report.flicker_ratio < 0.9  # lower contrast: smaller differences than the source's
    assert 10 < report.psnr_to_against < 30
    assert main(["eval", "--video", str(path), str(darker), "--against", str(path), "--out", str(tmp_path / "m")]) == 0
    saved = json.loads((tmp_path / "m" / "video_metrics.json").read_text())
    assert saved["frames"] == 12 and math.isclose(saved["flicker_ratio"], report.flicker_ratio, rel_tol=1e-6)
    lines = (tmp_path / "m" / "video_metrics.csv").read_text().splitlines()
    assert lines[0] == "frame,source_warping_error,warping_error,psnr_to_against" and len(lines) == 13
    assert str(darker) in capsys.readouterr().out


def test_eval_video_bad_input_is_one_line(pan, tmp_path: Path, capsys) -> None:
    path, frames = pan
    wide = write_frames(tmp_path / "wide.mp4", [np.concatenate([f, f], axis=1) for f in frames])
    with pytest.raises(UserError, match="not a side-by-side video"):
        evaluate_video(path, wide)
    assert main(["eval", "--video", str(path)]) == 2
    assert "SOURCE TRANSLATED" in capsys.readouterr().err
    assert main(["eval", "--video", str(path), str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["eval", "--against", str(path), str(tmp_path), str(tmp_path)]) == 2

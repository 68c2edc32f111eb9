"""translate_video: frames, timestamps, duration, audio, rotation, sizes, bounded memory, bad input."""

from __future__ import annotations

import logging
import weakref
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.media import clip_frame, has_encoder, make_audio_only, make_clip, read_clip, truncate_file, upright
from translate.config import NetConfig
from translate.data.video import apply_ops, upright_ops
from translate.errors import UserError
from translate.files import is_temp
from translate.infer import video as video_mod
from translate.infer.translator import Translator
from translate.infer.video import VideoReport, translate_video
from translate.nets import build_generator

TINY = NetConfig(generator="resnet_6blocks", base_channels_g=4)


@pytest.fixture(scope="module")
def tiny() -> Translator:
    torch.manual_seed(0)
    return Translator.from_module(build_generator(TINY), TINY)


@pytest.fixture(scope="module")
def identity() -> Translator:
    """Output == input: lets a test see where each pixel of the input went."""
    return Translator.from_module(nn.Identity(), NetConfig(base_channels_g=4))


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_frames_timestamps_duration_and_audio_are_kept(tiny: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=12, size=(64, 48), fps=24, audio=True)
    report = translate_video(tiny, src, tmp_path / "out.mp4", batch_size=5, progress=False)
    before, after = read_clip(src), read_clip(tmp_path / "out.mp4")
    assert isinstance(report, VideoReport)
    assert report.frames == len(after.frames) == len(before.frames) == 12  # batches of 5, 5, 2
    assert after.times == before.times
    assert after.duration == before.duration == pytest.approx(12 / 24)
    assert (after.width, after.height, after.codec) == (64, 48, "h264")
    assert report.audio_streams == 1
    assert after.audio_packets == before.audio_packets and len(before.audio_packets[0]) > 10  # remuxed, not re-encoded
    assert not report.truncated and report.expected_frames == 12
    assert 0 < report.model_seconds < report.seconds
    # the network ran: the output is not the input
    assert mean_abs(after.frames[5], before.frames[5]) > 5


def test_variable_frame_rate_timestamps_kept_exactly(identity: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "vfr.mp4", frames=14, vfr=True, audio=True)
    translate_video(identity, src, tmp_path / "out.mp4", progress=False)
    before, after = read_clip(src), read_clip(tmp_path / "out.mp4")
    gaps = [b - a for a, b in pairwise(before.times)]
    assert len(set(gaps)) >= 4  # the clip really is variable frame rate
    assert after.times == before.times
    # mp4 derives a stream's duration from decode timestamps, which the encoder chooses:
    # only the last frame's display time may differ, by less than a frame
    assert abs(after.duration - before.duration) < max(gaps)
    assert after.audio_packets == before.audio_packets


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_input_is_translated_upright_and_displays_the_same(identity: Translator, tmp_path: Path, rotation: int) -> None:
    src = make_clip(tmp_path / "phone.mp4", frames=6, size=(64, 48), rotation=rotation, audio=False)
    before = read_clip(src)
    assert before.rotation % 360 == rotation % 360 and (before.width, before.height) == ((48, 64) if rotation % 180 else (64, 48))
    report = translate_video(identity, src, tmp_path / "out.mp4", progress=False)
    after = read_clip(tmp_path / "out.mp4")
    assert report.rotation % 360 == rotation % 360
    assert after.rotation == 0 and (after.width, after.height) == (64, 48)  # stored upright, no metadata
    for i in range(6):
        shown_before, shown_after = upright(before, i), upright(after, i)
        assert mean_abs(shown_after, shown_before) < 4
        assert mean_abs(shown_after, clip_frame(i, 64, 48)) < 6
        assert mean_abs(shown_after, shown_before[::-1, ::-1]) > 40  # a wrong turn would show


def test_display_matrix_decisions() -> None:
    m90 = np.array([0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30], np.int32)  # stored turned, shown +90° ccw
    assert upright_ops(m90, 90) == ("rot90_ccw",)
    assert upright_ops(np.array([0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30], np.int32), -90) == ("rot90_cw",)
    assert upright_ops(np.array([-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30], np.int32), 180) == ("hflip", "vflip")
    assert upright_ops(np.array([-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30], np.int32), 180) == ("hflip",)  # mirror only
    assert upright_ops(None, 0) == ()
    image = np.arange(6).reshape(2, 3, 1)
    assert apply_ops(image, ("transpose",)).shape == (3, 2, 1)
    assert (apply_ops(image, ("rot90_ccw", "rot90_cw")) == image).all()
    with pytest.raises(ValueError, match="'spin'"):
        apply_ops(image, ("spin",))


def test_side_by_side_doubles_width(identity: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=5, size=(64, 48), audio=False)
    report = translate_video(identity, src, tmp_path / "sbs.mp4", side_by_side=True, progress=False)
    after = read_clip(tmp_path / "sbs.mp4")
    assert (report.width, report.height) == (after.width, after.height) == (128, 48)
    left, right = after.frames[2][:, :64], after.frames[2][:, 64:]
    assert mean_abs(left, clip_frame(2, 64, 48)) < 6 and mean_abs(right, left) < 6


def test_odd_sides_are_padded_by_one_repeated_pixel(identity: Translator, tmp_path: Path) -> None:
    # mpeg4 stores odd sizes (x264 cannot), as a camera or editor might
    src = make_clip(tmp_path / "odd.mkv", frames=5, size=(63, 47), codec="mpeg4", audio=False)
    before = read_clip(src)
    assert (before.width, before.height) == (63, 47)
    report = translate_video(identity, src, tmp_path / "out.mp4", progress=False)
    after = read_clip(tmp_path / "out.mp4")
    assert (report.width, report.height) == (after.width, after.height) == (64, 48)
    assert len(after.frames) == 5
    frame = after.frames[1]
    assert mean_abs(frame[:47, :63], before.frames[1]) < 6  # the input's pixels, in place
    assert mean_abs(frame[47], frame[46]) < 6 and mean_abs(frame[:, 63], frame[:, 62]) < 6


@pytest.mark.parametrize(
    ("suffix", "codec", "audio_codec"), [(".mkv", "libx264", "aac"), (".webm", "libvpx-vp9", "libopus"), (".mov", "libx264", "aac")]
)
def test_other_containers_are_read(identity: Translator, tmp_path: Path, suffix: str, codec: str, audio_codec: str) -> None:
    if not (has_encoder(codec) and has_encoder(audio_codec)):
        pytest.skip(f"this FFmpeg build cannot encode {codec}/{audio_codec}")
    src = make_clip(tmp_path / f"clip{suffix}", frames=8, vfr=True, codec=codec, audio_codec=audio_codec)
    translate_video(identity, src, tmp_path / "out.mp4", progress=False)
    before, after = read_clip(src), read_clip(tmp_path / "out.mp4")
    assert len(after.frames) == 8 and after.codec == "h264"
    assert after.times == before.times
    assert after.audio_packets == before.audio_packets


def test_mkv_output_keeps_relative_timing_in_milliseconds(identity: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=8, vfr=True, audio=True)
    translate_video(identity, src, tmp_path / "out.mkv", progress=False)
    before, after = read_clip(src), read_clip(tmp_path / "out.mkv")
    # Matroska stores milliseconds and shifts all streams alike past the AAC priming delay
    assert [round(t - after.times[0], 3) for t in after.times] == [round(t - before.times[0], 3) for t in before.times]
    assert after.audio_packets == before.audio_packets


def test_gray_networks_get_luma_and_write_gray_video(tmp_path: Path) -> None:
    gray = Translator.from_module(nn.Identity(), NetConfig(in_channels=1, out_channels=1))
    src = make_clip(tmp_path / "clip.mp4", frames=4, audio=False)
    translate_video(gray, src, tmp_path / "out.mp4", progress=False)
    frame = read_clip(tmp_path / "out.mp4").frames[0].astype(np.float32)
    assert np.abs(frame[..., 0] - frame[..., 1]).mean() < 3  # R == G == B: gray
    luma = clip_frame(0, 64, 48).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(frame[..., 1] - luma).mean() < 6


def test_queues_stay_bounded_and_frames_are_not_accumulated(identity: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the decoded and translated frame arrays alive at any moment: memory stays flat
    if that count is bounded by the queues and the batch, however long the video."""
    live = {"now": 0, "peak": 0}

    def track(array: np.ndarray) -> np.ndarray:
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        weakref.finalize(array, lambda: live.__setitem__("now", live["now"] - 1))
        return array

    decoded, encoded = video_mod.apply_ops, video_mod._even  # the decoder's and the encoder's arrays
    monkeypatch.setattr(video_mod, "apply_ops", lambda image, ops: track(decoded(image, ops)))
    monkeypatch.setattr(video_mod, "_even", lambda image: track(encoded(image)))
    src = make_clip(tmp_path / "long.mp4", frames=60, size=(64, 48), audio=True)
    report = translate_video(identity, src, tmp_path / "out.mp4", batch_size=2, queue_bound=3, progress=False)
    assert report.frames == 60 and len(read_clip(tmp_path / "out.mp4").frames) == 60
    assert 0 < report.peak_queued <= report.queue_bound == 3
    # two queues of 3, a batch of 2, the frame held for its duration, one in each thread's hands
    assert live["peak"] <= 2 * 3 + 2 + 4 < 60
    assert live["now"] == 0


def test_truncated_file_translates_what_decodes_and_warns(identity: Translator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    full = make_clip(tmp_path / "full.mp4", frames=30, faststart=True)  # index first: a cut copy still plays partly
    cut = truncate_file(full, tmp_path / "cut.mp4", 0.6)
    with caplog.at_level(logging.WARNING, logger="translate"):
        report = translate_video(identity, cut, tmp_path / "out.mp4", progress=False)
    frames = len(read_clip(tmp_path / "out.mp4").frames)
    assert report.truncated and 0 < report.frames == frames < 30
    assert f"only {frames} frames decode" in caplog.text and "cut.mp4" in caplog.text


def _no_output_left(folder: Path, name: str) -> bool:
    return not (folder / name).exists() and not [p for p in folder.iterdir() if is_temp(p.name)]


@pytest.mark.parametrize("case", ["missing", "no_video", "not_a_video", "truncated_index", "image"])
def test_bad_inputs_raise_user_error_naming_the_file(tiny: Translator, tmp_path: Path, case: str) -> None:
    src = (
        tmp_path
        / {"missing": "gone.mp4", "no_video": "song.m4a", "not_a_video": "notes.mp4", "truncated_index": "cut.mp4", "image": "photo.png"}[case]
    )
    if case == "no_video":
        make_audio_only(src)
    elif case == "not_a_video":
        src.write_text("this is not a video")
    elif case == "truncated_index":  # mp4 writes its index last: a cut copy has none
        truncate_file(make_clip(tmp_path / "full.mp4", frames=10), src, 0.7)
    elif case == "image":
        Image.fromarray(clip_frame(0, 32, 32)).save(src)
    with pytest.raises(UserError, match=src.name) as info:
        translate_video(tiny, src, tmp_path / "out.mp4", progress=False)
    assert "\n" not in str(info.value)
    assert _no_output_left(tmp_path, "out.mp4")


def test_output_is_atomic_when_translation_fails(tiny: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=12)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"previous result")

    class Failing:
        in_channels, calls = 3, 0

        def translate_batch(self, batch: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("out of memory")
            return batch

    with pytest.raises(RuntimeError, match="out of memory"):
        translate_video(Failing(), src, dst, batch_size=2, progress=False)
    assert dst.read_bytes() == b"previous result"  # never replaced by a partial file
    assert not [p for p in tmp_path.iterdir() if is_temp(p.name)]


def test_refuses_output_equal_to_input_and_unusable_outputs(tiny: Translator, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=4)
    size = src.stat().st_size
    with pytest.raises(UserError, match="input itself"):
        translate_video(tiny, src, tmp_path / "." / "clip.mp4", progress=False)
    assert src.stat().st_size == size
    with pytest.raises(UserError, match="cannot hold --codec libx264"):
        translate_video(tiny, src, tmp_path / "out.webm", progress=False)
    with pytest.raises(UserError, match="--codec nosuchcodec"):
        translate_video(tiny, src, tmp_path / "out.mp4", codec="nosuchcodec", progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name != "clip.mp4"]


def test_folder_of_frames_gives_folder_with_same_names(tiny: Translator, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(clip_frame(i, 40, 32)).save(frames / f"frame_{i:04d}.png")
    translate_video(tiny, frames, tmp_path / "night", progress=False)
    assert sorted(p.name for p in (tmp_path / "night").iterdir()) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert Image.open(tmp_path / "night" / "frame_0001.png").size == (40, 32)
    with pytest.raises(UserError, match="into a folder"):
        translate_video(tiny, frames, tmp_path / "night.mp4", progress=False)

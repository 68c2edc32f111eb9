"""``translate video`` end to end: a real generator file, real clips, exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.media import make_audio_only, make_clip, read_clip, truncate_file
from translate.cli import main
from translate.config import NetConfig
from translate.files import is_temp
from translate.formats import save_generator
from translate.nets import build_generator

TINY = NetConfig(generator="resnet_6blocks", base_channels_g=4)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "gen_ab.safetensors"
    save_generator(path, build_generator(TINY), TINY)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "day.mp4", frames=10, size=(64, 48), vfr=True, audio=True)


def test_translates_a_clip_keeping_frames_timing_and_audio(model: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dst = tmp_path / "out" / "night.mp4"  # missing folders are created
    code = main(["video", "--model", str(model), str(clip), str(dst), "--batch-size", "3", "--device", "cpu", "--precision", "fp32"])
    assert code == 0
    before, after = read_clip(clip), read_clip(dst)
    assert len(after.frames) == 10 and after.times == before.times
    assert abs(after.duration - before.duration) <= 0.1  # at most the last frame's display time (VFR)
    assert after.audio_packets == before.audio_packets
    out = capsys.readouterr().out
    assert "10 frames 64x48" in out and "1 audio stream(s) copied" in out and "frames/s" in out
    assert [p.name for p in dst.parent.iterdir()] == ["night.mp4"]  # no temporary file left


def test_side_by_side_codec_and_crf_flags(model: Path, clip: Path, tmp_path: Path) -> None:
    dst = tmp_path / "compare.mkv"
    code = main(
        [
            "video",
            "--model",
            str(model),
            str(clip),
            str(dst),
            "--side-by-side",
            "--codec",
            "libx264",
            "--crf",
            "30",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    after = read_clip(dst)
    assert (after.width, after.height, len(after.frames)) == (128, 48, 10)


@pytest.mark.parametrize("case", ["no_video", "truncated", "missing", "not_a_video"])
def test_bad_input_exits_2_with_one_line_naming_the_file(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    src = tmp_path / {"no_video": "voice.m4a", "truncated": "cut.mp4", "missing": "nowhere.mp4", "not_a_video": "readme.mp4"}[case]
    if case == "no_video":
        make_audio_only(src)
    elif case == "truncated":
        truncate_file(make_clip(tmp_path / "full.mp4", frames=10), src, 0.5)
    elif case == "not_a_video":
        src.write_text("# not a video")
    dst = tmp_path / "out.mp4"
    code = main(["video", "--model", str(model), str(src), str(dst), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and str(src) in err and len(err.splitlines()) == 1
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if is_temp(p.name)]


def test_flag_errors_exit_2(model: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["video", "--model", str(model), str(clip), str(clip), "--device", "cpu"]) == 2
    assert "input itself" in capsys.readouterr().err
    assert main(["video", "--model", str(model), str(clip), str(tmp_path / "o.mp4"), "--crf", "99"]) == 2
    assert "--crf 99" in capsys.readouterr().err
    assert main(["video", "--model", str(model), str(clip), str(tmp_path / "o.webm"), "--device", "cpu"]) == 2
    assert "libvpx-vp9" in capsys.readouterr().err
    assert main(["video", "--model", str(model), str(clip), str(tmp_path / "o.mp4"), "--tile", "8"]) == 2
    assert "--tile 8" in capsys.readouterr().err
    assert main(["video", "--model", str(tmp_path / "no_model"), str(clip), str(tmp_path / "o.mp4")]) == 2
    assert not list(tmp_path.iterdir())

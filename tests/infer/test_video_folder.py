"""A folder of videos: mirrored, resumable, atomic, a bad file reported, sharded under torchrun."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from tests.media import make_clip, read_clip
from translate.config import NetConfig
from translate.errors import UserError
from translate.infer.translator import Translator


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    (root / "trip").mkdir(parents=True)
    make_clip(root / "a.mp4", frames=5, audio=False)
    make_clip(root / "trip" / "b.mov", frames=4)
    make_clip(root / "trip" / "c.webm", frames=3, codec="libvpx-vp9", audio=False)
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def identity() -> Translator:
    return Translator.from_module(nn.Identity(), NetConfig(base_channels_g=4))


def test_a_folder_of_videos_is_mirrored_and_a_second_run_skips_what_is_done(identity: Translator, clips: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = identity.translate_video(clips, out, progress=False)
    assert sorted(p.name for p in report.translated) == ["a.mp4", "b.mov", "c.webm"] and report.ok
    assert (out / "a.mp4").is_file() and (out / "trip" / "b.mov").is_file() and (out / "trip" / "c.mp4").is_file()  # webm holds no H.264
    assert len(read_clip(out / "trip" / "b.mov").frames) == 4 and read_clip(out / "trip" / "b.mov").audio_packets
    assert not list(out.rglob(".tmp-*"))  # only complete files
    stamp = (out / "a.mp4").stat().st_mtime_ns
    again = identity.translate_video(clips, out, progress=False)
    assert len(again.skipped) == 3 and not again.translated and (out / "a.mp4").stat().st_mtime_ns == stamp
    redo = identity.translate_video(clips, out, progress=False, overwrite=True)
    assert len(redo.translated) == 3


def test_a_bad_video_is_reported_and_the_others_go_on(identity: Translator, clips: Path, tmp_path: Path) -> None:
    (clips / "broken.mp4").write_bytes(b"\x00" * 100)
    report = identity.translate_video(clips, tmp_path / "out", progress=False)
    assert [p.name for p, _ in report.failed] == ["broken.mp4"] and len(report.translated) == 3
    assert not (tmp_path / "out" / "broken.mp4").exists()


def test_torchrun_ranks_share_the_videos(identity: Translator, clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = []
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        report = identity.translate_video(clips, tmp_path / "out", progress=False)
        assert report.world_size == 2 and report.rank == rank
        done += report.translated
    assert sorted(p.name for p in done) == ["a.mp4", "b.mov", "c.webm"]


def test_folder_mistakes_are_one_line(identity: Translator, clips: Path, tmp_path: Path) -> None:
    make_clip(clips / "trip" / "c.mp4", frames=2, audio=False)  # c.webm would be written as c.mp4 too
    with pytest.raises(UserError, match="would both be written to"):
        identity.translate_video(clips, tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="inside the input folder"):
        identity.translate_video(clips, clips / "out", progress=False)
    with pytest.raises(UserError, match="pass an output folder"):
        identity.translate_video(clips, tmp_path / "x.mp4", progress=False)

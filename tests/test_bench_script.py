"""The benchmark script runs end to end (``--quick``, narrow networks) and writes both reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--base-channels", "8", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return out, proc


def expected_ids() -> list[str]:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench
    finally:
        sys.path.remove(str(SCRIPTS))
    return [rid for job in bench.jobs(bench.quick_plan(), 8, True) for rid in job.ids]


def test_quick_run_writes_both_files_with_every_workload(quick_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "performance.json").read_text())
    markdown = (out / "PERFORMANCE.md").read_text()
    rows = {r["id"]: r for r in results["workloads"]}
    ids = expected_ids()
    assert {i.split("/")[0] for i in ids} == {"infer", "folder", "video", "train", "tiled"}
    for rid in ids:
        assert rid in rows, f"{rid} missing from performance.json"
        row = rows[rid]
        assert row["status"] == "ok", (rid, row.get("error"))
        assert row["seconds"] > 0 and row["flops"] > 0 and row["peak_rss_mb"] > 0, rid
        assert row["label"] in markdown, rid
    # the ceilings and the targets are there, each with a verdict
    assert {"fp32_start", "bf16_start", "fp32_end", "bf16_end"} <= set(results["ceiling"])
    assert all(c["gflops"] > 0 for c in results["ceiling"].values())
    # every target has a verdict, but the bf16 convergence check: it reads the quality benchmark's
    # two runs, which a quick run does not attach; it says how to produce them, or, on a CPU
    # without bf16 instructions, why they are not produced here
    verdicts = {t["name"]: t for t in results["targets"]}
    quality = verdicts.pop("bf16 training converges (quality benchmark)")
    assert quality["met"] is None
    if results["machine"].get("avx512_bf16") or results["machine"].get("amx_bf16"):
        assert "scripts/quality.py" in quality["measured"]
    else:
        assert quality["skipped"] and "no avx512_bf16/AMX" in quality["limit"] and "fp32's speed" in quality["limit"]
    assert len(verdicts) >= 10 and all(t["met"] in (True, False) for t in verdicts.values())
    assert "## Targets" in markdown and results["machine"]["cpu"] in markdown
    # bf16 rows carry their PSNR against the fp32 output of the same photo
    assert all(rows[i]["psnr_vs_fp32_db"] > 20 for i in ids if i.startswith("infer/") and i.endswith("/bf16"))
    # the table is printed last
    assert "wall time" in proc.stdout.strip().splitlines()[-1]


def test_bad_width_is_refused() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--base-channels", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--base-channels must be >= 1, got 0" in proc.stderr


def test_named_levers_replace_only_their_own_entries(quick_run, tmp_path: Path) -> None:
    import shutil

    out, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copytree(out, tmp_path / "run")
    out = tmp_path / "run"

    def levers(*names: str) -> list[dict]:
        lever_proc = subprocess.run(
            [sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--base-channels", "8", "--out", str(out), "--levers", *names],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert lever_proc.returncode == 0, lever_proc.stderr[-2000:]
        return json.loads((out / "performance.json").read_text())["levers"]

    first = levers("cached_multiple")
    assert {lv["source"] for lv in first} == {"cached_multiple"} and len(first) == 2
    assert all(lv["measured"] and lv["machine"]["cpu"] for lv in first)
    both = levers("balanced_tiles")
    assert [lv["source"] for lv in both] == ["cached_multiple"] * 2 + ["balanced_tiles"]
    assert both[:2] == first  # kept as they were, stamps included
    again = levers("cached_multiple")
    assert [lv["source"] for lv in again] == ["balanced_tiles", "cached_multiple", "cached_multiple"]
    markdown = (out / "PERFORMANCE.md").read_text()
    assert "| Lever | Workload | Predicted | Before | After | Change | Verdict | Measured |" in markdown

    bad = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--out", str(out), "--levers", "no_such_lever"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown lever(s) no_such_lever" in bad.stderr


def test_without_onednn_bf16_bf16_runs_at_the_smallest_sizes_only() -> None:
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench
    finally:
        sys.path.remove(str(SCRIPTS))
    plan = bench.full_plan()
    with_bf16 = {job.ids[0]: job.kwargs["precisions"] for job in bench.jobs(plan, 64, False, bf16_everywhere=False)
                 if "precisions" in job.kwargs}
    smallest = plan.infer_sides[0]
    for rid, precisions in with_bf16.items():
        kind, name, side = rid.split("/")[:3]
        expected = (kind == "infer" and int(side) == smallest) or (kind == "train" and (name, int(side)) == ("cyclegan", 128))
        assert precisions == (("fp32", "bf16") if expected else ("fp32",)), rid
    everywhere = bench.jobs(plan, 64, False, bf16_everywhere=True)
    assert all(job.kwargs["precisions"] == ("fp32", "bf16") for job in everywhere if "precisions" in job.kwargs)


def test_a_report_with_skipped_bf16_rows_renders(quick_run) -> None:
    # what a run on a CPU without oneDNN bf16 records: bf16 rows skipped, with the reason
    out, proc = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench
        from bench_markdown import render_markdown
        from bench_report import evaluate
    finally:
        sys.path.remove(str(SCRIPTS))
    results = json.loads((out / "performance.json").read_text())
    kept = {"infer/resnet_9blocks/64/bf16", "infer/unet_256/64/bf16", "train/cyclegan/32/bf16"}
    for i, row in enumerate(results["workloads"]):
        if row["id"].endswith("/bf16") and row["id"] not in kept:
            results["workloads"][i] = {"id": row["id"], "label": row["label"], "status": "skipped", "error": bench.SKIPPED_BF16}
    results["targets"] = evaluate(results)
    markdown = render_markdown(results)
    skipped = [t for t in results["targets"] if t["met"] is None and t["skipped"]]
    assert skipped and all("bf16" in t["name"] for t in skipped)
    # each says why it was not run (the CPU's missing bf16 kernels), not a bare "missing"
    assert all(t["measured"] == "not measured" and "bf16" in t["limit"] for t in skipped)
    names = {t["name"] for t in skipped}
    # every skipped training row still has its check, so a reader sees it was not run
    assert any(n.startswith("pix2pix iteration bf16") for n in names)
    assert any(n.startswith("CycleGAN iteration bf16") for n in names)
    assert any(n.startswith("CycleGAN training peak memory") for n in names)
    assert markdown.count("| not run here |") == len(skipped)
    assert f"{len(skipped)} not run on this CPU" in markdown

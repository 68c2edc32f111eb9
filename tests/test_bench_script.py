"""``scripts/bench.py``: a ``--quick`` run into a temporary folder measures every row; the JSON
holds finite, positive numbers; ``--only`` and ``--compare`` select and compare rows."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "performance.json").read_text(encoding="utf-8"))


def test_every_row_is_measured_with_finite_positive_numbers(quick: tuple[Path, dict]) -> None:
    _, result = quick
    rows = result["rows"]
    assert {r["kind"] for r in rows} == {"train", "kernels", "infer", "apply", "video", "tiled", "cut", "fastcut", "memory"}
    assert len({r["id"] for r in rows}) == len(rows)
    has_reference = result["plan"]["reference"] is not None
    for r in rows:
        assert positive(r["toolkit_median"]) and positive(r["target"]), r
        if r["baseline"] is None:
            assert r["ratio"] is None and r["met"] == (r["toolkit_median"] <= r["target"]), r
        elif r["kind"] != "train" or has_reference:
            assert positive(r["baseline_median"]), r
            assert r["ratio"] == pytest.approx(r["toolkit_median"] / r["baseline_median"])
            assert r["met"] == (r["ratio"] <= r["target"]), r
    for key, variant in result["variants"].items():
        assert variant["runs"] and all(positive(t) for t in variant["runs"] + variant["warmup"]), key
    assert not [p for p in result["processes"] if "error" in p]
    assert all(positive(g) for g in result["ceiling_gflops"].values()) and "fp32" in result["ceiling_gflops"]


def test_machine_and_precisions_are_recorded(quick: tuple[Path, dict]) -> None:
    _, result = quick
    machine = result["machine"]
    assert machine["cpu"] and machine["torch"] and int(machine["threads"]) >= 1 and isinstance(machine["flags"], list)
    native_bf16 = bool({"avx512_bf16", "amx_bf16", "bf16"} & set(machine["flags"]))
    assert {r["precision"] for r in result["rows"] if r["kind"] == "infer"} == ({"fp32", "bf16"} if native_bf16 else {"fp32"})


def test_the_table_has_one_line_per_row(quick: tuple[Path, dict]) -> None:
    out, result = quick
    table = [line for line in (out / "PERFORMANCE.md").read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(result["rows"])
    assert all(line.count("|") == 9 for line in table)


def test_compare_flags_a_row_that_got_worse(quick: tuple[Path, dict], tmp_path: Path) -> None:
    out, result = quick
    same = subprocess.run(
        [sys.executable, str(BENCH), "--compare", str(out / "performance.json"), str(out / "performance.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    better = json.loads(json.dumps(result))
    row = next(r for r in better["rows"] if r["ratio"] is not None)
    row["ratio"] /= 1.2  # the old run was 20 % better
    (tmp_path / "old.json").write_text(json.dumps(better), encoding="utf-8")
    worse = subprocess.run(
        [sys.executable, str(BENCH), "--compare", str(tmp_path / "old.json"), str(out / "performance.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worse.returncode == 1, worse.stdout + worse.stderr


def test_only_builds_just_the_selected_rows_and_processes() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench
    finally:
        sys.path.remove(str(BENCH.parent))
    plan = bench.Plan("cpu", False, ("fp32", "bf16"), "ref_train.py", bench.PLANS[("cpu", False)])
    (group,) = bench.groups(plan, ["infer unet_256 vs plain eager 512² bf16"])
    assert [r.id for r in group.rows] == ["infer unet_256 vs plain eager 512² bf16"]
    assert [job.name for job in group.jobs] == ["infer"]  # no kernels-off process
    _, inference = group.jobs[0].parts
    assert inference[1]["runs"] == [("unet_256", 512)] and inference[1]["precisions"] == ["bf16"]
    (group,) = bench.groups(plan, ["train cyclegan"])
    assert [j.name for j in group.jobs] == ["reference", "train"] and group.jobs[1].parts[0][1]["runs"] == [("cyclegan", 128)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_rows_without_cuda_exit_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--device", "cuda", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not list(tmp_path.iterdir())

#!/usr/bin/env python
"""Benchmark the toolkit on this machine and write ``docs/PERFORMANCE.md`` and ``docs/performance.json``.

::

    python scripts/bench.py                 # full run (~15 min on 2 cores)
    python scripts/bench.py --quick         # every workload at tiny sizes: a smoke test, not numbers
    python scripts/bench.py --levers        # before/after measurements of candidate speed levers only
    python scripts/bench.py --levers huge_pages   # only the named levers (bench_levers functions)
    python scripts/bench.py --only infer/resnet_9blocks/256   # a subset (ids as in performance.json)

In one run: the machine's convolution ceiling (fp32, bf16), then generator inference
(ResNet-9, U-Net-256 at three sizes, fp32 and bf16), ``translate apply`` and ``translate video``
end to end against the model alone, CycleGAN and pix2pix training iterations, a 4096² image
through tiled inference, the ceiling again; then the targets of issue 4, met or missed, with
what limits each miss from ``torch.profiler``. See the Method section of the written report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from translate.runtime import prefer_huge_pages  # noqa: E402

prefer_huge_pages()  # as the CLI does, before torch is imported: the workloads run as users run them

import bench_common  # noqa: E402
from bench_common import conv_backward_ceiling, conv_ceiling, load_average, machine_info, run_isolated  # noqa: E402
from bench_markdown import render_markdown  # noqa: E402
from bench_report import GEN_LABEL, MODEL_LABEL, evaluate, row_id, tally, verdict  # noqa: E402

import bench_training  # noqa: E402
import bench_workloads as W  # noqa: E402


@dataclass(frozen=True)
class Reps:
    """How a group of interleaved variants is timed (see ``bench_common.measure_interleaved``)."""

    warmup: int | dict[str, int]  # warm-up calls (per precision for training)
    repeats: int  # timed calls per variant per round
    rounds: int  # at most this many rounds (A B, B A, …)
    budget_s: float  # later rounds only while they fit this


@dataclass
class Plan:
    infer_sides: tuple[int, ...]
    infer_reps: dict[int, Reps]  # side -> reps (both generators, both precisions)
    folder: list[tuple[int, int, int, int]]  # (side, images, batch size, model-only batches before and after)
    video: tuple[int, int, int, int, int]  # (width, height, frames, batch size, model-only batches before and after)
    train: list[tuple[str, int, Reps]]  # (model, side, reps)
    tiled: tuple[int, int | None]  # (side, forced tile or None for the translator's choice)
    profile: set[str] = field(default_factory=set)  # row ids profiled with torch.profiler


def full_plan() -> Plan:
    # one warm-up at every size: the first call of a new input size pays oneDNN's kernel set-up for
    # it (and the packing of weights), which is not what a pixel costs
    reps = {256: Reps(1, 2, 3, 45), 512: Reps(1, 1, 1, 0), 1024: Reps(1, 1, 1, 0)}
    train = [
        ("cyclegan", 256, Reps({"fp32": 1, "bf16": 1}, 1, 1, 0)),
        ("cyclegan", 128, Reps({"fp32": 1, "bf16": 1}, 1, 2, 30)),
        ("pix2pix", 256, Reps({"fp32": 1, "bf16": 1}, 3, 2, 40)),  # a few seconds a run: 6 runs, noise-proof median
    ]
    profile = {row_id("infer", g, 256, p) for g in GEN_LABEL for p in ("fp32", "bf16")}
    profile |= {row_id("train", "cyclegan", 256, p) for p in ("fp32", "bf16")} | {row_id("train", "pix2pix", 256, "fp32")}
    return Plan((256, 512, 1024), reps, [(256, 8, 4, 1), (1024, 2, 1, 1)], (640, 360, 24, 4, 1), train, (4096, None), profile)


def quick_plan() -> Plan:
    sides = (64, 128, 256)
    once = Reps(0, 1, 1, 0)
    train = [("cyclegan", 64, once), ("cyclegan", 32, once), ("pix2pix", 256, once)]
    profile = {row_id("infer", "resnet_9blocks", 64, "fp32")}
    return Plan(sides, {s: once for s in sides}, [(64, 4, 2, 1), (128, 2, 1, 1)], (160, 96, 8, 4, 1), train, (256, 128), profile)


# ---------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One child process: a function returning one row, or ``{"rows": [...]}`` for a group."""

    ids: list[str]  # the row ids it produces, in order
    labels: list[str]
    fn: Any
    args: tuple
    kwargs: dict


SKIPPED_BF16 = ("not run at this size: this CPU has no oneDNN bf16 kernels (no AVX-512), so PyTorch's reference bf16 "
                "convolutions run many times slower than fp32; bf16 is measured at the smallest inference and "
                "training sizes only")


def onednn_bf16() -> bool:
    """Whether oneDNN has bf16 kernels here (AVX-512 and newer); a CPU-feature query, no compute."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def jobs(plan: Plan, base: int, quick: bool, *, bf16_everywhere: bool | None = None) -> list[Job]:
    """Every workload, in running order.

    Without oneDNN bf16 (``bf16_everywhere`` False; None asks the CPU) bf16 runs only at the
    smallest inference side and the smallest training side: elsewhere an emulated bf16 row
    takes many minutes to say what the smallest one already says. Those rows are recorded
    as skipped, with the reason.
    """
    out: list[Job] = []
    if bf16_everywhere is None:
        bf16_everywhere = quick or onednn_bf16()
    smallest_train = min(side for _, side, _ in plan.train)

    def precisions_for(small: bool) -> tuple[str, ...]:
        return ("fp32", "bf16") if (bf16_everywhere or small) else ("fp32",)

    for gen in GEN_LABEL:
        for side in plan.infer_sides:
            r = plan.infer_reps[side]
            precisions = precisions_for(side == plan.infer_sides[0])
            ids = [row_id("infer", gen, side, p) for p in ("fp32", "bf16")]
            out.append(Job(ids, [f"{GEN_LABEL[gen]} inference {side}²"] * 2, W.inference, (gen, side),
                           dict(base_channels=base, quick=quick, small_side=plan.infer_sides[0], warmup=r.warmup,
                                repeats=r.repeats, rounds=r.rounds, budget_s=r.budget_s, profile=ids[0] in plan.profile,
                                precisions=precisions)))
    for side, count, batch, model_batches in plan.folder:
        out.append(Job([row_id("folder", side, "fp32")], [f"`translate apply`: {count} × {side}² JPEG, batch {batch}"],
                       W.folder, (side, count, batch, "fp32"), dict(base_channels=base, quick=quick, model_batches=model_batches)))
    width, height, frames, batch, model_batches = plan.video
    out.append(Job([row_id("video", f"{width}x{height}", "fp32")], [f"`translate video`: {width}×{height} H.264, {frames} frames, batch {batch}"],
                   W.video, (width, height, frames, batch, "fp32"), dict(base_channels=base, quick=quick, model_batches=model_batches)))
    for model, side, r in plan.train:
        both = ("fp32", "bf16")
        ids = [row_id("train", model, side, p) for p in both]
        gen = "ResNet-9" if model == "cyclegan" else "U-Net-256"
        out.append(Job(ids, [f"{MODEL_LABEL[model]} iteration ({gen}) {side}², batch 1"] * 2, bench_training.training, (model, side),
                       dict(base_channels=base, quick=quick, warmup=r.warmup if isinstance(r.warmup, dict) else {p: r.warmup for p in both},
                            repeats=r.repeats, rounds=r.rounds, budget_s=r.budget_s,
                            profile=tuple(p for p, i in zip(both, ids) if i in plan.profile),
                            precisions=precisions_for(side == smallest_train and model == plan.train[0][0]))))
    side, tile = plan.tiled
    out.append(Job([row_id("tiled", side, "fp32")], [f"Tiled ResNet-9 inference {side}²"], W.tiled, (side, "fp32"),
                   dict(base_channels=base, quick=quick, tile=tile)))
    return out


def run_workloads(plan: Plan, base: int, quick: bool, only: list[str]) -> list[dict[str, Any]]:
    todo = [j for j in jobs(plan, base, quick) if not only or any(o in i for o in only for i in j.ids)]
    rows: list[dict[str, Any]] = []
    for n, job in enumerate(todo, 1):
        if job.fn is W.video and not _video_available():
            results = [{"status": "missing", "error": "translate.infer.video is not importable in this checkout"}]
        else:
            tick = time.perf_counter()
            result = run_isolated(job.fn, *job.args, **job.kwargs)
            took = time.perf_counter() - tick
            if result.get("status") == "ok" and "rows" in result:
                # a group: each row keeps its own sampled peak; the process's high-water mark is shared
                results = [{**r, "status": "ok", "process": result["process"], "process_peak_rss_mb": result["peak_rss_mb"]}
                           for r in result["rows"]]
            elif result.get("status") == "ok":
                results = [{**result, "process_peak_rss_mb": result["peak_rss_mb"]}]
            else:
                results = [dict(result) for _ in job.ids]
            # precisions a group left out (bf16 without oneDNN bf16): said, not silently absent
            results += [{"status": "skipped", "error": SKIPPED_BF16} for _ in job.ids[len(results):]]
            for r in results:
                r["job_wall_s"] = took
        for rid, label, row in zip(job.ids, job.labels, results):
            rows.append({"id": rid, "label": label, **row})
            print(f"[{n}/{len(todo)}] {_progress(rows[-1])}", flush=True)
    return rows


def _video_available() -> bool:
    try:
        import translate.infer.video  # noqa: F401
    except ImportError:
        return False
    return True


def _progress(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"{row['id']}: {row.get('status')}: {row.get('error')}"
    ratio = f", {100 * row['ceiling_ratio']:.0f} % of ceiling" if row.get("ceiling_ratio") else ""
    return (f"{row['id']}: {row['seconds']:.3f} s, {row['gflops']:.1f} GFLOP/s{ratio}, "
            f"{row['peak_rss_mb'] / 1024:.2f} GB (its process took {row['job_wall_s']:.0f} s)")


# ---------------------------------------------------------------------------------- output


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    print()
    print(f"machine: {m['cpu']}, {m['usable_cpus']} cores, torch {m['torch']}, avx512_bf16={m['avx512_bf16']}, "
          f"load {m['loadavg']} -> {results.get('loadavg_end')}")
    for key, c in results.get("ceiling", {}).items():
        print(f"ceiling {key}: {c['gflops']:.1f} GFLOP/s")
    header = f"{'workload':48} {'prec':5} {'time s':>9} {'GFLOP/s':>8} {'%ceil':>6} {'RSS GB':>7}"
    print(header)
    print("-" * len(header))
    for r in results["workloads"]:
        if r.get("status") != "ok":
            print(f"{r['id']:48} {'':5} {r.get('status', 'missing') + ': ' + str(r.get('error'))[:60]}")
            continue
        ratio = f"{100 * r['ceiling_ratio']:.0f}" if r.get("ceiling_ratio") else "-"
        print(f"{r['id']:48} {r['precision']:5} {r['seconds']:9.3f} {r['gflops']:8.1f} {ratio:>6} {r['peak_rss_mb'] / 1024:7.2f}")
    print()
    for chk in results["targets"]:
        print(f"{verdict(chk, 'MISSED'):12} {chk['name']}: {chk['measured']} (target {chk['target']})")
    print(f"\nwall time {results['wall_s'] / 60:.1f} min")


def write(results: dict[str, Any], out: Path, *, measured_only: bool = False) -> None:
    """performance.json, then PERFORMANCE.md (``measured_only``: the JSON alone, written before
    the report is computed, so that a fault in the report code never loses a run's measurements;
    ``--render`` rebuilds the report from it)."""
    out.mkdir(parents=True, exist_ok=True)
    results["other_runs"] = other_runs(out)
    (out / "performance.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n", encoding="utf-8")
    if not measured_only:
        (out / "PERFORMANCE.md").write_text(render_markdown(results), encoding="utf-8")


def other_runs(out: Path) -> list[dict[str, Any]]:
    """Full runs of this benchmark in folders below ``out`` (e.g. ``docs/avx2`` from another
    machine), for the report to point at."""
    from bench_markdown import cpu_tag

    found = []
    for path in sorted(out.glob("*/performance.json")):
        run = _read_previous(path)
        if run.get("mode") != "full" or not run.get("targets"):
            continue
        found.append({"path": f"{path.parent.name}/PERFORMANCE.md", "cpu": run["machine"]["cpu"],
                      "cpu_tag": cpu_tag(run["machine"]), "started": run.get("started"), "tally": tally(run["targets"])})
    return found


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each: checks the script, not the machine")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for PERFORMANCE.md and performance.json")
    parser.add_argument("--base-channels", type=int, default=64, help="generator/discriminator width (64 = the papers')")
    parser.add_argument("--only", action="append", default=[], help="run only workloads whose id contains this (repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per workload (default: torch's, one per core; --quick: 1)")
    parser.add_argument("--render", action="store_true", help="rewrite PERFORMANCE.md from performance.json, measuring nothing")
    parser.add_argument("--levers", nargs="*", metavar="NAME", default=None,
                        help="measure the candidate speed levers only, keep the workloads; with NAMEs (bench_levers "
                             "function names), only those, replacing their earlier entries")
    args = parser.parse_args(argv)
    if args.base_channels < 1:
        parser.error(f"--base-channels must be >= 1, got {args.base_channels}")

    # one thread keeps the smoke run fast on a busy machine: tiny ops pay OpenMP barriers otherwise
    # (the levers compare thread counts themselves, so they keep torch's default)
    bench_common.THREADS = args.threads or (1 if args.quick and args.levers is None else None)
    started = time.perf_counter()
    previous = _read_previous(args.out / "performance.json")
    if args.render:
        if not previous:
            parser.error(f"--render needs {args.out / 'performance.json'}")
        attach_quality(previous, args.out)
        previous["targets"] = evaluate(previous)
        write(previous, args.out)
        return 0
    if args.levers is not None:
        import bench_levers

        bench_common.prewarm()

        if not previous:
            parser.error(f"--levers adds to an existing run: run the workloads first ({args.out / 'performance.json'} is missing)")
        results = previous
        stamp_legacy_levers(results)
        names = set(args.levers) or None
        if names is None:
            results["conv_backward"] = run_isolated(conv_backward_ceiling, quick=args.quick)
        try:
            fresh = bench_levers.run_levers(base=args.base_channels, quick=args.quick, names=names)
        except ValueError as exc:
            parser.error(f"--levers: {exc}")
        stamp = {"measured": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": bench_common.machine_info(),
                 "threads": bench_common.THREADS}
        fresh = [{**lever, **stamp} for lever in fresh]
        if names is None:
            results["levers"] = fresh
        else:  # the named levers replace their earlier entries, in place; new ones go last
            kept = [lv for lv in results.get("levers", []) if lv.get("source") not in names]
            results["levers"] = kept + fresh
        write(results, args.out, measured_only=True)
        attach_quality(results, args.out)
        results["targets"] = evaluate(results)
        write(results, args.out)
        for lever in fresh:
            print(lever)
        return 0

    plan = quick_plan() if args.quick else full_plan()
    command = "python scripts/bench.py" + (" --quick" if args.quick else "")
    if args.base_channels != 64:
        command += f" --base-channels {args.base_channels}"
    if args.threads:
        command += f" --threads {args.threads}"
    results: dict[str, Any] = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "started": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "base_channels": args.base_channels,
        "machine": {**machine_info(), "bench_threads": bench_common.THREADS},
        "plan": {"infer_sides": list(plan.infer_sides), "folder": plan.folder, "video": list(plan.video),
                 "train": [(m, s) for m, s, _ in plan.train], "tiled": list(plan.tiled),
                 "reps": {"infer": {s: vars(r) for s, r in plan.infer_reps.items()},
                          "train": {f"{m}/{s}": vars(r) for m, s, r in plan.train}}},
        "ceiling": {},
    }
    print(f"machine: {results['machine']['cpu']}, torch {results['machine']['torch']}", flush=True)
    bench_common.prewarm()
    for precision in ("fp32", "bf16"):
        results["ceiling"][f"{precision}_start"] = run_isolated(conv_ceiling, precision, quick=args.quick, repeats=5)
        print(f"ceiling {precision}: {results['ceiling'][f'{precision}_start']['gflops']:.1f} GFLOP/s", flush=True)
    results["conv_backward"] = run_isolated(conv_backward_ceiling, quick=args.quick)
    results["workloads"] = run_workloads(plan, args.base_channels, args.quick, args.only)
    for precision in ("fp32", "bf16"):
        results["ceiling"][f"{precision}_end"] = run_isolated(conv_ceiling, precision, quick=args.quick, repeats=5)
    results["loadavg_end"] = load_average()
    if previous.get("levers") and previous.get("mode") == results["mode"]:
        stamp_legacy_levers(previous)  # they keep the machine and date they were measured on
        results["levers"] = previous["levers"]
    results["wall_s"] = time.perf_counter() - started
    write(results, args.out, measured_only=True)
    if not args.quick:
        attach_quality(results, args.out)
    results["targets"] = evaluate(results)
    write(results, args.out)
    print_table(results)
    return 0


def stamp_legacy_levers(results: dict[str, Any]) -> None:
    """Give lever entries from before per-entry stamps the run's date, machine and threads."""
    for lever in results.get("levers", []):
        lever.setdefault("measured", results.get("levers_measured"))
        lever.setdefault("machine", results.get("machine"))
        lever.setdefault("threads", results.get("levers_threads"))


def attach_quality(results: dict[str, Any], out: Path) -> None:
    """The quality benchmark's fp32 and bf16 runs (``scripts/quality.py``, ``--precision bf16
    --out docs/quality_bf16``), for the check that bf16 training still converges: per trained
    model, PSNR/SSIM in both precisions and the best baseline of its task."""
    runs = {p: _read_previous(path) for p, path in (("fp32", out / "quality.json"), ("bf16", out / "quality_bf16" / "quality.json"))}
    if not all(r.get("rows") for r in runs.values()) or any(r.get("quick") for r in runs.values()):
        results.pop("quality", None)
        return
    by_name = {p: {row["name"]: row for row in r["rows"]} for p, r in runs.items()}
    rows = []
    for name, a in by_name["fp32"].items():
        b = by_name["bf16"].get(name)
        if a["kind"] != "model" or b is None:
            continue
        baselines = [r["psnr"] for r in by_name["fp32"].values() if r["kind"] == "baseline" and r["task"] == a["task"]
                     and r["method"] != "a random night rendering of the input"]  # that one is the target's own noise
        rows.append({"name": name, "method": a["method"], "fp32_psnr": a["psnr"], "bf16_psnr": b["psnr"],
                     "fp32_ssim": a["ssim"], "bf16_ssim": b["ssim"], "best_baseline_psnr": max(baselines, default=None)})
    results["quality"] = {"rows": rows, "minutes": {p: r.get("total_minutes") for p, r in runs.items()},
                          "commands": {p: r.get("command") for p, r in runs.items()},
                          "machine": runs["bf16"].get("machine")}


def _read_previous(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())

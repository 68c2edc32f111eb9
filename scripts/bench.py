#!/usr/bin/env python
"""Time the toolkit against plain baselines; write OUT/performance.json and OUT/PERFORMANCE.md.

    python scripts/bench.py                          # full run into docs/ (about 10 min on 2 cores)
    python scripts/bench.py --quick --out /tmp/b     # tiny sizes, 2 repeats: a smoke test, not numbers
    python scripts/bench.py --only "train cyclegan"  # the rows whose id contains this
    python scripts/bench.py --compare old.json       # then each row against an older run (> 5 % worse: exit 1)
    python scripts/bench.py --compare old.json new.json   # compare two runs, time nothing
    python scripts/bench.py --device cuda --out docs/gpu  # the GPU rows

A row is the median of the toolkit's repetitions against a baseline's, from the same run: the
variants of one process run interleaved (A B, B A, after warm-ups), and so do the processes
where a variant needs its own (the reference step; TRANSLATE_CPU_KERNELS=0). Threads are
torch's default (what users get) unless --threads says otherwise. The ratio is toolkit ÷
baseline (seconds or MB: lower is better); TARGETS says how low it must be.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_work as W  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# row kind (with " cuda" for the GPU's own) -> the largest toolkit ÷ baseline ratio that meets
# the target; for a row without a baseline, the largest value itself (MB)
TARGETS: dict[str, float] = {
    "train": 0.9,  # a training iteration, against the plain reference step (ref_train.py)
    "train cuda": 1 / 3,  # on a GPU: at least 3x the reference's iterations per second
    "infer": 1.0,  # Translator.translate_batch against a plain eager loop of the same network
    # the CPU kernels on against off: a route stays only while it pays where it applies, and
    # where none applies (ResNet-9 at 256² and up) the row must show no cost beyond noise
    "kernels": 1.05,
    "apply": 1 / 0.9,  # end to end against the model alone, per image: at least 90 % of its speed
    "video": 1 / 0.9,
    "tiled": 2048,  # peak RSS (MB) of a process translating a 4096² photo: fits a 2 GB machine
    # one-sided models against CycleGAN, a training iteration at batch 1 (Park et al. 2020 report FastCUT ~2x faster, ~half the memory)
    "fastcut": 0.55,
    "cut": 0.75,
    "memory": 0.6,  # FastCUT's peak memory over CycleGAN's (CPU: a process's peak RSS; GPU: max_memory_allocated)
}
ONE_SIDED = ("cut", "fastcut")

KERNELS_OFF = {"TRANSLATE_CPU_KERNELS": "0"}
GENERATORS = ("resnet_9blocks", "unet_256")

# what runs, by (device, quick)
PLANS: dict[tuple[str, bool], dict[str, Any]] = {
    ("cpu", False): dict(
        train=[("cyclegan", 128), ("pix2pix", 256)],
        one_sided=256,
        infer=[(g, s) for g in GENERATORS for s in (256, 512)],
        pipelines=dict(side=256, count=4, clip=(320, 180, 6), batch_size=2),
        tiled=dict(side=4096, tile=None),
        ceiling=(4, 256, 64, 64),
        base_channels=64,
        warmup=2,  # translate.accel packs a shape's weights at its second call
        rounds=2,
        turns=2,
    ),
    ("cpu", True): dict(
        train=[("cyclegan", 32)],
        one_sided=32,
        infer=[("resnet_9blocks", 64), ("unet_256", 256)],
        pipelines=dict(side=64, count=2, clip=(64, 48, 4), batch_size=2),
        tiled=dict(side=384, tile=128),
        ceiling=(1, 32, 32, 32),
        base_channels=8,
        warmup=1,
        rounds=2,
        turns=1,
    ),
    ("cuda", False): dict(
        train=[("cyclegan", 256), ("pix2pix", 256)],
        one_sided=256,
        infer=[(g, s) for g in GENERATORS for s in (256, 1024)],
        pipelines=None,
        tiled=None,
        ceiling=(32, 256, 128, 128),
        base_channels=64,
        warmup=5,
        rounds=20,
        turns=1,
    ),
    ("cuda", True): dict(
        train=[("cyclegan", 64), ("pix2pix", 256)],
        one_sided=64,
        infer=[("resnet_9blocks", 64), ("unet_256", 256)],
        pipelines=None,
        tiled=None,
        ceiling=(1, 32, 32, 32),
        base_channels=8,
        warmup=1,
        rounds=2,
        turns=1,
    ),
}


@dataclass(frozen=True)
class Row:
    kind: str  # a key of TARGETS
    name: str
    size: str
    precision: str
    toolkit: str  # variant keys
    baseline: str | None
    items: int = 1  # images per repetition: medians are per image
    unit: str = "s"
    run: tuple[str, int] | None = None  # (model or generator, side) of the variants

    @property
    def id(self) -> str:
        return f"{self.kind} {self.name} {self.size} {self.precision}"


@dataclass
class Job:
    """One child process: builders of variants (bench_work functions and their arguments)."""

    name: str
    parts: list[tuple[Any, dict[str, Any]]]
    env: dict[str, str] = field(default_factory=dict)
    as_cli: bool = True  # huge pages as ``translate`` asks for them (not for the reference)
    warmup: int | None = None  # None: the plan's
    rounds: int | None = None


@dataclass
class Group:
    jobs: list[Job]  # run in order, then (turns 2) in reverse: A B B A
    rows: list[Row]


@dataclass(frozen=True)
class Plan:
    device: str
    quick: bool
    precisions: tuple[str, ...]
    reference: str | None  # ref_train.py, if found
    settings: dict[str, Any]


def find_reference() -> str | None:
    for path in (ROOT.parent / "shared" / "reference" / "ref_train.py", ROOT / "shared" / "reference" / "ref_train.py"):
        if path.is_file():
            return str(path)
    return None


def precisions(device: str) -> tuple[str, ...]:
    """fp32, and the reduced precisions that are native where the rows run."""
    if device == "cuda":
        import torch

        return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    from translate.runtime import cpu_native_bf16

    return ("fp32", "bf16") if cpu_native_bf16() else ("fp32",)


# ---------------------------------------------------------------------------------- rows and jobs


def toolkit_rows(plan: Plan, kind: str, versus: str, runs: list, precs: tuple, baseline: str) -> list[Row]:
    """The toolkit against ``baseline`` (a key template) and, on CPU, against itself with its kernels off."""
    rows = []
    for name, side in runs:
        for p in precs:
            key, run = f"{kind}/{name}/{side}", (name, side)
            rows.append(Row(kind, f"{name} vs {versus}", f"{side}²", p, f"{key}/{p}/toolkit", baseline.format(key=key, p=p), run=run))
            if plan.device == "cpu":
                what = f"{name} {'training' if kind == 'train' else 'inference'}, kernels on vs off"
                rows.append(Row("kernels", what, f"{side}²", p, f"{key}/{p}/toolkit", f"{key}/{p}/off", run=run))
    return rows


def training_group(plan: Plan, runs: list, precs: tuple, kinds: set[str]) -> Group:
    s = plan.settings
    kw = dict(runs=runs, precisions=list(precs), base_channels=s["base_channels"])
    jobs = [Job("train", [(W.training, {**kw, "label": "toolkit"})])]
    if "train" in kinds and plan.reference:
        ref = dict(script=plan.reference, runs=runs, warmup=s["warmup"], rounds=s["rounds"])
        jobs.insert(0, Job("reference", [(W.reference, ref)], as_cli=False))
    if "kernels" in kinds and plan.device == "cpu":
        jobs.append(Job("train, kernels off", [(W.training, {**kw, "label": "off"})], env=KERNELS_OFF))
    return Group(jobs, toolkit_rows(plan, "train", "reference (fp32)", runs, precs, "{key}/reference"))


def inference_group(plan: Plan, runs: list, precs: tuple, kinds: set[str]) -> Group:
    kw = dict(runs=runs, precisions=list(precs), base_channels=plan.settings["base_channels"])
    ceiling = (W.ceiling, dict(shape=plan.settings["ceiling"], precisions=list(precs)))
    jobs = [Job("infer", [ceiling, (W.inference, {**kw, "label": "toolkit", "plain": True})])]
    if "kernels" in kinds and plan.device == "cpu":
        jobs.append(Job("infer, kernels off", [(W.inference, {**kw, "label": "off", "plain": False})], env=KERNELS_OFF))
    return Group(jobs, toolkit_rows(plan, "infer", "plain eager", runs, precs, "{key}/{p}/plain"))


def one_sided_group(plan: Plan, *_: Any) -> Group:
    """CUT and FastCUT against CycleGAN: iteration time interleaved in one process, and peak
    memory each in a process of its own (on a GPU: max_memory_allocated of the timed runs)."""
    side, base = plan.settings["one_sided"], plan.settings["base_channels"]
    models = ("cyclegan", *ONE_SIDED)
    kw = dict(precisions=["fp32"], base_channels=base, label="toolkit")
    jobs = [Job("one-sided", [(W.training, {**kw, "runs": [(m, side) for m in models]})])]
    key = lambda m: f"train/{m}/{side}/fp32/toolkit"  # noqa: E731
    rows = [Row(m, "training vs cyclegan at batch 1", f"{side}²", "fp32", key(m), key("cyclegan"), run=(m, side)) for m in ONE_SIDED]
    if plan.device == "cpu":
        jobs += [Job(f"memory {m}", [(W.training, {**kw, "runs": [(m, side)], "label": "memory"})]) for m in models]
        rows.append(
            Row(
                "memory",
                "fastcut vs cyclegan, peak RSS of a training process",
                f"{side}²",
                "fp32",
                "memory fastcut/peak_rss_mb",
                "memory cyclegan/peak_rss_mb",
                unit="MB",
            )
        )
    else:
        rows.append(Row("memory", "fastcut vs cyclegan, max_memory_allocated", f"{side}²", "fp32", key("fastcut"), key("cyclegan"), unit="MB"))
    return Group(jobs, rows)


def pipelines_group(plan: Plan, *_: Any) -> Group:
    p = {**plan.settings["pipelines"], "base_channels": plan.settings["base_channels"]}
    (width, height, frames), side, count = p["clip"], p["side"], p["count"]
    clip = f"{width}x{height}"
    rows = [
        Row("apply", "translate apply vs model alone", f"{count} × {side}²", "fp32", f"apply/{side}/e2e", f"apply/{side}/model", count),
        Row("video", "translate video vs model alone", f"{frames} × {clip}", "fp32", f"video/{clip}/e2e", f"video/{clip}/model", frames),
    ]
    return Group([Job("pipelines", [(W.pipelines, p)])], rows)


def tiled_group(plan: Plan, *_: Any) -> Group:
    t = {**plan.settings["tiled"], "base_channels": plan.settings["base_channels"]}
    row = Row("tiled", "peak RSS of one tiled image", f"{t['side']}²", "fp32", "tiled/peak_rss_mb", None, unit="MB")
    return Group([Job("tiled", [(W.tiled, t)], warmup=0, rounds=1)], [row])


def groups(plan: Plan, only: list[str]) -> list[Group]:
    """Every group with a row ``only`` selects, built for just the sizes and precisions those rows need."""
    s = plan.settings
    candidates = [(training_group, s["train"]), (inference_group, s["infer"]), (one_sided_group, None)]
    candidates += [(pipelines_group, None)] if s["pipelines"] else []
    candidates += [(tiled_group, None)] if s["tiled"] else []
    selected = []
    for make, runs in candidates:
        all_rows = make(plan, runs, plan.precisions, set(TARGETS)).rows
        kept = [r for r in all_rows if not only or any(o in r.id for o in only)]
        if not kept:
            continue
        if runs is not None:
            runs = [r for r in runs if any(k.run == r for k in kept)]
        precs = tuple(p for p in plan.precisions if any(k.precision == p for k in kept))
        group = make(plan, runs, precs, {k.kind for k in kept})
        group.rows = [r for r in group.rows if r in kept]
        selected.append(group)
    return selected


# ---------------------------------------------------------------------------------- running


def run_job(job: Job, plan: Plan, threads: int | None) -> dict[str, Any]:
    """``job`` in a fresh (spawned) process: nothing of this one, torch's state included, carries over."""
    s = plan.settings
    warmup, rounds = s["warmup"] if job.warmup is None else job.warmup, s["rounds"] if job.rounds is None else job.rounds
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context, initializer=W.start, initargs=(job.env, threads, job.as_cli)) as pool:
        return pool.submit(W.run, job.parts, plan.device, warmup, rounds).result()


def measure(plan: Plan, selected: list[Group], threads: int | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    variants: dict[str, dict[str, Any]] = {}
    processes: list[dict[str, Any]] = []
    order = [job for g in selected for job in (g.jobs + g.jobs[::-1] if plan.settings["turns"] == 2 else g.jobs)]
    for n, job in enumerate(order, 1):
        tick = time.perf_counter()
        try:
            result = run_job(job, plan, threads)
        except Exception as exc:  # noqa: BLE001  one failed process fails its rows, not the run
            result = {"variants": {}, "process": {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}}
        wall = time.perf_counter() - tick
        processes.append({"job": job.name, "env": job.env, "wall_s": round(wall, 2), **result["process"]})
        peak = result["process"].get("peak_rss_mb")
        found = {**result["variants"], **({f"{job.name}/peak_rss_mb": {"warmup": [], "runs": [peak]}} if peak else {})}
        for key, timed in found.items():
            into = variants.setdefault(key, {"warmup": [], "runs": []})
            into["warmup"] += timed["warmup"]
            into["runs"] += timed["runs"]
            if "cuda_peak_mb" in timed:
                into["cuda_peak_mb"] = max(into.get("cuda_peak_mb", 0.0), timed["cuda_peak_mb"])
        error = result["process"].get("error")
        print(f"[{n}/{len(order)}] {job.name}{' ' + str(job.env) if job.env else ''}: {wall:.0f} s{'; ' + error if error else ''}", flush=True)
    return variants, processes


def evaluate(row: Row, variants: dict[str, Any], device: str) -> dict[str, Any]:
    def median(key: str | None) -> float | None:
        if row.unit == "MB" and device == "cuda" and key:  # GPU memory: the variant's max_memory_allocated
            return variants.get(key, {}).get("cuda_peak_mb")
        runs = variants.get(key, {}).get("runs") if key else None
        return statistics.median(runs) / row.items if runs else None

    toolkit, baseline = median(row.toolkit), median(row.baseline)
    ratio = toolkit / baseline if toolkit and baseline else None
    target = TARGETS.get(f"{row.kind} {device}", TARGETS[row.kind])
    value = toolkit if row.baseline is None else ratio
    return {
        "id": row.id,
        **asdict(row),
        "toolkit_median": toolkit,
        "baseline_median": baseline,
        "ratio": ratio,
        "target": target,
        "met": None if value is None else value <= target,
        "cuda_peak_mb": variants.get(row.toolkit, {}).get("cuda_peak_mb"),
    }


def machine_info(device: str) -> dict[str, Any]:
    """CPU model and the flags that decide its speed (/proc/cpuinfo), cores, torch, the GPU."""
    import torch

    from translate.runtime import cpu_flags

    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    except OSError:
        names = []
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "bf16")
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(),
        "flags": [f for f in wanted if f in cpu_flags()],
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
    }


# ---------------------------------------------------------------------------------- output


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.0f} {unit}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    gpu = f", {m['gpu']}" if m["gpu"] else ""
    parts = [f"{result['started']}, {m['cpu']} ({' '.join(m['flags']) or 'no listed flags'}{gpu}), {m['threads']} threads, torch {m['torch']}"]
    parts += [f"conv ceiling {p} {g:.0f} GFLOP/s" for p, g in result["ceiling_gflops"].items()]
    parts += [f"`{result['command']}`, {result['wall_s'] / 60:.1f} min. Every repetition is in performance.json."]
    header = "; ".join(parts)
    lines = [
        "# Performance",
        "",
        header,
        "",
        "| row | size | precision | toolkit | baseline | ratio | target | met |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = f"≤ {r['target']:.2f}" if r["baseline"] else f"≤ {fmt(r['target'], r['unit'])}"
        met = {True: "yes", False: "**no**", None: "not measured"}[r["met"]]
        lines.append(
            f"| {r['kind']} {r['name']} | {r['size']} | {r['precision']} | {fmt(r['toolkit_median'], r['unit'])} | "
            f"{fmt(r['baseline_median'], r['unit'])} | {ratio} | {target} | {met} |"
        )
    return "\n".join(lines) + "\n"


def compare(old: dict[str, Any], new: dict[str, Any], limit: float = 1.05) -> int:
    """Each row of ``new`` against ``old``: its ratio to its same-run baseline where it has one
    (load on the machine cancels), else its median. Returns 1 when one got worse by more than ``limit``."""
    before = {r["id"]: r for r in old.get("rows", [])}
    worse = 0
    print(f"{'row':78} {'old':>9} {'new':>9} {'change':>7}")
    for r in new["rows"]:
        o = before.get(r["id"])
        field_ = "ratio" if r["ratio"] is not None and o and o.get("ratio") is not None else "toolkit_median"
        if not o or not o.get(field_) or not r.get(field_):
            print(f"{r['id']:78} {'–':>9} {'–':>9}   not in both")
            continue
        change = r[field_] / o[field_]
        worse += change > limit
        print(f"{r['id']:78} {o[field_]:9.4g} {r[field_]:9.4g} {change:7.3f}{'  WORSE' if change > limit else ''}")
    print(f"{worse} of {len(new['rows'])} rows more than {100 * (limit - 1):.0f} % worse")
    return 1 if worse else 0


def publish(out: Path, name: str, result: dict[str, Any], table: str) -> None:
    """A benchmark's results: ``out/<name>.json`` (everything) and ``out/<NAME>.md`` (its table),
    each written atomically, and the table printed. Shared by bench, quality and video_bench."""
    from translate.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{name}.json", json.dumps(result, indent=1) + "\n")
    atomic_write(out / f"{name.upper()}.md", table)
    print("\n" + table, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and networks, 2 repeats: checks the script, not the machine")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for performance.json and PERFORMANCE.md (default docs)")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING", help="only rows whose id contains this (repeatable)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, what users get; --quick: 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="JSON", help="OLD [NEW]: compare runs (NEW: time nothing)")
    args = parser.parse_args(argv)
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes OLD.json and at most one NEW.json")
    if args.compare and len(args.compare) == 2:
        old, new = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        return compare(old, new)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench: --device cuda: no CUDA device here (torch.cuda.is_available() is false)", file=sys.stderr)
            return 2
    plan = Plan(args.device, args.quick, precisions(args.device), find_reference(), PLANS[(args.device, args.quick)])
    if plan.reference is None:
        print("bench: no ../shared/reference/ref_train.py: the training rows have no baseline", file=sys.stderr)
    selected = groups(plan, args.only)
    if not selected:
        parser.error(f"--only {args.only}: no row matches")
    started, tick = datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), time.perf_counter()
    machine = machine_info(args.device)
    print(f"bench: {machine['cpu']} ({' '.join(machine['flags'])}), {args.device}, precisions {', '.join(plan.precisions)}", flush=True)
    # the smoke run takes one thread: on a busy machine two threads of tiny ops wait on each other
    variants, processes = measure(plan, selected, args.threads or (1 if args.quick else None))
    threads = {p["threads"] for p in processes if "threads" in p}
    shape = plan.settings["ceiling"]
    flops = 2 * shape[0] * shape[1] ** 2 * 9 * shape[2] * shape[3]
    result = {
        "command": " ".join(["python scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": started,
        "quick": args.quick,
        "machine": {**machine, "threads": ",".join(map(str, sorted(threads)))},
        "plan": {**plan.settings, "precisions": plan.precisions, "reference": plan.reference},
        "ceiling_gflops": {k.split("/")[1]: flops / statistics.median(v["runs"]) / 1e9 for k, v in variants.items() if k.startswith("ceiling/")},
        "rows": [evaluate(r, variants, args.device) for g in selected for r in g.rows],
        "variants": variants,
        "processes": processes,
        "wall_s": time.perf_counter() - tick,
    }
    publish(args.out, "performance", result, markdown(result))
    failed = [p for p in processes if "error" in p]
    status = 1 if failed else 0
    if args.compare:
        status = max(status, compare(json.loads(args.compare[0].read_text(encoding="utf-8")), result))
    return status


if __name__ == "__main__":
    sys.exit(main())

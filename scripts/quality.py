#!/usr/bin/env python
"""Score small models trained on real photos against trivial baselines, on photos they never saw.

    python scripts/quality.py                        # every task x variant x seed (over an hour on 2 cores)
    python scripts/quality.py --quick --out /tmp/q   # 64 px, 4-channel nets, 2 steps: a smoke test, not numbers
    python scripts/quality.py --only day2night       # the tasks (or variants) whose name contains this

Writes OUT/quality.json (every score, per image), OUT/QUALITY.md (one table) and
OUT/quality/<task>.png (contact sheets: input | each variant, seed 0 | target). Each task
trains every one of its variants with each seed through ``translate train`` (fixed steps, so
the same command gives the same numbers up to floating-point noise), translates the held-out
inputs with ``Translator.translate_folder`` and scores them with ``evaluate_paired``; the
baselines (the input itself, the mean training target) are scored on the same images.
A run whose command and default recipe are unchanged is kept from WORK (so an interrupted
benchmark goes on where it stopped); ``--fresh`` retrains every run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as data  # noqa: E402
from quality_tasks import PLANS, TASKS, Task, dataset, run_key, saved_with_key  # noqa: E402

from translate.config import DIFFAUGMENT_POLICY  # noqa: E402
from translate.files import atomic_write  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    train_images: int | None = None  # None: all of the task's
    settings: tuple[str, ...] = ()  # translate train --set overrides; "{steps}" is the run's step count
    preset: str = "toolkit"  # translate train --preset: toolkit (the default recipe) or paper
    model: str | None = None  # translate train --model, when not the task's (CUT on an unpaired task)
    same_time_as: str | None = None  # a variant of the task: train as many steps as fit in its measured minutes
    steps_factor: int = 1  # times the task's steps: a longer budget (the issue allows up to ~10 min a model)


# the levers: each alone on top of the paper's recipe, then the default recipe that keeps the winners
CYCLEGAN_LEVERS = (
    Variant("paper", preset="paper"),
    Variant("paper + residual generator", settings=("net.residual=true",), preset="paper"),
    Variant("paper + residual generator + Huber cycle/identity", settings=("net.residual=true", "train.recon_huber=0.05"), preset="paper"),
    Variant("paper + resize upsampling", settings=("net.upsample=resize",), preset="paper"),
    Variant("paper + weight average", settings=("train.ema_decay=0.999",), preset="paper"),
    Variant("paper + GAN warm-up", settings=("train.gan_warmup={half}",), preset="paper"),
    Variant("paper + spectral norm", settings=("net.spectral_norm=true",), preset="paper"),
    Variant("paper + DiffAugment", settings=(f"train.diffaug={DIFFAUGMENT_POLICY}",), preset="paper"),
    Variant("paper + learning rate 5e-4", settings=("train.lr=5e-4",), preset="paper"),
    Variant("paper + D without norm", settings=("net.norm_d=none",), preset="paper"),
    Variant("toolkit"),
    # the default recipe with the papers' generator whatever the data (net.residual=auto chooses per task)
    Variant("toolkit, papers' generator", settings=("net.residual=false",)),
    # the default recipe with a generator that starts as the identity whatever the data: what auto chooses
    # where the collections look alike (grade, detail); where they do not (day2night) it is held near its input
    Variant("toolkit + residual generator + Huber cycle/identity", settings=("net.residual=true", "train.recon_huber=0.05")),
    Variant(
        "toolkit + residual generator + Huber, no identity loss", settings=("net.residual=true", "train.recon_huber=0.05", "train.lambda_identity=0")
    ),
    Variant("toolkit + residual generator + squared cycle/identity", settings=("net.residual=true", "train.recon_huber=1")),
    # instance norm hides a constant shift of each input channel from the papers' generator; this one has no norm
    Variant("toolkit, papers' generator without norm", settings=("net.norm=none", "net.residual=false")),
    Variant("toolkit, 4x the steps", steps_factor=4),
    # a shorter average than the 0.999 row's (about 100 steps, not 1000): one that a 220-step run can fill
    Variant("toolkit + weight average 0.99", settings=("train.ema_decay=0.99",)),
    # one-sided models at CycleGAN's wall-clock budget (PatchNCE on the 6-block generator's encoder layers)
    Variant("CUT, same time as toolkit", settings=("train.nce_layers=0,4,8,12,14",), model="cut", same_time_as="toolkit"),
    Variant("FastCUT, same time as toolkit", settings=("train.nce_layers=0,4,8,12,14",), model="fastcut", same_time_as="toolkit"),
)
VARIANTS: dict[str, tuple[Variant, ...]] = {
    "sketch2photo": (
        Variant("paper", preset="paper"),
        Variant("paper + instance norm", settings=("net.norm=instance",), preset="paper"),
        Variant("paper + resize upsampling", settings=("net.upsample=resize",), preset="paper"),
        Variant("paper + weight average", settings=("train.ema_decay=0.999",), preset="paper"),
        Variant("paper + GAN weight 0.1", settings=("train.lambda_gan=0.1",), preset="paper"),
        Variant("paper + best checkpoint", settings=("train.val_every=-1",), preset="paper"),
        Variant("paper + spectral norm", settings=("net.spectral_norm=true",), preset="paper"),
        Variant("paper + DiffAugment", settings=(f"train.diffaug={DIFFAUGMENT_POLICY}",), preset="paper"),
        Variant("paper + SSIM loss", settings=("train.lambda_ssim=100",), preset="paper"),
        Variant("toolkit"),
        Variant("toolkit + weight average 0.99", settings=("train.ema_decay=0.99",)),
    ),
    # about the longest budget the issue allows (~10 min a model; 10.7 measured), for the 27 dB day->night target
    "day2night": (*CYCLEGAN_LEVERS, Variant("toolkit, 6x the steps", steps_factor=6)),
    "grade": CYCLEGAN_LEVERS,
    "detail": CYCLEGAN_LEVERS,
}
# unpaired tasks: the collections' colour statistics swapped (quality_data.colour_transfer), scored beside the baselines
REFERENCE = "reference: colour statistics transfer (not learnt)"


def train_args(task: Task, variant: Variant, root: Path, run: Path, plan: dict, steps: int, seed: int, args: argparse.Namespace) -> list[str]:
    """The ``translate train`` command of one run: fixed steps, the crops as they are (flips only)."""
    options = {"--model": variant.model or task.model, "--preset": variant.preset, "--data": root, "--out": run, "--steps": steps}
    options |= {"--crop-size": plan["size"], "--seed": seed}
    # ten saves a run: where the recipe validates (at every save), it keeps the best of them
    options |= {
        "--precision": args.precision,
        "--device": "cpu",
        "--save-every": max(1, steps // 10),
        "--sample-every": 0,
        "--log-every": max(1, steps // 20),
    }
    settings = [f"train.schedule_steps={steps}", "data.preprocess=crop", f"net.generator={plan['generator'] or task.generator}"]
    settings += [f"net.base_channels_g={plan['base_channels']}", f"net.base_channels_d={plan['base_channels']}"]
    settings += [s.format(steps=steps, half=max(1, steps // 2)) for s in variant.settings]
    line = ["train", *(str(x) for option, value in options.items() for x in (option, value))]
    line += [x for setting in settings for x in ("--set", setting)]
    return line + ["--threads", str(args.threads)] if args.threads else line


def scores(pred: Path, target: Path) -> dict[str, Any]:
    from translate.metrics import evaluate_paired

    report = evaluate_paired(pred, target)
    return {
        **{k: float(v) for k, v in report.means.items()},
        "images": len(report.names),
        "per_image_psnr": [round(float(v), 3) for v in report.per_image["psnr"]],
    }


def run_task(task: Task, plan: dict, work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    from translate import Translator
    from translate.cli import main as translate

    root = dataset(task, plan, work)
    test_input, test_target = root / task.test_input, root / task.test_target
    mean = work / "baselines" / task.name
    shutil.rmtree(mean, ignore_errors=True)
    constant = data.mean_image(root / task.train_target)
    for path in sorted(test_input.iterdir()):
        data.write_png(mean / f"{path.stem}.png", constant)
    rows = [
        {"task": task.name, "variant": "baseline: identity", "kind": "baseline", "pred_dir": str(test_input), **scores(test_input, test_target)},
        {"task": task.name, "variant": "baseline: mean training target", "kind": "baseline", "pred_dir": str(mean), **scores(mean, test_target)},
    ]
    if (root / "trainA").is_dir():  # unpaired: what matching the collections' colour statistics gives
        transfer = work / "reference" / task.name
        shutil.rmtree(transfer, ignore_errors=True)
        data.colour_transfer(root / "trainA", root / task.train_target, test_input, transfer)
        rows.append({"task": task.name, "variant": REFERENCE, "kind": "reference", "pred_dir": str(transfer), **scores(transfer, test_target)})
    task_steps = plan["steps"] or task.steps
    for variant in VARIANTS[task.name]:
        if args.only and not any(o in f"{task.name} {variant.name}" for o in args.only):
            continue
        source = data.subset(root, work / "data" / f"{task.name}_{variant.train_images}", variant.train_images) if variant.train_images else root
        steps = task_steps * variant.steps_factor
        if variant.same_time_as:
            budget = [r["train_minutes"] for r in rows if r.get("variant") == variant.same_time_as]
            if budget:  # (with --only, the budget's own rows may not have run: the task's steps then)
                steps = steps_in(statistics.fmean(budget), task, variant, source, plan, work, args)
        for seed in range(args.seeds):
            run = work / "runs" / f"{task.name}_{_slug(variant.name)}_seed{seed}"
            line = train_args(task, variant, source, run, plan, steps, seed, args)
            kept = None if args.fresh else reuse(run, line)
            if kept is not None:
                print(f"[quality] {task.name} / {variant.name} / seed {seed}: kept from {run} (same command and defaults)", flush=True)
                rows.append(kept | {"kept": True, "spec": asdict(variant)})  # a kept row's spec may predate a field
                continue
            shutil.rmtree(run, ignore_errors=True)  # a fresh run, never a resumed one
            tick = time.perf_counter()
            if translate(line) != 0:
                raise RuntimeError(f"translate {shlex.join(line)} failed")
            minutes = (time.perf_counter() - tick) / 60
            pred = work / "pred" / run.name
            shutil.rmtree(pred, ignore_errors=True)
            translator = Translator.load(run, direction="AtoB", device="cpu", precision=args.precision)
            done = translator.translate_folder(test_input, pred, output_format="png", progress=False, workers=1)
            if done.failed:
                raise RuntimeError(f"{run}: {len(done.failed)} test images failed: {done.failed[:2]}")
            row = {
                "task": task.name,
                "model": variant.model or task.model,
                "variant": variant.name,
                "kind": "model",
                "seed": seed,
                "steps": steps,
                "spec": asdict(variant),
                "train_minutes": minutes,
                "train_command": "translate " + shlex.join(line),
                "pred_dir": str(pred),
                **scores(pred, test_target),
            }
            print(
                f"[quality] {task.name} / {variant.name} / seed {seed}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f} ({minutes:.1f} min)",
                flush=True,
            )
            rows.append(row)
            atomic_write(run / ROW_FILE, json.dumps({"key": run_key(line), "row": row}, indent=1) + "\n")
    return rows


ROW_FILE = "quality_row.json"


def reuse(run: Path, line: list[str]) -> dict[str, Any] | None:
    """The row of an earlier run with the same key whose predictions are still there, else None.

    Lets a long benchmark go on after an interruption, or rerun one task (``--only``) and keep
    the rest; ``--fresh`` retrains everything (after a code change that the key cannot see)."""
    saved = saved_with_key(run / ROW_FILE, run_key(line))
    if saved is None or not Path(saved["row"]["pred_dir"]).is_dir():
        return None
    return saved["row"]


def steps_in(minutes: float, task: Task, variant: Variant, root: Path, plan: dict, work: Path, args: argparse.Namespace) -> int:
    """How many steps of ``variant`` fit in ``minutes`` of training on this machine, from two
    timed calibration runs (their difference gives the time per step; the rest is start-up)."""
    from translate.cli import main as translate

    memo = work / "runs" / f"calibrate_{task.name}_{_slug(variant.name)}.json"
    key = {"minutes": round(minutes, 6), **run_key(train_args(task, variant, root, memo, plan, 1, 0, args))}
    saved = None if args.fresh else saved_with_key(memo, key)
    if saved is not None:
        steps = saved["steps"]
        print(f"[quality] {task.name} / {variant.name}: {steps} steps in {minutes:.1f} min (kept calibration)", flush=True)
        return steps
    short, long = (2, 4) if args.quick else (10, 40)
    seconds = []
    for count in (short, long):
        run = work / "runs" / f"calibrate_{task.name}_{_slug(variant.name)}_{count}"
        shutil.rmtree(run, ignore_errors=True)
        tick = time.perf_counter()
        if translate(train_args(task, variant, root, run, plan, count, 0, args)) != 0:
            raise RuntimeError(f"calibrating {variant.name} failed")
        seconds.append(time.perf_counter() - tick)
        shutil.rmtree(run, ignore_errors=True)
    per_step = max((seconds[1] - seconds[0]) / (long - short), 1e-3)
    startup = max(seconds[0] - short * per_step, 0.0)
    steps = max(1, int((minutes * 60 - startup) / per_step))
    print(f"[quality] {task.name} / {variant.name}: {per_step:.2f} s a step, {steps} steps in {minutes:.1f} min", flush=True)
    atomic_write(memo, json.dumps({"key": key, "steps": steps, "per_step": per_step}) + "\n")
    return steps


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (task, variant): means over seeds and the seeds' PSNR range."""
    lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        lines.setdefault((row["task"], row["variant"]), []).append(row)
    return [
        {
            "task": task,
            "model": group[0].get("model"),
            "variant": variant,
            "kind": group[0]["kind"],
            "seeds": len(group) if group[0]["kind"] == "model" else 0,
            "steps": group[0].get("steps"),
            **{k: statistics.fmean(r[k] for r in group) for k in ("psnr", "ssim", "l1")},
            "psnr_min": min(r["psnr"] for r in group),
            "psnr_max": max(r["psnr"] for r in group),
        }
        for (task, variant), group in lines.items()
    ]


def contact_sheet(task: Task, rows: list[dict[str, Any]], root: Path, path: Path, count: int) -> dict[str, Any]:
    """Rows = the first ``count`` test images; columns = input | each variant (seed 0) | target."""
    import cv2
    import numpy as np
    from PIL import Image

    columns = [("input", root / task.test_input)]
    columns += [(r["variant"], Path(r["pred_dir"])) for r in rows if r["task"] == task.name and r.get("seed") == 0]
    columns += [("target", root / task.test_target)]
    names = sorted(p.stem for p in (root / task.test_input).iterdir())[:count]
    body = np.concatenate([np.concatenate([data.read_rgb(folder / f"{n}.png") for _, folder in columns], axis=1) for n in names])
    side = body.shape[1] // len(columns)
    labels = np.full((18, body.shape[1], 3), 32, dtype=np.uint8)
    for i, (label, _) in enumerate(columns):
        scale = 0.38
        while scale > 0.2 and cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > side - 4:
            scale -= 0.02
        cv2.putText(labels, label, (i * side + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    image = Image.fromarray(np.concatenate([labels, body]))
    if image.width * image.height > 200_000:  # committed pictures stay small
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return {"task": task.name, "path": str(path.relative_to(path.parent.parent)), "columns": [c for c, _ in columns], "images": names}


SAME_AS_INPUT = (0.1, 0.005)  # PSNR dB, SSIM: a model this close to the input's scores on both has learnt nothing they see


def verdict(line: dict[str, Any], summary: list[dict[str, Any]]) -> str:
    """A model line against its task's baselines, in words: below returning the input means the
    model changes content it should keep; below the mean image, it has not learnt the scene."""
    if line["kind"] != "model":
        return ""
    base = {s["variant"]: s for s in summary if s["task"] == line["task"] and s["kind"] == "baseline"}
    words = []
    same = base.get("baseline: identity")
    if same and abs(line["psnr"] - same["psnr"]) < SAME_AS_INPUT[0] and abs(line["ssim"] - same["ssim"]) < SAME_AS_INPUT[1]:
        words.append(f"scores as returning the input (within {SAME_AS_INPUT[0]} dB and {SAME_AS_INPUT[1]} SSIM)")
        base.pop("baseline: identity")
    for name, what in (
        ("baseline: identity", "destroys content: below returning the input"),
        ("baseline: mean training target", "below the mean image"),
    ):
        lost = [m.upper() for m in ("psnr", "ssim") if name in base and line[m] < base[name][m]]
        if lost:
            words.append(f"{what} ({', '.join(lost)})")
    return "; ".join(words) or "beats both"


def kept_runs(rows: list[dict[str, Any]]) -> str:
    """Where runs were kept from an earlier invocation, how many, and the training time they hold."""
    models = [r for r in rows if r["kind"] == "model"]
    kept = sum(bool(r.get("kept")) for r in models)
    total = sum(r["train_minutes"] for r in models)
    return f" ({kept} of {len(models)} runs kept from earlier invocations; {total:.0f} min of training in all)" if kept else ""


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Quality",
        "",
        f"{result['started']}, {m['cpu']} ({' '.join(m['flags'])}), {m['cores']} cores, {result['threads']} threads, torch {m['torch']}, {result['precision']}; "
        f"{result['plan']['test_images']} held-out images per task; `{result['command']}`, {result['minutes']:.1f} min"
        f"{kept_runs(result['rows'])}. "
        "Every score, per image, is in quality.json.",
        "",
        "| task | variant | seeds | PSNR dB ↑ (range) | SSIM ↑ | L1 ↓ | steps | against the baselines |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in result["summary"]:
        spread = f" ({s['psnr_min']:.2f}–{s['psnr_max']:.2f})" if s["seeds"] > 1 else ""
        variant = f"{s['model']}, {s['variant']}" if s["model"] else s["variant"]
        lines.append(
            f"| {s['task']} | {variant} | {s['seeds'] or '–'} | {s['psnr']:.2f}{spread} | {s['ssim']:.3f} | {s['l1']:.4f} "
            f"| {s['steps'] or '–'} | {verdict(s, result['summary'])} |"
        )
    lines += [""] + [f"![{p['task']}: {' | '.join(p['columns'])}]({p['path']})" for p in result["pictures"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 px, 4-channel nets, 2 steps: checks the script, not the models")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds of every variant (default 2)")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING", help="only tasks/variants whose name contains this")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where quality.json, QUALITY.md and quality/ go (default docs)")
    parser.add_argument("--work", type=Path, default=Path("runs/quality"), help="datasets, runs and predictions (default runs/quality)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="training and inference precision")
    parser.add_argument("--fresh", action="store_true", help="retrain every run (default: keep runs whose command and defaults match)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; --quick: 1)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    args.threads = args.threads or (1 if args.quick else None)  # tiny ops on two busy threads wait on each other
    import torch
    from bench import machine_info, publish

    plan, tick = PLANS[args.quick], time.perf_counter()
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    tasks = [t for t in TASKS if not args.only or any(o in f"{t.name} {v.name}" for o in args.only for v in VARIANTS[t.name])]
    rows = [row for task in tasks for row in run_task(task, plan, args.work, args)]
    result: dict[str, Any] = {
        "command": " ".join(["python scripts/quality.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": started,
        "quick": args.quick,
        "machine": machine_info("cpu"),
        "threads": args.threads or torch.get_num_threads(),  # what training and inference ran with
        "precision": args.precision,
        "plan": {**plan, "seeds": args.seeds, "tasks": [asdict(t) | {"build": t.build.__name__} for t in tasks]},
        "rows": rows,
        "summary": summary(rows),
    }
    result["pictures"] = [
        contact_sheet(t, rows, args.work / "data" / t.name, args.out / "quality" / f"{t.name}.png", plan["sheet_rows"]) for t in tasks
    ]
    result["minutes"] = (time.perf_counter() - tick) / 60
    publish(args.out, "quality", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

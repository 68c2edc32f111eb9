#!/usr/bin/env python
"""Quality benchmark (issue 5): small models trained on real photos with a fixed CPU budget,
measured on photos they never saw. Writes ``docs/QUALITY.md``, ``docs/quality.json`` and the
sample grids ``docs/quality/*.png``.

::

    python scripts/quality.py                 # the full benchmark (12–20 min on 2 shared cores)
    python scripts/quality.py --seeds 2       # and the DiffAugment comparison over a second seed (+6–10 min)
    python scripts/quality.py --quick         # tiny images and nets, 3 steps: a smoke test, not numbers
    python scripts/quality.py --minutes 60    # every run 3x as many steps as the default plan

Three questions, each answered against trivial baselines:

1. sketch→photo, paired (pix2pix): PSNR/SSIM/L1 of G(edges) against the held-out photo.
2. day→night, unpaired (CycleGAN): the night rendering is ours, so the held-out error of G(a)
   against the rendering of ``a`` measures an unpaired model exactly.
3. DiffAugment with 50 training images: day→night with and without
   ``train.diffaug=color,translation,cutout``, same steps.

Runs are fixed in steps (``--minutes`` scales them deterministically), never in wall time, so
the same command gives the same numbers up to floating-point noise; minutes are measured and
reported. Training runs in this process through ``translate.cli.main(["train", ...])``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as data  # noqa: E402
import quality_report as report  # noqa: E402

Task = Literal["sketch2photo", "day2night"]
DIFFAUG_POLICY = "color,translation,cutout"
DEFAULT_MINUTES = 20.0  # what the full plan's step counts were sized for (2 busy cores, 1 thread)


@dataclass(frozen=True)
class RunSpec:
    """One training run: what it learns, with which network, for how many steps."""

    name: str  # id in quality.json and the run folder's name
    task: Task
    model: Literal["pix2pix", "cyclegan"]
    generator: str
    base_channels: int  # of the generator and the discriminator
    steps: int
    train_images: int  # training pairs (pix2pix) or images per domain (CycleGAN)
    diffaug: str = ""
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    size: int  # side of every (square) image, pixels
    train_images: int  # crops per training set (the 50-image runs use the first ones)
    test_images: int  # held-out crops, from photos no training set saw
    runs: tuple[RunSpec, ...]
    grid_rows: int
    probe_size: int  # image side of the fp32/bf16 speed probe


def full_plan(minutes: float = DEFAULT_MINUTES, seeds: int = 1) -> Plan:
    """128 px, reduced generators; steps sized so the whole run takes ~``minutes`` here."""
    scale = minutes / DEFAULT_MINUTES

    def steps(base: int) -> int:
        return max(1, round(base * scale))

    runs = [
        RunSpec("sketch2photo", "sketch2photo", "pix2pix", "unet_128", 16, steps(1000), 400),
        RunSpec("day2night", "day2night", "cyclegan", "resnet_6blocks", 16, steps(220), 400),
    ]
    for seed in range(seeds):
        for policy in ("", DIFFAUG_POLICY):
            name = f"day2night_50{'_diffaug' if policy else ''}{f'_seed{seed}' if seed else ''}"
            runs.append(RunSpec(name, "day2night", "cyclegan", "resnet_6blocks", 16, steps(220), 50, policy, seed))
    return Plan(size=128, train_images=400, test_images=24, runs=tuple(runs), grid_rows=3, probe_size=128)


def quick_plan(steps: int = 3, seeds: int = 1) -> Plan:
    """Every code path at 64 px with 4-channel nets: seconds, and the numbers mean nothing."""
    full = full_plan(seeds=seeds)
    runs = tuple(
        replace(r, generator="resnet_6blocks", base_channels=4, steps=steps, train_images=4 if r.train_images < full.train_images else 8)
        for r in full.runs
    )
    return Plan(size=64, train_images=8, test_images=4, runs=runs, grid_rows=2, probe_size=32)


# ---------------------------------------------------------------------------- the steps


def build_data(plan: Plan, work: Path) -> dict[str, Path]:
    """Dataset folders by key: sketch2photo, day2night, and day2night_<n> for the small runs."""
    roots = {"sketch2photo": work / "data" / "sketch2photo", "day2night": work / "data" / "day2night"}
    counts = data.Counts(plan.train_images, plan.test_images)
    for path in roots.values():
        shutil.rmtree(path, ignore_errors=True)  # built fresh: a folder from another plan would mix in
    data.build_sketch2photo(roots["sketch2photo"], plan.size, counts)
    data.build_day2night(roots["day2night"], plan.size, counts)
    for n in sorted({r.train_images for r in plan.runs if r.train_images < plan.train_images}):
        key = f"day2night_{n}"
        roots[key] = work / "data" / key
        shutil.rmtree(roots[key], ignore_errors=True)
        data.subset(roots["day2night"], roots[key], ("trainA", "trainB"), n)
    return roots


def data_root(spec: RunSpec, roots: dict[str, Path], plan: Plan) -> Path:
    if spec.train_images < plan.train_images:
        return roots[f"{spec.task}_{spec.train_images}"]
    return roots[spec.task]


def train_args(spec: RunSpec, root: Path, run_dir: Path, plan: Plan, precision: str) -> list[str]:
    """The ``translate train`` command line of one run (recorded in quality.json)."""
    args = [
        "train", "--model", spec.model, "--data", str(root), "--out", str(run_dir),
        "--steps", str(spec.steps), "--set", f"train.schedule_steps={spec.steps}",
        # the crops already are random and exactly the training size: no resize, flips only
        "--set", "data.preprocess=crop", "--crop-size", str(plan.size),
        "--set", f"net.generator={spec.generator}",
        "--set", f"net.base_channels_g={spec.base_channels}", "--set", f"net.base_channels_d={spec.base_channels}",
        "--seed", str(spec.seed), "--precision", precision, "--device", "cpu",
        "--save-every", str(spec.steps), "--sample-every", str(spec.steps), "--log-every", str(max(1, spec.steps // 20)),
    ]
    if spec.diffaug:
        args += ["--set", f"train.diffaug={spec.diffaug}"]
    return args


def train(spec: RunSpec, root: Path, run_dir: Path, plan: Plan, precision: str) -> dict[str, Any]:
    from translate.cli import main

    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed or mixed one
    args = train_args(spec, root, run_dir, plan, precision)
    started = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"translate {' '.join(args)} exited with {code}")
    return {"train_minutes": seconds / 60, "train_command": "translate " + shlex.join(args)}


def evaluate(pred_dir: Path, target_dir: Path) -> dict[str, Any]:
    """Mean (and per-image spread of) PSNR, SSIM and L1 of ``pred_dir`` against ``target_dir``."""
    import numpy as np

    from translate.metrics import evaluate_paired

    result = evaluate_paired(pred_dir, target_dir)
    out: dict[str, Any] = dict(result.means)
    out["psnr_std"] = float(np.std(result.per_image["psnr"]))
    out["per_image_psnr"] = [round(v, 3) for v in result.per_image["psnr"]]
    out["images"] = len(result.names)
    return out


def translate_test(run_dir: Path, test_a: Path, pred_dir: Path, precision: str) -> None:
    """Translate ``test_a`` into ``pred_dir`` (PNG) as a user would: ``Translator.translate_folder``."""
    from translate.infer.translator import Translator

    translator = Translator.load(run_dir, direction="AtoB", device="cpu", precision=precision)
    shutil.rmtree(pred_dir, ignore_errors=True)
    done = translator.translate_folder(test_a, pred_dir, output_format="png", progress=False, workers=1)
    if done.failed:
        raise RuntimeError(f"{run_dir}: {len(done.failed)} test images failed: {done.failed[:2]}")


def forward_test(run_dir: Path, test_a: Path, pred_dir: Path, *, batch_statistics: bool = False) -> None:
    """Translate ``test_a`` with the bare generator, one image per forward, no padding (fp32).

    Args:
        batch_statistics: Normalise with each test image's own statistics and keep dropout on,
            as the pix2pix paper (and the reference ``test.py`` without ``--eval``) does at test
            time; otherwise eval mode, as the Translator.
    """
    import numpy as np
    import torch

    from translate.infer.translator import Translator

    net = Translator.load(run_dir, direction="AtoB", device="cpu").net
    if batch_statistics:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
                module.momentum = 0.0  # normalise with the image's statistics, leave the stored ones alone
            elif isinstance(module, torch.nn.Dropout):
                module.train()
    torch.manual_seed(0)  # dropout
    shutil.rmtree(pred_dir, ignore_errors=True)
    for path in sorted(test_a.iterdir()):
        x = torch.from_numpy(data.read_rgb(path)).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.inference_mode():
            y = net(x.contiguous(memory_format=torch.channels_last))[0].clamp(-1, 1)
        # the Translator's quantisation: round((y + 1) / 2 * 255)
        data.write_png(pred_dir / f"{path.stem}.png", np.round((y.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8))


def max_level_difference(dir_a: Path, dir_b: Path) -> int:
    """Largest difference, in 8-bit levels, between same-named PNGs of two folders."""
    import numpy as np

    return max(int(np.abs(data.read_rgb(p).astype(int) - data.read_rgb(dir_b / p.name).astype(int)).max())
               for p in sorted(dir_a.iterdir()))


def constant_folder(image: Any, names_from: Path, dst: Path) -> Path:
    """A folder holding ``image`` under every name of ``names_from`` (a constant predictor)."""
    shutil.rmtree(dst, ignore_errors=True)
    for path in sorted(names_from.iterdir()):
        data.write_png(dst / f"{path.stem}.png", image)
    return dst


def baselines(roots: dict[str, Path], work: Path) -> list[dict[str, Any]]:
    """Trivial predictors on the same test sets: what a model must beat."""
    s2p, d2n = roots["sketch2photo"], roots["day2night"]
    rows = []
    for task, method, pred, target, what in (
        ("sketch2photo", "edge map (output = input)", s2p / "test" / "A", s2p / "test" / "B", "identity"),
        ("sketch2photo", "mean training photo", constant_folder(data.mean_image(s2p / "train" / "B"), s2p / "test" / "A", work / "baselines" / "mean_photo"), s2p / "test" / "B", "constant"),
        ("day2night", "identity (output = input)", d2n / "testA", d2n / "test_target", "identity"),
        ("day2night", "mean training night image", constant_folder(data.mean_image(d2n / "trainB"), d2n / "testA", work / "baselines" / "mean_night"), d2n / "test_target", "constant"),
        ("day2night", "a random night rendering of the input", d2n / "test_random_night", d2n / "test_target", "reference"),
    ):
        rows.append({"name": f"{task}/{what}", "task": task, "method": method, "kind": "baseline",
                     "pred_dir": str(pred), **evaluate(pred, target)})
    return rows


def precision_probe(side: int, repeats: int = 3) -> dict[str, Any]:
    """Seconds per forward+backward of a resnet_6blocks (16 channels) in fp32 and bf16 autocast."""
    import torch

    from translate.config import NetConfig
    from translate.nets import build_generator

    net = build_generator(NetConfig(generator="resnet_6blocks", base_channels_g=16)).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, side, side).mul(2).sub(1).contiguous(memory_format=torch.channels_last)
    out: dict[str, Any] = {"image_side": side}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        times = []
        for i in range(repeats + 1):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = net(x).float().abs().mean()
            loss.backward()
            if i:  # the first call builds oneDNN primitives
                times.append(time.perf_counter() - started)
        out[f"{precision}_s"] = sorted(times)[len(times) // 2]
    out["bf16_speedup"] = out["fp32_s"] / out["bf16_s"]
    return out


# ---------------------------------------------------------------------------- main


def run(plan: Plan, work: Path, out: Path, precision: str, threads: int, command: str, quick: bool) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_common import machine_info

    if threads > 0:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    print(f"[quality] {machine['cpu']}, {machine['usable_cpus']} cpus, {torch.get_num_threads()} torch threads, load {machine['loadavg']}", flush=True)
    probe = precision_probe(plan.probe_size)
    print(f"[quality] one generator step: fp32 {probe['fp32_s']:.3f}s, bf16 {probe['bf16_s']:.3f}s; training in {precision}", flush=True)
    roots = build_data(plan, work)
    rows = baselines(roots, work)
    for spec in plan.runs:
        root = data_root(spec, roots, plan)
        run_dir = work / "runs" / spec.name
        print(f"[quality] {spec.name}: {spec.model} {spec.generator}/{spec.base_channels}, {spec.steps} steps, "
              f"{spec.train_images} training images{', diffaug ' + spec.diffaug if spec.diffaug else ''}", flush=True)
        info = train(spec, root, run_dir, plan, precision)
        test_a = root / "test" / "A" if spec.task == "sketch2photo" else root / "testA"
        target = root / "test" / "B" if spec.task == "sketch2photo" else root / "test_target"
        pred = work / "pred" / spec.name
        translate_test(run_dir, test_a, pred, precision)
        scores = evaluate(pred, target)
        print(f"[quality] {spec.name}: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}, L1 {scores['l1']:.4f} "
              f"({info['train_minutes']:.1f} min)", flush=True)
        # The same weights without the Translator (no padding, no batching): the two must agree, or
        # the Translator, not the model, decides the numbers (it did once: a U-Net padded to 2x its size).
        native = work / "pred" / f"{spec.name}_forward"
        forward_test(run_dir, test_a, native)
        scores["translator_vs_forward_levels"] = max_level_difference(pred, native)
        forward = {k: v for k, v in evaluate(native, target).items() if k != "per_image_psnr"}
        rows.append({"name": spec.name, "task": spec.task, "method": report.method_label(asdict(spec)), "kind": "model",
                     "spec": asdict(spec), "pred_dir": str(pred), **info, **scores, "forward": forward})
        print(f"[quality] {spec.name}: Translator and bare forward at most {scores['translator_vs_forward_levels']} "
              f"levels apart (bare forward: PSNR {forward['psnr']:.2f} dB)", flush=True)
        if spec.model == "pix2pix":  # the paper's test-time normalisation, beside eval mode
            folder = work / "pred" / f"{spec.name}_batch_statistics"
            forward_test(run_dir, test_a, folder, batch_statistics=True)
            rows.append({"name": f"{spec.name}/batch_statistics", "task": spec.task, "kind": "variant", "of": spec.name,
                         "method": f"{report.method_label(asdict(spec))}: bare forward, test-time batch statistics + dropout",
                         "spec": asdict(spec), "pred_dir": str(folder), **evaluate(folder, target)})
    result = {
        "command": command,
        "quick": quick,
        "started": started_at,
        "total_minutes": (time.perf_counter() - started) / 60,
        "machine": {**machine, "loadavg_end": report.load_average()},
        "precision": precision,
        "precision_probe": probe,
        "threads": torch.get_num_threads(),
        "plan": {"size": plan.size, "train_images": plan.train_images, "test_images": plan.test_images,
                 "diffaug_policy": DIFFAUG_POLICY},
        "photos": {"test": data.TEST_PHOTOS, "sketch2photo_train": data.SKETCH_TRAIN_PHOTOS,
                   "day_train": data.DAY_TRAIN_PHOTOS, "night_train": data.NIGHT_TRAIN_PHOTOS},
        "rows": rows,
    }
    result["pictures"] = report.write_grids(result, roots, out / "quality", plan.grid_rows)
    result["total_minutes"] = (time.perf_counter() - started) / 60
    report.write_outputs(result, out)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 px, 4-channel nets, --quick-steps steps: a smoke test")
    p.add_argument("--quick-steps", type=int, default=3, help="training steps per run with --quick (default 3)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help=f"scale every run's steps by MINUTES/{DEFAULT_MINUTES:g} (default {DEFAULT_MINUTES:g}); steps, not time, are fixed")
    p.add_argument("--seeds", type=int, default=1, help="seeds of the DiffAugment comparison (default 1)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="where QUALITY.md, quality.json and quality/ go (default docs)")
    p.add_argument("--work", type=Path, default=Path("runs/quality"), help="datasets, runs and predictions (default runs/quality)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="training and inference precision (default fp32: faster here)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on shared cores, 2 OpenMP threads wait on each other; 0 = torch's default)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.seeds < 1 or args.quick_steps < 1:
        p.error("--minutes, --seeds and --quick-steps must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = "python scripts/quality.py" + (" " + shlex.join(argv) if argv else "")
    plan = quick_plan(args.quick_steps, args.seeds) if args.quick else full_plan(args.minutes, args.seeds)
    result = run(plan, args.work, args.out, args.precision, args.threads, command, args.quick)
    print(f"[quality] wrote {args.out / 'QUALITY.md'} and {args.out / 'quality.json'} in {result['total_minutes']:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

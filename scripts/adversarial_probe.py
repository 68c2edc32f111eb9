#!/usr/bin/env python
"""How hard a short run's discriminator pushes a generator that starts as the identity, and where.

    python scripts/adversarial_probe.py                    # day2night and grade, 2 seeds (about a minute)
    python scripts/adversarial_probe.py --quick --out /tmp/p

A residual generator (``net.residual``) starts as the identity: there the CycleGAN cycle and
identity losses are 0, and with L1 distances their gradient still has the same size for every
pixel however small the change, ``weight / pixels``. The generator leaves the identity only if
the adversarial gradient is larger. This script trains the default recipe's discriminator alone,
as in the first steps of a run, to tell a task's ``trainA`` from ``trainB`` (the quality
benchmark's datasets, ``scripts/quality.py``), then measures on the held-out inputs:

- the mean size per pixel of the generator's adversarial gradient, ``|d loss_G / d x|``, beside
  L1's constant pull of the cycle term (``lambda_cycle / pixels``) and of the identity term
  (``lambda_cycle * lambda_identity / pixels``); Huber's pull (``train.recon_huber``) fades to 0 at
  the identity instead;
- its direction against the true change (target - input): the cosine per pixel and of the
  images' channel means;
- the best PSNR a step along it reaches (71 step sizes from 1e-3 to 1e4): what a generator that
  follows it could gain at first;
- how much more real it finds the held-out targets than their inputs (mean logit difference):
  whether what it learnt from the training collections is the change, not their content.

Writes OUT/adversarial_probe.json and OUT/ADVERSARIAL_PROBE.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_data as data  # noqa: E402
import quality_tasks  # noqa: E402

TASKS = ("day2night", "grade")


def load(folder: Path) -> Any:
    """Every PNG in ``folder`` as one (N, 3, H, W) float tensor in [-1, 1]."""
    import torch

    from translate.data.transforms import to_tensor
    from translate.files import to_unit

    return torch.stack([to_tensor(to_unit(data.read_rgb(path))) for path in sorted(folder.glob("*.png"))])


def probe(root: Path, seed: int, steps: int, base_channels: int) -> dict[str, float]:
    """Train the default recipe's CycleGAN discriminator ``steps`` steps on trainA (fake) vs
    trainB (real), batch 1, then measure its generator gradient on the held-out inputs."""
    import torch

    from translate.config import preset
    from translate.losses import gan_loss
    from translate.nets.registry import build_discriminator
    from translate.train.build import AugmentedDiscriminator
    from translate.train.objectives import DiscContext, discriminator_loss

    cfg = preset("cyclegan")
    train_a, train_b = load(root / "trainA"), load(root / "trainB")
    inputs, targets = load(root / "heldout" / "A"), load(root / "heldout" / "target")
    torch.manual_seed(seed)
    augment_rng = torch.Generator().manual_seed(seed)
    disc = build_discriminator(replace(cfg.net, base_channels_d=base_channels), train_a.shape[1])
    optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    order = torch.randperm(len(train_b), generator=torch.Generator().manual_seed(seed))

    judge = AugmentedDiscriminator(disc, cfg.train.diffaug, augment_rng)  # as training shows it images
    ctx = DiscContext(cfg=cfg.train, pools={}, generator=torch.Generator())
    for step in range(steps):
        real, fake = train_b[order[step % len(train_b)]][None], train_a[step % len(train_a)][None]
        loss = discriminator_loss(judge, real, fake, ctx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # without augmentation: the images as they are
        separation = torch.stack([disc(t[None]).mean() - disc(i[None]).mean() for i, t in zip(inputs, targets, strict=True)]).mean().item()
    x = inputs.clone().requires_grad_(True)
    loss = sum(gan_loss(judge(x[i : i + 1]), True, cfg.train.gan_mode, for_discriminator=False) for i in range(len(x)))
    (grad,) = torch.autograd.grad(loss, x)  # each image's own loss: its gradient is as in a batch-1 step
    step_dir, wanted = -grad, targets - inputs
    cosine = torch.nn.functional.cosine_similarity
    best = max(psnr((inputs + eta * step_dir).clamp(-1, 1), targets) for eta in torch.logspace(-3, 4, 71).tolist())
    pixels = inputs[0].numel()
    return {
        "grad_per_pixel": grad.abs().mean().item(),
        "l1_cycle_pull": cfg.train.lambda_cycle / pixels,
        "l1_identity_pull": cfg.train.lambda_cycle * cfg.train.lambda_identity / pixels,
        "cosine": cosine(step_dir.flatten(1), wanted.flatten(1)).mean().item(),
        "cosine_channel_means": cosine(step_dir.mean((2, 3)), wanted.mean((2, 3))).mean().item(),
        "input_psnr": psnr(inputs, targets),
        "best_step_psnr": best,  # may be below the input's: no step along it helps
        "target_minus_input_logit": separation,
    }


def psnr(pred: Any, target: Any) -> float:
    """The mean over images of the metrics' PSNR in dB, for images in [-1, 1]."""
    from translate.metrics.paired import psnr as image_psnr

    return image_psnr((pred + 1) / 2, (target + 1) / 2).mean().item()


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Adversarial gradient at the identity",
        "",
        f"{result['started']}, {m['cpu']}, torch {m['torch']}; `{result['command']}`. The default recipe's discriminator "
        f"({result['base_channels']} channels, DiffAugment as the default) trained {result['steps']} steps alone on trainA "
        "(fake) vs trainB (real) of the quality benchmark's datasets; measured on their held-out inputs. "
        "A generator that starts as the identity leaves it only where the adversarial gradient per pixel "
        "exceeds L1's constant pull; Huber's pull is 0 there.",
        "",
        "| task | seed | adversarial gradient / pixel | L1 cycle pull | L1 identity pull | cosine to the true change "
        "| cosine of channel means | input PSNR dB | best step along it, PSNR dB | D(target) - D(input) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['task']} | {r['seed']} | {r['grad_per_pixel']:.2e} | {r['l1_cycle_pull']:.2e} | {r['l1_identity_pull']:.2e} "
            f"| {r['cosine']:.3f} | {r['cosine_channel_means']:.3f} | {r['input_psnr']:.2f} | {r['best_step_psnr']:.2f} "
            f"| {r['target_minus_input_logit']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quality benchmark's --quick data, 4 steps: checks the script")
    parser.add_argument("--seeds", type=int, default=2, help="discriminator seeds (default 2)")
    parser.add_argument("--steps", type=int, default=200, help="discriminator steps (default 200, a short run's first stretch)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where adversarial_probe.json and ADVERSARIAL_PROBE.md go")
    parser.add_argument("--work", type=Path, default=Path("runs/quality"), help="the quality benchmark's work folder (datasets)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        parser.error("--seeds and --steps must be at least 1")
    import torch
    from bench import machine_info, publish

    torch.set_num_threads(1)
    plan = quality_tasks.PLANS[args.quick]
    steps = 4 if args.quick else args.steps
    rows = []
    for task in (t for t in quality_tasks.TASKS if t.name in TASKS):
        root = quality_tasks.dataset(task, plan, args.work)
        for seed in range(args.seeds):
            row = {"task": task.name, "seed": seed, **probe(root, seed, steps, plan["base_channels"])}
            print(f"[probe] {task.name} seed {seed}: gradient {row['grad_per_pixel']:.2e} a pixel (L1 pulls {row['l1_cycle_pull']:.2e})", flush=True)
            rows.append(row)
    result = {
        "command": " ".join(["python scripts/adversarial_probe.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine_info("cpu"),
        "steps": steps,
        "base_channels": plan["base_channels"],
        "rows": rows,
        "ratio_cycle_pull_to_gradient": statistics.fmean(r["l1_cycle_pull"] / r["grad_per_pixel"] for r in rows),
    }
    publish(args.out, "adversarial_probe", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

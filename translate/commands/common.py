"""Flags shared by the inference commands (apply, video, export, eval) and their loading."""

from __future__ import annotations

import argparse

from translate.config import DEFAULT_MEMORY_BUDGET_MB
from translate.errors import UserError

MIN_MEMORY_BUDGET_MB = 64


def add_model_arguments(p: argparse.ArgumentParser, *, tiling: bool = True, model_required: bool = True) -> None:
    """``--model --direction --arch --device --precision --batch-size [--tile --overlap --memory-budget]``."""
    p.add_argument("--model", required=model_required, help="run directory, generator .safetensors, or reference .pth")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB", help="which generator of a CycleGAN run (default AtoB)")
    p.add_argument("--arch", help="architecture of a reference .pth (resnet_9blocks, resnet_6blocks, unet_256, unet_128); inferred when omitted")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass when sizes allow (default 4)")
    if tiling:
        p.add_argument("--tile", type=int, help="force tiled inference with tiles of this side (pixels)")
        p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
        p.add_argument(
            "--compile",
            action="store_true",
            help="run the network through torch.compile (compiles at the first image of each size; pays off on long videos and GPUs)",
        )
        p.add_argument(
            "--memory-budget",
            type=int,
            metavar="MB",
            help=f"memory for translating one image, beyond the loaded model; larger images are tiled to fit (default {DEFAULT_MEMORY_BUDGET_MB})",
        )


def load_translator(args: argparse.Namespace):
    """Build a ``Translator`` from the shared flags."""
    from translate.infer.translator import Translator

    if getattr(args, "batch_size", 1) is not None and args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    tile = getattr(args, "tile", None)
    if tile is not None and tile < 16:
        raise UserError(f"--tile {tile}: too small; use at least 64 (e.g. --tile 512)")
    budget = getattr(args, "memory_budget", None)
    if budget is not None and budget < MIN_MEMORY_BUDGET_MB:
        raise UserError(f"--memory-budget {budget}: too small; use at least {MIN_MEMORY_BUDGET_MB} (MB, e.g. --memory-budget 1024)")
    return Translator.load(
        args.model,
        direction=args.direction,
        device=args.device,
        precision=args.precision,
        arch=args.arch,
        tile=tile,
        overlap=getattr(args, "overlap", 32),
        memory_budget_mb=budget or DEFAULT_MEMORY_BUDGET_MB,
        compile=getattr(args, "compile", False),
    )

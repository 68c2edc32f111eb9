"""``translate train``: train CycleGAN, pix2pix, CUT or FastCUT, resume exactly, or fine-tune.

::

    translate train --model cyclegan --data photos2night/ --out runs/day2night
    translate train --model cut --data photos2night/ --out runs/cut
    translate train --model cyclegan --preset paper --data photos2night/ --out runs/paper
    translate train --resume runs/day2night
    translate train --data my_photos/ --out runs/ft --init-from runs/day2night

``--preset toolkit`` (the default) is each paper's recipe with the changes README's training
section lists and docs/QUALITY.md measures; ``--preset paper`` is the paper's own. A domain
folder may hold video files; ``--set train.lambda_temporal=10`` then ties consecutive frames.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from translate.config import MODELS, RECIPES, RunConfig, apply_overrides, dump_yaml, load_yaml, merge, preset
from translate.errors import UserError

# flag -> (section, key): the contract flags map onto config fields
FLAG_FIELDS = {
    "data": ("data", "root"),
    "direction": ("data", "direction"),
    "crop_size": ("data", "crop_size"),
    "load_size": ("data", "load_size"),
    "batch_size": ("data", "batch_size"),
    "workers": ("data", "num_workers"),
    "steps": ("train", "steps"),
    "epochs": ("train", "epochs"),
    "save_every": ("train", "save_every"),
    "sample_every": ("train", "sample_every"),
    "log_every": ("train", "log_every"),
    "device": ("train", "device"),
    "seed": ("train", "seed"),
    "precision": ("train", "precision"),
}
# what may change when resuming: where to stop and how to run, never what is being trained
RESUMABLE = {"steps", "epochs", "save_every", "sample_every", "log_every", "device", "workers"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (CycleGAN, pix2pix, CUT or FastCUT)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", choices=list(MODELS), help="model to train: cyclegan (default), pix2pix, cut or fastcut")
    p.add_argument(
        "--preset",
        choices=RECIPES,
        help="starting recipe: toolkit (default: the paper's with the changes README's training section lists and measures) "
        "or paper (the paper's recipe as the reference code trains it, to compare with published results)",
    )
    p.add_argument("--data", help="dataset folder (trainA/trainB, or train/ with pairs)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--resume", metavar="RUN", help="continue RUN exactly from its newest complete checkpoint")
    p.add_argument("--init-from", metavar="CKPT_OR_RUN", help="start from another run's weights (fine-tuning)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML config (sections model, net, data, train)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override any config field, e.g. train.lr=1e-4 (repeatable)"
    )
    p.add_argument("--steps", type=int, help="stop when the run's total step count reaches N (also after --resume)")
    p.add_argument("--epochs", type=int, help="planned length in epochs (the lr schedule spans it)")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps, besides the end of the run")
    p.add_argument("--sample-every", type=int, help="write a sample grid every N steps")
    p.add_argument("--log-every", type=int, help="log losses every N steps")
    p.add_argument("--crop-size", type=int)
    p.add_argument("--load-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--direction", choices=["AtoB", "BtoA"])
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(run=run)


def _flag_dict(args: argparse.Namespace, only: set[str] | None = None) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None and (only is None or flag in only):
            nested.setdefault(section, {})[key] = value
    return nested


def _unstarted_run(run_dir: Path) -> RunConfig | None:
    """The saved config of a run directory that has ``config.yaml`` but no complete checkpoint
    (a run stopped before or during its first checkpoint write); None for any other folder."""
    from translate.formats import MODEL_FILE, list_checkpoints

    if not (run_dir / "config.yaml").is_file() or (run_dir / MODEL_FILE).is_file() or list_checkpoints(run_dir / "checkpoints"):
        return None
    data = load_yaml(run_dir / "config.yaml")
    try:
        return merge(preset(data.get("model", "cyclegan"), "paper"), data)  # the dataclass defaults, as for a checkpoint
    except UserError as exc:
        raise UserError(f"{run_dir / 'config.yaml'}: {exc}") from None


def resolve_config(args: argparse.Namespace) -> tuple[RunConfig, Any, Any]:
    """Build the run config from preset → file → flags → --set; returns (cfg, resume, init)."""
    from translate.formats import read_generator
    from translate.train.checkpoint import load_checkpoint

    if args.resume:
        if args.init_from or args.model or args.config or args.preset:
            raise UserError("--resume continues a run as it was configured; drop --model/--preset/--config/--init-from")
        refused = [f"--{f.replace('_', '-')}" for f in FLAG_FIELDS if getattr(args, f) is not None and f not in RESUMABLE]
        if refused:
            raise UserError(f"--resume: {', '.join(refused)} cannot change in a resumed run; start a new run with --init-from instead")
        unstarted = _unstarted_run(Path(args.resume))
        loaded = None if unstarted is not None else load_checkpoint(Path(args.resume))
        saved = unstarted if loaded is None else loaded.cfg
        cfg = apply_overrides(merge(saved, _flag_dict(args, RESUMABLE)), args.overrides)
        if cfg.net != saved.net or cfg.model != saved.model:
            raise UserError("--resume: the architecture (net.*, model) cannot change; start a new run with --init-from")
        if loaded is None:  # stopped before or during its first checkpoint write: resume is exact, so redo it
            logging.getLogger("translate").info(
                "%s has no complete checkpoint yet (killed during its first save?): starting it from step 0 with its saved config.yaml",
                args.resume,
            )
            args.out = args.resume
        return cfg, loaded, None

    recipe = args.preset or "toolkit"
    cfg = preset(args.model or "cyclegan", recipe)
    if args.config:
        data = load_yaml(args.config)
        if "model" in data and args.model is None:
            cfg = preset(data["model"], recipe)
        cfg = merge(cfg, data)
        if args.model:
            cfg = dataclasses.replace(cfg, model=args.model)
    cfg = merge(cfg, _flag_dict(args))
    cfg = apply_overrides(cfg, args.overrides)
    init = None
    if args.init_from:
        source = Path(args.init_from)
        if source.is_file() and source.suffix.lower() in (".pth", ".pt"):
            # a published reference-layout generator (CycleGAN, pix2pix or CUT code): read safely, architecture from its keys
            from translate.infer.importers import read_reference_generator

            weights, net_cfg, origin = read_reference_generator(source)
            init = ({"gen_ab": weights}, origin)
            cfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, **_architecture(net_cfg)))
        if source.is_file() and source.suffix == ".safetensors":
            from translate.formats import FORMAT_GENERATOR, read_metadata

            if read_metadata(source).get("format") == FORMAT_GENERATOR:
                weights, net_cfg, origin = read_generator(source, "AtoB")
                init = ({"gen_ab": weights}, origin)
                cfg = dataclasses.replace(cfg, net=net_cfg)
        if init is None:
            loaded = load_checkpoint(source.parent if source.is_file() else source, with_state=False, prefer_best=True)
            # the architecture comes with the weights; data, schedule and lr are the new run's
            cfg = dataclasses.replace(cfg, net=loaded.cfg.net)
            init = (loaded.weights, str(loaded.path))
    if not cfg.data.root and not args.dry_run:
        raise UserError("--data is required: a folder with trainA/ and trainB/ (CycleGAN) or train/ (pix2pix)")
    return cfg, None, init


def _architecture(net_cfg: Any) -> dict[str, Any]:
    """The generator fields a reference checkpoint decides (the rest stays the new run's): its
    layout, with the reference code's transposed-convolution upsampling and strided downsampling
    (the toolkit recipe's resize upsampling would not hold its weights), and never residual,
    whatever ``net.residual=auto`` would choose."""
    fields = ("generator", "in_channels", "out_channels", "base_channels_g", "norm", "dropout", "upsample", "downsample", "residual")
    return {k: getattr(net_cfg, k) for k in fields}


def run(args: argparse.Namespace) -> int:
    cfg, resume, init = resolve_config(args)
    if args.dry_run:
        sys.stdout.write(dump_yaml(cfg))
        return 0
    from translate.formats import list_checkpoints
    from translate.train.loop import train

    if resume is not None:
        run_dir = Path(args.resume)
        if (run_dir / "checkpoints").is_dir() is False:
            run_dir = resume.path.parent.parent
    else:
        if not args.out:
            raise UserError("--out is required: the run directory to create, e.g. --out runs/day2night")
        run_dir = Path(args.out)
        if list_checkpoints(run_dir / "checkpoints"):
            raise UserError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out")
        if not Path(cfg.data.root).is_dir():
            raise UserError(f"--data {cfg.data.root}: folder not found")
    result = train(cfg, run_dir, resume=resume, init_from=init)
    if result.interrupted_by is not None:
        return 128 + int(result.interrupted_by)
    if result.checkpoint is not None:  # rank 0 writes checkpoints; other ranks stay quiet
        print(f"trained to step {result.step}; checkpoint {result.checkpoint}")
    return 0

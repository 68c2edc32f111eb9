"""The one training loop, for every objective, read top to bottom.

Device placement, precision, distribution (DDP under torchrun), optimizer and schedule
stepping, logging, samples and checkpoints all happen here and only here.

Exact resume: data order and augmentation are pure functions of (seed, epoch, index) (see
``sampler.py`` and the datasets), dropout and gradient-penalty randomness are reseeded from
(seed, rank, step) at every step, and everything else with state (weights, optimizers,
schedulers, history pools) is in the checkpoint. So a run stopped after step k and resumed
computes the same steps k+1… as a run that never stopped.
"""

from __future__ import annotations

import itertools
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from translate.config import RunConfig, dump_yaml
from translate.data import build_dataset
from translate.errors import UserError
from translate.nets import build_discriminator, build_generator, size_multiple
from translate.runtime import autocast_dtype, channels_last_activations, dist_from_env, place, resolve_device
from translate.train import distributed
from translate.files import atomic_write
from translate.formats import load_weights
from translate.train.checkpoint import Counters, LoadedCheckpoint, NonFiniteWeights, save_checkpoint
from translate.train.logger import MetricsLog, save_grid
from translate.train.objectives import OBJECTIVES, DiscContext, Objective
from translate.train.pool import ImagePool
from translate.train.sampler import ResumableSampler
from translate.train.schedules import build_scheduler, scheduler_state
from translate.train.step import PhaseModule, TrainStep
from translate.train.validation import Validator

log = logging.getLogger("translate")
MAX_BAD_STEPS = 10  # consecutive non-finite steps before training gives up


# ---------------------------------------------------------------------------- set-up helpers


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


def build_nets(cfg: RunConfig, objective: Objective) -> dict[str, nn.Module]:
    nets: dict[str, nn.Module] = {}
    for name in objective.generators:
        if name == "gen_ab":
            nets[name] = build_generator(cfg.net)
        else:  # gen_ba maps B back to A
            nets[name] = build_generator(cfg.net, cfg.net.out_channels, cfg.net.in_channels)
    for name, channels in objective.discriminator_in_channels(cfg).items():
        nets[name] = build_discriminator(cfg.net, channels)
    return nets


def init_from_weights(nets: dict[str, nn.Module], source: dict[str, dict[str, torch.Tensor]], origin: str) -> list[str]:
    """Load the networks ``source`` has; the others (e.g. discriminators) stay freshly initialised."""
    loaded = []
    for name, module in nets.items():
        if name in source:
            load_weights(module, source[name], f"{origin} ({name})")
            loaded.append(name)
    if not any(n.startswith("gen") for n in loaded):
        raise UserError(f"{origin}: holds no generator for this model; pass a run, checkpoint or generator file")
    return loaded


def adam_kernel(device: torch.device) -> dict[str, bool]:
    """Adam's implementation: one fused kernel per step where PyTorch has it (CPU, CUDA): 4.8x
    faster than foreach on CPU for CycleGAN's 28 M parameters (docs/PERFORMANCE.md, levers).
    Fused Adam needs :func:`align_to_params` before each step."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}


class StopFlag:
    """Set by SIGINT/SIGTERM: finish the step, checkpoint, exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a library): no handlers
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nsignal {signal.Signals(signum).name}: finishing this step and saving a checkpoint…", file=sys.stderr)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class AugmentedDiscriminator(nn.Module):
    """A discriminator that sees DiffAugment-ed inputs (real and fake alike, in both steps).

    Holds the discriminator without registering it, so the phase modules' parameter sets
    (and DDP's) stay those of the networks themselves.
    """

    def __init__(self, disc: nn.Module, policy: str, generator: torch.Generator) -> None:
        super().__init__()
        from translate.augment import parse_policy

        parse_policy(policy)  # fail at start-up on a bad policy, not at the first step
        self._disc, self.policy, self.generator = [disc], policy, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from translate.augment import diff_augment

        return self._disc[0](diff_augment(x, self.policy, generator=self.generator))


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None
    interrupted_by: int | None = None


# ---------------------------------------------------------------------------- the loop


def train(cfg: RunConfig, run_dir: Path, *, resume: LoadedCheckpoint | None = None, init_from: tuple[dict, str] | None = None) -> TrainResult:
    """Train ``cfg.model`` and write the run to ``run_dir``.

    Args:
        resume: a loaded checkpoint of this run to continue exactly.
        init_from: (weights by net name, description) to fine-tune from; optimizers start fresh.
    """
    tc = cfg.train
    dist_info = dist_from_env()
    device = resolve_device(tc.device, dist_info.local_rank)
    amp_dtype = autocast_dtype(tc.precision, device)
    if device.type == "cuda":  # every step has the same shapes: let cuDNN pick its fastest algorithms once
        torch.backends.cudnn.benchmark = True
    distributed.init(dist_info, device)
    objective = OBJECTIVES[cfg.model]
    main = dist_info.is_main

    # --- data: order and augmentation depend only on (seed, epoch, index)
    dataset = build_dataset(cfg, "train", multiple=size_multiple(cfg.net))
    sampler = ResumableSampler(len(dataset), seed=tc.seed, rank=dist_info.rank, world_size=dist_info.world_size)
    batch_size = cfg.data.batch_size
    global_batch = batch_size * dist_info.world_size
    steps_per_epoch = math.ceil(len(dataset) / global_batch)
    planned_steps = tc.schedule_steps or tc.epochs * steps_per_epoch  # the schedule's length (see schedules.py)
    stop_at = tc.steps or planned_steps
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )

    # --- networks: same initial weights on every rank (same seed); DDP also broadcasts them
    torch.manual_seed(tc.seed)
    nets = build_nets(cfg, objective)
    if init_from is not None:
        loaded = init_from_weights(nets, *init_from)
        if main:
            log.info("initialised %s from %s", ", ".join(loaded), init_from[1])
    channels_last = channels_last_activations(device)
    for module in nets.values():
        place(module, device)
    if dist_info.enabled and cfg.net.norm == "batch":
        if device.type == "cuda":
            for name in nets:
                nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(nets[name])
        elif main:
            # PyTorch's SyncBatchNorm is CUDA-only: on CPU each rank normalises with its own batch
            # statistics and DDP broadcasts rank 0's running statistics at every forward
            log.info("batch norm on CPU under torchrun: per-rank batch statistics (SyncBatchNorm needs CUDA)")
    gen_params = list(itertools.chain.from_iterable(nets[n].parameters() for n in objective.generators))
    disc_params = list(itertools.chain.from_iterable(nets[n].parameters() for n in objective.discriminators))
    kernel = adam_kernel(device)
    adam = dict(lr=tc.lr, betas=(tc.beta1, tc.beta2), **kernel)
    opt_g = torch.optim.Adam(gen_params, **adam)
    opt_d = torch.optim.Adam(disc_params, **adam)
    sched_g = build_scheduler(opt_g, tc, planned_steps)
    sched_d = build_scheduler(opt_d, tc, planned_steps)
    pools = {k: ImagePool(tc.pool_size, seed=tc.seed + i) for i, k in enumerate(objective.pools)}
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    counters = Counters()

    if resume is not None:
        st = resume.state
        for name, module in nets.items():
            if name not in resume.weights:
                raise UserError(f"{resume.path / 'model.safetensors'}: has no {name} weights; the checkpoint is damaged, resume from an older one")
            load_weights(module, resume.weights[name], f"{resume.path} ({name})")
        try:
            opt_g.load_state_dict(st["opt_g"])
            opt_d.load_state_dict(st["opt_d"])
            sched_g.load_state_dict(st["sched_g"])
            sched_d.load_state_dict(st["sched_d"])
            for key, pool in pools.items():
                pool.load_state_dict(st["pools"][key], device)
            if "scaler" in st and scaler.is_enabled():
                scaler.load_state_dict(st["scaler"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise UserError(
                f"{resume.path / 'state.safetensors'}: training state does not fit this run ({type(exc).__name__}: {exc}); "
                "the file is damaged: remove this checkpoint folder to resume from the one before"
            ) from None
        counters = resume.counters
        if main:
            log.info("resumed %s at step %d (epoch %d)", resume.path, counters.step, counters.epoch)

    # One module per phase, holding as parameters only the networks that phase trains; the
    # others ride along unregistered (step.py says why DDP needs this).
    aug_generator = torch.Generator()
    seen_by_objective: dict[str, nn.Module] = dict(nets)
    if tc.diffaug:
        try:
            for name in objective.discriminators:
                seen_by_objective[name] = AugmentedDiscriminator(nets[name], tc.diffaug, aug_generator)
        except ValueError as exc:
            raise UserError(f"config train.diffaug: {exc}") from None
    g_phase = PhaseModule({n: nets[n] for n in objective.generators}, seen_by_objective)
    d_phase = PhaseModule({n: nets[n] for n in objective.discriminators}, seen_by_objective)
    if dist_info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        g_phase = DistributedDataParallel(g_phase, device_ids=ids)
        d_phase = DistributedDataParallel(d_phase, device_ids=ids)
    train_step = TrainStep.build(cfg, objective, nets, g_phase, d_phase, opt_g, opt_d, scaler, amp_dtype, device.type)
    gp_generator = torch.Generator()
    ctx = DiscContext(cfg=tc, pools=pools, generator=gp_generator)

    validator = Validator(cfg, run_dir, device) if tc.val_every > 0 and main else None
    if validator is not None and resume is not None and "validation" in resume.state:
        validator.load_state_dict(resume.state["validation"])
    metrics = MetricsLog(run_dir, enabled=main)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml", dump_yaml(cfg))
    stop = StopFlag()
    stop.install()
    bar = tqdm(total=stop_at, initial=counters.step, disable=not (main and sys.stderr.isatty()), unit="step", dynamic_ncols=True)
    running: dict[str, torch.Tensor] = {}
    window_start, window_images, bad_steps = time.perf_counter(), 0, 0
    last_ckpt: Path | None = None

    def save(name: str | None = None) -> Path | None:
        if not main:
            return None
        state = {
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sched_g": scheduler_state(sched_g),
            "sched_d": scheduler_state(sched_d),
            "pools": {k: p.state_dict() for k, p in pools.items()},
        }
        if scaler.is_enabled():
            state["scaler"] = scaler.state_dict()
        if validator is not None:
            state["validation"] = validator.state_dict()
        try:
            return save_checkpoint(run_dir, cfg, nets, state, counters, keep_last=tc.keep_last, name=name)
        except NonFiniteWeights as exc:
            raise UserError(
                f"training diverged at step {counters.step}: {exc}; the last checkpoint on disk is intact. "
                "Lower train.lr (or use --precision fp32) and --resume, or start again"
            ) from None

    def run_dir_write(write: Any, *args: Any) -> Any:
        try:
            return write(*args)
        except OSError as exc:
            where = getattr(exc, "filename", None) or run_dir
            raise UserError(
                f"{where}: cannot be written ({exc.strerror or exc}); free disk space or fix permissions, "
                f"then continue with --resume {run_dir} (the last checkpoint is intact)"
            ) from None

    try:
        while counters.step < stop_at:
            sampler.set_epoch(counters.epoch, counters.sample_offset)
            dataset.set_epoch(counters.epoch)
            for batch in loader:
                torch.manual_seed(step_seed(tc.seed, dist_info.rank, counters.step))
                gp_generator.manual_seed(step_seed(tc.seed + 1, dist_info.rank, counters.step))
                aug_generator.manual_seed(step_seed(tc.seed + 2, dist_info.rank, counters.step))
                for key in ("A", "B"):
                    batch[key] = batch[key].to(device, non_blocking=True)
                    if channels_last:
                        batch[key] = batch[key].contiguous(memory_format=torch.channels_last)

                result = train_step(batch, tc, ctx)
                g_losses, d_losses, outputs = result.g_losses, result.d_losses, result.outputs
                if result.applied:
                    bad_steps = 0
                else:
                    bad_steps += 1
                    if main:
                        log.warning("step %d: non-finite loss or gradient, update skipped", counters.step + 1)
                        run_dir_write(metrics.write, {"step": counters.step + 1, "event": "non_finite_skipped"})
                    if bad_steps >= MAX_BAD_STEPS:
                        raise UserError(
                            f"training diverged: {bad_steps} consecutive steps with non-finite losses at step "
                            f"{counters.step + 1}; lower train.lr or use --precision fp32, then --resume {run_dir}"
                        )
                if tc.schedule != "plateau":
                    sched_g.step()
                    sched_d.step()

                counters.step += 1
                counters.sample_offset += global_batch
                if counters.sample_offset >= len(dataset):
                    counters.epoch += 1
                    counters.sample_offset = 0
                window_images += batch["A"].shape[0] * dist_info.world_size
                for key, value in itertools.chain(g_losses.items(), d_losses.items()):
                    running[key] = running.get(key, 0.0) + value.detach().float()
                bar.update(1)

                if counters.step % tc.log_every == 0 or counters.step == stop_at:
                    n = tc.log_every if counters.step % tc.log_every == 0 else (counters.step % tc.log_every)
                    means = {k: float(v) / n for k, v in running.items()}
                    elapsed = time.perf_counter() - window_start
                    row = {"step": counters.step, "epoch": counters.epoch, "lr": opt_g.param_groups[0]["lr"], **means,
                           "images_per_s": window_images / max(elapsed, 1e-9)}
                    run_dir_write(metrics.write, row)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in list(means.items())[:4]} | {"img/s": f"{row['images_per_s']:.2f}"})
                    if tc.schedule == "plateau":
                        g_mean = sum(means[k] for k in g_losses)
                        sched_g.step(g_mean)
                        sched_d.step(g_mean)
                    running, window_start, window_images = {}, time.perf_counter(), 0

                if main and tc.sample_every and (counters.step % tc.sample_every == 0 or counters.step == stop_at):
                    named = {**{k: batch[k] for k in ("A", "B")}, **outputs}
                    rows = [[named[n][0] for n in row] for row in objective.sample_rows]
                    run_dir_write(save_grid, run_dir / "samples" / f"step_{counters.step:07d}.png", rows)

                if validator is not None and counters.step % tc.val_every == 0:
                    scores = run_dir_write(validator.run, nets, counters.step)
                    run_dir_write(metrics.write, {"step": counters.step, "epoch": counters.epoch, **scores})
                    value = scores.get(f"val_{validator.metric}", float("nan"))
                    if validator.improved(value):
                        validator.best = value
                        save(name="best")
                        log.info("step %d: best %s so far (%.4f), saved checkpoints/best", counters.step, validator.metric, value)

                stop_requested = distributed.any_flag(dist_info, stop.signum is not None)
                if counters.step % tc.save_every == 0 or counters.step >= stop_at or stop_requested:
                    distributed.check_in_sync(dist_info, list(nets.values()))
                    last_ckpt = save()
                    distributed.barrier(dist_info)
                if stop_requested:
                    if main:
                        print(f"stopped at step {counters.step}; continue with: translate train --resume {run_dir}", file=sys.stderr)
                    return TrainResult(counters.step, last_ckpt, interrupted_by=stop.signum or signal.SIGTERM)
                if counters.step >= stop_at:
                    break
        if not distributed.all_agree(dist_info, counters.step):  # pragma: no cover - defensive
            raise RuntimeError("ranks disagree on the step count")
    finally:
        stop.restore()
        bar.close()
        metrics.close()
        distributed.shutdown(dist_info)
    return TrainResult(counters.step, last_ckpt)

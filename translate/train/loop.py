"""The one training loop, for every objective, read top to bottom.

``train`` builds the data, then everything with state from ``build.py`` (networks placed on the
device, precision, DDP under torchrun, optimizers, schedules, pools, the step), puts a resumed
run back where it stood, and steps: seeds, the step, schedules, logging, samples, validation,
checkpoints. What the run writes into its folder is :class:`RunOutput`'s.

Exact resume: data order and augmentation are pure functions of (seed, epoch, index) (see
``sampler.py`` and the datasets), dropout, gradient-penalty and DiffAugment randomness are
reseeded from (seed, rank, step) at every step, and everything else with state (weights,
optimizers, schedulers, history pools) is in the checkpoint. So a run stopped after step k and
resumed computes the same steps k+1… as a run that never stopped.
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
from torch.utils.data import DataLoader
from tqdm import tqdm

from translate.config import RunConfig, dump_yaml
from translate.data import build_dataset
from translate.errors import UserError
from translate.files import atomic_write
from translate.nets import size_multiple
from translate.runtime import autocast_dtype, dist_from_env, resolve_device
from translate.train import auto, distributed
from translate.train.build import Training, build_training
from translate.train.checkpoint import Counters, LoadedCheckpoint, NonFiniteWeights, save_checkpoint
from translate.train.logger import MetricsLog, save_grid
from translate.train.objectives import OBJECTIVES
from translate.train.sampler import ResumableSampler
from translate.train.step import StepResult
from translate.train.validation import Validator, build_validator

log = logging.getLogger("translate")
MAX_BAD_STEPS = 10  # consecutive non-finite steps before training gives up


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
    autocast_dtype(tc.precision, device)  # refuse a precision the device lacks before reading any data
    distributed.init(dist_info, device)
    main = dist_info.is_main

    # --- data: order and augmentation depend only on (seed, epoch, index)
    dataset = build_dataset(cfg, "train", kind=OBJECTIVES[cfg.model].data, multiple=size_multiple(cfg.net))
    cfg = auto.resolve(cfg, dataset, announce=main)  # net.residual=auto and friends, from the training data
    if not distributed.all_agree(dist_info, int(cfg.net.residual)):  # pragma: no cover - every rank reads the same files
        raise RuntimeError("ranks chose different generators (net.residual=auto)")
    tc = cfg.train
    sampler = ResumableSampler(len(dataset), seed=tc.seed, rank=dist_info.rank, world_size=dist_info.world_size)
    global_batch = cfg.data.batch_size * dist_info.world_size
    planned_steps = tc.schedule_steps or tc.epochs * math.ceil(len(dataset) / global_batch)  # the schedule's length
    stop_at = tc.steps or planned_steps
    loader = DataLoader(
        dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda", drop_last=False
    )

    # --- networks, optimizers, schedules, pools and the step (DDP under torchrun); where a resumed run stood
    training = build_training(cfg, device, planned_steps=planned_steps, dist=dist_info, init_from=init_from)
    validator = build_validator(cfg, run_dir, device) if main else None
    counters = Counters() if resume is None else resume_from(resume, training, validator)
    out = RunOutput(run_dir, training, validator, MetricsLog(run_dir, enabled=main))
    stop = StopFlag()
    stop.install()
    bar = tqdm(total=stop_at, initial=counters.step, disable=not (main and sys.stderr.isatty()), unit="step", dynamic_ncols=True)
    window = LossWindow()
    bad_steps, last_ckpt = 0, None
    try:
        while counters.step < stop_at:
            sampler.set_epoch(counters.epoch, counters.sample_offset)
            dataset.set_epoch(counters.epoch)
            for batch in loader:
                training.seed_step(counters.step)  # dropout, gradient penalty, DiffAugment: from (seed, rank, step)
                result = training.train_step(batch, counters.step)
                bad_steps = 0 if result.applied else bad_steps + 1
                if not result.applied:
                    out.non_finite_step(counters.step + 1, bad_steps)
                if tc.schedule != "plateau":
                    training.sched_g.step()
                    training.sched_d.step()

                counters.step += 1
                counters.sample_offset += global_batch
                if counters.sample_offset >= len(dataset):
                    counters.epoch, counters.sample_offset = counters.epoch + 1, 0
                window.add(result, batch["A"].shape[0] * dist_info.world_size)
                bar.update(1)

                if counters.step % tc.log_every == 0 or counters.step == stop_at:
                    means = out.log(window, counters, bar)
                    if tc.schedule == "plateau":  # on the mean generator loss of the logged window
                        g_mean = sum(means[k] for k in result.g_losses)
                        training.sched_g.step(g_mean)
                        training.sched_d.step(g_mean)
                if main and tc.sample_every and (counters.step % tc.sample_every == 0 or counters.step == stop_at):
                    out.samples(batch, result, counters.step)
                if validator is not None and (counters.step % validator.every == 0 or counters.step >= stop_at):
                    out.validate(counters, last=counters.step >= stop_at)

                stop_requested = distributed.any_flag(dist_info, stop.signum is not None)
                if counters.step % tc.save_every == 0 or counters.step >= stop_at or stop_requested:
                    distributed.check_in_sync(dist_info, list(training.nets.values()))
                    last_ckpt = out.checkpoint(counters)
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
        out.metrics.close()
        distributed.shutdown(dist_info)
    return TrainResult(counters.step, last_ckpt)


# ---------------------------------------------------------------------------- its helpers


def resume_from(resume: LoadedCheckpoint, training: Training, validator: Validator | None) -> Counters:
    """Put a checkpoint's weights and state back; returns where the run stood."""
    training.load_nets(resume.weights, resume.path)
    training.load_state_dict(resume.state, resume.path)
    if validator is not None and "validation" in resume.state:
        validator.load_state_dict(resume.state["validation"])
    counters = resume.counters
    if training.dist.is_main:
        log.info("resumed %s at step %d (epoch %d)", resume.path, counters.step, counters.epoch)
    return counters


class LossWindow:
    """Losses summed over the steps since the last log line, and the images those steps took."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.images, self.start = 0, time.perf_counter()

    def add(self, result: StepResult, images: int) -> None:
        for key, value in itertools.chain(result.g_losses.items(), result.d_losses.items()):
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        self.images += images

    def close(self, steps: int) -> tuple[dict[str, float], float]:
        """The mean losses over ``steps`` and the images per second; starts a new window."""
        means = {k: float(v) / steps for k, v in self.sums.items()}
        images_per_s = self.images / max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return means, images_per_s


class RunOutput:
    """What a run writes into its folder: ``config.yaml``, metrics, samples, validation and
    checkpoints (rank 0 only). A write that fails (full disk, permissions) stops training with
    one line saying how to continue."""

    def __init__(self, run_dir: Path, training: Training, validator: Validator | None, metrics: MetricsLog) -> None:
        self.run_dir, self.training, self.validator, self.metrics = run_dir, training, validator, metrics
        self.cfg, self.main = training.cfg, training.dist.is_main
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(run_dir / "config.yaml", dump_yaml(self.cfg))

    def write(self, write: Any, *args: Any) -> Any:
        try:
            return write(*args)
        except OSError as exc:
            where = getattr(exc, "filename", None) or self.run_dir
            raise UserError(
                f"{where}: cannot be written ({exc.strerror or exc}); free disk space or fix permissions, "
                f"then continue with --resume {self.run_dir} (the last checkpoint is intact)"
            ) from None
        except UserError as exc:  # translate.files' failed atomic writes name the path; add how to go on
            if "could not be written" not in str(exc):
                raise
            raise UserError(f"{exc}, then continue with --resume {self.run_dir} (the last checkpoint is intact)") from None

    def log(self, window: LossWindow, counters: Counters, bar: tqdm) -> dict[str, float]:
        """One metrics row for the window ending at this step; returns its mean losses."""
        log_every = self.cfg.train.log_every
        # steps since the last multiple of log_every (a run resumed mid-window sums fewer: the
        # window is not in the checkpoint)
        means, images_per_s = window.close(log_every if counters.step % log_every == 0 else counters.step % log_every)
        row = {"step": counters.step, "epoch": counters.epoch, "lr": self.training.opt_g.param_groups[0]["lr"], **means, "images_per_s": images_per_s}
        self.write(self.metrics.write, row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in list(means.items())[:4]} | {"img/s": f"{images_per_s:.2f}"})
        return means

    def non_finite_step(self, step: int, bad_steps: int) -> None:
        if self.main:
            log.warning("step %d: non-finite loss or gradient, update skipped", step)
            self.write(self.metrics.write, {"step": step, "event": "non_finite_skipped"})
        if bad_steps >= MAX_BAD_STEPS:
            raise UserError(
                f"training diverged: {bad_steps} consecutive steps with non-finite losses at step "
                f"{step}; lower train.lr or use --precision fp32, then --resume {self.run_dir}"
            )

    def samples(self, batch: dict[str, Any], result: StepResult, step: int) -> None:
        """The objective's sample grid of this step's batch and the images made from it."""
        named = {"A": batch["A"], "B": batch["B"], **result.outputs}
        rows = [[named[n][0] for n in row] for row in self.training.objective.sample_rows]
        self.write(save_grid, self.run_dir / "samples" / f"step_{step:07d}.png", rows)

    def validate(self, counters: Counters, last: bool = False) -> None:
        """Held-out scores into the metrics; ``checkpoints/best`` when the chosen one improved; at
        the run's final step (``last``), one line if the model returns its input."""
        validator = self.validator
        scores = self.write(validator.run, self.training.inference_nets(), counters.step)
        self.write(self.metrics.write, {"step": counters.step, "epoch": counters.epoch, **scores})
        warning = validator.returns_input(scores) if last else None
        if warning is not None:
            log.warning("%s", warning)
        value = scores.get(f"val_{validator.metric}", float("nan"))
        if validator.improved(value):
            validator.best = value
            self.checkpoint(counters, name="best")
            log.info("step %d: best %s so far (%.4f), saved checkpoints/best", counters.step, validator.metric, value)

    def checkpoint(self, counters: Counters, name: str | None = None) -> Path | None:
        if not self.main:
            return None
        state = self.training.state_dict()
        if self.validator is not None:
            state["validation"] = self.validator.state_dict()
        try:
            return save_checkpoint(self.run_dir, self.cfg, self.training.saved_nets(), state, counters, keep_last=self.cfg.train.keep_last, name=name)
        except NonFiniteWeights as exc:
            raise UserError(
                f"training diverged at step {counters.step}: {exc}; the last checkpoint on disk is intact. "
                "Lower train.lr (or use --precision fp32) and --resume, or start again"
            ) from None


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

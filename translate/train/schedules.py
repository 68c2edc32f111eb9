"""Learning-rate schedules, stepped once per optimizer step.

``linear`` is the papers' schedule: constant for the first ``decay_start`` of the planned
run, then linear decay to zero at its end (CycleGAN: 100 + 100 epochs). The planned length
is ``train.epochs`` worth of steps (or ``train.schedule_steps``); ``--steps`` only says where
to stop, so a run stopped and resumed follows the same schedule as one that never stopped.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

from translate.config import TrainConfig

Scheduler = LRScheduler | ReduceLROnPlateau


def linear_factor(step: int, total_steps: int, decay_start: float) -> float:
    """LR multiplier at ``step``: 1 until ``decay_start * total``, then linear to 0 at ``total``."""
    start = int(math.floor(decay_start * total_steps))
    if step < start:
        return 1.0
    span = max(1, total_steps - start)
    return max(0.0, 1.0 - (step - start) / span)


class _LinearDecay:
    # a class (not a closure) so LambdaLR.state_dict records it as data, not as code
    def __init__(self, total_steps: int, decay_start: float) -> None:
        self.total_steps, self.decay_start = total_steps, decay_start

    def __call__(self, step: int) -> float:
        return linear_factor(step, self.total_steps, self.decay_start)


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, total_steps: int) -> Scheduler:
    """Args: total_steps: planned length of the run in optimizer steps (> 0)."""
    total_steps = max(1, total_steps)
    if cfg.schedule == "linear":
        return LambdaLR(optimizer, _LinearDecay(total_steps, cfg.decay_start))
    if cfg.schedule == "constant":
        return LambdaLR(optimizer, _LinearDecay(total_steps, 1.0 + 1e9))
    if cfg.schedule == "step":
        return StepLR(optimizer, step_size=cfg.step_size or max(1, total_steps // 3), gamma=cfg.step_gamma)
    if cfg.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0.0)
    if cfg.schedule == "plateau":
        return ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def scheduler_state(scheduler: Scheduler) -> dict:
    state = scheduler.state_dict()
    if "lr_lambdas" in state:
        # LambdaLR stores callable objects' __dict__; ours is rebuilt from the config instead,
        # and None entries tell load_state_dict to keep it
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state

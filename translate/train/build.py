"""Everything with state that one training run steps, built from a config in one place.

:func:`build_training` makes the networks, optimizers, schedulers, history pools, gradient
scaler and the :class:`~translate.train.step.TrainStep`, placed on a device and, under torchrun,
wrapped in DDP. The training loop, the benchmark (``scripts/``) and the tests all build with it,
so what they time and test is what trains.

Which networks exist and their channels come from the model's entry in the objective table
(``objectives.py``); nothing here asks which model it is.
"""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from translate.config import RunConfig
from translate.errors import UserError
from translate.formats import EMA_PREFIX, MODEL_FILE, STATE_FILE, load_weights
from translate.nets import build_discriminator, build_generator, init_weights
from translate.runtime import DistInfo, autocast_dtype, channels_last_activations, place
from translate.train import auto
from translate.train.objectives import OBJECTIVES, DiscContext, Objective
from translate.train.pool import ImagePool
from translate.train.schedules import Scheduler, build_scheduler, scheduler_state
from translate.train.step import PhaseModule, StepResult, TrainStep

log = logging.getLogger("translate")
ONE_PROCESS = DistInfo()  # no torchrun: rank 0 of 1


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


@dataclass
class Training:
    """Everything with state that one training run steps, as :func:`build_training` made it.

    ``nets`` are the networks themselves (placed, never DDP-wrapped: checkpoints and validation
    read them); ``step`` runs them through the phase modules (DDP-wrapped under torchrun).
    """

    cfg: RunConfig
    objective: Objective
    device: torch.device
    amp_dtype: torch.dtype | None  # None: fp32
    dist: DistInfo
    nets: dict[str, nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: Scheduler
    sched_d: Scheduler
    pools: dict[str, ImagePool]
    scaler: torch.amp.GradScaler
    step: TrainStep
    ctx: DiscContext  # holds the gradient-penalty generator
    channels_last: bool  # batches go channels-last on this device
    aug_generator: torch.Generator  # DiffAugment's randomness (unused without train.diffaug)
    ema: dict[str, nn.Module] = field(default_factory=dict)  # averaged generators by name (train.ema_decay > 0)

    def saved_nets(self) -> dict[str, nn.Module]:
        """What a checkpoint's model file holds: every network, and each averaged generator as
        ``ema_<name>`` (what inference reads first: :func:`translate.formats.read_generator`)."""
        return self.nets | {EMA_PREFIX + name: module for name, module in self.ema.items()}

    def inference_nets(self) -> dict[str, nn.Module]:
        """The networks validation runs: the averaged generators where there are any."""
        return self.nets | self.ema

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move each averaged generator towards its trained one after step ``step`` (1-based).

        The decay ramps up as ``min(ema_decay, (1 + step) / (10 + step))``, so a short run's
        average is not dominated by the random initial weights. Buffers (batch-norm statistics)
        are copied, not averaged.
        """
        decay = min(self.cfg.train.ema_decay, (1 + step) / (10 + step))
        for name, average in self.ema.items():
            live = self.nets[name]
            torch._foreach_lerp_(list(average.parameters()), list(live.parameters()), 1.0 - decay)
            for mine, theirs in zip(average.buffers(), live.buffers(), strict=True):
                mine.copy_(theirs)

    def seed_step(self, step: int) -> None:
        """Reseed dropout, gradient-penalty and DiffAugment randomness from (seed, rank, step):
        what makes a resumed run compute the same steps as one that never stopped."""
        seed, rank = self.cfg.train.seed, self.dist.rank
        torch.manual_seed(step_seed(seed, rank, step))
        self.ctx.generator.manual_seed(step_seed(seed + 1, rank, step))
        self.aug_generator.manual_seed(step_seed(seed + 2, rank, step))

    def train_step(self, batch: dict[str, Any], step: int = 0) -> StepResult:
        """Optimisation step ``step`` (0-based) on ``batch``; moves its tensors (``"A"``, ``"B"``, next frames, flows)
        (``(B, C, H, W)`` in [-1, 1]) to the device and layout in place, so the caller's batch
        holds them after. With ``train.gan_warmup`` the adversarial weight is
        ``lambda_gan * min(1, step / gan_warmup)``; with ``train.ema_decay`` the averaged
        generators follow an applied step."""
        for key, value in batch.items():  # A, B and, for the temporal loss, next frames, flows and masks
            if isinstance(value, torch.Tensor):
                batch[key] = value.to(self.device, non_blocking=True)
                if self.channels_last and value.ndim == 4:
                    batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
        tc = self.cfg.train
        if tc.gan_warmup and step < tc.gan_warmup:
            tc = replace(tc, lambda_gan=tc.lambda_gan * step / tc.gan_warmup)
        result = self.step(batch, tc, self.ctx)
        if self.ema and result.applied:
            self.update_ema(step + 1)
        return result

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint's ``state.safetensors`` holds of this run: optimizers, schedulers,
        pools and (fp16) the gradient scaler."""
        state = {
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": scheduler_state(self.sched_g),
            "sched_d": scheduler_state(self.sched_d),
            "pools": {k: p.state_dict() for k, p in self.pools.items()},
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from :meth:`state_dict`'s ``state``, read from checkpoint folder ``source``.

        Raises:
            UserError: one line naming ``source``'s state file when the state does not fit.
        """
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_g.load_state_dict(state["sched_g"])
            self.sched_d.load_state_dict(state["sched_d"])
            for key, pool in self.pools.items():
                pool.load_state_dict(state["pools"][key], self.device)
            if "scaler" in state and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise UserError(
                f"{source / STATE_FILE}: training state does not fit this run ({type(exc).__name__}: {exc}); "
                "the file is damaged: remove this checkpoint folder to resume from the one before"
            ) from None

    def load_nets(self, weights: dict[str, dict[str, torch.Tensor]], source: Path) -> None:
        """Load every network's weights (by net name, :meth:`saved_nets`) from checkpoint folder ``source``."""
        for name, module in self.saved_nets().items():
            if name not in weights:
                raise UserError(f"{source / MODEL_FILE}: has no {name} weights; the checkpoint is damaged, resume from an older one")
            load_weights(module, weights[name], f"{source} ({name})")


def build_training(
    cfg: RunConfig,
    device: torch.device,
    *,
    planned_steps: int,
    dist: DistInfo = ONE_PROCESS,
    init_from: tuple[dict[str, dict[str, torch.Tensor]], str] | None = None,
) -> Training:
    """Build one run's networks, optimizers, schedules, pools and step for ``cfg.model``.

    Args:
        cfg: The run config; ``cfg.model`` picks the objective table's entry.
        device: Where it trains (``translate.runtime.resolve_device``).
        planned_steps: The schedule's length in optimizer steps (see ``schedules.py``).
        dist: This process's torchrun rank; with more than one process the phase modules are
            DDP-wrapped (the process group must already be initialised).
        init_from: (weights by net name, description) to fine-tune from; networks it lacks
            (e.g. discriminators) keep their fresh initialisation; optimizers start fresh.

    Raises:
        UserError: a precision the device lacks, a bad DiffAugment policy, or ``init_from``
            without a generator of this model.
    """
    unresolved = auto.unresolved(cfg)
    if unresolved:
        raise ValueError(f"build_training: {', '.join(unresolved)} still auto; translate.train.auto.resolve chooses them from the data first")
    tc = cfg.train
    objective = OBJECTIVES[cfg.model]
    amp_dtype = autocast_dtype(tc.precision, device)
    if device.type == "cuda":  # every step has the same shapes: let cuDNN pick its fastest algorithms once
        torch.backends.cudnn.benchmark = True

    # same initial weights on every rank (same seed); DDP also broadcasts them
    torch.manual_seed(tc.seed)
    nets = build_nets(cfg, objective)
    if init_from is not None:
        loaded = init_from_weights(nets, *init_from)
        if dist.is_main:
            log.info("initialised %s from %s", ", ".join(loaded), init_from[1])
    for module in nets.values():
        place(module, device)
    if dist.enabled and cfg.net.norm == "batch":
        nets = sync_batch_norm(nets, device, dist)

    adam = dict(lr=tc.lr, betas=(tc.beta1, tc.beta2), **adam_kernel(device))
    trained_with_generators = [*objective.generators, *objective.heads]
    opt_g = torch.optim.Adam(_parameters(nets, trained_with_generators), **adam)
    opt_d = torch.optim.Adam(_parameters(nets, objective.discriminators), **adam)
    pools = {k: ImagePool(tc.pool_size, seed=tc.seed + i) for i, k in enumerate(objective.pools)}
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    aug_generator = torch.Generator()
    g_phase, d_phase = phase_modules(cfg, objective, nets, device, dist, aug_generator)
    # averaged copies of the placed generators (same layout); never trained, so no gradients
    ema = {name: copy.deepcopy(nets[name]).requires_grad_(False) for name in objective.generators} if tc.ema_decay > 0 else {}
    return Training(
        cfg=cfg,
        objective=objective,
        device=device,
        amp_dtype=amp_dtype,
        dist=dist,
        nets=nets,
        opt_g=opt_g,
        opt_d=opt_d,
        sched_g=build_scheduler(opt_g, tc, planned_steps),
        sched_d=build_scheduler(opt_d, tc, planned_steps),
        pools=pools,
        scaler=scaler,
        step=TrainStep.build(cfg, objective, nets, g_phase, d_phase, opt_g, opt_d, scaler, amp_dtype, device.type),
        ctx=DiscContext(cfg=tc, pools=pools, generator=torch.Generator()),
        channels_last=channels_last_activations(device),
        aug_generator=aug_generator,
        ema=ema,
    )


# ---------------------------------------------------------------------------- the parts


def build_nets(cfg: RunConfig, objective: Objective) -> dict[str, nn.Module]:
    """The objective's networks, freshly initialised on the CPU: generators, discriminators,
    then heads (table order)."""
    net = cfg.net
    nets: dict[str, nn.Module] = {}
    for name, gen in objective.generators.items():
        nets[name] = build_generator(net, gen.in_channels(net), gen.out_channels(net))
    for name, channels in objective.discriminators.items():
        nets[name] = build_discriminator(net, channels(net))
    for name, build_head in objective.heads.items():
        nets[name] = init_weights(build_head(cfg, nets), net.init, net.init_gain)
    return nets


def init_from_weights(nets: dict[str, nn.Module], source: dict[str, dict[str, torch.Tensor]], origin: str) -> list[str]:
    """Load the networks ``source`` has (a generator from its averaged weights, where the source
    has them: what its inference used); the others (e.g. discriminators) stay freshly initialised."""
    loaded = []
    for name, module in nets.items():
        averaged = EMA_PREFIX + name in source
        if averaged or name in source:
            load_weights(module, source[EMA_PREFIX + name if averaged else name], f"{origin} ({name})")
            loaded.append(f"{name} (averaged)" if averaged else name)
    if not any(n.startswith("gen") for n in loaded):
        raise UserError(f"{origin}: holds no generator for this model; pass a run, checkpoint or generator file")
    return loaded


def sync_batch_norm(nets: dict[str, nn.Module], device: torch.device, dist: DistInfo) -> dict[str, nn.Module]:
    """Batch norm under torchrun: statistics over all ranks' batches where PyTorch can (CUDA)."""
    if device.type == "cuda":
        return {name: nn.SyncBatchNorm.convert_sync_batchnorm(module) for name, module in nets.items()}
    if dist.is_main:
        # PyTorch's SyncBatchNorm is CUDA-only: on CPU each rank normalises with its own batch
        # statistics and DDP broadcasts rank 0's running statistics at every forward
        log.info("batch norm on CPU under torchrun: per-rank batch statistics (SyncBatchNorm needs CUDA)")
    return nets


def adam_kernel(device: torch.device) -> dict[str, bool]:
    """Adam's implementation: one fused kernel per step where PyTorch has it (CPU, CUDA): 4.8x
    faster than foreach on CPU for CycleGAN's 28 M parameters (docs/PERFORMANCE.md, levers).
    Fused Adam needs :func:`~translate.train.step.align_to_params` before each step."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}


def _parameters(nets: dict[str, nn.Module], names: Any) -> list[nn.Parameter]:
    return list(itertools.chain.from_iterable(nets[n].parameters() for n in names))


def phase_modules(
    cfg: RunConfig, objective: Objective, nets: dict[str, nn.Module], device: torch.device, dist: DistInfo, aug_generator: torch.Generator
) -> tuple[nn.Module, nn.Module]:
    """One module per phase, holding as parameters only the networks that phase trains; the
    others ride along unregistered (``step.py`` says why DDP needs this). DDP-wrapped under torchrun."""
    seen_by_objective: dict[str, nn.Module] = dict(nets)
    if cfg.train.diffaug:
        try:
            for name in objective.discriminators:
                seen_by_objective[name] = AugmentedDiscriminator(nets[name], cfg.train.diffaug, aug_generator)
        except ValueError as exc:
            raise UserError(f"config train.diffaug: {exc}") from None
    g_phase: nn.Module = PhaseModule({n: nets[n] for n in [*objective.generators, *objective.heads]}, seen_by_objective)
    d_phase: nn.Module = PhaseModule({n: nets[n] for n in objective.discriminators}, seen_by_objective)
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        g_phase = DistributedDataParallel(g_phase, device_ids=ids)
        d_phase = DistributedDataParallel(d_phase, device_ids=ids)
    return g_phase, d_phase


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

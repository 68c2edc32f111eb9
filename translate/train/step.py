"""One optimisation step: the generator parts, the discriminator step, both optimizer updates.

``build.py`` builds the :class:`TrainStep` the training loop calls once per batch; the benchmark
and the tests build it the same way, so what they time is what trains. Everything around the
step (data, seeds, schedules, logging, checkpoints) stays in ``loop.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from translate.config import RunConfig, TrainConfig
from translate.train.objectives import DiscContext, GeneratorPart, Losses, Objective

Params = list[nn.Parameter]


class PhaseModule(nn.Module):
    """One phase of an objective (generator parts or discriminator step) as a module call.

    Under DDP each call is ONE forward followed by one backward: calling a DDP module several
    times before one backward (gen_ab runs three times in a CycleGAN step) silently
    mis-synchronises its gradients.

    Args:
        trained: the networks this phase updates (registered: DDP synchronises them).
        all_nets: every network by name, passed to the step function (the others are not registered).
    """

    def __init__(self, trained: dict[str, nn.Module], all_nets: dict[str, nn.Module]) -> None:
        super().__init__()
        self.trained = nn.ModuleDict(trained)
        self._all_nets = dict(all_nets)  # a plain dict: not registered as submodules

    def forward(self, step: Callable[..., Any], *args: Any) -> Any:
        return step(self._all_nets, *args)


def grads_finite(params: Params) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    # one fused reduction instead of a check per tensor; identical on all ranks after all-reduce
    norms = torch._foreach_norm(grads)
    return bool(torch.isfinite(torch.stack(norms)).all())


def align_to_params(opt: torch.optim.Optimizer) -> None:
    """Give every gradient and optimizer-state tensor its parameter's strides.

    Fused Adam walks parameter, gradient and state memory in one order: on CPU it silently
    computes wrong updates when their layouts differ (PyTorch 2.14; CUDA raises instead). They
    differ for channels-last weights after a resume (state is stored contiguous), and would for
    any gradient produced in another layout. A no-op, two stride checks per tensor, when nothing
    differs.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None and p.grad.stride() != p.stride():
                p.grad = torch.empty_like(p).copy_(p.grad)
            state = opt.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p).copy_(value)


def _params(opt: torch.optim.Optimizer) -> Params:
    return [p for group in opt.param_groups for p in group["params"]]


@dataclass
class StepResult:
    g_losses: Losses
    d_losses: Losses
    outputs: dict[str, torch.Tensor]  # the generators' images, for samples
    applied: bool  # False: a non-finite gradient, no weight changed (fp16: the scaler decides)


@dataclass
class TrainStep:
    """What one step needs, built once by ``build.build_training`` with :meth:`build`."""

    g_phase: nn.Module  # PhaseModules, DDP-wrapped under torchrun
    d_phase: nn.Module
    generator_parts: tuple[GeneratorPart, ...]
    discriminator_step: Callable[..., Losses]
    discriminators: list[nn.Module]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable[[], AbstractContextManager[Any]]

    @classmethod
    def build(
        cls,
        cfg: RunConfig,
        objective: Objective,
        nets: dict[str, nn.Module],
        g_phase: nn.Module,
        d_phase: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        amp_dtype: torch.dtype | None,
        device_type: str,
    ) -> TrainStep:
        return cls(
            g_phase=g_phase,
            d_phase=d_phase,
            generator_parts=objective.generator_parts(cfg),
            discriminator_step=objective.discriminator_step,
            discriminators=[nets[n] for n in objective.discriminators],
            opt_g=opt_g,
            opt_d=opt_d,
            scaler=scaler,
            autocast=(lambda: torch.autocast(device_type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext,
        )

    def __call__(self, batch: dict[str, Any], tc: TrainConfig, ctx: DiscContext) -> StepResult:
        # generator parts: discriminators frozen, so no gradient is computed for them; each
        # part's losses are backpropagated before the next part runs (objectives.py)
        for disc in self.discriminators:
            disc.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        g_losses: Losses = {}
        outputs: dict[str, torch.Tensor] = {}
        last = len(self.generator_parts) - 1
        for i, part in enumerate(self.generator_parts):
            # under DDP gradients are all-reduced once, at the last part's backward
            no_sync = getattr(self.g_phase, "no_sync", None)
            with no_sync() if (no_sync is not None and i < last) else nullcontext():
                with self.autocast():
                    losses, images = self.g_phase(part, batch, tc)
                self.scaler.scale(sum(losses.values())).backward()
            g_losses.update(losses)
            outputs.update(images)
        for disc in self.discriminators:
            disc.requires_grad_(True)

        # discriminator step on the (detached) fakes just made
        with self.autocast():
            d_losses = self.d_phase(self.discriminator_step, batch, outputs, ctx)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(sum(d_losses.values())).backward()

        for opt in (self.opt_g, self.opt_d):
            if opt.defaults.get("fused"):
                align_to_params(opt)
        applied = True
        if self.scaler.is_enabled():  # fp16: the scaler skips steps with inf/NaN itself
            self.scaler.step(self.opt_g)
            self.scaler.step(self.opt_d)
            self.scaler.update()
        elif grads_finite(_params(self.opt_g)) and grads_finite(_params(self.opt_d)):
            self.opt_g.step()
            self.opt_d.step()
        else:
            applied = False
        return StepResult(g_losses, d_losses, outputs, applied)

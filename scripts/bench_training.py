"""The benchmark's training workload: CycleGAN and pix2pix iterations, built as the loop builds them.

Runs inside a forked child (see ``bench_common.run_isolated``), like the workloads in
``bench_workloads``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from bench_common import Precision, Variant, measure_interleaved, photo, to_batch
from bench_workloads import ceilings, variant_row

def all_parts(parts: tuple[Any, ...]) -> Any:
    """One generator part that runs ``parts`` in turn: all their activations alive at once."""

    def part(nets: Any, batch: Any, tc: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        losses: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for p in parts:
            part_losses, images = p(nets, batch, tc)
            losses.update(part_losses)
            outputs.update(images)
        return losses, outputs

    return part


def training_step(model: Literal["cyclegan", "pix2pix"], side: int, *, base_channels: int,
                  fused_adam: bool | None = None, channels_last: bool = True, one_backward: bool = False) -> tuple[Callable[[Precision], Callable[[], None]], dict[str, Any]]:
    """Training iterations (batch 1), built as ``translate.train.loop.train`` builds them.

    ``make_step(precision)`` returns a callable that runs the loop's own ``TrainStep`` (every
    generator part and its backward, the discriminator step, the finite-gradient check, both Adam
    steps) and both scheduler steps; data loading, logging and checkpoints are left out. Steps
    of both precisions share the networks and optimizers. ``fused_adam`` None takes
    the loop's Adam (``adam_kernel``); True/False force fused/foreach. ``one_backward`` runs every
    generator part before one backward of all their losses (the step before parts, for the
    lever that measures them). Returns ``make_step`` and a description of what it trains.
    """
    import itertools

    import torch

    from translate.config import preset
    from translate.train.loop import adam_kernel, autocast_dtype, build_nets, channels_last_weights
    from translate.train.objectives import OBJECTIVES, DiscContext
    from translate.train.pool import ImagePool
    from translate.train.schedules import build_scheduler
    from translate.train.step import PhaseModule, TrainStep

    cfg = preset(model)
    cfg.net.base_channels_g = cfg.net.base_channels_d = base_channels
    tc = cfg.train
    objective = OBJECTIVES[cfg.model]
    if one_backward:
        parts_of = objective.generator_parts
        objective = dataclasses.replace(objective, generator_parts=lambda c: (all_parts(parts_of(c)),))
    torch.manual_seed(tc.seed)
    nets = build_nets(cfg, objective)
    for module in nets.values():
        if channels_last and channels_last_weights(torch.device("cpu")):
            module.to(memory_format=torch.channels_last)
    gen_params = list(itertools.chain.from_iterable(nets[n].parameters() for n in objective.generators))
    disc_params = list(itertools.chain.from_iterable(nets[n].parameters() for n in objective.discriminators))
    kernel = adam_kernel(torch.device("cpu")) if fused_adam is None else ({"fused": True} if fused_adam else {"foreach": True})
    adam = dict(lr=tc.lr, betas=(tc.beta1, tc.beta2), **kernel)
    opt_g = torch.optim.Adam(gen_params, **adam)
    opt_d = torch.optim.Adam(disc_params, **adam)
    sched_g = build_scheduler(opt_g, tc, 1000)
    sched_d = build_scheduler(opt_d, tc, 1000)
    pools = {k: ImagePool(tc.pool_size, seed=tc.seed + i) for i, k in enumerate(objective.pools)}
    g_phase = PhaseModule({n: nets[n] for n in objective.generators}, nets)
    d_phase = PhaseModule({n: nets[n] for n in objective.discriminators}, nets)
    ctx = DiscContext(cfg=tc, pools=pools, generator=torch.Generator())
    if model == "cyclegan":
        real_a, real_b = photo("astronaut", side), photo("chelsea", side)
    else:  # pix2pix: edges -> photo
        import cv2

        real_b = photo("coffee", side)
        edges = 255 - cv2.Canny(cv2.cvtColor(real_b, cv2.COLOR_RGB2GRAY), 100, 200)
        real_a = np.repeat(edges[:, :, None], 3, axis=2)
    batch = {"A": to_batch([real_a]), "B": to_batch([real_b])}
    if channels_last:
        batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}

    def make_step(precision: Precision) -> Callable[[], None]:
        amp_dtype = autocast_dtype(precision, torch.device("cpu"))
        train_step = TrainStep.build(cfg, objective, nets, g_phase, d_phase, opt_g, opt_d,
                                     torch.amp.GradScaler("cpu", enabled=False), amp_dtype, "cpu")

        def step() -> None:
            train_step(batch, tc, ctx)
            sched_g.step()
            sched_d.step()

        return step

    info = {"model": model, "generator": cfg.net.generator, "side": side, "batch": 1, "fused_adam": bool(kernel.get("fused")),
            "channels_last": channels_last, "parameters": sum(p.numel() for p in gen_params + disc_params)}
    return make_step, info


def training(model: Literal["cyclegan", "pix2pix"], side: int, *, base_channels: int, quick: bool,
             warmup: dict[str, int], repeats: int, rounds: int, budget_s: float, profile: tuple[str, ...] = (),
             fused_adam: bool | None = None, channels_last: bool = True,
             precisions: tuple[Precision, ...] = ("fp32", "bf16")) -> dict[str, Any]:
    """Time training iterations in fp32 and bf16 autocast (``precisions``), interleaved in this one
    process on the same networks and optimizers (see :func:`training_step`). FLOPs: every forward
    and backward the objective runs, counted by ``FlopCounterMode`` over one whole iteration.

    Returns:
        ``{"rows": [a row per precision]}``.
    """
    make_step, info = training_step(model, side, base_channels=base_channels, fused_adam=fused_adam,
                                    channels_last=channels_last)
    variants = {p: Variant(make_step(p), warmup=warmup.get(p, 0), repeats=repeats, profile=p in profile)
                for p in precisions}
    before = ceilings(quick)
    measure_interleaved(variants, rounds=rounds, budget_s=budget_s)
    after = ceilings(quick)
    rows = []
    for precision, v in variants.items():
        row = variant_row(info, v, precision, before, after)
        row["images_per_s"] = 1 / v.timing.median
        if precision == "bf16" and "fp32" in variants:
            row["bf16_speedup_same_process"] = variants["fp32"].timing.median / v.timing.median
        rows.append(row)
    return {"rows": rows}

"""Objectives: what each model computes for one batch, as plain functions.

Names in code vs the CycleGAN paper (Zhu et al. 2017): ``gen_ab`` = G (X→Y), ``gen_ba`` = F
(Y→X), ``disc_a`` = D_X, ``disc_b`` = D_Y; domain A = X, B = Y. pix2pix (Isola et al. 2017)
uses ``gen_ab`` = G and ``disc_b`` = D, conditioned on the input image.

Each objective has two functions the training loop calls in turn:

- ``generator_step(nets, batch, cfg) -> (losses, outputs)``: generator losses and the images
  it produced (reused by the discriminator step and the sample grids: never recomputed).
- ``discriminator_step(nets, batch, outputs, ctx) -> losses``.

Every loss is already weighted; the loop sums them, backpropagates, steps and logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from translate.config import RunConfig, TrainConfig
from translate.losses import cycle_loss, gan_loss, gradient_penalty, identity_loss, l1_loss
from translate.train.pool import ImagePool

Nets = dict[str, nn.Module]
Losses = dict[str, Tensor]


@dataclass
class DiscContext:
    """What the discriminator step needs besides the batch: config, pools, an RNG for GP."""

    cfg: TrainConfig
    pools: dict[str, ImagePool]
    generator: torch.Generator  # CPU generator for gradient-penalty interpolation


def _disc_loss(disc: nn.Module, real: Tensor, fake: Tensor, ctx: DiscContext) -> Tensor:
    mode = ctx.cfg.gan_mode
    # 0.5: the papers halve the discriminator objective to slow D relative to G
    loss = 0.5 * (gan_loss(disc(real), True, mode) + gan_loss(disc(fake), False, mode))
    if mode == "wgangp":
        loss = loss + ctx.cfg.lambda_gp * gradient_penalty(disc, real, fake, generator=ctx.generator)
    return loss


# ---------------------------------------------------------------------------- CycleGAN


def cyclegan_generator_step(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    real_a, real_b = batch["A"], batch["B"]
    gen_ab, gen_ba = nets["gen_ab"], nets["gen_ba"]
    fake_b = gen_ab(real_a)
    rec_a = gen_ba(fake_b)
    fake_a = gen_ba(real_b)
    rec_b = gen_ab(fake_a)
    mode = cfg.gan_mode
    losses = {
        "g_ab": gan_loss(nets["disc_b"](fake_b), True, mode, for_discriminator=False),
        "g_ba": gan_loss(nets["disc_a"](fake_a), True, mode, for_discriminator=False),
        "cycle_a": cfg.lambda_cycle * cycle_loss(rec_a, real_a),
        "cycle_b": cfg.lambda_cycle * cycle_loss(rec_b, real_b),
    }
    # identity (paper §5.2): G(y) ≈ y keeps colours; only defined when both domains share channels
    if cfg.lambda_identity > 0 and real_a.shape[1] == real_b.shape[1]:
        weight = cfg.lambda_cycle * cfg.lambda_identity
        losses["idt_a"] = weight * identity_loss(gen_ab(real_b), real_b)
        losses["idt_b"] = weight * identity_loss(gen_ba(real_a), real_a)
    outputs = {"fake_a": fake_a, "fake_b": fake_b, "rec_a": rec_a, "rec_b": rec_b}
    return losses, outputs


def cyclegan_discriminator_step(nets: Nets, batch: dict[str, Any], outputs: dict[str, Tensor], ctx: DiscContext) -> Losses:
    fake_b = ctx.pools["b"].query(outputs["fake_b"].detach())
    fake_a = ctx.pools["a"].query(outputs["fake_a"].detach())
    return {
        "d_b": _disc_loss(nets["disc_b"], batch["B"], fake_b, ctx),
        "d_a": _disc_loss(nets["disc_a"], batch["A"], fake_a, ctx),
    }


# ---------------------------------------------------------------------------- pix2pix


def pix2pix_generator_step(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    real_a, real_b = batch["A"], batch["B"]
    fake_b = nets["gen_ab"](real_a)
    # conditional GAN: D judges the (input, output) pair
    pred_fake = nets["disc_b"](torch.cat([real_a, fake_b], dim=1))
    losses = {
        "g_ab": gan_loss(pred_fake, True, cfg.gan_mode, for_discriminator=False),
        "l1": cfg.lambda_l1 * l1_loss(fake_b, real_b),
    }
    return losses, {"fake_b": fake_b}


def pix2pix_discriminator_step(nets: Nets, batch: dict[str, Any], outputs: dict[str, Tensor], ctx: DiscContext) -> Losses:
    real_a = batch["A"]
    fake_pair = torch.cat([real_a, outputs["fake_b"].detach()], dim=1)
    if "b" in ctx.pools:
        fake_pair = ctx.pools["b"].query(fake_pair)
    real_pair = torch.cat([real_a, batch["B"]], dim=1)
    return {"d_b": _disc_loss(nets["disc_b"], real_pair, fake_pair, ctx)}


# ---------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Objective:
    generators: tuple[str, ...]
    discriminators: tuple[str, ...]
    pools: tuple[str, ...]
    generator_step: Callable[..., tuple[Losses, dict[str, Tensor]]]
    discriminator_step: Callable[..., Losses]
    sample_rows: tuple[tuple[str, ...], ...]  # rows of the sample grid, by tensor name

    def discriminator_in_channels(self, cfg: RunConfig) -> dict[str, int]:
        if cfg.model == "pix2pix":
            return {"disc_b": cfg.net.in_channels + cfg.net.out_channels}
        return {"disc_a": cfg.net.in_channels, "disc_b": cfg.net.out_channels}


OBJECTIVES: dict[str, Objective] = {
    "cyclegan": Objective(
        generators=("gen_ab", "gen_ba"),
        discriminators=("disc_a", "disc_b"),
        pools=("a", "b"),
        generator_step=cyclegan_generator_step,
        discriminator_step=cyclegan_discriminator_step,
        sample_rows=(("A", "fake_b", "rec_a"), ("B", "fake_a", "rec_b")),
    ),
    "pix2pix": Objective(
        generators=("gen_ab",),
        discriminators=("disc_b",),
        pools=("b",),
        generator_step=pix2pix_generator_step,
        discriminator_step=pix2pix_discriminator_step,
        sample_rows=(("A", "fake_b", "B"),),
    ),
}

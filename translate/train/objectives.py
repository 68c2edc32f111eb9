"""Objectives: what each model computes for one batch, as plain functions.

Names in code vs the CycleGAN paper (Zhu et al. 2017): ``gen_ab`` = G (X→Y), ``gen_ba`` = F
(Y→X), ``disc_a`` = D_X, ``disc_b`` = D_Y; domain A = X, B = Y. pix2pix (Isola et al. 2017)
uses ``gen_ab`` = G and ``disc_b`` = D, conditioned on the input image.

Each objective gives the training loop two kinds of function, called in turn every step:

- generator parts, ``part(nets, batch, cfg) -> (losses, outputs)``: generator losses and the
  images they produced (reused by the discriminator step and the sample grids: never
  recomputed). A part is one independent graph: the loop backpropagates each part's losses as
  soon as it has computed them, so only one part's activations are alive at a time. The
  generator gradient is the same sum as one backward of all losses (addition reordered), at a
  fraction of the memory: CycleGAN's six generator passes become three parts of two
  (256-px training peak RSS 3.8 -> 2.3 GB, measured: docs/PERFORMANCE.md, levers).
- ``discriminator_step(nets, batch, outputs, ctx) -> losses``.

Every loss is already weighted; the loop sums them, backpropagates, steps and logs.

The table at the end, :data:`OBJECTIVES`, declares each model fully: its networks and their
channels, the data it trains on, its history pools, its sample rows and what validation
measures. Nothing else asks which model a config names, so a new model is one entry here and
its functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from translate.config import NetConfig, RunConfig, TrainConfig
from translate.errors import UserError
from translate.losses import cycle_loss, gan_loss, gradient_penalty, identity_loss, l1_loss, patch_nce_loss, ssim_loss, temporal_loss
from translate.train.pool import ImagePool

if TYPE_CHECKING:
    from translate.data import DataKind

Nets = dict[str, nn.Module]
Losses = dict[str, Tensor]
GeneratorPart = Callable[[Nets, dict[str, Any], TrainConfig], tuple[Losses, dict[str, Tensor]]]


@dataclass
class DiscContext:
    """What the discriminator step needs besides the batch: config, pools, an RNG for GP."""

    cfg: TrainConfig
    pools: dict[str, ImagePool]
    generator: torch.Generator  # CPU generator for gradient-penalty interpolation


def discriminator_loss(disc: nn.Module, real: Tensor, fake: Tensor, ctx: DiscContext) -> Tensor:
    """One discriminator's loss on a real and a fake batch (``(B, C, H, W)``), as every model's
    discriminator step computes it: half the GAN loss of both, plus the gradient penalty under
    ``wgangp``. Public so that tools (``scripts/adversarial_probe.py``) train a discriminator the
    same way."""
    mode = ctx.cfg.gan_mode
    # 0.5: the papers halve the discriminator objective to slow D relative to G
    loss = 0.5 * (gan_loss(disc(real), True, mode) + gan_loss(disc(fake), False, mode))
    if mode == "wgangp":
        loss = loss + ctx.cfg.lambda_gp * gradient_penalty(disc, real, fake, generator=ctx.generator)
    return loss


def temporal_term(nets: Nets, batch: dict[str, Any], key: str, generator: str, fake: Tensor, cfg: TrainConfig) -> Losses:
    """``lambda_temporal * temporal_loss`` of ``generator`` on the batch's ``key`` images and
    their next video frames (``{key}_next``, ``flow_{key}``, ``mask_{key}``: datasets give
    them when ``train.lambda_temporal`` is set), as ``temporal_<key>``; nothing otherwise.
    ``fake`` is ``generator``'s output on ``batch[key]``, already computed by the part."""
    if cfg.lambda_temporal <= 0 or f"{key}_next" not in batch:
        return {}
    fake_next = nets[generator](batch[f"{key}_next"])
    loss = temporal_loss(fake, fake_next, batch[f"flow_{key}"], batch[f"mask_{key}"])
    return {f"temporal_{key.lower()}": cfg.lambda_temporal * loss}


# ---------------------------------------------------------------------------- CycleGAN


def _cycle(nets: Nets, real: Tensor, there: str, back: str, judge: str, cfg: TrainConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """real -> fake -> reconstruction: (adversarial loss of ``there``'s output, cycle loss, fake, rec)."""
    fake = nets[there](real)
    rec = nets[back](fake)
    adversarial = cfg.lambda_gan * gan_loss(nets[judge](fake), True, cfg.gan_mode, for_discriminator=False)
    return adversarial, cfg.lambda_cycle * cycle_loss(rec, real, cfg.recon_huber), fake, rec


def cyclegan_cycle_a(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    """A -> B -> A: G's adversarial loss against D_Y and the forward cycle ||F(G(a)) - a||."""
    g_ab, cycle_a, fake_b, rec_a = _cycle(nets, batch["A"], "gen_ab", "gen_ba", "disc_b", cfg)
    losses = {"g_ab": g_ab, "cycle_a": cycle_a} | temporal_term(nets, batch, "A", "gen_ab", fake_b, cfg)
    return losses, {"fake_b": fake_b, "rec_a": rec_a}


def cyclegan_cycle_b(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    """B -> A -> B: F's adversarial loss against D_X and the backward cycle ||G(F(b)) - b||."""
    g_ba, cycle_b, fake_a, rec_b = _cycle(nets, batch["B"], "gen_ba", "gen_ab", "disc_a", cfg)
    losses = {"g_ba": g_ba, "cycle_b": cycle_b} | temporal_term(nets, batch, "B", "gen_ba", fake_a, cfg)
    return losses, {"fake_a": fake_a, "rec_b": rec_b}


def cyclegan_identity(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    """Identity (paper §5.2): G(b) ≈ b and F(a) ≈ a keep colours."""
    real_a, real_b = batch["A"], batch["B"]
    weight = cfg.lambda_cycle * cfg.lambda_identity
    losses = {
        "idt_a": weight * identity_loss(nets["gen_ab"](real_b), real_b, cfg.recon_huber),
        "idt_b": weight * identity_loss(nets["gen_ba"](real_a), real_a, cfg.recon_huber),
    }
    return losses, {}


def cyclegan_generator_parts(cfg: RunConfig) -> tuple[GeneratorPart, ...]:
    parts: tuple[GeneratorPart, ...] = (cyclegan_cycle_a, cyclegan_cycle_b)
    # identity is only defined when both domains have the same channels (G takes B's images)
    if cfg.train.lambda_identity > 0 and cfg.net.in_channels == cfg.net.out_channels:
        parts += (cyclegan_identity,)
    return parts


def cyclegan_discriminator_step(nets: Nets, batch: dict[str, Any], outputs: dict[str, Tensor], ctx: DiscContext) -> Losses:
    fake_b = ctx.pools["b"].query(outputs["fake_b"].detach())
    fake_a = ctx.pools["a"].query(outputs["fake_a"].detach())
    return {
        "d_b": discriminator_loss(nets["disc_b"], batch["B"], fake_b, ctx),
        "d_a": discriminator_loss(nets["disc_a"], batch["A"], fake_a, ctx),
    }


# ---------------------------------------------------------------------------- pix2pix


def pix2pix_generator(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    real_a, real_b = batch["A"], batch["B"]
    fake_b = nets["gen_ab"](real_a)
    # conditional GAN: D judges the (input, output) pair
    pred_fake = nets["disc_b"](torch.cat([real_a, fake_b], dim=1))
    losses = {
        "g_ab": cfg.lambda_gan * gan_loss(pred_fake, True, cfg.gan_mode, for_discriminator=False),
        "l1": cfg.lambda_l1 * l1_loss(fake_b, real_b),
    }
    if cfg.lambda_ssim > 0:
        losses["ssim"] = cfg.lambda_ssim * ssim_loss(fake_b, real_b)
    losses |= temporal_term(nets, batch, "A", "gen_ab", fake_b, cfg)
    return losses, {"fake_b": fake_b}


def pix2pix_generator_parts(cfg: RunConfig) -> tuple[GeneratorPart, ...]:
    return (pix2pix_generator,)


def pix2pix_discriminator_step(nets: Nets, batch: dict[str, Any], outputs: dict[str, Tensor], ctx: DiscContext) -> Losses:
    real_a = batch["A"]
    fake_pair = torch.cat([real_a, outputs["fake_b"].detach()], dim=1)
    if "b" in ctx.pools:
        fake_pair = ctx.pools["b"].query(fake_pair)
    real_pair = torch.cat([real_a, batch["B"]], dim=1)
    return {"d_b": discriminator_loss(nets["disc_b"], real_pair, fake_pair, ctx)}


# ---------------------------------------------------------------------------- CUT and FastCUT


def nce_layers(cfg: TrainConfig) -> list[int]:
    """``train.nce_layers`` (``"0,4,8,12,16"``) as ascending layer indices (UserError when malformed)."""
    try:
        layers = sorted({int(part) for part in cfg.nce_layers.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"config train.nce_layers {cfg.nce_layers!r}: expected layer indices such as 0,4,8,12,16") from None
    if not layers or layers[0] < 0:
        raise UserError(f"config train.nce_layers {cfg.nce_layers!r}: expected non-negative layer indices such as 0,4,8,12,16")
    return layers


def _nce(nets: Nets, source: Tensor, output: Tensor, cfg: TrainConfig, flipped: bool) -> Tensor:
    """PatchNCE between ``source`` and the generator's ``output`` for it, averaged over layers
    (CUT's ``calculate_NCE_loss``): the same random locations in both, features through the
    MLP heads; with ``flipped`` the output came from a flipped input, so its features are
    flipped back before they are compared."""
    layers, gen, heads = nce_layers(cfg), nets["gen_ab"], nets["nce_mlp"]
    queries = gen.encode(output, layers)
    if flipped:
        queries = [q.flip(3) for q in queries]
    # PatchNCE takes no gradient through the keys (the paper's code detaches them): computing
    # them without autograd is the same loss, without the source pass's activations in memory
    with torch.no_grad():
        keys = gen.encode(source, layers)
        locations = [torch.randperm(k.shape[2] * k.shape[3], device=k.device)[: cfg.nce_patches] for k in keys]
        key_embeddings = heads(keys, locations)
    pairs = zip(heads(queries, locations), key_embeddings, strict=True)
    return torch.stack([patch_nce_loss(q, k, images=source.shape[0], temperature=cfg.nce_temperature).mean() for q, k in pairs]).mean()


def cut_generator(nets: Nets, batch: dict[str, Any], cfg: TrainConfig) -> tuple[Losses, dict[str, Tensor]]:
    """CUT's generator objective: LSGAN against D_Y, PatchNCE between A and G(A) and (CUT, not
    FastCUT) between B and G(B); with flip equivariance the inputs are flipped at random."""
    real_a, real_b = batch["A"], batch["B"]
    real = torch.cat([real_a, real_b]) if cfg.nce_identity else real_a
    flipped = cfg.flip_equivariance and bool(torch.rand(()) < 0.5)  # from the step's seeded generator
    out = nets["gen_ab"](real.flip(3) if flipped else real)
    fake_b = out[: real_a.shape[0]].flip(3) if flipped else out[: real_a.shape[0]]
    losses = {"g_ab": cfg.lambda_gan * gan_loss(nets["disc_b"](fake_b), True, cfg.gan_mode, for_discriminator=False)}
    nce = _nce(nets, real_a, out[: real_a.shape[0]], cfg, flipped)
    outputs = {"fake_b": fake_b}
    if cfg.nce_identity:
        idt_b = out[real_a.shape[0] :]
        nce = 0.5 * (nce + _nce(nets, real_b, idt_b, cfg, flipped))
        outputs["idt_b"] = idt_b.flip(3) if flipped else idt_b
    losses["nce"] = cfg.lambda_nce * nce
    return losses | temporal_term(nets, batch, "A", "gen_ab", fake_b, cfg), outputs


def cut_generator_parts(cfg: RunConfig) -> tuple[GeneratorPart, ...]:
    return (cut_generator,)


def cut_discriminator_step(nets: Nets, batch: dict[str, Any], outputs: dict[str, Tensor], ctx: DiscContext) -> Losses:
    fake_b = outputs["fake_b"].detach()
    if "b" in ctx.pools:
        fake_b = ctx.pools["b"].query(fake_b)
    return {"d_b": discriminator_loss(nets["disc_b"], batch["B"], fake_b, ctx)}


def patch_mlp(cfg: RunConfig, nets: Nets) -> nn.Module:
    """CUT's MLP heads, sized from the A→B generator's feature layers."""
    from translate.nets.heads import PatchMLP

    gen = nets["gen_ab"]
    if not hasattr(gen, "encode"):
        raise UserError(f"{cfg.model} compares generator features layer by layer, which needs a ResNet generator; set net.generator=resnet_9blocks")
    layers = nce_layers(cfg.train)
    try:
        channels = gen.feature_channels(layers)
    except KeyError:
        raise UserError(
            f"config train.nce_layers {cfg.train.nce_layers!r}: the generator has {len(gen.model)} layers (indices 0-{len(gen.model) - 1})"
        ) from None
    return PatchMLP(channels, cfg.net.nce_mlp_channels)


# ---------------------------------------------------------------------------- table

Measure = Literal["paired", "cycle", "kid"]
Channels = Callable[[NetConfig], int]


def channels_a(net: NetConfig) -> int:
    return net.in_channels


def channels_b(net: NetConfig) -> int:
    return net.out_channels


def channels_a_and_b(net: NetConfig) -> int:
    """A conditional discriminator judges the (A, B) pair, concatenated along channels."""
    return net.in_channels + net.out_channels


@dataclass(frozen=True)
class Generator:
    """A generator's channels, as functions of the architecture (``NetConfig``)."""

    in_channels: Channels
    out_channels: Channels


A_TO_B = Generator(channels_a, channels_b)
B_TO_A = Generator(channels_b, channels_a)


@dataclass(frozen=True)
class Validation:
    """What validation (``validation.py``) measures on the held-out images.

    ``measures``: ``"paired"``: PSNR, SSIM and L1 of ``gen_ab(A)`` against its target B;
    ``"cycle"``: the cycle-reconstruction L1 of A→B→A and B→A→B (needs ``reverse``);
    ``"kid"``: KID of ``gen_ab(A)`` against the real B images, when the FID Inception weights
    are present locally. ``best_metric``: what ``train.best_metric: auto`` picks (``kid`` without
    the Inception weights: no best checkpoint is kept, inference takes the latest). ``row``: the
    validation grid's row for each item, by tensor name (``A``, ``B``, ``fake_b``, ``rec_a``).
    """

    measures: tuple[Measure, ...]
    best_metric: str
    row: tuple[str, ...]
    reverse: str | None = None  # the B→A generator, where the model has one

    def __post_init__(self) -> None:
        if "cycle" in self.measures and self.reverse is None:
            raise ValueError("validation measures 'cycle' but names no reverse generator")


@dataclass(frozen=True)
class Objective:
    """One model, declared fully: the loop, the builder, validation and the data read it here.

    Adding a model is one entry in :data:`OBJECTIVES` and its plain functions.
    """

    data: DataKind  # the dataset it trains on (``translate.data.build_dataset``)
    generators: dict[str, Generator]  # by name, in building order; ``gen_ab`` is the A→B one
    discriminators: dict[str, Channels]  # by name: the channels each judges
    pools: tuple[str, ...]  # history pools of fakes, by key (``DiscContext.pools``)
    generator_parts: Callable[[RunConfig], tuple[GeneratorPart, ...]]  # the parts this config trains, in order
    discriminator_step: Callable[..., Losses]
    sample_rows: tuple[tuple[str, ...], ...]  # rows of the sample grid, by tensor name
    validation: Validation
    # networks trained with the generators but not used to translate (CUT's MLP heads): built
    # from the config and the generators, optimised and saved with them
    heads: dict[str, Callable[[RunConfig, Nets], nn.Module]] = field(default_factory=dict)


OBJECTIVES: dict[str, Objective] = {
    "cyclegan": Objective(
        data="unpaired",
        generators={"gen_ab": A_TO_B, "gen_ba": B_TO_A},
        discriminators={"disc_a": channels_a, "disc_b": channels_b},
        pools=("a", "b"),
        generator_parts=cyclegan_generator_parts,
        discriminator_step=cyclegan_discriminator_step,
        sample_rows=(("A", "fake_b", "rec_a"), ("B", "fake_a", "rec_b")),
        # the cycle error is logged, never chosen by: a generator near the identity minimises it
        validation=Validation(measures=("cycle", "kid"), best_metric="kid", row=("A", "fake_b", "rec_a"), reverse="gen_ba"),
    ),
    "pix2pix": Objective(
        data="paired",
        generators={"gen_ab": A_TO_B},
        discriminators={"disc_b": channels_a_and_b},
        pools=("b",),
        generator_parts=pix2pix_generator_parts,
        discriminator_step=pix2pix_discriminator_step,
        sample_rows=(("A", "fake_b", "B"),),
        validation=Validation(measures=("paired",), best_metric="psnr", row=("A", "fake_b", "B")),
    ),
}
# CUT and FastCUT (Park et al. 2020): one generator, one discriminator, PatchNCE through MLP heads;
# the two differ only in their config (preset): PatchNCE weight, identity term, flip equivariance
_CUT = Objective(
    data="unpaired",
    generators={"gen_ab": A_TO_B},
    discriminators={"disc_b": channels_b},
    pools=("b",),
    generator_parts=cut_generator_parts,
    discriminator_step=cut_discriminator_step,
    sample_rows=(("A", "fake_b", "B"),),
    validation=Validation(measures=("kid",), best_metric="kid", row=("A", "fake_b", "B")),
    heads={"nce_mlp": patch_mlp},
)
OBJECTIVES["cut"] = OBJECTIVES["fastcut"] = _CUT

"""Generators: the ResNet encoder-decoder (CycleGAN) and the U-Net (pix2pix).

Architectures, defaults and ``state_dict`` layout (attribute names and ``nn.Sequential``
indices) follow the reference ``models/networks.py`` of junyanz/pytorch-CycleGAN-and-pix2pix,
so its published checkpoints load with ``load_state_dict`` once stale InstanceNorm running-stat
keys from pre-0.4 PyTorch are dropped.

In the papers' notation a CycleGAN generator is G: A→B or F: B→A (``gen_ab``, ``gen_ba``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from translate.config import DownsampleKind, NetConfig, NormKind, UpsampleKind
from translate.errors import UserError
from translate.nets.layers import BlurDownsample, BlurUpsample, check_image_batch, check_residual, conv_bias, norm_factory, residual_output
from translate.nets.registry import register_generator

PaddingKind = Literal["reflect", "replicate", "zero"]


def upsampling(in_channels: int, out_channels: int, kind: UpsampleKind, *, kernel_size: int, bias: bool = True) -> nn.Module:
    """A layer that doubles H and W: ``(B, in, H, W)`` → ``(B, out, 2H, 2W)``.

    ``transposed``: the papers' stride-2 transposed convolution (``kernel_size`` 3 with
    ``output_padding`` 1, as the ResNet generator, or 4, as the U-Net), whose uneven kernel
    overlap paints a checkerboard that training must learn to cancel. ``resize``: nearest
    neighbour resize then a 3x3 convolution (Odena et al. 2016, "Deconvolution and
    checkerboard artifacts"): every output pixel gets the same number of weights, so no
    checkerboard from the start; not the reference layout, so reference checkpoints need
    ``transposed``. ``blur``: zeros between the pixels and a binomial blur (anti-aliased, as
    CUT's code: :class:`~translate.nets.layers.BlurUpsample`), then a 3x3 convolution.
    """
    if kind == "transposed":
        extra = 1 if kernel_size % 2 else 0  # (k 3, p 1, op 1) and (k 4, p 1, op 0) both double exactly
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=kernel_size, stride=2, padding=1, output_padding=extra, bias=bias)
    if kind in ("resize", "blur"):
        grow = nn.Upsample(scale_factor=2, mode="nearest") if kind == "resize" else BlurUpsample(in_channels)
        return nn.Sequential(grow, nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias))
    raise ValueError(f"upsample must be one of {', '.join(get_args(UpsampleKind))}, got {kind!r}")


def last_conv(layer: nn.Module) -> nn.Module:
    """The convolution of an :func:`upsampling` layer (itself, or the one after the resize)."""
    return layer[-1] if isinstance(layer, nn.Sequential) else layer


def _padding(kind: PaddingKind, size: int) -> tuple[list[nn.Module], int]:
    """Explicit pad layers and the conv's own ``padding`` for a padding mode."""
    if kind == "reflect":
        return [nn.ReflectionPad2d(size)], 0
    if kind == "replicate":
        return [nn.ReplicationPad2d(size)], 0
    if kind == "zero":
        return [], size
    raise ValueError(f"padding must be reflect, replicate or zero, got {kind!r}")


class ResnetBlock(nn.Module):
    """Residual block ``x + conv_block(x)``: two 3x3 convs with norm, ReLU between them.

    Shape: ``(B, C, H, W)`` → ``(B, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        *,
        norm: NormKind,
        dropout: bool,
        bias: bool,
        padding: PaddingKind = "reflect",
    ) -> None:
        super().__init__()
        make_norm = norm_factory(norm)
        pad_layers, conv_pad = _padding(padding, 1)
        layers: list[nn.Module] = [
            *pad_layers,
            nn.Conv2d(channels, channels, kernel_size=3, padding=conv_pad, bias=bias),
            make_norm(channels),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        pad_layers, conv_pad = _padding(padding, 1)
        layers += [
            *pad_layers,
            nn.Conv2d(channels, channels, kernel_size=3, padding=conv_pad, bias=bias),
            make_norm(channels),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. (2016) encoder-decoder with residual blocks, the CycleGAN generator.

    7x7 conv, ``n_downsampling`` stride-2 3x3 convs doubling the channels, ``n_blocks`` residual
    blocks, as many stride-2 transposed convs halving them, 7x7 conv, tanh. Reflection padding
    at the borders avoids the edge artefacts zero padding leaves in translated images.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        base_channels: channels after the first conv (``ngf``); the bottleneck has
            ``base_channels * 2**n_downsampling``.
        n_blocks: residual blocks at the bottleneck (9 for 256 px, 6 for 128 px in the paper).
        n_downsampling: stride-2 stages; H and W must be multiples of ``2**n_downsampling``.
        norm: norm layer kind.
        dropout: dropout(0.5) inside each residual block.
        padding: border handling inside the residual blocks.
        upsample: ``transposed`` (the reference), ``resize`` or ``blur`` (:func:`upsampling`).
        downsample: ``strided`` (the reference) or ``blur``: a stride-1 convolution, then
            :class:`~translate.nets.layers.BlurDownsample` (CUT's anti-aliased layout, whose
            layer indices ``train.nce_layers`` 0,4,8,12,16 refer to in the paper's code).
        residual: output ``tanh(atanh(x) + net(x))`` instead of ``tanh(net(x))``
            (:func:`~translate.nets.layers.residual_output`); with the output layer zeroed
            (``build_generator`` does) the untrained generator is the identity. Needs
            ``in_channels == out_channels``. CycleGAN's L1 cycle and identity losses keep it
            there; ``train.recon_huber`` lets it learn (:func:`~translate.losses.cycle_loss`).

    Shape: ``(B, in_channels, H, W)`` in [-1, 1] → ``(B, out_channels, H, W)`` in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_channels: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        norm: NormKind = "instance",
        dropout: bool = False,
        padding: PaddingKind = "reflect",
        upsample: UpsampleKind = "transposed",
        downsample: DownsampleKind = "strided",
        residual: bool = False,
    ) -> None:
        super().__init__()
        check_residual("ResnetGenerator", residual, in_channels, out_channels)
        if downsample not in get_args(DownsampleKind):
            raise ValueError(f"ResnetGenerator: downsample must be one of {', '.join(get_args(DownsampleKind))}, got {downsample!r}")
        for name, value, least in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("base_channels", base_channels, 1),
            ("n_blocks", n_blocks, 0),
            ("n_downsampling", n_downsampling, 0),
        ):
            if value < least:
                raise ValueError(f"ResnetGenerator: {name} must be >= {least}, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.size_multiple = 2**n_downsampling
        # reflection padding in the residual blocks needs at least 2 pixels after downsampling
        self.min_size = 2 * self.size_multiple
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, base_channels, kernel_size=7, bias=bias),
            make_norm(base_channels),
            nn.ReLU(True),
        ]
        channels = base_channels
        for _ in range(n_downsampling):
            if downsample == "strided":
                layers += [nn.Conv2d(channels, channels * 2, kernel_size=3, stride=2, padding=1, bias=bias), make_norm(channels * 2), nn.ReLU(True)]
            else:  # anti-aliased, as CUT's code: full-resolution convolution, then blur and subsample
                conv = nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=bias)
                layers += [conv, make_norm(channels * 2), nn.ReLU(True), BlurDownsample(channels * 2)]
            channels *= 2
        layers += [ResnetBlock(channels, norm=norm, dropout=dropout, bias=bias, padding=padding) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                upsampling(channels, channels // 2, upsample, kernel_size=3, bias=bias),
                make_norm(channels // 2),
                nn.ReLU(True),
            ]
            channels //= 2
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, out_channels, kernel_size=7),
            nn.Identity() if residual else nn.Tanh(),  # no parameters: the state_dict layout is the same
        ]
        self.model = nn.Sequential(*layers)

    def output_layer(self) -> nn.Module:
        """The last convolution, whose output is the image (before tanh)."""
        return self.model[-2]

    def encode(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """The outputs of layers ``layers`` (indices into ``self.model``, ascending) for input
        ``x``, running only as far as the last of them: the features CUT's PatchNCE compares.

        Shape: ``x`` ``(B, in_channels, H, W)`` → one ``(B, C_l, H_l, W_l)`` per layer.
        """
        check_image_batch(x, channels=self.in_channels, where="ResnetGenerator.encode", multiple=self.size_multiple, min_size=self.min_size)
        if list(layers) != sorted(set(layers)) or not layers or layers[0] < 0 or layers[-1] >= len(self.model):
            raise ValueError(f"ResnetGenerator.encode: layers must be ascending indices below {len(self.model)}, got {list(layers)}")
        found = []
        for index, layer in enumerate(self.model[: layers[-1] + 1]):
            x = layer(x)
            if index in layers:
                found.append(x)
        return found

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """Channels of :meth:`encode`'s outputs for ``layers``, read from the architecture."""
        channels, found = self.in_channels, {}
        for index, layer in enumerate(self.model):
            conv = last_conv(layer) if isinstance(layer, nn.Sequential) else layer
            channels = getattr(conv, "out_channels", channels)
            found[index] = channels
        return [found[i] for i in layers]

    def forward(self, x: Tensor) -> Tensor:
        # The bottleneck must keep >= 2 pixels: reflection padding needs pad < size.
        check_image_batch(
            x,
            channels=self.in_channels,
            where="ResnetGenerator",
            multiple=self.size_multiple,
            min_size=self.min_size,
        )
        return residual_output(x, self.model(x)) if self.residual else self.model(x)


UnetRole = Literal["outermost", "middle", "innermost"]


class UnetSkipBlock(nn.Module):
    """One U-Net level: ``x -> [down -> submodule -> up]``, concatenated with ``x``.

    Down: LeakyReLU(0.2), 4x4 stride-2 conv, norm. Up: ReLU, 4x4 stride-2 transposed conv,
    norm. The outermost level takes the image, has no norm and ends in tanh instead of the
    skip concatenation; the innermost has no submodule and no norm on its down path.

    Shape: ``(B, in_channels, H, W)`` → ``(B, in_channels + outer_channels, H, W)`` (outermost:
    ``(B, outer_channels, H, W)``).
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        *,
        role: UnetRole,
        norm: NormKind,
        in_channels: int | None = None,
        submodule: nn.Module | None = None,
        dropout: bool = False,
        final_tanh: bool = True,
        upsample: UpsampleKind = "transposed",
    ) -> None:
        super().__init__()
        if (submodule is None) != (role == "innermost"):
            need = "takes no" if role == "innermost" else "needs a"
            raise ValueError(f"UnetSkipBlock: a {role} block {need} submodule")
        self.outermost = role == "outermost"
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)
        in_channels = outer_channels if in_channels is None else in_channels
        down_conv = nn.Conv2d(in_channels, inner_channels, kernel_size=4, stride=2, padding=1, bias=bias)
        # Below the innermost level the up path gets its own output concatenated with the skip.
        up_in = inner_channels if role == "innermost" else inner_channels * 2

        layers: list[nn.Module]
        if role == "outermost":
            up_conv = upsampling(up_in, outer_channels, upsample, kernel_size=4)
            layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh() if final_tanh else nn.Identity()]
        elif role == "innermost":
            up_conv = upsampling(up_in, outer_channels, upsample, kernel_size=4, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, make_norm(outer_channels)]
        else:
            up_conv = upsampling(up_in, outer_channels, upsample, kernel_size=4, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                down_conv,
                make_norm(inner_channels),
                submodule,
                nn.ReLU(True),
                up_conv,
                make_norm(outer_channels),
            ]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """Ronneberger et al. (2015) U-Net as used by pix2pix (Isola et al. 2017).

    ``num_downs`` stride-2 levels with skip connections; channels go ``base``, 2x, 4x, then 8x
    for every deeper level. At ``2**num_downs`` px input the bottleneck is 1x1. With
    ``dropout``, the ``num_downs - 5`` 8x-channel levels between the innermost and the 4x level
    get dropout(0.5) after their up path: pix2pix's only noise source.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        num_downs: levels (>= 5); 7 for 128 px, 8 for 256 px. H and W must be multiples of
            ``2**num_downs``.
        base_channels: channels of the outermost level (``ngf``).
        norm: norm layer kind (pix2pix uses ``batch``).
        dropout: dropout in the deep decoder levels.
        upsample: ``transposed`` (the reference) or ``resize`` (:func:`upsampling`).
        residual: output ``tanh(atanh(x) + net(x))``, as :class:`ResnetGenerator`'s.

    Shape: ``(B, in_channels, H, W)`` in [-1, 1] → ``(B, out_channels, H, W)`` in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_downs: int = 8,
        base_channels: int = 64,
        norm: NormKind = "instance",
        dropout: bool = False,
        upsample: UpsampleKind = "transposed",
        residual: bool = False,
    ) -> None:
        super().__init__()
        check_residual("UnetGenerator", residual, in_channels, out_channels)
        for name, value, least in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("base_channels", base_channels, 1),
            ("num_downs", num_downs, 5),
        ):
            if value < least:
                raise ValueError(f"UnetGenerator: {name} must be >= {least}, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.residual = residual
        self.size_multiple = 2**num_downs
        self.min_size = self.size_multiple
        widest = base_channels * 8

        up = {"norm": norm, "upsample": upsample}
        block = UnetSkipBlock(widest, widest, role="innermost", **up)
        for _ in range(num_downs - 5):
            block = UnetSkipBlock(widest, widest, role="middle", submodule=block, dropout=dropout, **up)
        for outer in (base_channels * 4, base_channels * 2, base_channels):
            block = UnetSkipBlock(outer, outer * 2, role="middle", submodule=block, **up)
        self.model = UnetSkipBlock(
            out_channels, base_channels, role="outermost", in_channels=in_channels, submodule=block, final_tanh=not residual, **up
        )

    def output_layer(self) -> nn.Module:
        """The outermost up-path convolution, whose output is the image (before tanh)."""
        return last_conv(self.model.model[3])

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, channels=self.in_channels, where="UnetGenerator", multiple=self.size_multiple)
        return residual_output(x, self.model(x)) if self.residual else self.model(x)


# ----------------------------------------------------------------------------------------
# Builders: fill the class arguments from the config; ``build_generator`` applies the init.


def resnet_generator(cfg: NetConfig, in_channels: int, out_channels: int, *, n_blocks: int) -> ResnetGenerator:
    """A :class:`ResnetGenerator` with ``n_blocks`` residual blocks, the rest from ``cfg``."""
    return ResnetGenerator(
        in_channels,
        out_channels,
        base_channels=cfg.base_channels_g,
        n_blocks=n_blocks,
        norm=cfg.norm,
        dropout=cfg.dropout,
        upsample=cfg.upsample,
        downsample=cfg.downsample,
        residual=cfg.residual,
    )


def unet_generator(cfg: NetConfig, in_channels: int, out_channels: int, *, num_downs: int) -> UnetGenerator:
    """A :class:`UnetGenerator` with ``num_downs`` levels, the rest from ``cfg``."""
    if cfg.downsample != "strided":
        raise UserError(
            f"config net.downsample {cfg.downsample!r}: the U-Net downsamples with strided convolutions only; use a resnet generator or net.downsample=strided"
        )
    return UnetGenerator(
        in_channels,
        out_channels,
        num_downs=num_downs,
        base_channels=cfg.base_channels_g,
        norm=cfg.norm,
        dropout=cfg.dropout,
        upsample=cfg.upsample,
        residual=cfg.residual,
    )


@register_generator("resnet_6blocks")
def resnet_6blocks(cfg: NetConfig, in_channels: int, out_channels: int) -> ResnetGenerator:
    """CycleGAN generator for 128 px images."""
    return resnet_generator(cfg, in_channels, out_channels, n_blocks=6)


@register_generator("resnet_9blocks")
def resnet_9blocks(cfg: NetConfig, in_channels: int, out_channels: int) -> ResnetGenerator:
    """CycleGAN generator for 256 px images (11,378,179 parameters at ngf=64, instance norm)."""
    return resnet_generator(cfg, in_channels, out_channels, n_blocks=9)


@register_generator("unet_128")
def unet_128(cfg: NetConfig, in_channels: int, out_channels: int) -> UnetGenerator:
    """pix2pix U-Net for 128 px images (7 levels)."""
    return unet_generator(cfg, in_channels, out_channels, num_downs=7)


@register_generator("unet_256")
def unet_256(cfg: NetConfig, in_channels: int, out_channels: int) -> UnetGenerator:
    """pix2pix U-Net for 256 px images (8 levels)."""
    return unet_generator(cfg, in_channels, out_channels, num_downs=8)

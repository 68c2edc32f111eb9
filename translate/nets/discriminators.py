"""Discriminators: the PatchGAN (Isola et al. 2017) and the 1x1 PixelGAN.

They return raw logits (no sigmoid): ``translate.losses.gan_loss`` applies the loss suited to
each GAN mode. Architectures and ``state_dict`` layout follow the reference ``models/networks.py``
(junyanz/pytorch-CycleGAN-and-pix2pix). Paper names: D_Y judges domain B (``disc_b``), D_X
domain A (``disc_a``).
"""

from __future__ import annotations

from torch import Tensor, nn

from translate.config import NetConfig, NormKind
from translate.nets.layers import check_image_batch, conv_bias, norm_factory
from translate.nets.registry import register_discriminator

_KERNEL = 4
_PAD = 1


class PatchDiscriminator(nn.Module):
    """PatchGAN: classifies each overlapping patch of the input as real or fake.

    4x4 conv stride 2 + LeakyReLU(0.2), then ``n_layers - 1`` more stride-2 4x4 convs with norm
    doubling the channels (capped at 8x), one stride-1 conv with norm, and a stride-1 conv to one
    logit per patch. ``n_layers=3`` is the 70x70 PatchGAN of CycleGAN and pix2pix.

    Args:
        in_channels: channels of the judged images (pix2pix: input and output concatenated).
        base_channels: channels of the first conv (``ndf``).
        n_layers: stride-2 convs; the receptive field is ``1 + 3 * (3 * 2**n_layers - 1)``
            pixels (70 for 3, 34 for 2, 142 for 4).
        norm: norm layer kind (none on the first conv, as the reference).

    Shape: ``(B, in_channels, H, W)`` in [-1, 1] → logits ``(B, 1, H // 2**n_layers - 2,
    W // 2**n_layers - 2)``; H and W must be at least :attr:`min_size` = ``3 * 2**n_layers``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        base_channels: int = 64,
        n_layers: int = 3,
        norm: NormKind = "instance",
    ) -> None:
        super().__init__()
        sizes = (("in_channels", in_channels), ("base_channels", base_channels), ("n_layers", n_layers))
        for name, value in sizes:
            if value < 1:
                raise ValueError(f"PatchDiscriminator: {name} must be >= 1, got {value!r}")
        self.in_channels = in_channels
        self.min_size = 3 * 2**n_layers
        # n_layers stride-2 convs then two stride-1 ones: conv i sees steps of 2**min(i, n_layers).
        self.receptive_field = 1 + sum((_KERNEL - 1) * 2 ** min(i, n_layers) for i in range(n_layers + 2))
        make_norm = norm_factory(norm)
        bias = conv_bias(norm)

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, base_channels, kernel_size=_KERNEL, stride=2, padding=_PAD),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev_mult, mult = mult, min(2**n, 8)
            # The last widening conv keeps the resolution (stride 1); the others halve it.
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(
                    base_channels * prev_mult,
                    base_channels * mult,
                    kernel_size=_KERNEL,
                    stride=stride,
                    padding=_PAD,
                    bias=bias,
                ),
                make_norm(base_channels * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(base_channels * mult, 1, kernel_size=_KERNEL, stride=1, padding=_PAD))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, channels=self.in_channels, where="PatchDiscriminator", min_size=self.min_size)
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """PixelGAN: a 1x1-conv PatchGAN judging each pixel on its own (colour, not structure).

    Args:
        in_channels: channels of the judged images.
        base_channels: channels of the first conv (``ndf``).
        norm: norm layer kind. As the reference, the last conv has a bias only when the norm
            layer is not batch norm.

    Shape: ``(B, in_channels, H, W)`` in [-1, 1] → logits ``(B, 1, H, W)``.
    """

    def __init__(self, in_channels: int, *, base_channels: int = 64, norm: NormKind = "instance") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels)):
            if value < 1:
                raise ValueError(f"PixelDiscriminator: {name} must be >= 1, got {value!r}")
        self.in_channels = in_channels
        self.receptive_field = 1
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, kernel_size=1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(base_channels, base_channels * 2, kernel_size=1, bias=bias),
            norm_factory(norm)(base_channels * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(base_channels * 2, 1, kernel_size=1, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        # Instance norm needs more than one pixel per image.
        check_image_batch(x, channels=self.in_channels, where="PixelDiscriminator", min_size=2)
        return self.net(x)


# ----------------------------------------------------------------------------------------
# Builders: fill the class arguments from the config; ``build_discriminator`` applies init
# and spectral norm.


def discriminator_norm(cfg: NetConfig) -> NormKind:
    """The discriminators' norm layers: ``cfg.norm_d``, or the generators' ``cfg.norm`` for ``same``."""
    return cfg.norm if cfg.norm_d == "same" else cfg.norm_d


def patch_discriminator(cfg: NetConfig, in_channels: int, *, n_layers: int) -> PatchDiscriminator:
    """A :class:`PatchDiscriminator` with ``n_layers`` stride-2 convs, the rest from ``cfg``."""
    return PatchDiscriminator(in_channels, base_channels=cfg.base_channels_d, n_layers=n_layers, norm=discriminator_norm(cfg))


@register_discriminator("basic")
def basic(cfg: NetConfig, in_channels: int) -> PatchDiscriminator:
    """The 70x70 PatchGAN (2,764,737 parameters at ndf=64, 3 input channels, instance norm)."""
    return patch_discriminator(cfg, in_channels, n_layers=3)


@register_discriminator("n_layers")
def n_layers(cfg: NetConfig, in_channels: int) -> PatchDiscriminator:
    """A PatchGAN of depth ``cfg.n_layers_d``."""
    return patch_discriminator(cfg, in_channels, n_layers=cfg.n_layers_d)


@register_discriminator("pixel")
def pixel(cfg: NetConfig, in_channels: int) -> PixelDiscriminator:
    """The 1x1 PixelGAN."""
    return PixelDiscriminator(in_channels, base_channels=cfg.base_channels_d, norm=discriminator_norm(cfg))

"""Name → builder registry for generators and discriminators (as torchvision's ``register_model``).

A builder is a plain function filling the arguments of a network class from the config:
``fn(cfg, in_channels, out_channels) -> nn.Module`` for generators and
``fn(cfg, in_channels) -> nn.Module`` for discriminators. ``build_*`` then applies the weight
init (and spectral norm for discriminators), so builders stay free of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import torch
from torch import nn

from translate.config import NetConfig
from translate.errors import UserError
from translate.nets.layers import apply_spectral_norm, init_weights

GeneratorBuilder = Callable[[NetConfig, int, int], nn.Module]
DiscriminatorBuilder = Callable[[NetConfig, int], nn.Module]
Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

_GENERATORS: dict[str, GeneratorBuilder] = {}
_DISCRIMINATORS: dict[str, DiscriminatorBuilder] = {}


def _register(table: dict[str, Callable[..., nn.Module]], kind: str, name: str) -> Callable[[Builder], Builder]:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")

    def decorator(fn: Builder) -> Builder:
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered (by {table[name].__qualname__})")
        table[name] = fn
        return fn

    return decorator


def register_generator(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn(cfg, in_channels, out_channels) -> nn.Module`` as ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    return _register(_GENERATORS, "generator", name)


def register_discriminator(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``fn(cfg, in_channels) -> nn.Module`` as ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """
    return _register(_DISCRIMINATORS, "discriminator", name)


def generator_names() -> list[str]:
    """The registered generator names, sorted."""
    return sorted(_GENERATORS)


def discriminator_names() -> list[str]:
    """The registered discriminator names, sorted."""
    return sorted(_DISCRIMINATORS)


def _lookup(table: dict, kind: str, name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise UserError(f"config net.{kind}: unknown {kind} {name!r}; known {kind}s are {', '.join(sorted(table))}")
    return table[name]


def _check_positive(cfg: NetConfig, *keys: str) -> None:
    for key in keys:
        value = getattr(cfg, key)
        if not value > 0:
            raise UserError(f"config net.{key}: {value!r} must be > 0")


def _check_channels(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def build_generator(cfg: NetConfig, in_channels: int | None = None, out_channels: int | None = None) -> nn.Module:
    """Build and initialise the generator named by ``cfg.generator``.

    Args:
        cfg: the network config (``generator``, ``base_channels_g``, ``norm``, ``dropout``,
            ``init``, ``init_gain``, ``residual``: where ``in_channels == out_channels``, the
            output layer then starts at zero, so the untrained generator returns its input;
            registered generators with ``residual`` provide ``output_layer()``).
        in_channels: channels of its input; default ``cfg.in_channels``. CycleGAN's B→A
            generator passes ``cfg.out_channels`` here.
        out_channels: channels of its output; default ``cfg.out_channels``.

    Returns:
        The network on the CPU, in train mode: ``(B, in_channels, H, W)`` in [-1, 1] →
        ``(B, out_channels, H, W)`` in [-1, 1]; H and W must be multiples of
        :func:`size_multiple`.

    Raises:
        UserError: unknown generator name or non-positive config sizes.
    """
    builder = _lookup(_GENERATORS, "generator", cfg.generator)
    _check_positive(cfg, "in_channels", "out_channels", "base_channels_g", "init_gain")
    in_channels = cfg.in_channels if in_channels is None else in_channels
    out_channels = cfg.out_channels if out_channels is None else out_channels
    _check_channels(in_channels, "in_channels")
    _check_channels(out_channels, "out_channels")
    if not isinstance(cfg.residual, bool):  # "auto" is a training-time choice (translate.train.auto), made before nets are built
        raise ValueError(f"build_generator: residual must be true or false here, got {cfg.residual!r} (train resolves auto from the data)")
    # a residual generator adds its input to its output, so only one with the same channels in
    # and out can be one (as the identity loss: a grey->RGB CycleGAN's generators stay plain)
    residual = cfg.residual and in_channels == out_channels
    net = init_weights(builder(replace(cfg, residual=residual), in_channels, out_channels), cfg.init, cfg.init_gain)
    if residual:  # the untrained generator is the identity: training learns only the change
        layer = net.output_layer()
        nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return net


def build_discriminator(cfg: NetConfig, in_channels: int) -> nn.Module:
    """Build and initialise the discriminator named by ``cfg.discriminator``.

    Args:
        cfg: the network config (``discriminator``, ``base_channels_d``, ``n_layers_d``,
            ``norm``, ``init``, ``init_gain``, ``spectral_norm``).
        in_channels: channels it judges (pix2pix's conditional D takes input and output
            concatenated: ``cfg.in_channels + cfg.out_channels``).

    Returns:
        The network on the CPU: ``(B, in_channels, H, W)`` → logits ``(B, 1, H', W')``. With
        ``cfg.spectral_norm`` every conv weight is spectrally normalised, applied after the
        init; the norm layers stay as ``cfg.norm`` says (set ``norm: none`` for the usual
        SN-GAN discriminator).

    Raises:
        UserError: unknown discriminator name or non-positive config sizes.
    """
    builder = _lookup(_DISCRIMINATORS, "discriminator", cfg.discriminator)
    _check_positive(cfg, "base_channels_d", "init_gain")
    if cfg.discriminator == "n_layers":
        _check_positive(cfg, "n_layers_d")
    _check_channels(in_channels, "in_channels")
    net = init_weights(builder(cfg, in_channels), cfg.init, cfg.init_gain)
    if cfg.spectral_norm:
        apply_spectral_norm(net)
    return net


def size_multiple(cfg: NetConfig) -> int:
    """The number the generator needs the input height and width to be a multiple of.

    Read from the generator's ``size_multiple`` attribute (1 when it has none), computed from its
    architecture: 2**downsamplings, so 4 for ``resnet_*``, 128 for ``unet_128``, 256 for
    ``unet_256``. The network is built on the meta device: no memory, no init, negligible time.
    """
    builder = _lookup(_GENERATORS, "generator", cfg.generator)
    _check_positive(cfg, "in_channels", "out_channels", "base_channels_g")
    with torch.device("meta"):  # the output form (residual or not, "auto" not yet chosen) changes no size
        net = builder(replace(cfg, residual=False), cfg.in_channels, cfg.out_channels)
    return int(getattr(net, "size_multiple", 1))

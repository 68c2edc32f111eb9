"""Networks: generators and discriminators, built by name from a ``NetConfig``.

Importing this package registers the built-in networks (``resnet_6blocks``, ``resnet_9blocks``,
``unet_128``, ``unet_256``; ``basic``, ``n_layers``, ``pixel``).
"""

from __future__ import annotations

from translate.nets import discriminators, generators  # noqa: F401  (registers the builders)
from translate.nets.heads import PatchMLP
from translate.nets.layers import init_weights
from translate.nets.registry import (
    build_discriminator,
    build_generator,
    discriminator_names,
    generator_names,
    register_discriminator,
    register_generator,
    size_multiple,
)

__all__ = [
    "PatchMLP",
    "build_discriminator",
    "build_generator",
    "discriminator_names",
    "generator_names",
    "init_weights",
    "register_discriminator",
    "register_generator",
    "size_multiple",
]

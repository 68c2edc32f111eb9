"""Optional CPU kernels, applied from outside to a network built from plain ``torch.nn`` layers.

The networks in :mod:`translate.nets` read as the papers describe them. Where PyTorch's eager
CPU convolutions leave speed behind for this toolkit's shapes, :func:`accelerate` swaps a
built network's layers for twins that take a faster route (:mod:`translate.accel.convs`):

- inference on weights packed once for oneDNN, in layers with many weights for their map
  (U-Net's inner levels), fp32 and bf16 (:mod:`translate.accel.packed`);
- training of those same layers as matrix products (:mod:`translate.accel.products`);
- training of instance norm through PyTorch's batch-norm kernel (:mod:`translate.accel.norms`).

Each route gives the ordinary operator's results to float rounding, in the memory layout it
returns (tests/accel compares them), and stays only while ``scripts/bench.py`` measures that it
pays at the thread count users get. ``TRANSLATE_CPU_KERNELS=0`` turns all of it off.

This package imports only torch and the standard library.
"""

from __future__ import annotations

import logging
import os

from torch import nn

from translate.accel import norms, packed
from translate.accel.convs import TWINS, AcceleratedConv2d, AcceleratedConvTranspose2d

__all__ = ["SWITCH", "AcceleratedConv2d", "AcceleratedConvTranspose2d", "accelerate", "enabled"]

log = logging.getLogger(__name__)

SWITCH = "TRANSLATE_CPU_KERNELS"
"""The environment variable that turns acceleration off when set to ``0``."""


def enabled() -> bool:
    """False when the environment sets ``TRANSLATE_CPU_KERNELS=0`` (the off switch), else True."""
    return os.environ.get(SWITCH, "1").strip() != "0"


def accelerate(module: nn.Module) -> nn.Module:
    """Give ``module``'s plain convolutions their CPU routes, in place.

    Every ``nn.Conv2d`` and ``nn.ConvTranspose2d`` (exactly those classes; subclasses and
    parametrized layers are left alone) becomes its accelerated twin: the same object with the
    same parameters, buffers, hooks and ``state_dict``; only its class changes. Every
    ``nn.InstanceNorm2d`` (or subclass) becomes a subclass of its own class whose CPU training
    calls take :mod:`translate.accel.norms`. The twin
    decides at every call whether a route applies (CPU tensors, autograd on or off, dtype, no
    tracing or compiling), so the network may still be moved to another device, traced,
    scripted, compiled or exported afterwards and runs the ordinary operators there.

    Apply it to a network that will run on CPU, after its final memory layout is set (a later
    ``.to(memory_format=...)`` is correct too, but packs the weights again) and before wrapping
    it in DDP or ``torch.compile`` (compiled code runs the ordinary operators anyway).

    Args:
        module: a built network (any ``nn.Module``; may itself be a convolution).

    Returns:
        ``module``, for chaining; unchanged when :func:`enabled` is False. Idempotent.
    """
    if not enabled():
        return module
    packing = packed.available()
    if not packing:
        log.warning("translate.accel: this PyTorch build lacks oneDNN's packed convolution ops; CPU inference runs the ordinary operators")
    bf16 = packing and packed.bf16_available()
    for layer in module.modules():
        twin = TWINS.get(type(layer))
        if twin is not None:
            layer.__class__ = twin
            layer._accel_setup(packing=packing, bf16=bf16)
        elif isinstance(layer, nn.InstanceNorm2d) and not isinstance(layer, norms.AcceleratedInstanceNorm):
            layer.__class__ = norms.twin_of(type(layer))
    return module

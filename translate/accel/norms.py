"""Instance norm for CPU training, computed by PyTorch's batch-norm kernel.

Instance norm of one image is batch norm over its pixels: each channel is normalised by the
mean and variance of its own H x W values. A channels-last image ``(1, C, H, W)`` is, in
memory, a ``(H*W, C)`` matrix, so ``F.batch_norm`` in training mode on that view computes
exactly the instance norm (biased variance, as instance norm uses), forward and backward,
through PyTorch's vectorised batch-norm kernels. PyTorch's own CPU route for a plain instance
norm in these layouts (``F.group_norm`` with one group per channel; ``F.instance_norm`` has a
wrong-gradient bug there, tests/nets/test_layers.py) has a slow channels-last backward: 2-5x
slower in float32 and 5-20x in bf16 on CycleGAN's shapes (scripts/bench.py, kernels rows).

A batch is normalised one image at a time, so an image gets the same result whatever batch
it is in (two processes of batch 1 under torchrun compute what one process of batch 2 does).
Double backward (the gradient penalty) is batch norm's own.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812


def instance_norm_rows(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """Instance norm of channels-last ``x`` (B, C, H, W) through ``F.batch_norm``, one image at
    a time on its ``(H*W, C)`` view.

    Returns ``(B, C, H, W)`` channels-last, in ``x``'s dtype, with ``weight`` and ``bias``
    (``(C,)`` or None) applied per channel; its gradient is channels-last too.
    """
    n, c, h, w = x.shape
    outs = [
        F.batch_norm(image.permute(0, 2, 3, 1).reshape(h * w, c), None, None, weight, bias, training=True, eps=eps).view(1, h, w, c)
        for image in (x.split(1) if n > 1 else (x,))  # split: its backward concatenates, keeping the layout
    ]
    return (outs[0] if n == 1 else torch.cat(outs)).permute(0, 3, 1, 2)


def training_call(layer: nn.modules.instancenorm._InstanceNorm, x: Tensor) -> bool:
    """Whether a call may take :func:`instance_norm_rows`: CPU training (autograd recording) on
    a non-empty channels-last (B, C, H, W) float32/bf16 batch of the layer's channels,
    per-image statistics (no running stats), eager."""
    return (
        isinstance(x, Tensor)
        and torch.is_grad_enabled()
        and x.requires_grad
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.ndim == 4
        and x.numel() > 0
        and x.shape[1] == layer.num_features
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        and not layer.track_running_stats
        and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling())
    )


class AcceleratedInstanceNorm:
    """Mixed in before an instance-norm layer's own class by :func:`twin_of`: CPU training calls
    take :func:`instance_norm_rows`, every other call (inference, other devices, tracing,
    scripting, compiling, export) the layer's own ``forward``."""

    def forward(self, x: Tensor) -> Tensor:
        if training_call(self, x):  # type: ignore[arg-type]
            return instance_norm_rows(x, self.weight, self.bias, self.eps)  # type: ignore[attr-defined]
        return self._plain_class.forward(self, x)  # type: ignore[attr-defined]

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script compiles a shallow copy of the layer's own class (same parameters)
        plain = copy.copy(self)
        plain.__class__ = self._plain_class  # type: ignore[attr-defined]
        return plain  # type: ignore[return-value]


@functools.cache
def twin_of(cls: type) -> type:
    """The accelerated twin of an ``InstanceNorm2d`` class (itself or a subclass): a subclass of
    ``cls``, so ``isinstance`` checks, ``state_dict`` and the class's own input checks still hold."""
    return type(f"Accelerated{cls.__name__}", (AcceleratedInstanceNorm, cls), {"__module__": __name__, "_plain_class": cls})

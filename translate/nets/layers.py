"""Pieces shared by every network: the norm factory, weight init, spectral norm, input checks.

The defaults follow the reference CycleGAN/pix2pix code (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``) so that parameter counts and ``state_dict`` layouts match it.
"""

from __future__ import annotations

import functools
from typing import Callable, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from translate.config import InitKind, NormKind

NormFactory = Callable[[int], nn.Module]
"""Builds a norm layer for a given number of channels."""


class InstanceNorm2d(nn.InstanceNorm2d):
    """Instance norm computed as group norm with one group per channel (the same mathematics).

    Why not ``F.instance_norm``: on CPU (PyTorch 2.14) its backward returns wrong input
    gradients when the incoming gradient is channels-last and the batch has one image; the
    error is of the order of the gradient itself (tests/nets/test_layers.py reproduces it).
    Batch size 1 with channels-last tensors is CycleGAN's default, so the bug would silently
    corrupt training. ``F.group_norm`` is correct for every layout, as fast, and keeps the
    channels-last layout. Being a subclass keeps ``state_dict`` keys, ``isinstance`` checks
    and the reference layout unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, torch.fx.Proxy):  # FX symbolic tracing has no shapes to check
            if x.ndim != 4:
                raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
            if x.shape[1] != self.num_features:
                raise ValueError(f"expected {self.num_features} channels, got {x.shape[1]}")
        # num_features (a constant), not x.shape[1]: the legacy ONNX exporter needs a static group count
        return torch.nn.functional.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


GEMM_MIN_WEIGHTS_PER_PIXEL = 1024
"""Inference on CPU: a transposed convolution with at least this many (C_in x C_out) weight
pairs per input pixel runs as one matrix product and ``F.fold``. oneDNN's deconvolution
spends its time re-laying out the weights when they are large and the input small. Measured
on one core (ratio = oneDNN time / product time): 512->512 at 1x1 4.6, 1024->512 at 2x2 7.0,
at 8x8 2.2, 1024->256 at 16x16 1.0-1.25, 128->64 at 2x2 1.4; but 512->128 at 32x32 0.53,
256->128 at 16x16 0.67, 128->64 at 8x8 0.64."""

GEMM_OUTPUT_LAYER = (4, 64, 256 * 256)
"""... and a layer with at most 4 output channels from at least 64, on inputs of at most 256x256
pixels (oneDNN is slow at 3-channel outputs: 128->3 at 128x128 2.5, at 256x256 1.9, 64->3 1.1-1.6,
but 32->3 0.94 and 128->3 at 512x512 0.87)."""


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that, for inference on CPU, computes small inputs as a product.

    A transposed convolution is a matrix product of every input pixel's channel vector with
    the weights viewed as (C_in, C_out * kH * kW), followed by ``F.fold``, which adds each
    pixel's kH x kW patch into the output at stride steps. Same parameters, ``state_dict``
    and results (to float rounding: 1e-6 measured); training, autocast, other devices,
    tracing and export use the ordinary path.
    """

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if self._use_gemm(x) and output_size is None:
            return self._gemm_forward(x)
        return super().forward(x, output_size)

    def _use_gemm(self, x: Tensor) -> bool:
        if isinstance(x, torch.fx.Proxy) or torch.fx._symbolic_trace.is_fx_tracing():
            return False  # FX symbolic tracing (quantization tools) records the ordinary operator
        if x.device.type != "cpu" or x.ndim != 4 or x.dtype != torch.float32 or torch.is_grad_enabled():
            return False
        if self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros" or self.weight.dtype != torch.float32:
            return False
        if self.kernel_size == (1, 1) or x.numel() == 0:  # nothing to gain; empty outputs: fold refuses them
            return False
        pixels = x.shape[2] * x.shape[3]
        big_weights = self.in_channels * self.out_channels >= GEMM_MIN_WEIGHTS_PER_PIXEL * pixels
        max_out, min_in, max_pixels = GEMM_OUTPUT_LAYER
        if not (big_weights or (self.out_channels <= max_out and self.in_channels >= min_in and pixels <= max_pixels)):
            return False
        # tracing, scripting and torch.export (both ONNX exporters) record the ordinary operator
        return not (torch.is_autocast_enabled("cpu") or torch.jit.is_tracing() or torch.compiler.is_compiling())

    def _gemm_forward(self, x: Tensor) -> Tensor:
        batch, in_channels, height, width = x.shape
        kh, kw = self.kernel_size
        out_h = (height - 1) * self.stride[0] - 2 * self.padding[0] + kh + self.output_padding[0]
        out_w = (width - 1) * self.stride[1] - 2 * self.padding[1] + kw + self.output_padding[1]
        w = self.weight  # (C_in, C_out, kH, kW)
        if w.is_contiguous(memory_format=torch.channels_last):  # memory order (C_in, kH, kW, C_out): a view
            columns = x.permute(0, 2, 3, 1).reshape(-1, in_channels) @ w.permute(0, 2, 3, 1).reshape(in_channels, -1)
            columns = columns.view(batch, height * width, kh, kw, self.out_channels).permute(0, 4, 2, 3, 1)
        else:
            columns = x.permute(0, 2, 3, 1).reshape(-1, in_channels) @ w.reshape(in_channels, -1)
            columns = columns.view(batch, height * width, -1).transpose(1, 2)
        out = torch.nn.functional.fold(
            columns.reshape(batch, self.out_channels * kh * kw, height * width),
            (out_h, out_w), self.kernel_size, stride=self.stride, padding=self.padding,
        )
        if self.bias is not None:
            out += self.bias.view(1, -1, 1, 1)
        if _channels_last(x) or _channels_last(w):  # the layout oneDNN would have returned
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def _channels_last(t: Tensor) -> bool:
    """Strided as channels-last, and not also as contiguous (1x1 maps are both)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def norm_factory(kind: NormKind) -> NormFactory:
    """The norm layer constructor for ``kind``.

    Args:
        kind: ``instance`` (InstanceNorm2d, no affine, no running stats: per-image statistics at
            train and test time, as the reference), ``instance_affine`` (the same with a learned
            per-channel scale and shift), ``batch`` (BatchNorm2d with affine and running
            stats) or ``none`` (identity).

    Returns:
        A callable ``channels -> nn.Module``.
    """
    if kind == "instance":
        return functools.partial(InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "instance_affine":  # per-channel scale and shift, as some published checkpoints
        return functools.partial(InstanceNorm2d, affine=True, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(get_args(NormKind))}, got {kind!r}")


def conv_bias(kind: NormKind) -> bool:
    """Whether a convolution followed by a norm layer of ``kind`` carries a bias.

    ``batch``: no, BatchNorm's own shift replaces it. ``instance``: yes, as the reference (the
    per-image mean subtraction cancels it, but keeping it keeps the parameter counts and
    ``state_dict`` keys of published checkpoints). ``none``: yes; the reference drops it here
    too (an artefact of its ``norm_layer == InstanceNorm2d`` test), which would leave a network
    without norm unable to shift its activations.
    """
    if kind not in get_args(NormKind):
        raise ValueError(f"norm must be one of {', '.join(get_args(NormKind))}, got {kind!r}")
    return kind != "batch"


def _weight_tensor(module: nn.Module) -> Tensor:
    # A spectrally normalised weight is computed from ``original``; initialise that one.
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def init_weights(module: nn.Module, kind: InitKind = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear and batch-norm weights in place, as the reference ``init_weights``.

    Conv, transposed-conv and linear weights: ``normal`` N(0, gain), ``xavier`` (normal, gain),
    ``kaiming`` (normal, fan_in, a=0; gain unused, as the reference) or ``orthogonal`` (gain);
    their biases are zeroed. Affine batch-norm layers: weight N(1, gain), bias 0 (the ``gain``
    doubles as the std there, again as the reference). Instance norm has no parameters.

    Args:
        module: the network; every submodule is visited.
        kind: the init scheme.
        gain: std (``normal``) or gain (``xavier``, ``orthogonal``); must be > 0.

    Returns:
        ``module``, for chaining.
    """
    if kind not in get_args(InitKind):
        raise ValueError(f"init must be one of {', '.join(get_args(InitKind))}, got {kind!r}")
    if not gain > 0:
        raise ValueError(f"init gain must be > 0, got {gain!r}")
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            weight = _weight_tensor(m)
            if kind == "normal":
                nn.init.normal_(weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap the weight of every conv/linear layer of ``module`` in spectral norm, in place.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (Miyato et al. 2018): the weight is
    divided by its largest singular value, estimated by one power iteration per training
    forward. Call it after :func:`init_weights` so the power-iteration vectors start from the
    initialised weights. ``state_dict`` keys become ``…parametrizations.weight.original``.

    Returns:
        ``module``, for chaining.
    """
    # Collect first: registering a parametrisation adds submodules while we iterate.
    targets = [m for m in module.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    for m in targets:
        if not parametrize.is_parametrized(m, "weight"):
            spectral_norm(m)
    return module


def _compiling() -> bool:
    # Checks that branch on H and W would add guards on symbolic shapes under torch.compile /
    # torch.export (and fail an export with free dynamic sizes); they are for eager mistakes.
    return torch.jit.is_scripting() or torch.compiler.is_compiling()


def check_image_batch(
    x: Tensor,
    *,
    channels: int,
    where: str,
    multiple: int = 1,
    min_size: int = 1,
) -> None:
    """Refuse an input that is not a ``(B, channels, H, W)`` batch the network can take.

    Args:
        x: the network input.
        channels: the expected ``C``.
        where: the network's name, for the message.
        multiple: ``H`` and ``W`` must be multiples of this.
        min_size: ``H`` and ``W`` must be at least this.

    Raises:
        ValueError: quoting the bad shape.
    """
    if torch.jit.is_tracing() or isinstance(x, torch.fx.Proxy):
        return  # shapes are traced values there; comparing them only warns (jit) or fails (FX)
    if not isinstance(x, Tensor):
        raise ValueError(f"{where}: expected a tensor of shape (B, {channels}, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{where}: expected input of shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if _compiling():
        return
    height, width = x.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{where}: height and width must be multiples of {multiple}, got shape "
            f"{tuple(x.shape)}; pad or resize the input (see translate.nets.size_multiple)"
        )
    if min(height, width) < min_size:
        raise ValueError(
            f"{where}: height and width must be at least {min_size}, got shape {tuple(x.shape)}"
        )

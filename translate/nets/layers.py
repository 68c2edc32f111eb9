"""Pieces shared by every network: the norm factory, weight init, spectral norm, input checks.

The defaults follow the reference CycleGAN/pix2pix code (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/networks.py``) so that parameter counts and ``state_dict`` layouts match it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812
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
    corrupt training. ``F.group_norm`` is correct for every layout and keeps the channels-last
    layout (its CPU backward is slow there: :mod:`translate.accel.norms` gives CPU training a
    faster route). Being a subclass keeps ``state_dict`` keys, ``isinstance`` checks and the
    reference layout unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, torch.fx.Proxy):  # FX symbolic tracing has no shapes to check
            if x.ndim != 4:
                raise ValueError(f"expected (B, C, H, W), got {tuple(x.shape)}")
            if x.shape[1] != self.num_features:
                raise ValueError(f"expected {self.num_features} channels, got {x.shape[1]}")
        # num_features (a constant), not x.shape[1]: the legacy ONNX exporter needs a static group count
        return torch.nn.functional.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


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
        raise ValueError(f"{where}: height and width must be at least {min_size}, got shape {tuple(x.shape)}")


RESIDUAL_LIMIT = 1.0 - 1e-3
"""Inputs are clamped to +-this before ``atanh`` (which is infinite at +-1): a change of at
most 0.0005 in [0, 1] units, below half a level of an 8-bit image."""


def residual_output(x: Tensor, change: Tensor) -> Tensor:
    """A generator output that is its input plus a learned change, in tanh space.

    ``tanh(atanh(x) + change)``: equals ``x`` (up to :data:`RESIDUAL_LIMIT`) where ``change``
    is 0 and stays in (-1, 1) for any change, smoothly (a clamp would stop gradients at the
    ends of the range). For domains whose images line up with their translations (day→night,
    a colour grade, a season) the untrained generator then already returns the content, and
    training learns only what differs.

    Shape: ``x`` and ``change`` ``(B, C, H, W)``, ``x`` in [-1, 1] → ``(B, C, H, W)`` in (-1, 1).
    """
    return torch.tanh(torch.atanh(x.clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT)) + change)


def check_residual(where: str, residual: bool, in_channels: int, out_channels: int) -> None:
    """A residual generator adds its output to its input: both need the same channels."""
    if residual and in_channels != out_channels:
        raise ValueError(f"{where}: residual needs in_channels == out_channels, got {in_channels} and {out_channels}")


def binomial_filter(size: int) -> Tensor:
    """The normalised 2-d binomial filter of side ``size`` (3: [1, 2, 1] x [1, 2, 1] / 16)."""
    if size < 1:
        raise ValueError(f"filter size must be >= 1, got {size!r}")
    row = torch.tensor([float(math.comb(size - 1, k)) for k in range(size)])
    grid = row[:, None] * row[None, :]
    return grid / grid.sum()


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling (Zhang 2019, "Making convolutional networks
    shift-invariant again"; CUT's ``Downsample``): a 3x3 binomial blur, then every second pixel.

    Shape: ``(B, C, H, W)`` → ``(B, C, ceil(H/2), ceil(W/2))``. The filter is fixed (a
    non-persistent buffer: nothing in the ``state_dict``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt.to(x.dtype), stride=2, groups=self.channels)


class BlurUpsample(nn.Module):
    """Anti-aliased 2x upsampling (CUT's ``Upsample``): zeros between the pixels, then a 4x4
    binomial blur (times 4, to keep the level).

    Shape: ``(B, C, H, W)`` → ``(B, C, 2H, 2W)``; the filter is a non-persistent buffer.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", (binomial_filter(4) * 4)[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt.to(x.dtype), stride=2, padding=2, groups=self.channels)
        return out[:, :, 1:-1, 1:-1]

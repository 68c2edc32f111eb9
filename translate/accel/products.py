"""Training of small-map convolutions as matrix products.

Where a layer's weights are large for its map (U-Net's inner levels: 512 to 1024 channels on
1x1 to 8x8 maps), oneDNN's training calls spend their time re-laying out weights and
gradients rather than computing. Written as matrix products (``F.unfold`` + matmul for a
convolution, matmul + ``F.fold`` for a transposed one), the same layer's forward and the
backward autograd derives from it are a few large GEMMs. Public operators only; autocast
runs the matmul in its dtype as it would the convolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from translate.accel.packed import channels_last, like_ordinary

MIN_WEIGHTS_PER_PIXEL = 4096
"""A training call runs as products when the layer has at least this many (C_in x C_out)
weight pairs per pixel of its output (of its input for transposed layers), batch included;
below it oneDNN's own kernels are as fast or faster (scripts/bench.py, levers)."""


def training_call(layer: nn.Module, x: Tensor) -> bool:
    """Whether a call may run as products: autograd on, a non-empty 4-d CPU batch, one group,
    explicit zero padding, a kernel larger than 1x1, no dilation."""
    if not torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 4 or x.numel() == 0:
        return False
    if layer.weight.device.type != "cpu" or layer.groups != 1 or layer.padding_mode != "zeros":
        return False
    if isinstance(layer.padding, str) or layer.kernel_size == (1, 1) or layer.dilation != (1, 1):
        return False
    return True


def worth_products(layer: nn.Module, pixels: int) -> bool:
    """Whether ``layer`` has enough weight pairs for ``pixels`` (batch x map) to run as products."""
    return layer.in_channels * layer.out_channels >= MIN_WEIGHTS_PER_PIXEL * pixels


def _add_bias(out: Tensor, bias: Tensor | None) -> Tensor:
    # autocast returns the product's dtype; an fp32 bias must not promote a bf16 output
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


def conv_output_size(layer: nn.Conv2d, x: Tensor) -> tuple[int, int]:
    """(H_out, W_out) of ``layer`` (explicit padding) on ``x`` (B, C_in, H, W)."""
    return tuple(  # type: ignore[return-value]
        (x.shape[2 + i] + 2 * layer.padding[i] - layer.dilation[i] * (layer.kernel_size[i] - 1) - 1) // layer.stride[i] + 1 for i in range(2)
    )


def conv2d(layer: nn.Conv2d, x: Tensor) -> Tensor:
    """``layer(x)`` as ``F.unfold`` and one matmul: (B, C_in, H, W) -> (B, C_out, H_out, W_out).

    unfold gives each output pixel's (C_in, kH, kW) patch, the memory order of a contiguous
    weight; for a channels-last weight, whose memory runs (kH, kW, C_in), the patches are
    reordered instead, so the weight is always a view, never copied (its gradient lands in
    the parameter's own layout, which fused Adam needs).
    """
    batch, in_channels = x.shape[:2]
    kh, kw = layer.kernel_size
    out_h, out_w = conv_output_size(layer, x)
    patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
    if channels_last(layer.weight):
        patches = patches.view(batch, in_channels, kh, kw, out_h * out_w).permute(0, 4, 2, 3, 1)
        weight = layer.weight.permute(0, 2, 3, 1).reshape(layer.out_channels, -1)  # (C_out, kH*kW*C_in)
    else:
        patches = patches.transpose(1, 2)
        weight = layer.weight.reshape(layer.out_channels, -1)  # (C_out, C_in*kH*kW)
    out = patches.reshape(batch * out_h * out_w, -1) @ weight.t()
    out = out.view(batch, out_h, out_w, layer.out_channels).permute(0, 3, 1, 2)  # channels-last
    return like_ordinary(_add_bias(out, layer.bias), x, layer.weight)


def conv_transpose2d(layer: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """``layer(x)`` as one matmul and ``F.fold``: (B, C_in, H, W) -> (B, C_out, H_out, W_out).

    Every input pixel's channel vector times the weights viewed as (C_in, C_out x kH x kW);
    fold adds each pixel's kH x kW patch into the output at stride steps.
    """
    batch, in_channels, height, width = x.shape
    kh, kw = layer.kernel_size
    out_h = (height - 1) * layer.stride[0] - 2 * layer.padding[0] + kh + layer.output_padding[0]
    out_w = (width - 1) * layer.stride[1] - 2 * layer.padding[1] + kw + layer.output_padding[1]
    weight = layer.weight  # (C_in, C_out, kH, kW)
    rows = x.permute(0, 2, 3, 1).reshape(-1, in_channels)
    if weight.is_contiguous(memory_format=torch.channels_last):  # memory order (C_in, kH, kW, C_out): a view
        columns = rows @ weight.permute(0, 2, 3, 1).reshape(in_channels, -1)
        columns = columns.view(batch, height * width, kh, kw, layer.out_channels).permute(0, 4, 2, 3, 1)
    else:
        columns = rows @ weight.reshape(in_channels, -1)
        columns = columns.view(batch, height * width, -1).transpose(1, 2)
    out = F.fold(
        columns.reshape(batch, layer.out_channels * kh * kw, height * width),
        (out_h, out_w),
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
    )
    return like_ordinary(_add_bias(out, layer.bias), x, layer.weight)

"""Inference on convolution weights packed once for oneDNN.

Eager PyTorch hands oneDNN the weights in PyTorch's layout at every call, and oneDNN re-lays
them out into its blocked format before it computes. Where a layer has many weights for the
map it computes (the inner levels of a U-Net, with 512 or 1024 channels on 1x1 to 16x16
maps) that reorder is most of the call. Packing the weights once per (weights, dtype, input
shape) and calling oneDNN's convolution on the packed copy removes it: these are the ops
``torch.compile``'s freezing pass emits, called eagerly.

PyTorch has no public eager API for this: ``torch.utils.mkldnn.to_mkldnn`` has no transposed
convolution and converts activations to and from oneDNN tensors at every layer. So this file
uses the private ``torch.ops.mkldnn`` ops, checks they exist before a network is accelerated
(:func:`available`), and falls back to the ordinary operator, with a warning, where a call
fails.

The layout is packed for the input shape: oneDNN's shape-free default layout makes tiny maps
much slower on AVX2 CPUs. On large maps the reorder is a small part of the call, so those
layers keep the ordinary operator and no second copy of their weights
(:data:`MIN_WEIGHTS_PER_PIXEL`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

MIN_WEIGHTS_PER_PIXEL = 256
"""A layer is packed when it has at least this many weights (C_in x C_out x kH x kW) per pixel
of its output (of its input for transposed layers), batch included: below that, packing
saves nothing measurable and costs a copy of the weights (scripts/bench.py, levers)."""

COPIES_PER_LAYER = 2
"""Packed copies a layer keeps, least recently used dropped first: a translation alternates at
most between a tiled image's statistics pass and its tiles, or between two image sizes."""

SHAPES_REMEMBERED = 16
"""Input keys (dtype, shape) a layer remembers having seen once without packing for them."""


def available() -> bool:
    """Whether this PyTorch build has oneDNN and the packing ops this module calls."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        ops = torch.ops.mkldnn
        for name in ("_convolution_pointwise", "_convolution_transpose_pointwise", "_reorder_convolution_transpose_weight"):
            getattr(ops, name)
        return callable(torch._C._nn.mkldnn_reorder_conv2d_weight)
    except (AttributeError, RuntimeError):
        return False


def bf16_available() -> bool:
    """Whether oneDNN computes bf16 on this CPU (AVX-512 or newer). Elsewhere its packed ops
    refuse bf16, and the ordinary operator's own bf16 fallback must run instead."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def inference_dtype(layer: nn.Module, x: Tensor) -> torch.dtype | None:
    """The dtype a CPU inference call of ``layer`` on ``x`` (B, C, H, W) computes in (fp32 or
    bf16; autocast's when it is on), or None where the ordinary operator must run: autograd on,
    another device, a parametrized weight, padding other than explicit zeros, other dtypes."""
    if torch.is_grad_enabled() or x.device.type != "cpu" or x.ndim != 4 or x.numel() == 0:
        return None
    weight = layer.weight
    if weight.device.type != "cpu" or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return None
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")  # autocast runs convolutions in its dtype
    elif x.dtype == weight.dtype:
        dtype = x.dtype
    else:
        return None  # let the ordinary operator raise its dtype error
    return dtype if dtype in (torch.float32, torch.bfloat16) else None


def worth_packing(layer: nn.Module, pixels: int) -> bool:
    """Whether ``layer`` has enough weights for ``pixels`` (batch x map) to be packed."""
    return layer.weight.numel() >= MIN_WEIGHTS_PER_PIXEL * pixels


def _version(t: Tensor) -> int:
    try:
        return t._version
    except RuntimeError:  # an inference tensor (made under inference_mode): no version counter
        return -1


class PackedWeights:
    """A layer's packed copies, keyed by (dtype, input shape); held on the layer instance.

    A key is packed the second time it is asked for; its first call runs the ordinary
    operator. Packing costs more than one ordinary call (U-Net-256 at 256², fp32: one call
    that packs every layer took twice as long as the ordinary call), so inputs whose shapes
    never repeat (a folder of photos of many sizes) would otherwise pay it at every image; a
    repeated shape (video frames, tiles, a folder of one size) is packed from its second call.

    It remembers the weight and bias it packed (their memory and version counters): an
    in-place change (``load_state_dict``, an optimizer step) bumps a version, a move or
    ``.to()`` gives new memory, and either way the copies are dropped and packed again.
    """

    def __init__(self) -> None:
        self.copies: OrderedDict[tuple, tuple[Tensor, Tensor | None]] = OrderedDict()
        self.seen: OrderedDict[tuple, None] = OrderedDict()  # keys asked for once, not packed
        self.source: tuple = ()

    @staticmethod
    def _identity(t: Tensor | None) -> tuple:
        # the detached tensor keeps the memory alive, so its address cannot be reused meanwhile
        return () if t is None else (t.detach(), t.data_ptr(), t.dtype, _version(t))

    def get(self, layer: nn.Module, x: Tensor, dtype: torch.dtype, transposed: bool) -> tuple[Tensor, Tensor | None] | None:
        """The packed weight and the bias in ``dtype`` for input ``x`` (B, C_in, H, W), or None
        the first time this key is asked for (the caller runs the ordinary operator)."""
        weight, bias = layer.weight, layer.bias
        current = (self._identity(weight), self._identity(bias))
        if not self.source or any(a[1:] != b[1:] for a, b in zip(self.source, current, strict=False)):
            self.copies.clear()  # new weights (loaded, trained, moved): forget the old copies
            self.seen.clear()
            self.source = current
        key = (dtype, tuple(x.shape))
        entry = self.copies.get(key)
        if entry is not None:
            self.copies.move_to_end(key)
            return entry
        if key not in self.seen:
            self.seen[key] = None
            while len(self.seen) > SHAPES_REMEMBERED:
                self.seen.popitem(last=False)
            return None
        del self.seen[key]
        while len(self.copies) >= COPIES_PER_LAYER:
            self.copies.popitem(last=False)
        w = weight.detach().to(dtype)
        args = (list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups, list(x.shape))
        if transposed:
            padding, stride, dilation, groups, shape = args
            packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(w, padding, list(layer.output_padding), stride, dilation, groups, shape)
        else:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), *args)
        entry = self.copies[key] = (packed, None if bias is None else bias.detach().to(dtype))
        return entry


def packed_forward(layer: nn.Module, cache: PackedWeights, x: Tensor, dtype: torch.dtype, transposed: bool) -> Tensor | None:
    """``layer``'s output (B, C_out, H_out, W_out) through oneDNN on packed weights, in the
    memory layout the ordinary operator returns; None where ``cache`` packs nothing for this
    call yet (:class:`PackedWeights`). Raises what the private ops raise."""
    entry = cache.get(layer, x, dtype, transposed)
    if entry is None:
        return None
    packed, bias = entry
    inp = x.to(dtype)
    if transposed:
        out = torch.ops.mkldnn._convolution_transpose_pointwise(
            inp, packed, bias, list(layer.padding), list(layer.output_padding), list(layer.stride), list(layer.dilation), layer.groups, "none", [], ""
        )
    else:
        out = torch.ops.mkldnn._convolution_pointwise(
            inp, packed, bias, list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups, "none", [], ""
        )
    return like_ordinary(out, x, layer.weight)


def channels_last(t: Tensor) -> bool:
    """Strided as channels-last, and not also as contiguous (1x1 maps are both)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def like_ordinary(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``out`` in the layout the ordinary operator returns: channels-last if the input or the
    weight is, else contiguous."""
    if channels_last(x) or channels_last(weight):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()

"""``Conv2d`` and ``ConvTranspose2d``: the ``torch.nn`` layers, with faster inference on CPU.

Same parameters, ``state_dict`` and results. Training (autograd on), other devices, FX
tracing, TorchScript, ``torch.compile`` and both ONNX exporters run the ordinary operators.
Inference on CPU, fp32 or bf16 (autocast included), takes one of two faster routes:

1. **Prepacked oneDNN weights.** Eager PyTorch hands oneDNN the weights in PyTorch's layout
   at every call, and oneDNN re-lays them out into its blocked format before it computes. On
   small maps with many channels that reorder is most of the call: U-Net-256's 512->512
   convolution on a 2x2 map takes 3.8 ms, 0.18 ms with the weights packed once (fp32, one
   core; 1024->512 transposed on 2x2: 10.5 -> 1.9 ms). So such layers (many weights for their
   map, :data:`PACK_MIN_WEIGHTS_PER_PIXEL`) have their weights reordered once per (weights,
   dtype, input shape) and oneDNN's convolution runs on the packed copy: the ops
   ``torch.compile``'s freezing pass emits, called eagerly. The layout is chosen for the input
   shape: oneDNN's shape-free default layout is as fast on AVX-512 but on AVX2 made tiny maps
   10-12x slower than no packing at all. A layer keeps :data:`PACKED_PER_LAYER` copies (the
   last input shapes and dtypes it saw). On larger maps the reorder is a small part of the
   call, so those layers keep the ordinary operator and no second copy of their weights.
2. **Matrix product and fold** for transposed convolutions with at most 4 output channels from
   at least 64 on inputs of at most 256x256 (U-Net's output layer), where oneDNN is slow even
   with packed weights (128->3 on 128x128: 10.9 ms packed, 5.7 ms as a product).

Training on CPU (autograd on) takes a third route where weights are large and maps small (the
U-Net's inner levels): **matrix products** (``F.unfold`` + matmul for convolutions, matmul +
``F.fold`` for transposed ones), whose backward autograd derives. oneDNN spends such calls
re-laying out weights and gradients: forward plus backward of U-Net-256's 1024->512 transposed
convolution on a 2x2 map takes 116 ms, 19 ms as products (fp32, one core; 512->512 convolution
on 2x2: 15.6 vs 3.1 ms).

Training on CPUs without AVX-512 (AVX2) takes a fourth route for layers with at least
:data:`WEIGHT_GRAD_MIN_CHANNELS` channels in and out: oneDNN's own forward and input gradient,
and the **weight gradient as matrix products**, one per kernel offset (the map's pixels at that
offset times the output gradient). oneDNN's backward-weights kernel for AVX2 runs at a third
of its forward speed: ResNet-9's 256->256 3x3 block convolution on a 64x64 map takes 446 ms
for the weight gradient against 144 ms forward; 171 ms as products (fp32, one core). On
AVX-512 oneDNN's backward is fast (0.84x its forward) and the route stays off.

Every route gives the results of the ordinary operator to float rounding (tests compare them)
and the memory layout it would have returned.
"""

from __future__ import annotations

import functools
import logging
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)

PACK_MIN_WEIGHTS_PER_PIXEL = 256
"""Inference packs a layer's weights when it has at least this many weights (C_in x C_out x kH x
kW) per output pixel (input pixel for transposed layers), batch included. Measured on one core,
fp32 (bf16), unpacked time / packed: 512->512 4x4 to 2x2 (65536 per pixel) 21 (60), to 8x8
(4096) 1.8 (3.6), 256->512 to 16x16 (8192) 1.4 (1.6); 64->128 to 64x64 (32) 1.0 (1.1), to
256x256 (2) 1.0 (0.9): nothing to gain there, only memory to spend."""

GEMM_OUTPUT_LAYER = (4, 64, 256 * 256)
"""(most output channels, fewest input channels, most input pixels) of a transposed convolution
computed as a product. Measured on one core, oneDNN (weights packed) time / product time:
128->3 at 128x128 1.9 (bf16 1.5), 64->3 1.1-1.6, but 32->3 0.94 and 128->3 at 512x512 0.87."""

GEMM_MIN_WEIGHTS_PER_PIXEL = 2048
"""Where oneDNN's packing ops are missing (other builds): a transposed convolution with at least
this many (C_in x C_out) weight pairs per input pixel runs as a product too (fp32, one core,
oneDNN unpacked / product: 512->512 at 1x1 6.0, 1024->512 at 4x4 3.5, at 8x8 2.4; but
1024->256 at 16x16, 1024 pairs per pixel, 0.66)."""

TRAINING_MIN_WEIGHTS_PER_PIXEL = 4096
"""Training on CPU: a layer with at least this many (C_in x C_out) weight pairs per pixel (of the
output for convolutions, of the input for transposed ones, batch included) runs as products.
Forward + backward, one core, oneDNN time / product time, fp32 (bf16): transposed 1024->512 at
2x2 (131072 pairs per pixel) 6.2 (2.0), at 8x8 (8192) 2.7 (1.7), 1024->256 at 16x16 (1024) 1.1
(0.9); convolutions 512->512 to 2x2 (65536) 3.0 (3.7), to 4x4 (16384) 1.8 (2.7), to 8x8 (4096)
1.1 (1.3), 256->512 to 16x16 (512) 0.7 (0.7)."""

WEIGHT_GRAD_MIN_CHANNELS = 64
"""Training on AVX2: the fewest input and output channels for which a layer's weight gradient
runs as products. Weight gradient, one core, fp32, oneDNN time / products time: 64->128 3x3
stride 2 to 128x128 3.6, 128->256 to 64x64 4.1, 256->256 3x3 on 64x64 2.6, 256->512 4x4 on
32x32 1.3; but thin layers lose: 3->64 7x7 at 256x256 0.03, 64->3 7x7 0.21, 6->64 4x4 0.22."""

WEIGHT_GRAD_PRODUCTS: bool | None = None
"""Whether training takes the weight-gradient route: None decides by the CPU (on where PyTorch
runs AVX2 kernels, off with AVX-512 and elsewhere); tests set it to run the route anywhere."""

PACKED_PER_LAYER = 2
"""Packed copies a layer keeps, the least recently used dropped first: a translation alternates
at most between a tiled image's statistics pass and its tiles, or between two image sizes."""

_PACKED: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple, tuple[Tensor, Tensor | None]]] = weakref.WeakKeyDictionary()
# held beside the modules, not on them: deepcopy, pickling and state_dict never see the packed copies
_STATE = {"enabled": True, "broken": False}


@contextmanager
def fast_inference(enabled: bool) -> Iterator[None]:
    """Turn both faster routes on or off inside the block (benchmarks and tests compare them)."""
    previous = _STATE["enabled"]
    _STATE["enabled"] = enabled
    try:
        yield
    finally:
        _STATE["enabled"] = previous


def clear_packed() -> None:
    """Drop every packed copy (they are rebuilt at the next call)."""
    _PACKED.clear()


def _channels_last(t: Tensor) -> bool:
    """Strided as channels-last, and not also as contiguous (1x1 maps are both)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _inference_dtype(module: nn.Module, x: Tensor) -> torch.dtype | None:
    """The dtype a CPU inference call computes in (fp32 or bf16, autocast's when it is on), or
    None where the ordinary operator must run."""
    if isinstance(x, torch.fx.Proxy) or not _STATE["enabled"] or torch.is_grad_enabled():
        return None
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return None  # tracing, scripting and torch.export (both ONNX exporters) record the ordinary op
    if x.device.type != "cpu" or x.ndim != 4 or x.numel() == 0 or parametrize.is_parametrized(module):
        return None
    weight = module.weight
    if weight.device.type != "cpu" or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")  # autocast runs convolutions in its dtype
    elif x.dtype == weight.dtype:
        dtype = x.dtype
    else:
        return None  # let the ordinary operator raise its dtype error
    return dtype if dtype in (torch.float32, torch.bfloat16) else None


def _like_ordinary(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """The layout the ordinary operator returns: channels-last if the input or weight is."""
    if _channels_last(x) or _channels_last(weight):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def _packed_weights(module: nn.Module, x: Tensor, dtype: torch.dtype, transposed: bool) -> tuple[Tensor, Tensor | None]:
    weight = module.weight
    try:
        version = weight._version
    except RuntimeError:  # an inference tensor (made under inference_mode): no version counter
        version = -1
    # packed for this input shape: oneDNN picks the weights' layout for it (module docstring)
    key = (weight.data_ptr(), version, dtype, tuple(x.shape))
    cache = _PACKED.setdefault(module, OrderedDict())
    entry = cache.get(key)
    if entry is not None:
        cache.move_to_end(key)
    else:
        for old in [k for k in cache if k[:2] != key[:2]]:  # new weights (loaded, trained): forget the old
            del cache[old]
        while len(cache) >= PACKED_PER_LAYER:
            cache.popitem(last=False)
        w = weight.detach().to(dtype)
        if transposed:
            packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                w, list(module.padding), list(module.output_padding), list(module.stride),
                list(module.dilation), module.groups, list(x.shape))
        else:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                w.to_mkldnn(), list(module.padding), list(module.stride), list(module.dilation), module.groups,
                list(x.shape))
        bias = None if module.bias is None else module.bias.detach().to(dtype)
        entry = cache[key] = (packed, bias)
    return entry


def _worth_packing(module: nn.Module, pixels: int) -> bool:
    return module.weight.numel() >= PACK_MIN_WEIGHTS_PER_PIXEL * pixels


@functools.lru_cache(maxsize=1)
def _onednn_bf16() -> bool:
    """Whether oneDNN computes bf16 on this CPU (AVX-512 or newer). Elsewhere (AVX2) its packed
    ops refuse bf16 at every call, and the ordinary operator's own fallback must run instead."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _packed_forward(module: nn.Module, x: Tensor, dtype: torch.dtype, transposed: bool) -> Tensor | None:
    """The layer's output through oneDNN with packed weights, or None where that is unavailable."""
    if _STATE["broken"] or (dtype == torch.bfloat16 and not _onednn_bf16()):
        return None
    try:
        packed, bias = _packed_weights(module, x, dtype, transposed)
        inp = x.to(dtype)
        if transposed:
            out = torch.ops.mkldnn._convolution_transpose_pointwise(
                inp, packed, bias, list(module.padding), list(module.output_padding), list(module.stride),
                list(module.dilation), module.groups, "none", [], "")
        else:
            out = torch.ops.mkldnn._convolution_pointwise(
                inp, packed, bias, list(module.padding), list(module.stride), list(module.dilation),
                module.groups, "none", [], "")
    except (NotImplementedError, AttributeError, TypeError) as err:
        # a build without these oneDNN ops, or one whose signature changed: the ordinary path
        # is always correct, so fall back for the rest of the process and say so once
        _STATE["broken"] = True
        log.debug("prepacked oneDNN convolutions unavailable (%s); using the ordinary operators", err)
        return None
    except RuntimeError as err:  # this call only (an input oneDNN refuses): the ordinary operator decides
        log.debug("prepacked oneDNN convolution refused %s input (%s); using the ordinary operator", tuple(x.shape), err)
        return None
    return _like_ordinary(out, x, module.weight)


def _cpu_training_call(module: nn.Module, x: Tensor) -> bool:
    """Whether a call may take one of the CPU training routes: autograd on, eager (no tracing,
    scripting or compiling), a non-empty 4-d CPU batch, one group, explicit zero padding."""
    if isinstance(x, torch.fx.Proxy) or not _STATE["enabled"] or not torch.is_grad_enabled():
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if x.device.type != "cpu" or x.ndim != 4 or x.numel() == 0 or module.groups != 1 or module.padding_mode != "zeros":
        return False
    return not isinstance(module.padding, str)


def _training_products(module: nn.Module, x: Tensor, out_pixels: int) -> bool:
    """Whether a CPU training call runs as matrix products (weights large for the map)."""
    if not _cpu_training_call(module, x) or module.kernel_size == (1, 1):
        return False
    pixels = x.shape[0] * out_pixels
    return module.in_channels * module.out_channels >= TRAINING_MIN_WEIGHTS_PER_PIXEL * pixels


def _weight_grad_products(module: nn.Module, x: Tensor) -> bool:
    """Whether a CPU training call computes its weight gradient as products (module docstring)."""
    enabled = WEIGHT_GRAD_PRODUCTS
    if enabled is None:
        enabled = _cpu_capability() == "AVX2"
    if not enabled or not _cpu_training_call(module, x):
        return False
    # a parametrized weight (spectral norm) is recomputed at every access, a power iteration each:
    # look at the tensor it is made from, so that the forward computes it once, as usual
    weight = module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") else module.weight
    if not weight.requires_grad or torch.is_autocast_enabled("cpu") or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False  # fp32 only: AVX2 has no bf16 kernels to speed up anyway
    return min(module.in_channels, module.out_channels) >= WEIGHT_GRAD_MIN_CHANNELS


@functools.lru_cache(maxsize=1)
def _cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return "DEFAULT"


def _weight_grad(inp: Tensor, grad: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """The gradient of a convolution's weights, (C_out, C_in, kH, kW), from its input ``inp``
    (N, C_in, H, W) and output gradient ``grad`` (N, C_out, H_out, W_out): for every kernel
    offset, the input pixels that offset reads, as (pixels, C_in), times the output gradient
    as (pixels, C_out). Channels-last tensors make both views of rows; differentiable (double
    backward, e.g. gradient penalties, runs through it)."""
    kh, kw = kernel
    out_h, out_w = grad.shape[2:]
    if any(padding):
        inp = torch.nn.functional.pad(inp, (padding[1], padding[1], padding[0], padding[0]))
    rows = inp.permute(0, 2, 3, 1)
    columns = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1]).t()  # (C_out, pixels)
    parts = []
    for a in range(kh):
        top = a * dilation[0]
        for b in range(kw):
            left = b * dilation[1]
            window = rows[:, top:top + (out_h - 1) * stride[0] + 1:stride[0], left:left + (out_w - 1) * stride[1] + 1:stride[1]]
            parts.append(columns @ window.reshape(-1, inp.shape[1]))
    return torch.stack(parts).view(kh, kw, grad.shape[1], inp.shape[1]).permute(2, 3, 0, 1)


class _WeightGradByProducts(torch.autograd.Function):
    """A convolution (transposed or not) whose backward takes oneDNN's input gradient and
    :func:`_weight_grad` for the weights."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation,  # type: ignore[override]
                transposed: bool, output_padding) -> Tensor:
        if transposed:
            out = torch.nn.functional.conv_transpose2d(x, weight, bias, stride, padding, output_padding, 1, dilation)
        else:
            out = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation)
        ctx.save_for_backward(x, weight)
        ctx.args = (stride, padding, dilation, transposed, output_padding)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding = ctx.args
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), list(dilation), transposed,
                list(output_padding), 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            kernel = tuple(weight.shape[2:])
            if transposed:  # the weights (C_in, C_out, kH, kW) see the output gradient through the kernel
                grad_w = _weight_grad(grad, x, kernel, stride, padding, dilation)
            else:
                grad_w = _weight_grad(x, grad, kernel, stride, padding, dilation)
            layout = torch.channels_last if _channels_last(weight) else torch.contiguous_format
            grad_w = grad_w.contiguous(memory_format=layout)  # the parameters' layout (fused Adam needs it)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _add_bias(out: Tensor, bias: Tensor | None) -> Tensor:
    # autocast returns the convolution's dtype; an fp32 bias must not promote a bf16 output
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` whose CPU inference runs on weights packed once for oneDNN, and whose CPU
    training takes products where oneDNN is slow (module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        dtype = _inference_dtype(self, x)
        if dtype is not None:
            if _worth_packing(self, x.shape[0] * self._out_pixels(x)):
                out = _packed_forward(self, x, dtype, transposed=False)
                if out is not None:
                    return out
        elif _training_products(self, x, self._out_pixels(x)):
            return self._product_forward(x)
        elif _weight_grad_products(self, x):
            return _WeightGradByProducts.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, False, (0, 0))
        return super().forward(x)

    def _out_size(self, x: Tensor) -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            (x.shape[2 + i] + 2 * self.padding[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1
            for i in range(2))

    def _out_pixels(self, x: Tensor) -> int:
        out_h, out_w = self._out_size(x)
        return out_h * out_w

    def _product_forward(self, x: Tensor) -> Tensor:
        # unfold gives each output pixel's (C_in, kH, kW) patch, the memory order of a contiguous
        # weight; for a channels-last weight, whose memory runs (kH, kW, C_in), the patches are
        # reordered instead, so the weight is always a view, never copied
        batch, in_channels = x.shape[:2]
        kh, kw = self.kernel_size
        out_h, out_w = self._out_size(x)
        patches = torch.nn.functional.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        if _channels_last(self.weight):
            patches = patches.view(batch, in_channels, kh, kw, out_h * out_w).permute(0, 4, 2, 3, 1)
            weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)  # (C_out, kH*kW*C_in)
        else:
            patches = patches.transpose(1, 2)
            weight = self.weight.reshape(self.out_channels, -1)  # (C_out, C_in*kH*kW)
        out = patches.reshape(batch * out_h * out_w, -1) @ weight.t()
        out = out.view(batch, out_h, out_w, self.out_channels).permute(0, 3, 1, 2)  # channels-last
        return _like_ordinary(_add_bias(out, self.bias), x, self.weight)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` whose CPU inference runs on packed weights, or as a matrix
    product and ``F.fold`` for small outputs, and whose CPU training takes products where
    oneDNN is slow (module docstring)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            return super().forward(x, output_size)
        dtype = _inference_dtype(self, x)
        if dtype is not None:
            if self._use_gemm(x, dtype, packing=not _STATE["broken"]):
                return self._gemm_forward(x.to(dtype), dtype)
            if _worth_packing(self, x.shape[0] * x.shape[2] * x.shape[3]):
                out = _packed_forward(self, x, dtype, transposed=True)
                if out is not None:
                    return out
            if self._use_gemm(x, dtype, packing=False):
                return self._gemm_forward(x.to(dtype), dtype)
        elif self.dilation == (1, 1) and _training_products(self, x, x.shape[2] * x.shape[3]):
            return self._gemm_forward(x, None)
        elif _weight_grad_products(self, x):
            return _WeightGradByProducts.apply(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, True, self.output_padding)
        return super().forward(x, output_size)

    def _use_gemm(self, x: Tensor, dtype: torch.dtype, *, packing: bool = True) -> bool:
        """Whether the product beats oneDNN for this input: with ``packing``, against packed
        weights (only thin output layers); without, against oneDNN's per-call reorder too."""
        if self.groups != 1 or self.dilation != (1, 1) or self.kernel_size == (1, 1):
            return False  # 1x1 kernels: nothing to gain
        pixels = x.shape[2] * x.shape[3]
        max_out, min_in, max_pixels = GEMM_OUTPUT_LAYER
        if self.out_channels <= max_out and self.in_channels >= min_in and pixels <= max_pixels:
            return True
        return not packing and dtype == torch.float32 and self.in_channels * self.out_channels >= GEMM_MIN_WEIGHTS_PER_PIXEL * pixels

    def _gemm_forward(self, x: Tensor, dtype: torch.dtype | None) -> Tensor:
        """The layer as a product and ``F.fold``, computed in ``dtype`` (None: the weights'
        dtype, or autocast's, with autograd)."""
        # every input pixel's channel vector times the weights viewed as (C_in, C_out*kH*kW);
        # F.fold adds each pixel's kH x kW patch into the output at stride steps
        batch, in_channels, height, width = x.shape
        kh, kw = self.kernel_size
        out_h = (height - 1) * self.stride[0] - 2 * self.padding[0] + kh + self.output_padding[0]
        out_w = (width - 1) * self.stride[1] - 2 * self.padding[1] + kw + self.output_padding[1]
        w = self.weight if dtype is None else self.weight.to(dtype)  # (C_in, C_out, kH, kW)
        rows = x.permute(0, 2, 3, 1).reshape(-1, in_channels)
        if w.is_contiguous(memory_format=torch.channels_last):  # memory order (C_in, kH, kW, C_out): a view
            columns = rows @ w.permute(0, 2, 3, 1).reshape(in_channels, -1)
            columns = columns.view(batch, height * width, kh, kw, self.out_channels).permute(0, 4, 2, 3, 1)
        else:
            columns = rows @ w.reshape(in_channels, -1)
            columns = columns.view(batch, height * width, -1).transpose(1, 2)
        out = torch.nn.functional.fold(
            columns.reshape(batch, self.out_channels * kh * kw, height * width),
            (out_h, out_w), self.kernel_size, stride=self.stride, padding=self.padding,
        )
        return _like_ordinary(_add_bias(out, self.bias), x, self.weight)


def flop_formulas() -> dict:
    """FLOP formulas for the packed oneDNN ops, for ``FlopCounterMode(custom_mapping=...)``
    (which counts ``aten`` convolutions and matrix products itself): the same count as the
    ordinary convolution, 2 x multiply-adds."""

    def conv(x_shape, w_shape, _bias, _padding, _stride, _dilation, groups, *_, out_shape=None, **__) -> int:
        kh, kw = w_shape[-2:]
        return 2 * math.prod(out_shape) * (x_shape[1] // groups) * kh * kw

    def conv_transpose(x_shape, w_shape, _bias, _padding, _output_padding, _stride, _dilation, groups, *_, out_shape=None, **__) -> int:
        kh, kw = w_shape[-2:]
        return 2 * math.prod(x_shape) * (out_shape[1] // groups) * kh * kw

    # keyed by overload packet, as FlopCounterMode looks them up
    return {torch.ops.mkldnn._convolution_pointwise: conv,
            torch.ops.mkldnn._convolution_transpose_pointwise: conv_transpose}

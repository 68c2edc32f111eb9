"""Convolutions with fast CPU inference: the same results and layouts as torch.nn's, and the
ordinary operator wherever autograd, tracing or export need it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from translate.config import NetConfig
from translate.nets import build_generator
from translate.nets import convs
from translate.nets.convs import Conv2d, ConvTranspose2d, fast_inference


@pytest.fixture(autouse=True)
def pack_every_layer(monkeypatch):
    """Tiny test layers have too few weights for their maps to be packed by default."""
    monkeypatch.setattr(convs, "PACK_MIN_WEIGHTS_PER_PIXEL", 0)


def _layout(t: torch.Tensor) -> tuple[bool, bool]:
    return t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)


def _ordinary(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with fast_inference(False):
        return layer(x)


def _packed_entries(layer: nn.Module) -> int:
    return len(convs._PACKED.get(layer, {}))


CONV_CASES = [
    # (in, out, kernel, stride, padding, bias, side, batch)
    (3, 8, 7, 1, 0, True, 20, 1),    # ResNet stem (reflection padding is its own layer)
    (8, 16, 3, 2, 1, True, 17, 2),   # ResNet downsampling, odd side, a batch of 2
    (16, 16, 4, 2, 1, False, 2, 1),  # U-Net inner level: a 2x2 map, batch norm (no bias)
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "padding", "bias", "side", "batch"), CONV_CASES)
def test_packed_conv_equals_the_ordinary_operator(channels_last, in_ch, out_ch, kernel, stride, padding, bias, side, batch):
    torch.manual_seed(0)
    layer = Conv2d(in_ch, out_ch, kernel, stride, padding, bias=bias)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = layer(x)
        assert _packed_entries(layer) == 1  # the packed route really ran
        ordinary = _ordinary(layer, x)
    torch.testing.assert_close(fast, ordinary, atol=1e-5, rtol=1e-5)
    assert _layout(fast) == _layout(ordinary)


TRANSPOSED_CASES = [
    # (in, out, kernel, stride, padding, output_padding, bias, side, batch, route)
    (64, 32, 4, 2, 1, 0, True, 1, 1, "packed"),   # U-Net innermost: a 1x1 input
    (128, 64, 4, 2, 1, 0, False, 2, 2, "packed"),  # U-Net, batch norm (no bias), a batch of 2
    (64, 32, 3, 2, 1, 1, True, 5, 1, "packed"),    # ResNet upsampling: kernel 3, output_padding 1
    (64, 3, 4, 2, 1, 0, True, 24, 1, "gemm"),      # U-Net output layer: 3 channels
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "padding", "output_padding", "bias", "side", "batch", "route"),
                         TRANSPOSED_CASES)
def test_fast_transposed_conv_equals_the_ordinary_operator(
    channels_last, in_ch, out_ch, kernel, stride, padding, output_padding, bias, side, batch, route
):
    torch.manual_seed(0)
    layer = ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding, bias=bias)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert layer._use_gemm(x, torch.float32) == (route == "gemm")
        fast = layer(x)
        assert _packed_entries(layer) == (route == "packed")
        ordinary = _ordinary(layer, x)
    assert fast.shape == ordinary.shape
    torch.testing.assert_close(fast, ordinary, atol=1e-5, rtol=1e-5)
    assert _layout(fast) == _layout(ordinary)


@pytest.mark.parametrize("layer_type", [Conv2d, ConvTranspose2d])
def test_bf16_autocast_and_bf16_weights_match_the_ordinary_operator(layer_type):
    torch.manual_seed(0)
    layer = layer_type(32, 16, 4, 2, 1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = layer(x)
        ordinary = _ordinary(layer, x)
    assert fast.dtype == ordinary.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ordinary.float(), atol=2e-2, rtol=2e-2)
    half = copy.deepcopy(layer).to(torch.bfloat16)
    with torch.inference_mode():
        fast, ordinary = half(x.bfloat16()), _ordinary(half, x.bfloat16())
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ordinary.float(), atol=2e-2, rtol=2e-2)


def test_the_u_net_output_layer_as_a_product_in_bf16():
    torch.manual_seed(0)
    layer = ConvTranspose2d(64, 3, 4, 2, 1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 64, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer._use_gemm(x, torch.bfloat16)
        fast, ordinary = layer(x), _ordinary(layer, x)
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ordinary.float(), atol=3e-2, rtol=3e-2)


def test_layers_built_under_inference_mode_are_packed_too():
    with torch.inference_mode():  # parameters are inference tensors: no version counter
        layer = Conv2d(8, 16, 3, padding=1)
        x = torch.randn(1, 8, 5, 5)
        torch.testing.assert_close(layer(x), _ordinary(layer, x))
        assert _packed_entries(layer) == 1 and not convs._STATE["broken"]


def test_new_weights_are_packed_again_and_shapes_are_bounded():
    torch.manual_seed(0)
    layer = Conv2d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 6, 6)
    with torch.inference_mode():
        before = layer(x)
        with torch.no_grad():
            layer.weight.mul_(2)  # in place, as load_state_dict does
        after = layer(x)
        torch.testing.assert_close(after, _ordinary(layer, x))
        assert not torch.allclose(before, after)
        layer.load_state_dict(Conv2d(8, 8, 3, padding=1).state_dict())
        torch.testing.assert_close(layer(x), _ordinary(layer, x))
        assert _packed_entries(layer) == 1
        for side in range(4, 12):  # a copy per input shape, the last PACKED_PER_LAYER kept
            y = torch.randn(1 + side % 2, 8, side, side)
            torch.testing.assert_close(layer(y), _ordinary(layer, y))
        assert _packed_entries(layer) == convs.PACKED_PER_LAYER
        keys = list(convs._PACKED[layer])
        layer(y)  # the shape just seen: its copy is used again, nothing repacked
        assert list(convs._PACKED[layer]) == keys
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(layer(x), _ordinary(layer, x))
        if convs._onednn_bf16():  # a dtype is part of the key too (AVX2-only CPUs pack no bf16)
            assert next(reversed(convs._PACKED[layer]))[2:] == (torch.bfloat16, tuple(x.shape))
        assert _packed_entries(layer) == convs.PACKED_PER_LAYER
    clone = copy.deepcopy(layer)  # packed copies live beside the module: copying and saving never see them
    assert _packed_entries(clone) == 0 and set(clone.state_dict()) == {"weight", "bias"}


def test_bf16_without_onednn_bf16_takes_the_ordinary_operator(monkeypatch):
    # AVX2-only CPUs: oneDNN's packed ops refuse bf16, so no packed copy is made or tried
    monkeypatch.setattr(convs, "_onednn_bf16", lambda: False)
    layer = Conv2d(64, 64, 4, 2, 1)
    x = torch.randn(1, 64, 4, 4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, ordinary = layer(x), _ordinary(layer, x)
    assert out.dtype == torch.bfloat16 and _packed_entries(layer) == 0
    torch.testing.assert_close(out, ordinary)


def test_only_layers_with_many_weights_for_their_map_are_packed(monkeypatch):
    monkeypatch.setattr(convs, "PACK_MIN_WEIGHTS_PER_PIXEL", 256)
    inner = Conv2d(64, 64, 4, 2, 1)  # 65536 weights onto a 2x2 map: packed
    outer = Conv2d(3, 8, 3, padding=1)  # 216 weights per 32x32 map: the ordinary operator
    with torch.inference_mode():
        inner(torch.randn(1, 64, 4, 4))
        outer(torch.randn(1, 3, 32, 32))
    assert _packed_entries(inner) == 1 and _packed_entries(outer) == 0


def test_training_tracing_and_export_paths_take_the_ordinary_operator():
    layer = ConvTranspose2d(16, 8, 4, 2, 1)
    x = torch.randn(1, 16, 3, 3)
    with torch.inference_mode():
        assert convs._inference_dtype(layer, x) == torch.float32
    with torch.no_grad():
        assert convs._inference_dtype(layer, x) == torch.float32
    assert convs._inference_dtype(layer, x) is None  # autograd on: training
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.float16):
            assert convs._inference_dtype(layer, x) is None
        with fast_inference(False):
            assert convs._inference_dtype(layer, x) is None
        assert convs._inference_dtype(layer, x.double()) is None
        assert convs._inference_dtype(Conv2d(16, 8, 3, padding="same"), x) is None
    traced = torch.fx.symbolic_trace(layer, concrete_args={"output_size": None})  # as for nn.ConvTranspose2d
    assert any(node.op == "call_function" and "conv_transpose" in str(node.target) for node in traced.graph.nodes)
    out = layer(x)
    out.sum().backward()
    assert layer.weight.grad is not None and _packed_entries(layer) == 0


def test_a_build_without_the_onednn_ops_falls_back_to_the_ordinary_operator(monkeypatch):
    def missing(*args, **kwargs):
        raise NotImplementedError("no such op")

    monkeypatch.setitem(convs._STATE, "broken", False)
    monkeypatch.setattr(torch._C._nn, "mkldnn_reorder_conv2d_weight", missing)
    layer = Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 5, 5)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), _ordinary(layer, x))
        assert convs._STATE["broken"]
        up = ConvTranspose2d(512, 256, 4, 2, 1)  # big weights on a tiny map: the product replaces packing
        y = torch.randn(1, 512, 1, 1)
        assert up._use_gemm(y, torch.float32, packing=False) and not up._use_gemm(y, torch.float32)
        torch.testing.assert_close(up(y), _ordinary(up, y), atol=1e-5, rtol=1e-5)


TRAINING_CASES = [
    # (layer, in, out, side, batch, autocast)
    ("conv", 64, 64, 2, 1, False),    # U-Net inner level, to a 1x1 map
    ("conv", 64, 64, 8, 2, False),    # to 4x4, a batch of 2
    ("transposed", 64, 64, 1, 1, False),   # innermost up-convolution
    ("transposed", 128, 64, 4, 1, False),
    ("conv", 64, 64, 4, 1, True),     # bf16 autocast
    ("transposed", 128, 64, 2, 1, True),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kind", "in_ch", "out_ch", "side", "batch", "autocast"), TRAINING_CASES)
def test_training_as_products_equals_the_ordinary_operator(channels_last, kind, in_ch, out_ch, side, batch, autocast, monkeypatch):
    monkeypatch.setattr(convs, "TRAINING_MIN_WEIGHTS_PER_PIXEL", 64)  # tiny layers count as large here
    torch.manual_seed(0)
    layer = (Conv2d if kind == "conv" else ConvTranspose2d)(in_ch, out_ch, 4, 2, 1)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    pixels = side * side * batch if kind == "transposed" else (side // 2) ** 2 * batch
    assert convs._training_products(layer, x, pixels // batch)

    def run(fast: bool):
        layer.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_(True)
        with fast_inference(fast), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(inp)
        upstream = torch.linspace(-1, 1, out.numel()).view(out.shape).to(out.dtype)
        out.backward(upstream)
        return out, inp.grad, layer.weight.grad, layer.bias.grad

    fast, ordinary = run(True), run(False)
    tol = dict(atol=3e-2, rtol=3e-2) if autocast else dict(atol=1e-4, rtol=1e-4)
    assert fast[0].dtype == ordinary[0].dtype
    assert _layout(fast[0]) == _layout(ordinary[0])
    for a, b in zip(fast, ordinary):
        scale = b.abs().max().item() or 1.0
        torch.testing.assert_close(a.float() / scale, b.float() / scale, **tol)
    assert fast[2].stride() == layer.weight.stride()  # gradients in the parameters' layout (fused Adam needs it)


def test_training_takes_products_only_for_large_weights_on_small_maps():
    big = ConvTranspose2d(1024, 512, 4, 2, 1)
    assert convs._training_products(big, torch.zeros(1, 1024, 2, 2), 4)  # U-Net-256 at 256 px
    assert not convs._training_products(big, torch.zeros(1, 1024, 32, 32), 32 * 32)
    assert not convs._training_products(Conv2d(64, 128, 3, 2, 1), torch.zeros(1, 64, 4, 4), 4)
    with torch.no_grad():
        assert not convs._training_products(big, torch.zeros(1, 1024, 2, 2), 4)  # inference packs instead


@pytest.mark.parametrize("generator", ["resnet_6blocks", "unet_128"])
def test_generators_use_the_fast_convolutions_and_still_trace(generator):
    net = build_generator(NetConfig(generator=generator, base_channels_g=4)).eval().to(memory_format=torch.channels_last)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert layers and all(isinstance(m, (Conv2d, ConvTranspose2d)) for m in layers)
    x = (torch.rand(1, 3, 128, 128) * 2 - 1).contiguous(memory_format=torch.channels_last)
    traced = torch.fx.symbolic_trace(net)  # FX-based tools (quantization) keep working
    with torch.inference_mode():
        fast = net(x)
        assert all(_packed_entries(m) for m in layers)  # (4-channel nets: no layer is thin enough for the product)
        torch.testing.assert_close(fast, _ordinary(net, x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(traced(x), fast, atol=1e-5, rtol=1e-5)


def test_flop_formulas_count_the_packed_ops_like_the_ordinary_ones():
    from torch.utils.flop_counter import FlopCounterMode

    cases = [(Conv2d(8, 16, 3, padding=1, stride=2), torch.randn(2, 8, 9, 9)),
             (ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1, groups=2), torch.randn(1, 8, 5, 5))]
    for layer, x in cases:
        counts = []
        for fast in (True, False):
            counter = FlopCounterMode(display=False, custom_mapping=convs.flop_formulas())
            with torch.inference_mode(), fast_inference(fast), counter:
                layer(x)
            counts.append(counter.get_total_flops())
        assert counts[0] == counts[1] > 0


WEIGHT_GRAD_CASES = [
    # (layer, in, out, kernel, stride, padding, output_padding, dilation, side, batch, bias)
    ("conv", 8, 12, 3, 1, 0, 0, 1, 9, 1, False),    # ResNet block (reflection padding outside)
    ("conv", 8, 12, 3, 2, 1, 0, 1, 10, 2, True),    # ResNet downsampling, a batch of 2
    ("conv", 8, 4, 4, 2, 1, 0, 1, 9, 1, True),      # PatchGAN, odd side
    ("conv", 6, 8, 3, 1, 2, 0, 2, 7, 1, False),     # dilated
    ("transposed", 12, 8, 3, 2, 1, 1, 1, 5, 2, False),  # ResNet upsampling
    ("transposed", 8, 6, 4, 2, 1, 0, 1, 6, 1, True),    # U-Net decoder
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kind", "in_ch", "out_ch", "kernel", "stride", "padding", "output_padding", "dilation",
                          "side", "batch", "bias"), WEIGHT_GRAD_CASES)
def test_weight_gradients_as_products_equal_the_ordinary_operator(
        channels_last, kind, in_ch, out_ch, kernel, stride, padding, output_padding, dilation, side, batch, bias, monkeypatch):
    monkeypatch.setattr(convs, "WEIGHT_GRAD_PRODUCTS", True)
    monkeypatch.setattr(convs, "WEIGHT_GRAD_MIN_CHANNELS", 4)  # tiny layers count here
    torch.manual_seed(0)
    if kind == "conv":
        layer = Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation, bias=bias)
    else:
        layer = ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding, bias=bias, dilation=dilation)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    assert convs._weight_grad_products(layer, x)

    def run(fast: bool):
        layer.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_(True)
        with fast_inference(fast):
            out = layer(inp)
        assert (out.grad_fn.name() == "_WeightGradByProductsBackward") == fast
        out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape))
        return out, inp.grad, layer.weight.grad, None if layer.bias is None else layer.bias.grad

    fast, ordinary = run(True), run(False)
    assert _layout(fast[0]) == _layout(ordinary[0])
    for a, b in zip(fast, ordinary):
        if b is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert fast[2].stride() == layer.weight.stride()  # gradients in the parameters' layout (fused Adam needs it)


def test_weight_gradients_as_products_support_double_backward():
    """Gradient penalties differentiate the discriminator's input gradient again."""
    for transposed in (False, True):
        x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
        w = torch.randn(*((3, 4) if transposed else (4, 3)), 3, 3, dtype=torch.float64, requires_grad=True)
        b = torch.randn(4, dtype=torch.float64, requires_grad=True)
        output_padding = (1, 1) if transposed else (0, 0)

        def conv(x, w, b, transposed=transposed, output_padding=output_padding):
            return convs._WeightGradByProducts.apply(x, w, b, (2, 2), (1, 1), (1, 1), transposed, output_padding)

        assert torch.autograd.gradcheck(conv, (x, w, b))
        assert torch.autograd.gradgradcheck(conv, (x, w, b))


def test_weight_gradients_as_products_only_where_they_pay(monkeypatch):
    x = torch.zeros(1, 64, 16, 16)
    monkeypatch.setattr(convs, "WEIGHT_GRAD_PRODUCTS", None)
    monkeypatch.setattr(convs, "_cpu_capability", lambda: "AVX512")
    assert not convs._weight_grad_products(Conv2d(64, 64, 3), x)  # oneDNN's AVX-512 backward is fast
    monkeypatch.setattr(convs, "_cpu_capability", lambda: "AVX2")
    assert convs._weight_grad_products(Conv2d(64, 64, 3), x)
    assert not convs._weight_grad_products(Conv2d(3, 64, 7), torch.zeros(1, 3, 16, 16))  # thin layers: oneDNN wins
    assert not convs._weight_grad_products(Conv2d(64, 3, 7), x)
    with torch.no_grad():
        assert not convs._weight_grad_products(Conv2d(64, 64, 3), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not convs._weight_grad_products(Conv2d(64, 64, 3), x)
    frozen = Conv2d(64, 64, 3).requires_grad_(False)
    assert not convs._weight_grad_products(frozen, x)


def test_spectral_norm_layers_run_one_power_iteration_per_forward_on_the_product_route(monkeypatch):
    from translate.nets.layers import apply_spectral_norm

    monkeypatch.setattr(convs, "WEIGHT_GRAD_PRODUCTS", True)
    monkeypatch.setattr(convs, "WEIGHT_GRAD_MIN_CHANNELS", 4)
    torch.manual_seed(0)
    layer = apply_spectral_norm(Conv2d(8, 8, 3, padding=1))
    twin = copy.deepcopy(layer)
    x = torch.randn(1, 8, 6, 6)
    assert convs._weight_grad_products(layer, x)
    out = layer(x)
    with fast_inference(False):
        ordinary = twin(x)
    assert out.grad_fn.name() == "_WeightGradByProductsBackward"
    torch.testing.assert_close(out, ordinary)
    spectral = layer.parametrizations.weight[0]
    torch.testing.assert_close(spectral._u, twin.parametrizations.weight[0]._u)  # the same iterations, once each
    out.sum().backward()
    ordinary.sum().backward()
    torch.testing.assert_close(layer.parametrizations.weight.original.grad, twin.parametrizations.weight.original.grad)

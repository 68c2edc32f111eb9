"""translate.accel: every route against the plain torch.nn operators, and what accelerate keeps."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
from torch import nn

from translate import accel
from translate.accel import packed, products
from translate.accel.convs import AcceleratedConv2d, AcceleratedConvTranspose2d
from translate.config import NetConfig
from translate.nets import build_generator
from translate.nets.layers import apply_spectral_norm

needs_packing = pytest.mark.skipif(not packed.available(), reason="this PyTorch build lacks oneDNN's packing ops")


@pytest.fixture(autouse=True)
def switch_on(monkeypatch):
    monkeypatch.delenv(accel.SWITCH, raising=False)


def _layout(t: torch.Tensor) -> tuple[bool, bool]:
    return t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)


def _twins(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(plain, accelerated): the same weights, in two modules."""
    return layer, accel.accelerate(copy.deepcopy(layer))


def _copies(layer: nn.Module) -> int:
    return len(layer._accel_packed.copies)


def _packed(fast: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``fast(x)`` on packed weights: a shape is packed at its second call (its first runs the plain operator)."""
    first = fast(x)
    out = fast(x)
    torch.testing.assert_close(out, first, atol=1e-5, rtol=1e-5)
    return out


def _channels_last(*items):
    return [t.to(memory_format=torch.channels_last) if isinstance(t, nn.Module) else t.contiguous(memory_format=torch.channels_last) for t in items]


# ------------------------------------------------------------------------------------------
# inference on packed weights

CONV_CASES = [
    # (in, out, kernel, stride, padding, bias, side, batch): each has >= 256 weights per output pixel
    (16, 32, 3, 2, 1, True, 6, 1),  # ResNet-style downsampling
    (16, 16, 4, 2, 1, False, 2, 2),  # U-Net inner level: a 2x2 map, batch norm (no bias), a batch of 2
    (8, 32, 7, 1, 0, True, 8, 1),  # a 7x7 stem (reflection padding is its own layer)
]


@needs_packing
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "padding", "bias", "side", "batch"), CONV_CASES)
def test_packed_conv_equals_the_plain_operator(channels_last, in_ch, out_ch, kernel, stride, padding, bias, side, batch):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=bias)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        plain, x = _channels_last(plain, x)
    plain, fast = _twins(plain)
    with torch.inference_mode():
        out, expected = _packed(fast, x), plain(x)
    assert _copies(fast) == 1  # the packed route ran
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert _layout(out) == _layout(expected)


TRANSPOSED_CASES = [
    # (in, out, kernel, stride, padding, output_padding, bias, side, batch)
    (64, 32, 4, 2, 1, 0, True, 1, 1),  # U-Net innermost: a 1x1 input
    (64, 32, 4, 2, 1, 0, False, 2, 2),  # batch norm (no bias), a batch of 2
    (64, 32, 3, 2, 1, 1, True, 3, 1),  # ResNet upsampling: kernel 3, output_padding 1
]


@needs_packing
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "padding", "output_padding", "bias", "side", "batch"), TRANSPOSED_CASES)
def test_packed_transposed_conv_equals_the_plain_operator(channels_last, in_ch, out_ch, kernel, stride, padding, output_padding, bias, side, batch):
    torch.manual_seed(0)
    plain = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding, bias=bias)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        plain, x = _channels_last(plain, x)
    plain, fast = _twins(plain)
    with torch.inference_mode():
        out, expected = _packed(fast, x), plain(x)
    assert _copies(fast) == 1
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert _layout(out) == _layout(expected)


@needs_packing
@pytest.mark.parametrize("layer_type", [nn.Conv2d, nn.ConvTranspose2d])
def test_bf16_autocast_and_bf16_weights_match_the_plain_operator(layer_type):
    torch.manual_seed(0)
    plain, x = _channels_last(layer_type(32, 16, 4, 2, 1), torch.randn(1, 32, 2, 2))
    plain, fast = _twins(plain)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast(x)
        out, expected = fast(x), plain(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    assert _copies(fast) == int(packed.bf16_available())  # no bf16 kernels in oneDNN: the plain operator
    torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=2e-2)
    plain, fast = plain.to(torch.bfloat16), fast.to(torch.bfloat16)
    with torch.inference_mode():
        out, expected = fast(x.bfloat16()), plain(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=2e-2)


@needs_packing
def test_layers_built_under_inference_mode_are_packed_too():
    with torch.inference_mode():  # parameters are inference tensors: no version counter
        plain, fast = _twins(nn.Conv2d(16, 16, 3, padding=1))
        x = torch.randn(1, 16, 3, 3)
        torch.testing.assert_close(_packed(fast, x), plain(x))
        assert _copies(fast) == 1


@needs_packing
def test_changed_weights_are_packed_again_and_copies_are_bounded():
    torch.manual_seed(0)
    plain, fast = _twins(nn.Conv2d(16, 16, 3, padding=1))
    x = torch.randn(1, 16, 3, 3)
    with torch.inference_mode():
        before = _packed(fast, x)
    with torch.no_grad():
        fast.weight.mul_(2)  # in place, as an optimizer step
        plain.weight.mul_(2)
    with torch.inference_mode():
        after = _packed(fast, x)
        torch.testing.assert_close(after, plain(x))
        assert not torch.allclose(before, after)
        state = nn.Conv2d(16, 16, 3, padding=1).state_dict()
        fast.load_state_dict(state)
        plain.load_state_dict(state)
        torch.testing.assert_close(_packed(fast, x), plain(x))
        assert _copies(fast) == 1
        for side in range(2, 6):  # a copy per repeated input shape, the last COPIES_PER_LAYER kept
            y = torch.randn(1 + side % 2, 16, side, side)
            torch.testing.assert_close(_packed(fast, y), plain(y))
        assert _copies(fast) == packed.COPIES_PER_LAYER
        keys = list(fast._accel_packed.copies)
        fast(y)  # the shape just seen: its copy is used again, nothing repacked
        assert list(fast._accel_packed.copies) == keys
    fast.to(memory_format=torch.channels_last)  # new memory: packed again
    with torch.inference_mode():
        torch.testing.assert_close(_packed(fast, x), plain(x))
    assert _copies(fast) == 1
    clone = copy.deepcopy(fast)  # copies never travel with the module
    assert isinstance(clone, AcceleratedConv2d) and _copies(clone) == 0
    assert set(clone.state_dict()) == {"weight", "bias"}


@needs_packing
def test_a_shape_is_packed_at_its_second_call_so_shapes_that_never_repeat_cost_no_packing():
    torch.manual_seed(0)
    plain, fast = _twins(nn.Conv2d(64, 64, 3, padding=1))
    with torch.inference_mode():
        for width in range(2, 2 + packed.SHAPES_REMEMBERED + 4):  # a folder of photos of many sizes
            y = torch.randn(1, 64, 2, width)
            torch.testing.assert_close(fast(y), plain(y))
            assert _copies(fast) == 0
        y = torch.randn(1, 64, 2, 3)  # forgotten (only the last SHAPES_REMEMBERED are kept): seen once again
        fast(y)
        assert _copies(fast) == 0
        fast(y)
        assert _copies(fast) == 1


@needs_packing
def test_only_layers_with_many_weights_for_their_map_are_packed():
    inner = accel.accelerate(nn.Conv2d(64, 64, 4, 2, 1))  # 65536 weights onto a 2x2 map
    outer = accel.accelerate(nn.Conv2d(3, 8, 3, padding=1))  # 216 weights for a 32x32 map
    with torch.inference_mode():
        for _ in range(2):
            inner(torch.randn(1, 64, 4, 4))
            outer(torch.randn(1, 3, 32, 32))
    assert _copies(inner) == 1 and _copies(outer) == 0


@needs_packing
def test_training_other_dtypes_and_other_devices_take_the_plain_operator():
    plain, fast = _twins(nn.ConvTranspose2d(64, 32, 4, 2, 1))
    x = torch.randn(1, 64, 1, 1)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.float16):
            fast(x)
        torch.testing.assert_close(fast.double()(x.double()), plain.double()(x.double()))
    assert _copies(fast) == 0
    fast.float(), plain.float()
    out = fast(x)  # autograd on, a tiny map but few weight pairs for products: plain
    out.sum().backward()
    assert fast.weight.grad is not None and _copies(fast) == 0
    fast.to("meta")  # the route checks the device at every call
    with torch.inference_mode():
        assert fast(torch.empty(1, 64, 1, 1, device="meta")).shape == (1, 32, 2, 2)
    assert _copies(fast) == 0


def test_a_build_without_the_packing_ops_warns_and_runs_the_plain_operator(monkeypatch, caplog):
    monkeypatch.setattr(packed, "available", lambda: False)
    plain = nn.Conv2d(16, 16, 3, padding=1)
    with caplog.at_level(logging.WARNING, logger="translate.accel"):
        _, fast = _twins(plain)
    assert "lacks oneDNN" in caplog.text and isinstance(fast, AcceleratedConv2d)
    x = torch.randn(1, 16, 3, 3)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x))
    assert _copies(fast) == 0


@needs_packing
def test_a_failing_private_op_warns_once_and_the_layer_stays_plain(monkeypatch, caplog):
    def missing(*args, **kwargs):
        raise NotImplementedError("no such op")

    plain, fast = _twins(nn.Conv2d(16, 16, 3, padding=1))
    monkeypatch.setattr(torch._C._nn, "mkldnn_reorder_conv2d_weight", missing)
    x = torch.randn(1, 16, 3, 3)
    with caplog.at_level(logging.WARNING, logger="translate.accel"), torch.inference_mode():
        for _ in range(3):
            torch.testing.assert_close(fast(x), plain(x))
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


# ------------------------------------------------------------------------------------------
# training as matrix products

TRAINING_CASES = [
    # (layer, in, out, side, batch, autocast): each has >= 4096 weight pairs per pixel
    ("conv", 64, 64, 2, 1, False),  # U-Net inner level, to a 1x1 map
    ("conv", 128, 128, 4, 1, False),  # to 2x2
    ("conv", 128, 64, 2, 2, False),  # a batch of 2
    ("transposed", 64, 64, 1, 1, False),  # innermost up-convolution
    ("transposed", 128, 128, 2, 1, False),
    ("conv", 64, 64, 2, 1, True),  # bf16 autocast
    ("transposed", 128, 64, 1, 1, True),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kind", "in_ch", "out_ch", "side", "batch", "autocast"), TRAINING_CASES)
def test_training_as_products_equals_the_plain_operator(channels_last, kind, in_ch, out_ch, side, batch, autocast):
    torch.manual_seed(0)
    plain = (nn.Conv2d if kind == "conv" else nn.ConvTranspose2d)(in_ch, out_ch, 4, 2, 1)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        plain, x = _channels_last(plain, x)
    plain, fast = _twins(plain)
    pixels = batch * (side * side if kind == "transposed" else (side // 2) ** 2)
    assert products.training_call(fast, x) and products.worth_products(fast, pixels)

    def run(layer):
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer(inp)
        out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape).to(out.dtype))
        return out, inp.grad, layer.weight.grad, layer.bias.grad

    got, expected = run(fast), run(plain)
    assert got[0].grad_fn.name() != expected[0].grad_fn.name()  # the product route really ran
    assert got[0].dtype == expected[0].dtype
    assert _layout(got[0]) == _layout(expected[0])
    tol = {"atol": 3e-2, "rtol": 3e-2} if autocast else {"atol": 1e-4, "rtol": 1e-4}
    for a, b in zip(got, expected, strict=False):
        scale = b.abs().max().item() or 1.0
        torch.testing.assert_close(a.float() / scale, b.float() / scale, **tol)
    assert got[2].stride() == fast.weight.stride()  # gradients in the parameters' layout (fused Adam needs it)


def test_training_takes_products_only_for_large_weights_on_small_maps():
    big = accel.accelerate(nn.ConvTranspose2d(1024, 512, 4, 2, 1))
    assert products.worth_products(big, 4)  # U-Net-256 at 256 px: a 2x2 input
    assert not products.worth_products(big, 32 * 32)
    assert not products.worth_products(nn.Conv2d(64, 128, 3, 2, 1), 4)
    x = torch.zeros(1, 64, 4, 4)
    assert products.training_call(nn.Conv2d(64, 64, 3), x)
    assert not products.training_call(nn.Conv2d(64, 64, 1), x)  # 1x1 kernels: nothing to gain
    assert not products.training_call(nn.Conv2d(64, 64, 3, groups=2), x)
    assert not products.training_call(nn.Conv2d(64, 64, 3, padding="same"), x)
    with torch.no_grad():
        assert not products.training_call(nn.Conv2d(64, 64, 3), x)  # inference packs instead


def test_spectral_norm_layers_run_the_plain_operator():
    torch.manual_seed(0)
    layer = accel.accelerate(nn.Conv2d(64, 64, 4, 2, 1))
    apply_spectral_norm(layer)  # parametrized after accelerating: its weight is recomputed per access
    out = layer(torch.randn(1, 64, 2, 2))
    assert "Convolution" in out.grad_fn.name()


# ------------------------------------------------------------------------------------------
# accelerate itself


def _net() -> nn.Module:
    return build_generator(NetConfig(generator="unet_128", base_channels_g=4, norm="batch"))


def test_accelerate_keeps_parameters_state_dict_and_is_idempotent():
    net = _net()
    params = dict(net.named_parameters())
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert accel.accelerate(net) is net
    assert dict(net.named_parameters()) == params  # the same Parameter objects
    after = net.state_dict()
    assert list(after) == list(state)
    for key, value in state.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert layers and all(isinstance(m, (AcceleratedConv2d, AcceleratedConvTranspose2d)) for m in layers)
    kinds = [type(m) for m in net.modules()]
    assert accel.accelerate(net) is net
    assert [type(m) for m in net.modules()] == kinds
    assert dict(net.named_parameters()) == params


def test_the_off_switch_leaves_the_network_plain(monkeypatch):
    monkeypatch.setenv(accel.SWITCH, "0")
    assert not accel.enabled()
    net = accel.accelerate(_net())
    assert all(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))
    monkeypatch.setenv(accel.SWITCH, "1")
    assert accel.enabled()


def test_subclasses_and_parametrized_layers_are_left_alone():
    class Custom(nn.Conv2d):
        pass

    net = nn.Sequential(Custom(3, 4, 3), apply_spectral_norm(nn.Conv2d(4, 4, 3)), nn.Conv2d(4, 4, 3))
    kinds = [type(m) for m in net]
    accel.accelerate(net)
    assert [type(m) for m in net][:2] == kinds[:2] and type(net[2]) is AcceleratedConv2d


@pytest.mark.parametrize("generator", ["resnet_6blocks", "unet_128"])
def test_an_accelerated_generator_matches_the_plain_one_and_still_traces(generator):
    torch.manual_seed(0)
    plain = build_generator(NetConfig(generator=generator, base_channels_g=4)).eval().to(memory_format=torch.channels_last)
    fast = accel.accelerate(copy.deepcopy(plain))
    x = (torch.rand(1, 3, 128, 128) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = plain(x)
        torch.testing.assert_close(fast(x), expected, atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    fast.train(), plain.train()
    torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
    fast.eval(), plain.eval()
    graph = torch.fx.symbolic_trace(fast)  # FX-based tools (quantization) record the plain operators
    assert any("conv" in str(node.target) for node in graph.graph.nodes if node.op == "call_function")
    with torch.no_grad():
        traced = torch.jit.trace(fast, x)  # TorchScript tracing, the legacy ONNX exporter's route
        kinds = {node.kind() for node in traced.inlined_graph.nodes()}
        assert "aten::_convolution" in kinds and not any("mkldnn" in k for k in kinds)
        torch.testing.assert_close(graph(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(traced(x), expected, atol=1e-5, rtol=1e-5)


def test_scripting_and_export_record_the_plain_operators():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 3, 4, 2, 1)).eval()
    fast = accel.accelerate(copy.deepcopy(plain))
    x = torch.randn(1, 3, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, still supported
        scripted = torch.jit.script(fast)
    exported = torch.export.export(fast, (x,))  # the dynamo ONNX exporter's route
    assert not any("mkldnn" in str(node.target) for node in exported.graph.nodes)
    with torch.inference_mode():
        expected = plain(x)
        torch.testing.assert_close(scripted(x), expected)
        torch.testing.assert_close(exported.module()(x), expected)
        torch.testing.assert_close(fast(x), expected)
    assert type(fast[0]) is AcceleratedConv2d  # scripting a copy left the eager network accelerated

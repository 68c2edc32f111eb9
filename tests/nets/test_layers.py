"""Norm layers: our instance norm is correct where PyTorch's CPU kernel is not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate.nets.layers import InstanceNorm2d, norm_factory


def reference_instance_norm(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    mean = x.mean((2, 3), keepdim=True)
    var = x.var((2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def input_grad(fn, x0: torch.Tensor, upstream: torch.Tensor, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x0.detach().clone().contiguous(memory_format=fmt).requires_grad_(True)
    (fn(x) * upstream.contiguous(memory_format=fmt)).sum().backward()
    return x.grad.double()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_instance_norm_gradient_matches_float64_reference(batch: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    x0, upstream = torch.randn(batch, 8, 16, 16), torch.randn(batch, 8, 16, 16)
    xr = x0.double().requires_grad_(True)
    (reference_instance_norm(xr) * upstream.double()).sum().backward()
    ours = input_grad(InstanceNorm2d(8), x0, upstream, channels_last)
    assert (ours - xr.grad).norm() / xr.grad.norm() < 1e-5
    out = InstanceNorm2d(8)(x0)
    assert torch.allclose(out.double(), reference_instance_norm(x0), atol=1e-5)


def test_pytorch_cpu_instance_norm_bug_is_why_we_use_group_norm() -> None:
    """Documents the upstream bug; if it ever passes, F.instance_norm became safe again."""
    torch.manual_seed(0)
    x0, upstream = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    good = input_grad(lambda x: F.instance_norm(x), x0, upstream, channels_last=False)
    suspect = input_grad(lambda x: F.instance_norm(x), x0, upstream, channels_last=True)
    ours = input_grad(InstanceNorm2d(8), x0, upstream, channels_last=True)
    assert (ours - good).norm() / good.norm() < 1e-5
    if (suspect - good).norm() / good.norm() < 1e-5:
        pytest.skip("this PyTorch's CPU instance_norm backward is correct for channels-last batch 1")


def test_affine_instance_norm_has_scale_and_shift() -> None:
    norm = norm_factory("instance_affine")(4)
    assert isinstance(norm, torch.nn.InstanceNorm2d)
    assert set(dict(norm.named_parameters())) == {"weight", "bias"}
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(0.5)
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(norm(x), 2.0 * InstanceNorm2d(4)(x) + 0.5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("in_ch", "out_ch", "kernel", "stride", "padding", "output_padding", "bias", "side", "batch"),
    [
        (64, 32, 4, 2, 1, 0, True, 1, 1),    # U-Net innermost: a 1x1 input
        (128, 64, 4, 2, 1, 0, False, 2, 2),  # U-Net, batch norm (no bias), a batch of 2
        (64, 3, 4, 2, 1, 0, True, 24, 1),    # U-Net output layer: 3 channels, larger input
        (64, 32, 3, 2, 1, 1, True, 1, 1),    # ResNet-style upsampling: kernel 3, output_padding 1
    ],
)
def test_conv_transpose_as_a_product_equals_the_ordinary_operator(
    channels_last, in_ch, out_ch, kernel, stride, padding, output_padding, bias, side, batch
):
    from translate.nets.layers import ConvTranspose2d

    torch.manual_seed(0)
    layer = ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding, bias=bias)
    x = torch.randn(batch, in_ch, side, side)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert layer._use_gemm(x)
        fast = layer(x)
        ordinary = nn.ConvTranspose2d.forward(layer, x)
    assert fast.shape == ordinary.shape
    torch.testing.assert_close(fast, ordinary, atol=1e-5, rtol=1e-5)
    assert fast.is_contiguous(memory_format=torch.channels_last) == ordinary.is_contiguous(memory_format=torch.channels_last)
    assert fast.is_contiguous() == ordinary.is_contiguous()
    # training (autograd on), autocast and FX tracing take the ordinary operator
    with torch.no_grad():
        assert layer._use_gemm(x)
    with torch.enable_grad():
        assert not layer._use_gemm(x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not layer._use_gemm(x)
    traced = torch.fx.symbolic_trace(layer, concrete_args={"output_size": None})  # as for nn.ConvTranspose2d
    assert any(node.op == "call_function" and "conv_transpose" in str(node.target) for node in traced.graph.nodes)
    # larger inputs for their weights stay with oneDNN, which is faster there
    with torch.inference_mode():
        assert not ConvTranspose2d(128, 64, 4, 2, 1)._use_gemm(torch.zeros(1, 128, 8, 8))
        assert not ConvTranspose2d(16, 3, 4, 2, 1)._use_gemm(torch.zeros(1, 16, 8, 8))
        assert not ConvTranspose2d(64, 3, 4, 2, 1)._use_gemm(torch.zeros(1, 64, 512, 512))
        assert not ConvTranspose2d(64, 32, 1)._use_gemm(torch.zeros(1, 64, 1, 1))  # 1x1 kernels: nothing to gain


@pytest.mark.parametrize("generator", ["resnet_6blocks", "unet_128"])
def test_generators_use_the_fast_transposed_convolution_and_still_trace(generator):
    from translate.config import NetConfig
    from translate.nets import build_generator
    from translate.nets.layers import ConvTranspose2d

    net = build_generator(NetConfig(generator=generator, base_channels_g=4)).eval()
    ups = [m for m in net.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups and all(isinstance(m, ConvTranspose2d) for m in ups)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    traced = torch.fx.symbolic_trace(net)  # FX-based tools (quantization) keep working
    with torch.inference_mode():
        torch.testing.assert_close(traced(x), net(x), atol=1e-5, rtol=1e-5)

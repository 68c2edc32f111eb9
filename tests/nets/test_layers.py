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


def _grads_of(norm: nn.Module, x: torch.Tensor, upstream: torch.Tensor, *, fast: bool):

    x = x.detach().requires_grad_(True)
    params = [p for p in norm.parameters()]
    if fast:
        out = norm(x)
    else:  # the plain group norm the layer computes in every other case
        out = F.group_norm(x, norm.num_features, norm.weight, norm.bias, norm.eps)
    assert (type(out.grad_fn).__name__ == "_ChannelsLastInstanceNormBackward") == fast
    return [out, *torch.autograd.grad(out, [x, *params], upstream)]


@pytest.mark.parametrize("chunk", [1 << 20, 100])  # one chunk; several, with a ragged last one
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("affine", [False, True])
def test_channels_last_backward_equals_plain_group_norm(affine, dtype, chunk, monkeypatch):
    from translate.nets import layers

    monkeypatch.setattr(layers, "NORM_BACKWARD_CHUNK", chunk)
    torch.manual_seed(0)
    norm = InstanceNorm2d(16, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(2, 16, 12, 12) * 3 + 1).contiguous(memory_format=torch.channels_last).to(dtype)
    upstream = torch.randn_like(x)
    fast = _grads_of(norm, x, upstream, fast=True)
    plain = _grads_of(norm, x, upstream, fast=False)
    assert fast[0].dtype == dtype and fast[1].is_contiguous(memory_format=torch.channels_last)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    for a, b in zip(fast, plain, strict=False):
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)
    # and against the exact gradient in float64
    x64 = x.double().requires_grad_(True)
    exact = torch.autograd.grad(
        F.group_norm(x64, 16, None if not affine else norm.weight.double(), None if not affine else norm.bias.double()), x64, upstream.double()
    )[0]
    assert (fast[1].double() - exact).abs().max() <= 0.05 * exact.abs().max()


def test_bf16_instance_norm_double_backward_for_the_gradient_penalty():
    torch.manual_seed(0)
    norm = InstanceNorm2d(8)
    conv = nn.Conv2d(3, 8, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    target = torch.randn(1, 8, 10, 10)

    def penalty(use_layer: bool) -> torch.Tensor:
        conv.zero_grad()
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = conv(inp)
            out = norm(h) if use_layer else F.group_norm(h, 8, eps=norm.eps)
        assert (type(out.grad_fn).__name__ == "_ChannelsLastInstanceNormBackward") == use_layer
        (grad,) = torch.autograd.grad((out.float() * target).sum(), inp, create_graph=True)
        loss = grad.square().sum()
        loss.backward()
        return conv.weight.grad.clone()

    ours, plain = penalty(True), penalty(False)
    torch.testing.assert_close(ours, plain, atol=2e-2 * plain.abs().max().item(), rtol=0)

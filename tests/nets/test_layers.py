"""Norm layers: our instance norm is correct where PyTorch's CPU kernel is not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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

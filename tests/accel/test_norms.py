"""translate.accel.norms: CPU training of instance norm through batch norm, against the plain layer."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate import accel
from translate.accel.norms import AcceleratedInstanceNorm, instance_norm_rows
from translate.nets.layers import InstanceNorm2d


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.delenv(accel.SWITCH, raising=False)


def _affine(norm: nn.Module) -> nn.Module:
    if norm.affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return norm


def _outputs_and_grads(norm: nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = norm(x)
    return [out, *torch.autograd.grad(out, [x, *norm.parameters()], upstream)]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("affine", [False, True])
def test_training_route_equals_the_plain_layer(batch, dtype, affine):
    torch.manual_seed(0)
    plain = _affine(InstanceNorm2d(16, affine=affine))
    fast = accel.accelerate(copy.deepcopy(plain))
    assert isinstance(fast, AcceleratedInstanceNorm) and isinstance(fast, InstanceNorm2d)
    x = (torch.randn(batch, 16, 12, 10) * 3 + 1).to(dtype).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(x)
    ours, theirs = _outputs_and_grads(fast, x, upstream), _outputs_and_grads(plain, x, upstream)
    assert type(ours[0].grad_fn).__name__ != type(theirs[0].grad_fn).__name__  # the route ran
    assert ours[0].dtype == dtype and ours[0].is_contiguous(memory_format=torch.channels_last)
    assert ours[1].is_contiguous(memory_format=torch.channels_last)
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-5
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)
    # and the input gradient against the exact one, in float64
    x64 = x.double().requires_grad_(True)
    weight, bias = (plain.weight.double(), plain.bias.double()) if affine else (None, None)
    exact = torch.autograd.grad(F.group_norm(x64, 16, weight, bias), x64, upstream.double())[0]
    assert (ours[1].double() - exact).abs().max() <= (0.05 if dtype == torch.bfloat16 else 1e-5) * exact.abs().max()


def test_an_image_is_normalised_alike_alone_and_in_a_batch():
    x = torch.randn(3, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    out = instance_norm_rows(x, None, None, 1e-5)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.group_norm(x, 8, eps=1e-5), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[1:2], instance_norm_rows(x[1:2], None, None, 1e-5))


def test_gradient_penalty_double_backward_matches_the_plain_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1).to(memory_format=torch.channels_last)
    plain = InstanceNorm2d(8)
    fast = accel.accelerate(copy.deepcopy(plain))
    x = torch.randn(1, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    target = torch.randn(1, 8, 10, 10)

    def penalty(norm: nn.Module) -> torch.Tensor:
        conv.zero_grad()
        inp = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = norm(conv(inp))
        (grad,) = torch.autograd.grad((out.float() * target).sum(), inp, create_graph=True)
        grad.square().sum().backward()
        return conv.weight.grad.clone()

    ours, theirs = penalty(fast), penalty(plain)
    torch.testing.assert_close(ours, theirs, atol=3e-2 * theirs.abs().max().item(), rtol=0)


def test_other_calls_take_the_layers_own_forward():
    fast = accel.accelerate(InstanceNorm2d(4))
    contiguous = torch.randn(1, 4, 6, 6, requires_grad=True)
    assert type(fast(contiguous).grad_fn).__name__.startswith("NativeGroupNorm")
    with torch.no_grad():
        torch.testing.assert_close(fast(contiguous), F.group_norm(contiguous, 4))
    with pytest.raises(ValueError, match="expected 4 channels"):  # the layer's own checks still hold
        fast(torch.randn(1, 3, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True))
    stats = accel.accelerate(nn.InstanceNorm2d(4, track_running_stats=True))  # running stats: PyTorch's own
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert "Batch" not in type(stats(x).grad_fn).__name__


@pytest.mark.parametrize("norm_class", [InstanceNorm2d, nn.InstanceNorm2d])
def test_twin_keeps_state_dict_copies_and_exports(norm_class):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), norm_class(4, affine=True), nn.ReLU())
    keys = list(net.state_dict())
    accel.accelerate(net)
    accel.accelerate(net)  # idempotent
    assert type(net[1]).__mro__.count(AcceleratedInstanceNorm) == 1
    assert list(net.state_dict()) == keys
    clone = copy.deepcopy(net)
    assert type(clone[1]) is type(net[1])
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
            if norm_class is nn.InstanceNorm2d:  # (ours has checks TorchScript cannot compile, accelerated or not)
                torch.testing.assert_close(torch.jit.script(net)(x), expected)
            torch.testing.assert_close(torch.jit.trace(net, x)(x), expected)
        torch.testing.assert_close(torch.export.export(net, (x,)).module()(x), expected)


def test_the_off_switch_leaves_instance_norm_plain(monkeypatch):
    monkeypatch.setenv(accel.SWITCH, "0")
    norm = accel.accelerate(InstanceNorm2d(4))
    assert type(norm) is InstanceNorm2d

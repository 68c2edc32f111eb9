"""Discriminators: sizes, receptive field, gradients, spectral norm, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from translate.config import NetConfig
from translate.nets import build_discriminator
from translate.nets.discriminators import PatchDiscriminator, PixelDiscriminator, basic


def tiny(name: str, **overrides) -> NetConfig:
    return NetConfig(discriminator=name, base_channels_d=8, **overrides)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("norm", "in_channels", "expected"),
    [
        ("instance", 3, 2_764_737),  # CycleGAN's D
        ("batch", 6, 2_768_705),  # pix2pix's conditional D
    ],
)
def test_basic_parameter_count_matches_reference(norm: str, in_channels: int, expected: int) -> None:
    with torch.device("meta"):  # no allocation, no init: just the architecture
        net = basic(NetConfig(norm=norm), in_channels)
    assert count(net) == expected


def test_pixel_parameter_count_matches_reference() -> None:
    # 3*64+64 + 64*128+128 + 128*1+1: the last conv keeps a bias under instance norm.
    assert count(build_discriminator(NetConfig(discriminator="pixel"), 3)) == 8_705


def test_state_dict_layout_matches_reference() -> None:
    state = build_discriminator(NetConfig(), 3).state_dict()
    assert state["model.0.weight"].shape == (64, 3, 4, 4)
    assert state["model.8.weight"].shape == (512, 256, 4, 4)
    assert state["model.11.weight"].shape == (1, 512, 4, 4)
    pixel = build_discriminator(NetConfig(discriminator="pixel", norm="batch"), 3).state_dict()
    assert pixel["net.3.running_var"].shape == (128,)
    assert "net.5.bias" not in pixel


@pytest.mark.parametrize(
    ("name", "n_layers", "height", "width", "out_hw"),
    [
        ("basic", 3, 32, 32, (2, 2)),
        ("basic", 3, 64, 48, (6, 4)),
        ("basic", 3, 24, 24, (1, 1)),  # the smallest accepted side
        ("n_layers", 1, 32, 32, (14, 14)),
        ("n_layers", 2, 32, 64, (6, 14)),
        ("n_layers", 4, 64, 64, (2, 2)),
        ("pixel", 3, 32, 48, (32, 48)),
    ],
)
def test_output_shape_and_gradients(name: str, n_layers: int, height: int, width: int, out_hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_discriminator(tiny(name, n_layers_d=n_layers), 6)
    logits = net(torch.rand(2, 6, height, width) * 2 - 1)
    assert logits.shape == (2, 1, *out_hw)
    assert torch.isfinite(logits).all()
    logits.mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        if param.dim() > 1:
            assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize(("n_layers", "expected"), [(1, 16), (2, 34), (3, 70)])
def test_receptive_field_is_what_the_gradient_sees(n_layers: int, expected: int) -> None:
    # Without norm (instance norm mixes the whole image), one central logit depends on exactly
    # a receptive_field x receptive_field window of the input.
    net = PatchDiscriminator(1, base_channels=2, n_layers=n_layers, norm="none")
    assert net.receptive_field == expected
    x = torch.rand(1, 1, 128, 128, requires_grad=True)
    logits = net(x)
    logits[0, 0, logits.shape[2] // 2, logits.shape[3] // 2].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert int(rows.max() - rows.min() + 1) == expected
    assert int(cols.max() - cols.min() + 1) == expected


def test_spectral_norm_bounds_weights_and_keeps_norm_and_init() -> None:
    torch.manual_seed(0)
    net = build_discriminator(tiny("basic", spectral_norm=True), 3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())  # norm kept as configured
    # The init reached the underlying weights, not a throw-away computed tensor.
    original = torch.cat([m.parametrizations.weight.original.flatten() for m in convs])
    assert 0.015 < original.std().item() < 0.025
    # Spectral norm was applied after the init, so its power iteration (15 steps at
    # registration, one per training forward) already estimates the initialised weights.
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    net(x)
    net.eval()
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 0.02
    net.train()
    net(x).mean().backward()
    assert all(m.parametrizations.weight.original.grad is not None for m in convs)


@pytest.mark.parametrize("name", ["basic", "pixel"])
def test_norm_d_sets_the_discriminators_norm_apart_from_the_generators(name: str) -> None:
    def norms(net: nn.Module) -> set[str]:
        kinds = {"instance": nn.modules.instancenorm._InstanceNorm, "batch": nn.modules.batchnorm._BatchNorm}
        return {kind for m in net.modules() for kind, base in kinds.items() if isinstance(m, base)}

    assert norms(build_discriminator(tiny(name, norm="instance"), 3)) == {"instance"}  # "same": the papers'
    assert norms(build_discriminator(tiny(name, norm="instance", norm_d="batch"), 3)) == {"batch"}
    plain = build_discriminator(tiny(name, norm="batch", norm_d="none"), 3)
    assert norms(plain) == set()
    # without a norm layer after them, every conv has its bias (as the reference's use_bias rule)
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(
    ("net", "shape", "fragment"),
    [
        (PatchDiscriminator(3, base_channels=4), (3, 32, 32), "(B, 3, H, W)"),
        (PatchDiscriminator(3, base_channels=4), (1, 6, 32, 32), "(1, 6, 32, 32)"),
        (PatchDiscriminator(3, base_channels=4), (1, 3, 16, 32), "at least 24"),
        (PixelDiscriminator(3, base_channels=4), (1, 3, 1, 1), "at least 2"),
    ],
)
def test_bad_input_raises(net: nn.Module, shape: tuple[int, ...], fragment: str) -> None:
    with pytest.raises(ValueError, match="Discriminator") as info:
        net(torch.zeros(shape))
    assert fragment in str(info.value)
    assert str(tuple(shape)) in str(info.value)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(3, n_layers=0)
    with pytest.raises(ValueError, match="in_channels"):
        PixelDiscriminator(0)


@pytest.mark.parametrize("name", ["basic", "pixel"])
def test_channels_last_and_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    net = build_discriminator(tiny(name), 3).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    x_cl = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net(x_cl), expected, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x_cl)
    assert logits.shape == expected.shape
    assert torch.isfinite(logits.float()).all()
    # bf16 keeps ~3 significant digits; the logits should still agree roughly.
    assert (logits.float() - expected).abs().max() < 0.05 + 0.05 * expected.abs().max()

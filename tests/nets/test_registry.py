"""Registry: names, lookup errors, duplicates, size multiples, weight init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from translate.config import NetConfig
from translate.errors import UserError
from translate.nets import (
    build_discriminator,
    build_generator,
    discriminator_names,
    generator_names,
    registry,
    size_multiple,
)
from translate.nets.layers import init_weights


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registrations made by a test go into copies, so other tests see the built-ins only.
    monkeypatch.setattr(registry, "_GENERATORS", dict(registry._GENERATORS))
    monkeypatch.setattr(registry, "_DISCRIMINATORS", dict(registry._DISCRIMINATORS))


def test_builtin_names() -> None:
    assert generator_names() == ["resnet_6blocks", "resnet_9blocks", "unet_128", "unet_256"]
    assert discriminator_names() == ["basic", "n_layers", "pixel"]


def test_unknown_names_are_user_errors_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match="net.generator") as info:
        build_generator(NetConfig(generator="resnet_7blocks"))
    assert "resnet_7blocks" in str(info.value) and "unet_256" in str(info.value)
    with pytest.raises(UserError, match="net.generator"):
        size_multiple(NetConfig(generator="nope"))
    with pytest.raises(UserError, match="net.discriminator") as info:
        build_discriminator(NetConfig(discriminator="multiscale"), 3)
    assert "basic, n_layers, pixel" in str(info.value)


def test_bad_config_sizes_are_user_errors() -> None:
    with pytest.raises(UserError, match="net.base_channels_g"):
        build_generator(NetConfig(base_channels_g=0))
    with pytest.raises(UserError, match="net.n_layers_d"):
        build_discriminator(NetConfig(discriminator="n_layers", n_layers_d=0), 3)
    with pytest.raises(ValueError, match="in_channels"):
        build_discriminator(NetConfig(), 0)


@pytest.mark.usefixtures("scratch_registry")
def test_duplicates_refused_and_custom_networks_built() -> None:
    with pytest.raises(ValueError, match="resnet_9blocks"):
        registry.register_generator("resnet_9blocks")(lambda cfg, i, o: nn.Identity())
    with pytest.raises(ValueError, match="basic"):
        registry.register_discriminator("basic")(lambda cfg, i: nn.Identity())

    @registry.register_generator("one_by_one")
    def one_by_one(cfg: NetConfig, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Conv2d(in_channels, out_channels, 1)

    with pytest.raises(ValueError, match="one_by_one"):
        registry.register_generator("one_by_one")(one_by_one)
    assert "one_by_one" in generator_names()
    net = build_generator(NetConfig(generator="one_by_one"), in_channels=2, out_channels=5)
    assert net.weight.shape == (5, 2, 1, 1)
    assert torch.all(net.bias == 0)  # init applied
    assert size_multiple(NetConfig(generator="one_by_one")) == 1  # no attribute: any size


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet_6blocks", 4), ("resnet_9blocks", 4), ("unet_128", 128), ("unet_256", 256)],
)
def test_size_multiple(name: str, expected: int) -> None:
    assert size_multiple(NetConfig(generator=name)) == expected


def test_in_out_channels_default_to_config() -> None:
    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4, in_channels=1, out_channels=2)
    assert build_generator(cfg)(torch.zeros(1, 1, 16, 16)).shape == (1, 2, 16, 16)
    swapped = build_generator(cfg, in_channels=2, out_channels=1)
    assert swapped(torch.zeros(1, 2, 16, 16)).shape == (1, 1, 16, 16)


def _conv_weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_normal_init_as_reference() -> None:
    torch.manual_seed(0)
    net = build_generator(NetConfig(generator="unet_128", base_channels_g=8, norm="batch", init_gain=0.05))
    weights = torch.cat([w.flatten() for w in _conv_weights(net)])
    assert abs(weights.mean().item()) < 0.005
    assert 0.045 < weights.std().item() < 0.055
    biases = [m.bias for m in net.modules() if isinstance(m, nn.ConvTranspose2d) and m.bias is not None]
    assert biases and all(torch.all(b == 0) for b in biases)
    batch_norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([m.weight.detach() for m in batch_norms])
    assert abs(gammas.mean().item() - 1.0) < 0.01  # N(1, gain) as the reference
    assert 0.04 < gammas.std().item() < 0.06
    assert all(torch.all(m.bias == 0) for m in batch_norms)


@pytest.mark.parametrize("kind", ["normal", "xavier", "kaiming", "orthogonal"])
def test_every_init_kind_builds_a_working_net(kind: str) -> None:
    torch.manual_seed(0)
    net = build_generator(NetConfig(generator="resnet_6blocks", base_channels_g=4, init=kind, init_gain=0.5))
    assert torch.isfinite(net(torch.rand(1, 3, 16, 16) * 2 - 1)).all()
    if kind == "orthogonal":
        rows = net.model[1].weight.detach().flatten(1)  # (4, 147): orthogonal rows of norm gain
        torch.testing.assert_close(rows @ rows.T, 0.25 * torch.eye(4), atol=1e-5, rtol=0)
    if kind == "kaiming":  # fan_in, gain unused: std = sqrt(2 / fan_in)
        weight = net.model[4].weight.detach()
        assert abs(weight.std().item() - (2 / weight[0].numel()) ** 0.5) < 0.02


def test_init_rejects_unknown_kind_and_bad_gain() -> None:
    with pytest.raises(ValueError, match="'uniform'"):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gain"):
        init_weights(nn.Conv2d(1, 1, 1), "normal", 0.0)
    with pytest.raises(UserError, match="net.init_gain"):
        build_generator(NetConfig(init_gain=-1.0))

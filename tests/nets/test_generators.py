"""Generators: sizes, shapes, gradients, input checks, reference parity (counts, layout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from translate.config import NetConfig
from translate.nets import build_generator, generators
from translate.nets.generators import ResnetGenerator, UnetGenerator, unet_generator
from translate.nets.layers import RESIDUAL_LIMIT, residual_output

# (name, side) at the smallest side each one accepts, plus larger ones where cheap.
SHAPE_CASES = [
    ("resnet_6blocks", 32),
    ("resnet_6blocks", 48),
    ("resnet_9blocks", 32),
    ("resnet_9blocks", 64),
    ("unet_128", 128),
    ("unet_256", 256),
]


def tiny(name: str, **overrides) -> NetConfig:
    return NetConfig(generator=name, base_channels_g=4, **overrides)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def meta_generator(cfg: NetConfig) -> nn.Module:
    # Full size on the meta device, no init: counting parameters without allocating them.
    with torch.device("meta"):
        return getattr(generators, cfg.generator)(cfg, cfg.in_channels, cfg.out_channels)


@pytest.mark.parametrize(
    ("name", "norm", "expected"),
    [
        ("resnet_9blocks", "instance", 11_378_179),  # the reference CycleGAN generator
        ("resnet_6blocks", "instance", 7_837_699),
        ("unet_256", "batch", 54_413_955),  # the reference pix2pix generator ("54.414 M")
    ],
)
def test_parameter_count_matches_reference(name: str, norm: str, expected: int) -> None:
    assert count(meta_generator(NetConfig(generator=name, norm=norm))) == expected


def test_state_dict_layout_matches_reference() -> None:
    # Key names and shapes of the reference checkpoints (e.g. horse2zebra latest_net_G.pth).
    resnet = meta_generator(NetConfig(generator="resnet_9blocks")).state_dict()
    assert resnet["model.1.weight"].shape == (64, 3, 7, 7)
    assert resnet["model.10.conv_block.5.weight"].shape == (256, 256, 3, 3)
    assert resnet["model.19.weight"].shape == (256, 128, 3, 3)  # first transposed conv
    assert resnet["model.26.bias"].shape == (3,)
    assert not any("running" in key for key in resnet)  # instance norm keeps no stats
    unet = meta_generator(NetConfig(generator="unet_256", norm="batch")).state_dict()
    assert unet["model.model.0.weight"].shape == (64, 3, 4, 4)
    assert unet["model.model.1.model.2.running_mean"].shape == (128,)
    assert unet["model.model.3.weight"].shape == (128, 3, 4, 4)
    assert "model.model.1.model.1.bias" not in unet  # batch norm: convs without bias


@pytest.mark.parametrize(("name", "side"), SHAPE_CASES)
def test_output_shape_range_and_gradients(name: str, side: int) -> None:
    torch.manual_seed(0)
    net = build_generator(tiny(name))
    x = torch.rand(2, 3, side, side) * 2 - 1
    y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0  # tanh output
    y.square().mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        if param.dim() > 1:  # biases under instance norm get a mathematically zero gradient
            assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", ["resnet_9blocks", "unet_128"])
def test_channel_counts_and_non_square(name: str) -> None:
    net = build_generator(tiny(name, norm="batch"), in_channels=1, out_channels=2)
    height, width = (16, 24) if name.startswith("resnet") else (128, 256)
    assert net(torch.zeros(1, 1, height, width)).shape == (1, 2, height, width)


@pytest.mark.parametrize("num_downs", [5, 6])
def test_generic_unet_depths(num_downs: int) -> None:
    net = unet_generator(tiny("unet_256"), 3, 3, num_downs=num_downs)
    side = 2**num_downs
    assert net.size_multiple == side
    for s in (side, 2 * side):
        assert net(torch.rand(1, 3, s, s) * 2 - 1).shape == (1, 3, s, s)


def test_dropout_placement_as_reference() -> None:
    unet = UnetGenerator(3, 3, num_downs=8, base_channels=4, norm="batch", dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in unet.modules()) == 3  # the num_downs - 5 deep levels
    assert not any(isinstance(m, nn.Dropout) for m in UnetGenerator(3, 3, base_channels=4).modules())
    resnet = ResnetGenerator(3, 3, base_channels=4, n_blocks=6, dropout=True)
    assert sum(isinstance(m, nn.Dropout) for m in resnet.modules()) == 6


def test_norm_layers_as_reference() -> None:
    net = build_generator(tiny("resnet_6blocks"))
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    assert all(m.bias is not None for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    batch = build_generator(tiny("resnet_6blocks", norm="batch"))
    biased = [m for m in batch.modules() if isinstance(m, nn.Conv2d) and m.bias is not None]
    assert len(biased) == 1  # only the output conv, which has no norm after it
    plain = build_generator(tiny("resnet_6blocks", norm="none"))
    assert not any(isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) for m in plain.modules())


@pytest.mark.parametrize(
    ("name", "shape", "fragment"),
    [
        ("resnet_6blocks", (3, 32, 32), "(B, 3, H, W)"),
        ("resnet_6blocks", (1, 4, 32, 32), "(1, 4, 32, 32)"),
        ("resnet_6blocks", (1, 3, 30, 32), "multiples of 4"),
        ("resnet_6blocks", (1, 3, 4, 4), "at least 8"),
        ("unet_128", (1, 3, 64, 64), "multiples of 128"),
    ],
)
def test_bad_input_raises(name: str, shape: tuple[int, ...], fragment: str) -> None:
    net = build_generator(tiny(name))
    with pytest.raises(ValueError, match="Generator") as info:
        net(torch.zeros(shape))
    assert fragment in str(info.value)
    assert str(tuple(shape)) in str(info.value)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="num_downs"):
        UnetGenerator(3, 3, num_downs=4)
    with pytest.raises(ValueError, match="n_blocks"):
        ResnetGenerator(3, 3, n_blocks=-1)
    with pytest.raises(ValueError, match="norm"):
        ResnetGenerator(3, 3, norm="group")  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "side"), [("resnet_6blocks", 32), ("unet_128", 128)])
def test_channels_last_matches_contiguous(name: str, side: int) -> None:
    torch.manual_seed(0)
    net = build_generator(tiny(name)).eval()
    x = torch.rand(1, 3, side, side) * 2 - 1
    expected = net(x)
    net = net.to(memory_format=torch.channels_last)
    got = net(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "side"), [("resnet_6blocks", 32), ("unet_128", 128)])
def test_bf16_autocast(name: str, side: int) -> None:
    torch.manual_seed(0)
    net = build_generator(tiny(name))
    x = torch.rand(1, 3, side, side) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y.float()).all()
    y.float().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------------------------------------------------
# residual generators: output = tanh(atanh(input) + a learned change), the identity at start


@pytest.mark.parametrize("name", ["resnet_6blocks", "unet_128"])
def test_residual_generator_starts_as_the_identity_and_learns_a_change(name: str, photo) -> None:
    torch.manual_seed(0)
    net = build_generator(tiny(name, residual=True))
    x = photo(128, 128, "astronaut")
    y = net(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x.clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT), atol=1e-5, rtol=0)
    # the same parameters and state_dict as the plain generator: checkpoints load either way
    plain = build_generator(tiny(name))
    assert list(net.state_dict()) == list(plain.state_dict())
    y.square().mean().backward()
    assert net.output_layer().weight.grad.abs().sum() > 0  # training moves the (zeroed) output layer first
    with torch.no_grad():
        net.output_layer().weight.normal_(0, 0.05)
    net.zero_grad()
    out = net(x)
    assert out.abs().max() < 1 and not torch.allclose(out, x, atol=1e-3)
    out.square().mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        if param.dim() > 1:
            assert param.grad.abs().sum() > 0, param_name


def test_instance_norm_resnet_cannot_see_a_colour_cast_the_residual_one_keeps_it(photo) -> None:
    """The default CycleGAN generator cannot see a colour cast of its whole input, one reason its
    outputs on a subtle task (the quality benchmark's grade) take their colours from the training
    collections, not from the photo: a constant shift of an input channel (a cast, a brightness
    change) shifts every first-layer feature map by a constant, which its instance norm subtracts,
    so the output does not depend on it at all. The residual generator adds its input back and
    keeps the cast."""
    torch.manual_seed(0)
    x = photo(64, 64, "astronaut") * 0.6  # within (-0.6, 0.6): the shifted image needs no clamping
    cast = torch.tensor([0.3, 0.0, -0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        # weights at a trained scale (the initial 0.02 makes any net's output nearly constant)
        plain, unnormed = (build_generator(tiny("resnet_6blocks", norm=norm)).eval() for norm in ("instance", "none"))
        for net in (plain, unnormed):
            for param in net.parameters():
                param.normal_(0, 0.3)
        assert plain(x).std() > 0.3  # it does respond to the image's content
        torch.testing.assert_close(plain(x + cast), plain(x), atol=2e-4, rtol=0)
        assert (unnormed(x + cast) - unnormed(x)).abs().max() > 0.3  # without the norm it would see it
        residual = build_generator(tiny("resnet_6blocks", residual=True)).eval()
        residual.output_layer().weight.normal_(0, 0.05)  # as if trained: a change besides the input
        moved = residual(x + cast).mean((0, 2, 3)) - residual(x).mean((0, 2, 3))
    assert moved[0] > 0.15 and moved[2] < -0.15 and abs(float(moved[1])) < 0.1, moved


def test_residual_output_keeps_the_input_range_and_finite_gradients_at_its_ends() -> None:
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], requires_grad=True)
    change = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0], requires_grad=True)
    out = residual_output(x.view(1, 1, 1, 5), change.view(1, 1, 1, 5))
    torch.testing.assert_close(out.view(-1), x.detach().clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT))
    out.sum().backward()
    assert torch.isfinite(change.grad).all() and (change.grad > 0).all()
    big = residual_output(torch.zeros(1, 1, 1, 2), torch.tensor([-50.0, 50.0]).view(1, 1, 1, 2))
    assert big.abs().max() <= 1.0


def test_residual_needs_as_many_channels_out_as_in() -> None:
    with pytest.raises(ValueError, match="residual needs in_channels == out_channels"):
        ResnetGenerator(1, 3, base_channels=4, n_blocks=1, residual=True)
    # the config's residual applies where the channels match: a grey->RGB generator stays plain
    net = build_generator(tiny("resnet_6blocks", residual=True), in_channels=1, out_channels=3)
    assert not net.residual and net(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("name", ["resnet_6blocks", "unet_128"])
def test_resize_upsampling_has_no_transposed_convolution_and_trains(name: str) -> None:
    torch.manual_seed(0)
    net = build_generator(tiny(name, upsample="resize"))
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, nn.Upsample) for m in net.modules()) == (2 if name.startswith("resnet") else 7)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    y = net(x)
    assert y.shape == x.shape and y.abs().max() <= 1.0
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    if name.startswith("resnet"):  # (a U-Net's 1x1 bottleneck sees the borders everywhere)
        # a constant input gives a constant output away from the borders: no checkerboard at the start
        with torch.no_grad():
            flat = net.eval()(torch.full((1, 3, 128, 128), 0.3))[..., 32:96, 32:96]
        assert (flat - flat.mean((2, 3), keepdim=True)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="upsample must be one of"):
        generators.upsampling(4, 4, "bicubic", kernel_size=3)  # type: ignore[arg-type]


def test_anti_aliased_generator_has_the_layout_cuts_layer_indices_refer_to() -> None:
    torch.manual_seed(0)
    net = build_generator(tiny("resnet_9blocks", downsample="blur", upsample="blur"))
    kinds = [type(m).__name__ for m in net.model]
    assert kinds[4:8] == ["Conv2d", "InstanceNorm2d", "ReLU", "BlurDownsample"] and kinds[12] == "ResnetBlock"
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert all(k.endswith(("weight", "bias")) for k in net.state_dict())  # the blur filters are fixed, not saved
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    y = net(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(Exception, match="downsamples with strided convolutions only"):
        build_generator(tiny("unet_128", downsample="blur"))


def test_blur_layers_keep_flat_images_flat_and_resize_by_two() -> None:
    from translate.nets.layers import BlurDownsample, BlurUpsample, binomial_filter

    torch.testing.assert_close(binomial_filter(3), torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    flat = torch.full((1, 2, 9, 10), 0.3)
    assert BlurDownsample(2)(flat).shape == (1, 2, 5, 5) and torch.allclose(BlurDownsample(2)(flat), torch.tensor(0.3))
    assert BlurUpsample(2)(flat).shape == (1, 2, 18, 20) and torch.allclose(BlurUpsample(2)(flat), torch.tensor(0.3))
    # a single bright pixel spreads over its neighbours instead of aliasing
    spike = torch.zeros(1, 1, 8, 8)
    spike[0, 0, 3, 3] = 1.0
    assert (BlurUpsample(1)(spike) > 0).sum() > 4 and BlurUpsample(1)(spike).sum() == pytest.approx(4.0)

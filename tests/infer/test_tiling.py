"""Tiled inference: agrees with untiled inference, thanks to frozen instance-norm statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import translate.infer.tiling as tiling
from translate.config import NetConfig
from translate.infer.tiling import (
    choose_tile,
    collect_instance_norm_stats,
    estimate_bytes,
    frozen_instance_norm,
    needs_tiling,
    translate_tiled,
)
from translate.infer.translator import Translator
from translate.nets import build_generator


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


def translator_for(generator: str, norm: str = "instance", base_channels: int = 8, **kwargs) -> Translator:
    torch.manual_seed(0)
    net_cfg = NetConfig(generator=generator, norm=norm, base_channels_g=base_channels)  # init gain 0.02
    return Translator.from_module(build_generator(net_cfg), net_cfg, **kwargs)


@pytest.mark.parametrize(
    ("generator", "base_channels", "size", "tile", "overlap", "photo_name", "naive_gap_db"),
    [
        # ResNet: tile borders matter only within ~32 px, so a 48 px overlap is enough.
        ("resnet_6blocks", 8, (128, 192), 96, 48, "coffee", 10.0),
        # U-Net: its deepest levels see the whole tile, so tile borders cost more everywhere.
        ("unet_128", 4, (256, 384), 256, 128, "rocket", 3.0),
    ],
)
def test_tiled_matches_untiled_and_naive_tiling_does_not(photo, generator, base_channels, size, tile, overlap, photo_name, naive_gap_db):
    translator = translator_for(generator, base_channels=base_channels)
    image = photo(*size, photo_name)
    untiled = translator.translate_batch(image)
    assert untiled.std() > 0.03  # the random network does something to the photo

    translator.tile, translator.overlap = tile, overlap
    tiled = translator.translate_batch(image)  # routed through translate_tiled
    naive = translate_tiled(translator, image, norm_stats="tile")

    assert tiled.shape == untiled.shape and tiled.dtype == torch.float32
    assert psnr(tiled, untiled) >= 40.0
    assert psnr(naive, untiled) <= psnr(tiled, untiled) - naive_gap_db


def test_downscaled_statistics_when_the_image_does_not_fit(photo, monkeypatch):
    translator = translator_for("resnet_6blocks")
    image = photo(128, 192, "coffee")
    untiled = translator.translate_batch(image)
    translator.tile, translator.overlap = 96, 48
    naive = translate_tiled(translator, image, norm_stats="tile")
    seen = []
    real_collect = tiling.collect_instance_norm_stats
    monkeypatch.setattr(tiling, "collect_instance_norm_stats", lambda t, x: seen.append(tuple(x.shape)) or real_collect(t, x))

    monkeypatch.setattr(tiling, "needs_tiling", lambda *args: True)  # as if the image were huge
    tiled = translate_tiled(translator, image, stats_max_side=96)

    assert seen == [(1, 3, 64, 96)]  # long side capped at 96
    # Statistics of a 2x smaller copy are approximate, but shared by all tiles: closer than naive.
    assert psnr(tiled, untiled) > psnr(naive, untiled) + 1.0


def test_batch_norm_networks_need_no_statistics_pass(photo, monkeypatch):
    translator = translator_for("resnet_6blocks", norm="batch")
    image = photo(64, 96)
    monkeypatch.setattr(tiling, "collect_instance_norm_stats", lambda *a: pytest.fail("stats pass for batch norm"))
    untiled = translator.translate_batch(image)
    translator.tile, translator.overlap = 48, 16
    assert psnr(translator.translate_batch(image), untiled) > 30.0


@pytest.mark.parametrize("affine", [False, True])
def test_frozen_statistics_reproduce_instance_norm_and_are_restored(affine):
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(4, affine=affine)
    if affine:
        nn.init.normal_(norm.weight, 1.0, 0.5)
        nn.init.normal_(norm.bias, 0.0, 0.5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm, nn.ReLU())
    translator = Translator.from_module(net, NetConfig())
    image = torch.rand(1, 3, 16, 24) * 2 - 1

    stats = collect_instance_norm_stats(translator, image)
    assert list(stats) == [norm] and stats[norm][0][0].shape == (4,)
    with torch.inference_mode():
        expected = net(image)
        with frozen_instance_norm(stats):
            frozen_whole = net(image)
            frozen_crop = net(image[..., :, :8])
        restored_crop = net(image[..., :, :8])
    torch.testing.assert_close(frozen_whole, expected, atol=1e-5, rtol=1e-5)
    # A crop normalised with the whole image's statistics: equal to the whole image's columns
    # away from the conv's border, unlike the crop normalised with its own statistics.
    torch.testing.assert_close(frozen_crop[..., :7], expected[..., :7], atol=1e-5, rtol=1e-5)
    assert (restored_crop[..., :7] - expected[..., :7]).abs().max() > 1e-2
    assert "forward" not in vars(norm)

    with pytest.raises(RuntimeError, match="boom"), frozen_instance_norm(stats):
        raise RuntimeError("boom")
    assert "forward" not in vars(norm)


def test_odd_sizes_and_batches_keep_their_shape_and_range(photo):
    translator = translator_for("resnet_6blocks", tile=32, overlap=16)
    batch = torch.cat([photo(37, 53), photo(37, 53, "chelsea")])
    out = translator.translate_batch(batch)
    assert out.shape == (2, 3, 37, 53)
    assert out.min() >= -1 and out.max() <= 1
    # each image is tiled on its own: the batch equals the images one by one
    torch.testing.assert_close(out[1:], translator.translate_batch(batch[1:]))


def test_memory_estimate_and_tile_choice():
    translator = translator_for("resnet_9blocks", base_channels=64)
    small = estimate_bytes(translator, (1, 3, 256, 256))
    assert estimate_bytes(translator, (2, 3, 512, 512)) == pytest.approx(8 * small, rel=0.01)
    # ~2 float32 tensors of 64 channels at full resolution are alive at the peak
    assert 2 * 64 * 4 <= small / 256**2 <= 4 * 64 * 4
    assert not needs_tiling(translator, (1, 3, 512, 512))
    assert needs_tiling(translator, (1, 3, 4096, 4096))

    tile = choose_tile(translator)
    assert tile % translator.multiple == 0
    assert estimate_bytes(translator, (1, 3, tile, tile)) <= translator.memory_budget_mb * 2**20
    unet = translator_for("unet_256", base_channels=4, tile=100, overlap=32)
    assert (choose_tile(unet), tiling.tile_overlap(unet)) == (512, 256)  # both rounded to 256-px steps


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "multiple"), [(4096, 1652, 32, 4), (1000, 300, 32, 4), (257, 96, 16, 4), (1024, 512, 256, 256), (64, 96, 16, 4)]
)
def test_tiles_share_each_axis_evenly(size, tile, overlap, multiple):
    length, starts = tiling.axis_layout(size, tile, overlap, multiple)
    if size <= tile:
        assert (length, starts) == (size, [0])
        return
    count = math.ceil((size - overlap) / (tile - overlap))  # as few tiles as the largest tile allows
    assert len(starts) == count and length <= tile and length % multiple == 0
    assert starts[0] == 0 and starts[-1] + length == size  # the axis is covered
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(length - gap >= overlap for gap in gaps)  # neighbours overlap by at least `overlap`
    # ... and not by much more: at most one multiple of slack per tile beyond the requested overlap
    assert count * length - (count - 1) * overlap - size < count * multiple
    # the flush layout (full tiles, the last one against the edge) computes more pixels
    assert count * length <= len(tiling.tile_starts(size, tile, overlap)) * tile


def test_automatic_tiles_leave_room_for_the_full_resolution_buffers():
    translator = translator_for("resnet_9blocks", base_channels=64)
    translator.memory_budget_mb = 1280
    side = 4096
    budget = translator.memory_budget_mb * 2**20
    buffers = tiling.full_resolution_bytes(translator, side, side)
    assert buffers == (3 + 3) * 4 * side * side
    tile = choose_tile(translator, side, side)
    assert tile < choose_tile(translator)  # the buffers take their share of the budget
    assert buffers + estimate_bytes(translator, (1, 3, tile, tile)) <= budget
    length, _ = tiling.axis_layout(side, tile, tiling.tile_overlap(translator), translator.multiple)
    assert buffers + estimate_bytes(translator, (1, 3, length, length)) <= budget
    # a budget the buffers alone exceed still gets workable tiles, not one-pixel ones
    translator.memory_budget_mb = 64
    assert choose_tile(translator, side, side) == tiling.MIN_AUTO_TILE


def test_tiled_output_is_a_weighted_average_of_the_tiles(photo):
    """With an identity-like network (1x1 conv, no norm) any blend of tiles is the image itself:
    the separable weight sums must divide out exactly, including the flush last tile."""
    net_cfg = NetConfig(generator="resnet_6blocks", norm="none", base_channels_g=4)
    translator = Translator.from_module(build_generator(net_cfg), net_cfg, tile=48, overlap=16)
    identity = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3)[:, :, None, None])
    translator.net = identity.eval()
    image = photo(100, 75)
    torch.testing.assert_close(translate_tiled(translator, image), image.clamp(-1, 1), atol=1e-6, rtol=0)


def test_bad_arguments_are_refused():
    translator = translator_for("resnet_6blocks")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        translate_tiled(translator, torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="'median'"):
        translate_tiled(translator, torch.zeros(1, 3, 32, 32), norm_stats="median")  # type: ignore[arg-type]


def test_normal_sizes_are_not_padded_beyond_the_networks_multiple() -> None:
    """A 128-px image through unet_128 is one forward at 128 px, identical to the plain module."""
    import torch

    from translate.config import NetConfig
    from translate.infer.translator import Translator
    from translate.nets import build_generator

    for generator, side in (("unet_128", 128), ("resnet_6blocks", 32)):
        cfg = NetConfig(generator=generator, base_channels_g=4, norm="batch" if generator.startswith("unet") else "instance")
        torch.manual_seed(0)
        net = build_generator(cfg).eval()
        x = torch.rand(1, 3, side, side) * 2 - 1
        with torch.no_grad():
            expected = net(x).clamp(-1, 1)
        got = Translator.from_module(net, cfg).translate_batch(x)
        assert torch.allclose(got, expected, atol=1e-5), generator
    tiny = Translator.from_module(
        build_generator(NetConfig(generator="resnet_6blocks", base_channels_g=4)), NetConfig(generator="resnet_6blocks", base_channels_g=4)
    )
    assert tiny.translate_batch(torch.zeros(1, 3, 1, 1)).shape == (1, 3, 1, 1)  # still padded up to 8 px

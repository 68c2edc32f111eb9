"""Tiled inference: agrees with untiled inference, thanks to frozen instance-norm statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from translate.config import NetConfig
from translate.errors import UserError
from translate.infer.tiling import (
    MIN_AUTO_TILE,
    MIN_STATS_SIDE,
    MemoryBudget,
    activation_bytes_per_pixel,
    axis_tiles,
    collect_instance_norm_stats,
    downscale_for_stats,
    edge_weights,
    frozen_instance_norm,
    pad_to_multiple,
    plan_tiles,
    tile_starts,
    translate_tiled,
)
from translate.infer.translator import Translator
from translate.nets import build_generator, size_multiple


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


def translator_for(generator: str, norm: str = "instance", base_channels: int = 8, **kwargs) -> Translator:
    torch.manual_seed(0)
    net_cfg = NetConfig(generator=generator, norm=norm, base_channels_g=base_channels)  # init gain 0.02
    return Translator.from_module(build_generator(net_cfg), net_cfg, **kwargs)


def input_shapes(translator: Translator) -> list[tuple[int, ...]]:
    """Records the shape of every input the translator's network runs on."""
    seen: list[tuple[int, ...]] = []
    translator.net.register_forward_pre_hook(lambda _module, args: seen.append(tuple(args[0].shape)))
    return seen


def budget_of(generator: str, base_channels: int = 64, budget_mb: int = 1024, host_buffers: bool = True) -> MemoryBudget:
    torch.manual_seed(0)
    cfg = NetConfig(generator=generator, base_channels_g=base_channels)
    net, multiple = build_generator(cfg), size_multiple(cfg)
    return MemoryBudget(
        budget_bytes=budget_mb * 2**20,
        bytes_per_pixel=activation_bytes_per_pixel(net, cfg, multiple=multiple),
        multiple=multiple,
        in_channels=3,
        out_channels=3,
        host_buffers=host_buffers,
    )


# ---------------------------------------------------------------------------------------- seams


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
    seen = input_shapes(translator)
    tiled = translator.translate_batch(image)
    plan = plan_tiles(*size, tile, overlap, translator.multiple)
    assert len(plan) > 1 and len(seen) == len(plan) + 1  # one statistics pass, then the tiles
    # without frozen statistics every tile normalises with its own: naive tiling
    naive = translate_tiled(translator.forward_padded, image, plan)

    assert tiled.shape == untiled.shape and tiled.dtype == torch.float32
    assert psnr(tiled, untiled) >= 40.0
    assert psnr(naive, untiled) <= psnr(tiled, untiled) - naive_gap_db


def test_downscaled_statistics_when_the_image_does_not_fit(photo):
    translator = translator_for("resnet_6blocks")
    image = photo(128, 192, "coffee")
    untiled = translator.translate_batch(image)
    plan = plan_tiles(128, 192, 96, 48, translator.multiple)
    naive = translate_tiled(translator.forward_padded, image, plan)

    copy = downscale_for_stats(image, translator.memory(), max_side=96)
    assert copy.shape == (1, 3, 64, 96)  # long side capped at 96
    with frozen_instance_norm(collect_instance_norm_stats(translator.net, translator.forward_padded, copy)):
        tiled = translate_tiled(translator.forward_padded, image, plan)
    # Statistics of a 2x smaller copy are approximate, but shared by all tiles: closer than naive.
    assert psnr(tiled, untiled) > psnr(naive, untiled) + 1.0


def test_an_image_over_the_budget_is_tiled_with_statistics_from_a_copy_within_it(photo):
    translator = translator_for("resnet_6blocks")
    image = photo(128, 192, "coffee")
    seen = input_shapes(translator)
    untiled = translator.translate_batch(image)
    assert seen == [(1, 3, 128, 192)]  # fits the default budget: one pass

    translator.memory_budget_mb = 1
    memory = translator.memory()
    assert memory.needs_tiling(image.shape)
    seen.clear()
    tiled = translator.translate_batch(image)
    stats_shape, *tiles = seen
    assert tiles == [(1, 3, 128, 192)]  # the smallest automatic tile covers this image
    assert max(stats_shape[2:]) >= MIN_STATS_SIDE and stats_shape[2] < 128 and stats_shape[3] < 192
    assert memory.in_channels * 4 * 128 * 192 + memory.estimate_bytes(stats_shape) <= memory.budget_bytes
    assert psnr(tiled, untiled) > 25.0


def test_batch_norm_networks_need_no_statistics_pass(photo):
    translator = translator_for("resnet_6blocks", norm="batch")
    image = photo(64, 96)
    untiled = translator.translate_batch(image)
    translator.tile, translator.overlap = 48, 16
    seen = input_shapes(translator)
    tiled = translator.translate_batch(image)
    assert len(seen) == len(plan_tiles(64, 96, 48, 16, translator.multiple))  # the tiles only
    assert psnr(tiled, untiled) > 30.0


@pytest.mark.parametrize("affine", [False, True])
def test_frozen_statistics_reproduce_instance_norm_and_are_restored(affine):
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(4, affine=affine)
    if affine:
        nn.init.normal_(norm.weight, 1.0, 0.5)
        nn.init.normal_(norm.bias, 0.0, 0.5)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), norm, nn.ReLU()).eval()
    image = torch.rand(1, 3, 16, 24) * 2 - 1

    stats = collect_instance_norm_stats(net, net, image)  # any callable that runs the network
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
    assert out.shape == (2, 3, 37, 53) and out.is_contiguous()
    assert out.min() >= -1 and out.max() <= 1
    # each image is tiled on its own: the batch equals the images one by one
    torch.testing.assert_close(out[1:], translator.translate_batch(batch[1:]))


# ---------------------------------------------------------------------------------------- blending


def test_tiled_output_is_a_weighted_average_of_the_tiles(photo):
    """With an identity forward any blend of tiles is the image itself: the separable weight
    sums must divide out exactly, including the flush last tile and the padded border."""
    image = photo(100, 75)
    plan = plan_tiles(100, 75, 48, 16, 4)
    assert len(plan) > 4
    torch.testing.assert_close(translate_tiled(lambda tile: tile, image, plan), image.clamp(-1, 1), atol=1e-6, rtol=0)
    # the output takes the forward's channels
    assert translate_tiled(lambda tile: tile[:, :1], image, plan).shape == (1, 1, 100, 75)


@pytest.mark.parametrize(("height", "width", "tile", "overlap", "multiple"), [(100, 75, 48, 16, 4), (257, 300, 96, 32, 8), (33, 1000, 64, 0, 4)])
def test_the_plan_covers_every_pixel_with_positive_weight(height, width, tile, overlap, multiple):
    plan = plan_tiles(height, width, tile, overlap, multiple)
    padded_height, padded_width = plan.padded_size
    assert padded_height % multiple == 0 and padded_width % multiple == 0
    assert 0 <= padded_height - height < multiple and 0 <= padded_width - width < multiple
    weight = torch.zeros(padded_height, padded_width)
    for y in plan.rows.starts:
        for x in plan.cols.starts:
            assert y % multiple == 0 and x % multiple == 0  # tiles sample the untiled pass's grid
            weight[y : y + plan.rows.length, x : x + plan.cols.length] += plan.rows.window(y)[:, None] * plan.cols.window(x)[None, :]
    assert weight.min() > 0


@pytest.mark.parametrize("overlap", [4, 16, 48])
def test_opposite_ramps_sum_to_one_across_the_overlap(overlap):
    length = 64
    left = edge_weights(length, overlap, ramp_start=False, ramp_end=True)
    right = edge_weights(length, overlap, ramp_start=True, ramp_end=False)
    torch.testing.assert_close(left[-overlap:] + right[:overlap], torch.ones(overlap))
    assert left[0] == 1 and right[-1] == 1  # image borders keep full weight
    assert (right[: overlap // 4] == 0).all()  # the outer quarter, short of context, is dropped
    assert (edge_weights(length, 0, True, True) == 1).all()


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "multiple"), [(4096, 1652, 32, 4), (1000, 300, 32, 4), (257, 96, 16, 4), (1024, 512, 256, 256), (64, 96, 16, 4)]
)
def test_tiles_share_each_axis_evenly(size, tile, overlap, multiple):
    axis = axis_tiles(size, tile, overlap, multiple)
    length, starts = axis.length, axis.starts
    if size <= tile:
        assert (length, starts) == (size, (0,))
        return
    count = math.ceil((size - overlap) / (tile - overlap))  # as few tiles as the largest tile allows
    assert len(starts) == count and length <= tile and length % multiple == 0
    assert starts[0] == 0 and starts[-1] + length == size  # the axis is covered
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(length - gap >= overlap for gap in gaps)  # neighbours overlap by at least `overlap`
    # ... and not by much more: at most one multiple of slack per tile beyond the requested overlap
    assert count * length - (count - 1) * overlap - size < count * multiple
    # the flush layout (full tiles, the last one against the edge) computes more pixels
    assert count * length <= len(tile_starts(size, tile, overlap)) * tile


def test_plan_rounds_tile_and_overlap_to_the_multiple():
    plan = plan_tiles(1024, 1024, 100, 32, 256)  # unet_256: 256-px steps
    assert (plan.rows.length, plan.rows.overlap) == (512, 256)  # grown to overlap + one multiple
    assert plan_tiles(37, 53, 1, 0, 4).rows.length == 4  # at least one multiple


def test_pad_to_multiple():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded, size = pad_to_multiple(x, 4)
    assert size == (5, 7) and padded.shape == (2, 3, 8, 8)
    torch.testing.assert_close(padded[..., :5, :7], x)
    torch.testing.assert_close(padded[..., 5, :7], x[..., 3, :])  # reflected, not zeros
    assert pad_to_multiple(padded, 4)[0] is padded  # already a multiple: no copy
    tiny, _ = pad_to_multiple(torch.ones(1, 3, 1, 2), 4, min_side=8)  # too small to reflect
    assert tiny.shape == (1, 3, 8, 8) and (tiny == 1).all()


# ---------------------------------------------------------------------------------------- memory


def test_memory_estimate_and_tile_side():
    memory = budget_of("resnet_9blocks")
    small = memory.estimate_bytes((1, 3, 256, 256))
    assert memory.estimate_bytes((2, 3, 512, 512)) == pytest.approx(8 * small, rel=0.01)
    # ~2 float32 tensors of 64 channels at full resolution are alive at the peak
    assert 2 * 64 * 4 <= small / 256**2 <= 4 * 64 * 4
    assert not memory.needs_tiling((1, 3, 512, 512))
    assert memory.needs_tiling((1, 3, 4096, 4096))
    tile = memory.tile_side()
    assert MIN_AUTO_TILE <= tile and memory.estimate_bytes((1, 3, tile, tile)) <= memory.budget_bytes
    # half precision halves the activations
    cfg = NetConfig(generator="resnet_9blocks", base_channels_g=64)
    net = build_generator(cfg)
    fp32, bf16 = (activation_bytes_per_pixel(net, cfg, multiple=4, precision=p) for p in ("fp32", "bf16"))
    assert bf16 == pytest.approx(fp32 / 2)


def test_automatic_tiles_leave_room_for_the_full_resolution_buffers():
    memory = budget_of("resnet_9blocks", budget_mb=1280)
    side = 4096
    buffers = memory.full_resolution_bytes(side, side)
    assert buffers == (3 + 3) * 4 * side * side
    tile = memory.tile_side(side, side)
    assert tile < memory.tile_side()  # the buffers take their share of the budget
    assert buffers + memory.estimate_bytes((1, 3, tile, tile)) <= memory.budget_bytes
    plan = plan_tiles(side, side, tile, 32, memory.multiple)
    assert buffers + memory.estimate_bytes((1, 3, plan.rows.length, plan.cols.length)) <= memory.budget_bytes
    # on a GPU the buffers stay in CPU memory: the whole budget goes to the tile
    assert budget_of("resnet_9blocks", budget_mb=1280, host_buffers=False).tile_side(side, side) == memory.tile_side()
    # a budget the buffers alone exceed still gets workable tiles, not one-pixel ones
    assert budget_of("resnet_9blocks", budget_mb=64).tile_side(side, side) == MIN_AUTO_TILE


def test_statistics_copy_size():
    memory = budget_of("resnet_9blocks")
    assert memory.stats_size(512, 768) == (512, 768)  # fits: full resolution
    assert budget_of("resnet_9blocks", budget_mb=2**16).stats_size(8192, 4096, max_side=2048) == (2048, 1024)  # long side capped
    height, width = memory.stats_size(8192, 8192)  # over the budget: as large as it allows
    assert height == width and height % 4 == 0 and height < 2048
    used = memory.estimate_bytes((1, 3, height, width)) + 3 * 4 * 8192**2  # beside the full-resolution input
    assert memory.budget_bytes * 0.95 <= used <= memory.budget_bytes * 1.01  # rounded to the multiple
    assert max(budget_of("resnet_9blocks", budget_mb=1).stats_size(4096, 4096)) == MIN_STATS_SIDE


# ---------------------------------------------------------------------------------------- errors and sizes


def test_bad_arguments_are_refused():
    translator = translator_for("resnet_6blocks")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        translator.translate_batch(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="-8"):
        plan_tiles(32, 32, 16, -8, 4)
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 40\)"):
        translate_tiled(translator.forward_padded, torch.zeros(1, 3, 32, 40), plan_tiles(32, 32, 16, 8, 4))
    translator.tile, translator.overlap = 32, -1
    with pytest.raises(UserError, match="--overlap -1"):
        translator.translate_batch(torch.zeros(1, 3, 64, 64))


def test_normal_sizes_are_not_padded_beyond_the_networks_multiple() -> None:
    """A 128-px image through unet_128 is one forward at 128 px, identical to the plain module."""
    for generator, side in (("unet_128", 128), ("resnet_6blocks", 32)):
        cfg = NetConfig(generator=generator, base_channels_g=4, norm="batch" if generator.startswith("unet") else "instance")
        torch.manual_seed(0)
        net = build_generator(cfg).eval()
        x = torch.rand(1, 3, side, side) * 2 - 1
        with torch.no_grad():
            expected = net(x).clamp(-1, 1)
        got = Translator.from_module(net, cfg).translate_batch(x)
        assert torch.allclose(got, expected, atol=1e-5), generator
    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    tiny = Translator.from_module(build_generator(cfg), cfg)
    assert tiny.translate_batch(torch.zeros(1, 3, 1, 1)).shape == (1, 3, 1, 1)  # still padded up to 8 px

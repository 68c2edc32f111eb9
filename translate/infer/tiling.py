"""Tiled inference for images too large for one forward pass, without seams.

The image is cut into overlapping tiles whose sides and positions are multiples of the
network's size multiple (so every stride-2 layer samples the same pixel grid as an untiled
pass would), each tile is translated, and the outputs are blended with raised-cosine weights
that fall to zero near interior tile edges, where a tile lacks the context an untiled pass has.

Instance normalisation is what makes naive tiling fail: every tile would normalise with its
own mean and variance, so tiles of sky and tiles of grass come out with different brightness
and contrast, and the seams show. Here the per-layer statistics come from one global pass
and are frozen while the tiles run (:func:`frozen_instance_norm`), so every tile is normalised
exactly as the whole image is:

* the global pass runs at full resolution when the whole image fits
  ``translator.memory_budget_mb``; the tiled result then matches the untiled one up to the
  tile-border context;
* otherwise it runs on a downscaled copy, as large as the budget allows and with its long side
  capped at :data:`STATS_MAX_SIDE` (2048) pixels. The statistics of a downscaled image are
  close to, not equal to, the full-resolution ones; every tile shares them, so there are no
  seams, but the tones drift as the scale factor grows, which is why the copy is kept as large
  as the budget permits rather than small.

Measured on the published vintagify CycleGAN generator (resnet_9blocks, 384x576 photo, tiles
of 192 px overlapping by 64), PSNR against the untiled output: statistics from the full image
65 dB; from a copy downscaled 1.5x 36 dB, 2x 36 dB, 3x 27 dB (36 dB once a global colour shift
is removed); naive tiling, each tile with its own statistics, 25 dB with visible seams.

Batch-norm networks in eval mode use their running statistics and need no global pass.

Memory: ``translator.memory_budget_mb`` bounds the whole translation of one image: the
full-resolution input and float32 output accumulator (the blend weights are separable, so
their sum is kept as two 1-D vectors) plus one tile's activations, which get what the
full-resolution buffers leave. Tiles are then laid out evenly: as many per axis as the
largest tile that fits needs, each shrunk so that neighbours overlap by about ``overlap``
pixels (a flush last tile would otherwise recompute up to a whole tile of pixels).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from translate.errors import UserError

if TYPE_CHECKING:
    from translate.infer.translator import Translator

STATS_MAX_SIDE = 2048
"""Cap on the long side (pixels) of the downscaled copy used for instance-norm statistics of
images that do not fit the memory budget at full resolution (it bounds that pass's time)."""

MIN_STATS_SIDE = 64
"""Floor of that long side, whatever the budget says: statistics need some image to come from."""

MEMORY_SAFETY = 1.3
"""Estimates are multiplied by this. Measured CPU peak-RSS growth of one untiled pass against
the live-tensor estimate: resnet_9blocks 1.00x at 512 and 1024 px (1 and 2 threads),
unet_256 1.08x at 2048 px and up to 1.3x at 1024 px (convolution workspaces, allocator slack)."""

MAX_AUTO_TILE = 2048  # larger tiles barely reduce the overlap overhead and delay the first output

MIN_AUTO_TILE = 256
"""Floor of an automatically chosen tile side: below it the overlaps cost more than the
budget saves; a budget too small for it is exceeded rather than crawled through."""

NormStats = Literal["global", "tile"]
_InstanceNorm = nn.modules.instancenorm._InstanceNorm

# bytes of live activations per input pixel, per network (a meta-device probe is cheap but not free)
_BYTES_PER_PIXEL: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------------------
# memory estimate


def _probe_bytes_per_pixel(translator: Translator) -> float:
    """Peak live activation bytes per input pixel of one fp32 forward, traced on the meta device.

    A dispatch mode follows every tensor the forward creates and frees (weak references), so
    the peak accounts for what ``nn.Sequential`` releases and what U-Net skips keep alive.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from translate.nets import build_generator

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self.storages: set[int] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, Tensor):
                    continue
                storage = t.untyped_storage()
                key = storage._cdata  # in-place ops and views return an already counted storage
                if key in self.storages:
                    continue
                nbytes = storage.nbytes()
                self.storages.add(key)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._release, key, nbytes)
            return out

        def _release(self, key: int, nbytes: int) -> None:
            self.storages.discard(key)
            self.live -= nbytes

    multiple = translator.multiple
    side = multiple * math.ceil(256 / multiple)
    with torch.device("meta"):
        net = build_generator(translator.net_config).eval()
        probe = torch.empty(1, translator.in_channels, side, side)
    mode = LiveBytes()
    with torch.inference_mode(), mode:
        out = net(probe)
    del out
    return mode.peak / (side * side)


def bytes_per_pixel(translator: Translator) -> float:
    """Estimated peak activation bytes per input pixel of one image (safety factor included)."""
    net = translator.net
    if net not in _BYTES_PER_PIXEL:
        try:
            per_pixel = _probe_bytes_per_pixel(translator)
        except Exception:  # noqa: BLE001  a custom network the meta probe cannot run: be generous
            per_pixel = 4.0 * 4 * translator.net_config.base_channels_g
        _BYTES_PER_PIXEL[net] = per_pixel
    scale = 0.5 if translator.precision in ("bf16", "fp16") else 1.0
    return _BYTES_PER_PIXEL[net] * scale * MEMORY_SAFETY


def estimate_bytes(translator: Translator, shape: tuple[int, ...] | torch.Size) -> int:
    """Estimated activation memory (bytes) of an untiled pass over a ``(B, C, H, W)`` batch."""
    if len(shape) != 4:
        raise ValueError(f"expected a (B, C, H, W) shape, got {tuple(shape)}")
    batch, _, height, width = shape
    m = translator.multiple
    padded = math.ceil(height / m) * m * math.ceil(width / m) * m
    return int(batch * padded * bytes_per_pixel(translator))


def needs_tiling(translator: Translator, shape: tuple[int, ...] | torch.Size) -> bool:
    """Whether an untiled pass over a ``(B, C, H, W)`` batch would exceed the memory budget."""
    return estimate_bytes(translator, shape) > translator.memory_budget_mb * 2**20


def full_resolution_bytes(translator: Translator, height: int, width: int) -> int:
    """Bytes the tiler holds at full resolution for one (padded) image: the float32 input and
    the float32 output accumulator (in CPU memory, whatever device the network runs on)."""
    return (translator.in_channels + translator.out_channels) * 4 * height * width


def choose_tile(translator: Translator, height: int | None = None, width: int | None = None) -> int:
    """The tile side: ``translator.tile`` if set, else the largest whose activations fit what
    the memory budget leaves after the full-resolution buffers of a ``height`` x ``width``
    image (none counted when the size is not given, or on a GPU: they stay in CPU memory there
    and the budget bounds the GPU's).

    Rounded down to the network's size multiple (at least one multiple; an automatic tile at
    least :data:`MIN_AUTO_TILE`), then grown to at least ``overlap + multiple`` so that
    consecutive tiles advance.
    """
    m = translator.multiple
    overlap = tile_overlap(translator)
    if translator.tile:
        tile = translator.tile
    else:
        budget = translator.memory_budget_mb * 2**20
        if height and width and translator.device.type == "cpu":  # elsewhere they are not in device memory
            budget -= full_resolution_bytes(translator, height, width)
        side = math.sqrt(max(budget, 0) / bytes_per_pixel(translator))
        tile = max(MIN_AUTO_TILE, min(MAX_AUTO_TILE, int(side)))
    tile = max(m, tile // m * m)
    return max(tile, overlap + m)


def axis_layout(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tiles along one axis of ``size`` pixels: ``(tile length, tile origins)``.

    As many tiles as the largest ``tile`` needs to cover the axis with ``overlap``, each shrunk
    (to a multiple of ``multiple``) so that they share the axis evenly; origins every
    ``length - overlap``, the last one flush with the end. A tile covering the axis is the axis.
    """
    if size <= tile:
        return size, [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    length = min(tile, math.ceil(((size - overlap) / count + overlap) / multiple) * multiple)
    return length, _starts(size, length, overlap)


def tile_overlap(translator: Translator) -> int:
    """``translator.overlap`` rounded up to the network's size multiple."""
    if translator.overlap < 0:
        raise UserError(f"--overlap {translator.overlap}: must be >= 0 (e.g. --overlap 32)")
    m = translator.multiple
    return math.ceil(translator.overlap / m) * m


# ----------------------------------------------------------------------------------------
# instance-norm statistics


def _stat_norms(net: nn.Module) -> list[_InstanceNorm]:
    """Instance-norm layers that normalise with the statistics of their input."""
    return [m for m in net.modules() if isinstance(m, _InstanceNorm) and not m.track_running_stats]


@torch.inference_mode()
def collect_instance_norm_stats(translator: Translator, image: Tensor) -> dict[nn.Module, list[tuple[Tensor, Tensor]]]:
    """Run one pass over ``image`` and record what every instance-norm layer normalised with.

    Args:
        translator: the network.
        image: (1, C_in, H, W) in [-1, 1]; H and W multiples of the network's size multiple.

    Returns:
        For each instance-norm module, the (mean, var) of each of its calls, each (C,) float32
        (biased variance, as InstanceNorm uses).
    """
    stats: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}

    def record(module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        x = inputs[0].float()
        var, mean = torch.var_mean(x, dim=tuple(range(2, x.ndim)), correction=0)
        stats.setdefault(module, []).append((mean[0], var[0]))

    handles = [m.register_forward_hook(record) for m in _stat_norms(translator.net)]
    try:
        _run(translator, image)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextmanager
def frozen_instance_norm(stats: dict[nn.Module, list[tuple[Tensor, Tensor]]]) -> Iterator[None]:
    """Make the given instance-norm modules normalise with fixed statistics (batch of 1).

    Works for affine and non-affine ``InstanceNorm*d``: the module's ``forward`` is replaced by
    an eval-mode batch norm with the recorded mean/var, which for one image is instance norm
    with those statistics. A module called several times per forward uses its i-th record on
    its i-th call. The original ``forward`` is restored on exit, even after an error.
    """

    def make_forward(module: _InstanceNorm, records: list[tuple[Tensor, Tensor]]):  # type: ignore[no-untyped-def]
        calls = 0

        def forward(x: Tensor) -> Tensor:
            nonlocal calls
            if x.shape[0] != 1:
                raise ValueError(f"frozen instance norm takes one image at a time, got batch shape {tuple(x.shape)}")
            mean, var = records[calls % len(records)]
            calls += 1
            return F.batch_norm(
                x, mean.to(x.device), var.to(x.device), module.weight, module.bias, training=False, eps=module.eps
            )

        return forward

    patched = []
    try:
        for module, records in stats.items():
            module.forward = make_forward(module, records)  # instance attribute shadows the method
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


# ----------------------------------------------------------------------------------------
# tiles


def _run(translator: Translator, padded: Tensor) -> Tensor:
    """Forward a padded batch on the translator's device; returns float32 on CPU, unclamped."""
    x = padded.to(translator.device, torch.float32)
    if translator.device.type in ("cpu", "cuda"):
        x = x.contiguous(memory_format=torch.channels_last)
    with translator.autocast():
        out = translator.net(x)
    return out.float().cpu()


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: every ``tile - overlap``, the last one flush with the end."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _edge_weights(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> Tensor:
    """1-D blend weights (length,): 0 in the outer quarter of the overlap, raised cosine across
    the middle half, 1 inside. Opposite ramps of two tiles overlapping by ``overlap`` sum to 1;
    image borders (``ramp_* = False``) keep weight 1, there is no neighbour to blend with."""
    weights = torch.ones(length)
    if overlap == 0:
        return weights
    margin = overlap // 4
    ramp = max(overlap - 2 * margin, 1)
    distance = torch.arange(length, dtype=torch.float32) + 0.5
    profile = torch.sin(0.5 * math.pi * ((distance - margin) / ramp).clamp(0, 1)) ** 2
    if ramp_start:
        weights = weights * profile
    if ramp_end:
        weights = weights * profile.flip(0)
    return weights


@torch.inference_mode()
def translate_tiled(
    translator: Translator,
    batch: Tensor,
    *,
    norm_stats: NormStats = "global",
    stats_max_side: int = STATS_MAX_SIDE,
) -> Tensor:
    """Translate a batch tile by tile (same contract as ``Translator.translate_batch``).

    Args:
        translator: the loaded generator; ``tile``, ``overlap`` and ``memory_budget_mb`` are
            read from it.
        batch: (B, C_in, H, W) float in [-1, 1], any device, any H and W.
        norm_stats: ``global`` freezes instance-norm statistics from a global pass (the
            default); ``tile`` lets each tile use its own (naive tiling, seams: only for
            comparison).
        stats_max_side: long-side cap of the downscaled global pass used when the whole image
            does not fit the memory budget.

    Returns:
        (B, C_out, H, W) float32 in [-1, 1] on CPU.
    """
    if batch.ndim != 4 or batch.shape[1] != translator.in_channels:
        raise ValueError(f"expected (B, {translator.in_channels}, H, W), got {tuple(batch.shape)}")
    if norm_stats not in ("global", "tile"):
        raise ValueError(f"norm_stats must be 'global' or 'tile', got {norm_stats!r}")
    if stats_max_side < 1:
        raise ValueError(f"stats_max_side must be >= 1, got {stats_max_side!r}")
    from translate.infer.translator import pad_to_multiple

    outputs = []
    for image in batch.split(1):
        fits = not needs_tiling(translator, image.shape)
        if fits and not translator.tile:
            outputs.append(translator._forward_padded(image))  # one image of the batch fits: no tiles
            continue
        padded, (height, width) = pad_to_multiple(image.to("cpu", torch.float32), translator.multiple)
        stats = None
        if norm_stats == "global" and _stat_norms(translator.net):
            stats = collect_instance_norm_stats(translator, padded if fits else _stats_image(translator, padded, stats_max_side))
        out = _blend_tiles(translator, padded, stats)
        outputs.append(out[..., :height, :width].clamp_(-1, 1))
    return outputs[0].contiguous() if len(outputs) == 1 else torch.cat(outputs)  # no copy for one image


def _stats_image(translator: Translator, padded: Tensor, max_side: int) -> Tensor:
    """A downscaled copy of ``padded`` for the statistics pass: long side <= ``max_side`` and
    within the memory budget (but >= :data:`MIN_STATS_SIDE`), both sides multiples of the size
    multiple (aspect ratio kept to within one multiple, which does not matter for statistics)."""
    m = translator.multiple
    height, width = padded.shape[-2:]
    long_side = max(height, width)
    budget = translator.memory_budget_mb * 2**20
    if translator.device.type == "cpu":
        budget -= translator.in_channels * 4 * height * width  # the input stays alive beside the pass
    budget_side = math.sqrt(max(budget, 0) / bytes_per_pixel(translator))
    scale = min(1.0, max_side / long_side, budget_side / math.sqrt(height * width))
    scale = max(scale, min(1.0, MIN_STATS_SIDE / long_side))
    size = [max(m, round(side * scale / m) * m) for side in (height, width)]
    if size == [height, width]:
        return padded
    return F.interpolate(padded, size=size, mode="bilinear", antialias=True, align_corners=False)


def _blend_tiles(translator: Translator, padded: Tensor, stats: dict | None) -> Tensor:
    """Translate overlapping tiles of one padded image (1, C_in, H, W) and blend them."""
    height, width = padded.shape[-2:]
    tile = choose_tile(translator, height, width)
    overlap, m = tile_overlap(translator), translator.multiple
    (tile_h, ys), (tile_w, xs) = axis_layout(height, tile, overlap, m), axis_layout(width, tile, overlap, m)
    out = torch.zeros(1, translator.out_channels, height, width)
    # every tile's weight is wy (x) wx over a full grid, so the weights sum to (sum wy) (x) (sum wx)
    total_y, total_x = torch.zeros(height, 1), torch.zeros(1, width)
    with frozen_instance_norm(stats) if stats else _nothing():
        for row, y in enumerate(ys):
            wy = _edge_weights(tile_h, overlap, y > 0, y + tile_h < height)[:, None]
            total_y[y : y + tile_h] += wy
            for x in xs:
                wx = _edge_weights(tile_w, overlap, x > 0, x + tile_w < width)[None, :]
                if row == 0:
                    total_x[:, x : x + tile_w] += wx
                result = _run(translator, padded[..., y : y + tile_h, x : x + tile_w])
                out[..., y : y + tile_h, x : x + tile_w] += result.mul_(wy).mul_(wx)
                del result
    return out.div_(total_y).div_(total_x)


@contextmanager
def _nothing() -> Iterator[None]:
    yield

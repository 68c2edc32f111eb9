"""Tiled inference for images too large for one forward pass, without seams.

A pure layer: it knows tensors, a forward callable and plain numbers, never a ``Translator``
(which composes these pieces in ``Translator.translate_batch``).

The image is cut into overlapping tiles whose sides and positions are multiples of the
network's size multiple (so every stride-2 layer samples the same pixel grid as an untiled
pass would), each tile is translated, and the outputs are blended with raised-cosine weights
that fall to zero near interior tile edges, where a tile lacks the context an untiled pass has:
:func:`plan_tiles` lays the tiles out, :func:`translate_tiled` runs and blends them.

Instance normalisation is what makes naive tiling fail: every tile would normalise with its
own mean and variance, so tiles of sky and tiles of grass come out with different brightness
and contrast, and the seams show. The per-layer statistics therefore come from one global pass
(:func:`collect_instance_norm_stats`) and are frozen while the tiles run
(:func:`frozen_instance_norm`), so every tile is normalised exactly as the whole image is:

* the global pass runs at full resolution when the whole image fits the memory budget; the
  tiled result then matches the untiled one up to the tile-border context;
* otherwise it runs on a downscaled copy (:func:`downscale_for_stats`), as large as the budget
  allows and with its long side capped at :data:`STATS_MAX_SIDE` pixels. The statistics of a
  downscaled image are close to, not equal to, the full-resolution ones; every tile shares
  them, so there are no seams, but the tones drift as the scale factor grows (on the published
  vintagify generator: 65 dB PSNR against the untiled output from full-resolution statistics,
  36 dB from a copy downscaled 2x, 27 dB at 3x, 25 dB with visible seams for naive tiling),
  which is why the copy is kept as large as the budget permits rather than small.

Batch-norm networks in eval mode use their running statistics and need no global pass.

Memory (:class:`MemoryBudget`): the budget bounds the whole translation of one image: the
full-resolution input and float32 output accumulator (the blend weights are separable, so
their sum is kept as two 1-D vectors) plus one tile's activations, which get what the
full-resolution buffers leave. Tiles are then laid out evenly: as many per axis as the
largest tile that fits needs, each shrunk so that neighbours overlap by about ``overlap``
pixels (a flush last tile would otherwise recompute up to a whole tile of pixels).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from translate.nets import build_generator

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

Forward = Callable[[Tensor], Tensor]
"""A network pass over one padded tile: (B, C_in, h, w) float32 in [-1, 1] on the CPU, h and w
multiples of the size multiple → (B, C_out, h, w) float32 on the CPU (clamping is not needed)."""

_InstanceNorm = nn.modules.instancenorm._InstanceNorm  # the common base of InstanceNorm1d/2d/3d

# peak live activation bytes per input pixel, per network (a meta-device probe is cheap but not free)
_BYTES_PER_PIXEL: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()


def pad_to_multiple(x: Tensor, multiple: int, min_side: int = 1) -> tuple[Tensor, tuple[int, int]]:
    """Pad a batch on the bottom/right so both sides are multiples of ``multiple`` and at least ``min_side``.

    Reflection padding, so the network sees image-like content there; reflection needs the pad
    to be smaller than the side, so very small images (1×1, 1×300) fall back to replicate.

    Args:
        x: (B, C, H, W), any dtype and device.
        multiple: the network's size multiple (>= 1).
        min_side: the smallest side the network accepts.

    Returns:
        The padded batch (``x`` itself when no pad is needed) and the original ``(H, W)``.
    """
    h, w = x.shape[-2:]
    pad_h = max((-h) % multiple, min_side - h)
    pad_w = max((-w) % multiple, min_side - w)
    pad_h += (-(h + pad_h)) % multiple
    pad_w += (-(w + pad_w)) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


# ----------------------------------------------------------------------------------------
# memory


def _flat_tensors(out: Any) -> Iterator[Tensor]:
    """The tensors of an aten op's result (a tensor, or a tuple/list of them and other values)."""
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for item in out:
            yield from _flat_tensors(item)


def _probe_bytes_per_pixel(net_config: Any, multiple: int) -> float:
    """Peak live activation bytes per input pixel of one fp32 forward, traced on the meta device.

    A dispatch mode follows every tensor the forward creates and frees (weak references), so
    the peak accounts for what ``nn.Sequential`` releases and what U-Net skips keep alive.
    PyTorch has no public way to measure CPU memory of a pass (``torch.cuda.max_memory_allocated``
    is CUDA only), so this uses ``TorchDispatchMode``, documented in PyTorch's "Extending
    PyTorch" notes but only importable from ``torch.utils._python_dispatch``, and the storage
    identity ``_cdata`` (meta storages have no data pointer to tell them apart).
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
            self.storages: set[int] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in _flat_tensors(out):
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

    side = multiple * math.ceil(256 / multiple)
    with torch.device("meta"):
        net = build_generator(net_config).eval()
        probe = torch.empty(1, net_config.in_channels, side, side)
    mode = LiveBytes()
    with torch.inference_mode(), mode:
        out = net(probe)
    del out
    return mode.peak / (side * side)


def activation_bytes_per_pixel(net: nn.Module, net_config: Any, *, multiple: int, precision: str = "fp32") -> float:
    """Estimated peak activation bytes per (padded) input pixel of one image, safety factor included.

    Args:
        net: the network; the probe's result is cached per network object.
        net_config: its architecture (a ``NetConfig``), rebuilt on the meta device to probe.
        multiple: the network's size multiple.
        precision: ``fp32``, ``bf16`` or ``fp16``; half precision halves the activations.
    """
    if net not in _BYTES_PER_PIXEL:
        try:
            per_pixel = _probe_bytes_per_pixel(net_config, multiple)
        except Exception:  # noqa: BLE001  a custom network the meta probe cannot run: be generous
            per_pixel = 4.0 * 4 * net_config.base_channels_g
        _BYTES_PER_PIXEL[net] = per_pixel
    scale = 0.5 if precision in ("bf16", "fp16") else 1.0
    return _BYTES_PER_PIXEL[net] * scale * MEMORY_SAFETY


@dataclass(frozen=True)
class MemoryBudget:
    """What translating one image may use, and what a pass costs, as plain numbers.

    Attributes:
        budget_bytes: memory one image's translation may use.
        bytes_per_pixel: peak activation bytes per padded input pixel
            (:func:`activation_bytes_per_pixel`).
        multiple: the network's size multiple; inputs are padded to it.
        in_channels, out_channels: the network's channels.
        host_buffers: whether the full-resolution input and output buffers (kept in CPU memory)
            share the budgeted memory: true when the network runs on the CPU; on a GPU the
            budget bounds the GPU's memory.
    """

    budget_bytes: int
    bytes_per_pixel: float
    multiple: int
    in_channels: int
    out_channels: int
    host_buffers: bool = True

    def estimate_bytes(self, shape: tuple[int, ...] | torch.Size) -> int:
        """Estimated activation memory (bytes) of an untiled pass over a ``(B, C, H, W)`` batch."""
        if len(shape) != 4:
            raise ValueError(f"expected a (B, C, H, W) shape, got {tuple(shape)}")
        batch, _, height, width = shape
        m = self.multiple
        padded = math.ceil(height / m) * m * math.ceil(width / m) * m
        return int(batch * padded * self.bytes_per_pixel)

    def needs_tiling(self, shape: tuple[int, ...] | torch.Size) -> bool:
        """Whether an untiled pass over a ``(B, C, H, W)`` batch would exceed the budget."""
        return self.estimate_bytes(shape) > self.budget_bytes

    def full_resolution_bytes(self, height: int, width: int) -> int:
        """Bytes the tiler holds at full resolution for one (padded) image: the float32 input
        and the float32 output accumulator."""
        return (self.in_channels + self.out_channels) * 4 * height * width

    def tile_side(self, height: int | None = None, width: int | None = None) -> int:
        """The largest tile side whose activations fit what the budget leaves after the
        full-resolution buffers of a ``height`` x ``width`` image padded to the size multiple
        (none counted when the size is not given or ``host_buffers`` is false), within
        [:data:`MIN_AUTO_TILE`, :data:`MAX_AUTO_TILE`], rounded down to the multiple."""
        m = self.multiple
        budget = self.budget_bytes
        if height and width and self.host_buffers:
            budget -= self.full_resolution_bytes(math.ceil(height / m) * m, math.ceil(width / m) * m)
        side = max(MIN_AUTO_TILE, min(MAX_AUTO_TILE, int(math.sqrt(max(budget, 0) / self.bytes_per_pixel))))
        return max(m, side // m * m)

    def stats_size(self, height: int, width: int, max_side: int = STATS_MAX_SIDE) -> tuple[int, int]:
        """Size of the statistics pass's copy of a padded ``height`` x ``width`` image: long side
        <= ``max_side`` and within the budget (but >= :data:`MIN_STATS_SIDE`), both sides
        multiples of the size multiple (the aspect ratio kept to within one multiple, which does
        not matter for statistics); ``(height, width)`` when the image itself fits."""
        m = self.multiple
        budget = self.budget_bytes
        if self.host_buffers:
            budget -= self.in_channels * 4 * height * width  # the input stays alive beside the pass
        budget_side = math.sqrt(max(budget, 0) / self.bytes_per_pixel)
        scale = min(1.0, max_side / max(height, width), budget_side / math.sqrt(height * width))
        scale = max(scale, min(1.0, MIN_STATS_SIDE / max(height, width)))
        new_height, new_width = (max(m, round(side * scale / m) * m) for side in (height, width))
        return new_height, new_width


def downscale_for_stats(padded: Tensor, budget: MemoryBudget, max_side: int = STATS_MAX_SIDE) -> Tensor:
    """The copy of a padded (1, C_in, H, W) image that the statistics pass runs on
    (:meth:`MemoryBudget.stats_size`; antialiased bilinear), or ``padded`` itself when it fits."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side!r}")
    height, width = padded.shape[-2:]
    size = budget.stats_size(height, width, max_side)
    if size == (height, width):
        return padded
    return F.interpolate(padded, size=size, mode="bilinear", antialias=True, align_corners=False)


# ----------------------------------------------------------------------------------------
# the tile plan


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis of ``size`` pixels: every ``tile - overlap``, the last one
    flush with the end (``[0]`` when one tile covers the axis)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def edge_weights(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> Tensor:
    """1-D blend window (length,) float32: 0 in the outer quarter of the overlap, raised cosine
    across the middle half, 1 inside. Opposite ramps of two tiles overlapping by ``overlap`` sum
    to 1; image borders (``ramp_* = False``) keep weight 1, there is no neighbour to blend with."""
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


@dataclass(frozen=True)
class AxisTiles:
    """Tiles along one axis of a padded image: all ``length`` long, at ``starts``, the first at
    0 and the last flush with ``size``; neighbours overlap by at least ``overlap``."""

    size: int
    length: int
    starts: tuple[int, ...]
    overlap: int

    def window(self, start: int) -> Tensor:
        """The blend window (length,) of the tile at ``start``: ramps only towards neighbours."""
        return edge_weights(self.length, self.overlap, start > 0, start + self.length < self.size)


def axis_tiles(size: int, tile: int, overlap: int, multiple: int) -> AxisTiles:
    """Tiles along one axis of ``size`` pixels, shared evenly.

    As many tiles as the largest ``tile`` needs to cover the axis with ``overlap``, each shrunk
    (to a multiple of ``multiple``) so that they share the axis evenly; origins every
    ``length - overlap``, the last one flush with the end. A tile covering the axis is the axis.
    """
    if size <= tile:
        return AxisTiles(size, size, (0,), overlap)
    count = math.ceil((size - overlap) / (tile - overlap))
    length = min(tile, math.ceil(((size - overlap) / count + overlap) / multiple) * multiple)
    return AxisTiles(size, length, tuple(tile_starts(size, length, overlap)), overlap)


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go: ``rows`` and ``cols`` lay them out over the image padded
    to ``multiple`` (``rows.size`` x ``cols.size``); ``height`` x ``width`` is the image itself."""

    height: int
    width: int
    multiple: int
    rows: AxisTiles
    cols: AxisTiles

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int) -> TilePlan:
    """Lay out the tiles of a ``height`` x ``width`` image.

    Args:
        height, width: the image's size (pixels, >= 1); it is padded to ``multiple``.
        tile: the largest tile side wanted; rounded down to ``multiple`` (at least one), then
            grown to at least ``overlap + multiple`` so that consecutive tiles advance.
        overlap: pixels neighbouring tiles share (>= 0); rounded up to ``multiple``.
        multiple: the network's size multiple (>= 1).

    Raises:
        ValueError: a size, tile, overlap or multiple out of range, quoting it.
    """
    for name, value, least in (("height", height, 1), ("width", width, 1), ("tile", tile, 1), ("overlap", overlap, 0), ("multiple", multiple, 1)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value!r}")
    m = multiple
    overlap = math.ceil(overlap / m) * m
    tile = max(max(m, tile // m * m), overlap + m)
    padded_height, padded_width = math.ceil(height / m) * m, math.ceil(width / m) * m
    return TilePlan(height, width, m, axis_tiles(padded_height, tile, overlap, m), axis_tiles(padded_width, tile, overlap, m))


# ----------------------------------------------------------------------------------------
# instance-norm statistics


def instance_norms(net: nn.Module) -> list[nn.Module]:
    """The instance-norm layers of ``net`` that normalise with the statistics of their input."""
    return [m for m in net.modules() if isinstance(m, _InstanceNorm) and not m.track_running_stats]


@torch.inference_mode()
def collect_instance_norm_stats(net: nn.Module, forward: Forward, image: Tensor) -> dict[nn.Module, list[tuple[Tensor, Tensor]]]:
    """Run ``forward(image)`` once and record what every instance-norm layer of ``net`` normalised with.

    Args:
        net: the network that ``forward`` runs.
        forward: a pass of ``net`` (see :data:`Forward`).
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

    handles = [m.register_forward_hook(record) for m in instance_norms(net)]
    try:
        forward(image)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextmanager
def frozen_instance_norm(stats: dict[nn.Module, list[tuple[Tensor, Tensor]]] | None) -> Iterator[None]:
    """Make the given instance-norm modules normalise with fixed statistics (batch of 1).

    Works for affine and non-affine ``InstanceNorm*d``: the module's ``forward`` is replaced by
    an eval-mode batch norm with the recorded mean/var, which for one image is instance norm
    with those statistics. A module called several times per forward uses its i-th record on
    its i-th call. The original ``forward`` is restored on exit, even after an error. ``None``
    or ``{}`` changes nothing.
    """

    def make_forward(module: _InstanceNorm, records: list[tuple[Tensor, Tensor]]):  # type: ignore[no-untyped-def]
        calls = 0

        def forward(x: Tensor) -> Tensor:
            nonlocal calls
            if x.shape[0] != 1:
                raise ValueError(f"frozen instance norm takes one image at a time, got batch shape {tuple(x.shape)}")
            mean, var = records[calls % len(records)]
            calls += 1
            return F.batch_norm(x, mean.to(x.device), var.to(x.device), module.weight, module.bias, training=False, eps=module.eps)

        return forward

    patched = []
    try:
        for module, records in (stats or {}).items():
            module.forward = make_forward(module, records)  # instance attribute shadows the method
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


# ----------------------------------------------------------------------------------------
# tiles


@torch.inference_mode()
def translate_tiled(forward: Forward, image: Tensor, plan: TilePlan) -> Tensor:
    """Translate an image tile by tile with ``forward`` and blend the tiles.

    Only ``forward`` touches the network; to freeze instance-norm statistics, call this inside
    :func:`frozen_instance_norm` (without, each tile normalises with its own: naive tiling).

    Args:
        forward: a network pass over one padded tile (see :data:`Forward`).
        image: (B, C_in, H, W) float in [-1, 1], any device, H x W the plan's ``height`` x
            ``width``; padded to ``plan.multiple`` here (CPU float32).
        plan: from :func:`plan_tiles`.

    Returns:
        (B, C_out, H, W) float32 in [-1, 1] on CPU.
    """
    if image.ndim != 4 or tuple(image.shape[-2:]) != (plan.height, plan.width):
        raise ValueError(f"expected a (B, C, {plan.height}, {plan.width}) image for this plan, got {tuple(image.shape)}")
    padded, _ = pad_to_multiple(image.to("cpu", torch.float32), plan.multiple)
    rows, cols = plan.rows, plan.cols
    out: Tensor | None = None  # allocated at the first tile, which tells C_out
    # every tile's weight is wy (x) wx over a full grid, so the weights sum to (sum wy) (x) (sum wx)
    total_y, total_x = torch.zeros(rows.size, 1), torch.zeros(1, cols.size)
    for row, y in enumerate(rows.starts):
        wy = rows.window(y)[:, None]
        total_y[y : y + rows.length] += wy
        for x in cols.starts:
            wx = cols.window(x)[None, :]
            if row == 0:
                total_x[:, x : x + cols.length] += wx
            result = forward(padded[..., y : y + rows.length, x : x + cols.length])
            if out is None:
                out = torch.zeros(padded.shape[0], result.shape[1], rows.size, cols.size)
            out[..., y : y + rows.length, x : x + cols.length] += result.mul(wy).mul_(wx)  # result may be a view of the tile
            del result
    assert out is not None  # a plan has at least one tile
    out = out.div_(total_y).div_(total_x)
    return out[..., : plan.height, : plan.width].clamp_(-1, 1)

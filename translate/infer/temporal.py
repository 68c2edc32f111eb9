"""Temporal stabilisation of a video translated frame by frame (``translate video --temporal stable``).

An image model run frame by frame flickers: small changes between input frames give larger
changes between output frames, and instance norm, which normalises each frame by its own
statistics, makes whole frames pulse in brightness and colour. Two cheap, robust remedies,
both reset at scene cuts:

- **carried instance-norm statistics**: every instance-norm layer normalises with an
  exponential moving average over frames of the per-frame mean and variance
  (``norm_momentum`` of the previous frames' statistics), so a frame's global tone follows the
  shot instead of jumping with it;
- **flow-guided blending**: the previous *stabilised* output is carried along the optical flow
  of the *input* frames (OpenCV's DIS) into the current frame and blended in with weight
  ``blend`` where the flow is reliable (forward-backward consistent); where it is not
  (occlusions, new content) and at cuts the new frame has full weight.

Scene cuts are found by comparing colour histograms of consecutive input frames. State is a
few frames' worth of arrays: memory stays flat over any length. Frames go through in order,
batch by batch; the network sees each batch once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from translate.data.flow import FlowEstimator, gray, motion, warp
from translate.files import signed_to_uint8, to_unit
from translate.infer.tiling import instance_norms
from translate.metrics.video import CUT_THRESHOLD, colour_histogram, is_cut

FLOW_SIDE = 480
"""The optical flow is measured on frames scaled down to at most this many pixels on their
longer side, then scaled back up: blending needs the coarse motion, not every pixel's."""


@dataclass(frozen=True)
class TemporalSettings:
    """How strongly frames are tied to the ones before them.

    Attributes:
        blend: weight of the motion-compensated previous output where the flow is reliable,
            in [0, 1); 0 turns flow blending off.
        norm_momentum: share of the previous frames' instance-norm statistics in a frame's, in
            [0, 1); 0 turns carried statistics off.
        cut_threshold: colour-histogram correlation of consecutive input frames below which a
            frame starts a new shot (all state reset), in [-1, 1].
    """

    blend: float = 0.6
    norm_momentum: float = 0.8
    cut_threshold: float = CUT_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("blend", "norm_momentum"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"TemporalSettings.{name} must be in [0, 1), got {value!r}")
        if not -1 <= self.cut_threshold <= 1:
            raise ValueError(f"TemporalSettings.cut_threshold must be in [-1, 1], got {self.cut_threshold!r}")


@contextmanager
def carried_instance_norm(net: nn.Module, state: dict[Any, tuple[Tensor, Tensor]], starts: list[bool], momentum: float) -> Iterator[None]:
    """Make ``net``'s instance-norm layers normalise each image of a batch of consecutive frames
    with statistics carried from the frames before it.

    For frame ``b`` and each layer call, ``stats_b = momentum * stats_{b-1} + (1 - momentum) *
    own_b`` over the per-channel mean and (biased) variance; ``starts[b]`` (a cut, or the first
    frame) uses its own. ``state`` holds the last frame's statistics per (layer, call) between
    batches. Forwards are restored on exit.
    """
    calls: dict[nn.Module, int] = {}

    def make_forward(module: nn.Module):  # type: ignore[no-untyped-def]
        def forward(x: Tensor) -> Tensor:
            index = calls[module] = calls.get(module, -1) + 1
            n, c, h, w = x.shape
            # PyTorch's group-norm kernel (one group per channel) normalises with each frame's own
            # statistics and returns them: fast for channels-last memory, unlike var_mean
            normalized, own_mean, own_rstd = torch.native_group_norm(x, None, None, n, c, h * w, c, module.eps)
            own_mean, own_rstd = own_mean.float().view(n, c), own_rstd.float().view(n, c)
            own_var = own_rstd.pow(-2) - module.eps
            carried = state.get((module, index))
            means, variances = [], []
            for b in range(n):
                if carried is None or starts[b]:
                    carried = (own_mean[b], own_var[b])
                else:
                    carried = (momentum * carried[0] + (1 - momentum) * own_mean[b], momentum * carried[1] + (1 - momentum) * own_var[b])
                means.append(carried[0])
                variances.append(carried[1])
            state[(module, index)] = carried
            # (x - carried mean) * carried rstd, from the normalised x: one more pass over it
            rstd = torch.rsqrt(torch.stack(variances) + module.eps)
            scale, shift = rstd / own_rstd, (own_mean - torch.stack(means)) * rstd
            if module.weight is not None:
                scale, shift = scale * module.weight.float(), shift * module.weight.float() + module.bias.float()
            return torch.addcmul(shift[..., None, None].to(x.dtype), normalized, scale[..., None, None].to(x.dtype))

        return forward

    patched = []
    try:
        for module in instance_norms(net):
            module.forward = make_forward(module)  # an instance attribute shadows the method
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


@dataclass
class TemporalStabilizer:
    """Translates consecutive frames with a :class:`~translate.infer.translator.Translator`,
    stabilised (see the module docstring). Feed it frames in display order."""

    translator: Any
    settings: TemporalSettings = field(default_factory=TemporalSettings)
    cuts: int = 0  # shots started after the first
    _flow: FlowEstimator = field(default_factory=lambda: FlowEstimator(cv2.DISOPTICAL_FLOW_PRESET_FAST), repr=False)
    _norm_state: dict[Any, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)
    _histogram: np.ndarray | None = field(default=None, repr=False)
    _input: np.ndarray | None = field(default=None, repr=False)  # previous frame, grey, flow size
    _output: np.ndarray | None = field(default=None, repr=False)  # previous stabilised output, float32 [0, 1]

    def __call__(self, frames: list[np.ndarray], batch: Tensor) -> np.ndarray:
        """Translate ``frames`` (uint8 (H, W, 3) RGB inputs, in order) given as ``batch`` (the
        network's (B, C_in, H, W) in [-1, 1]); returns (B, H, W, C_out) uint8, stabilised."""
        starts = []
        for frame in frames:
            histogram = colour_histogram(frame)
            cut = is_cut(self._histogram, histogram, self.settings.cut_threshold)
            self.cuts += cut and self._histogram is not None
            starts.append(cut)
            self._histogram = histogram
        fake = self._translate(batch, starts)
        return np.stack([self._blend(frame, out, start) for frame, out, start in zip(frames, fake, starts, strict=True)])

    def _translate(self, batch: Tensor, starts: list[bool]) -> np.ndarray:
        translator = self.translator
        net = getattr(translator, "net", None)  # (anything with translate_batch may translate a video)
        carry = self.settings.norm_momentum > 0 and net is not None and instance_norms(net) and hasattr(translator, "forward_padded")
        if carry and not translator.tile and not translator.memory().needs_tiling(batch.shape):
            with torch.inference_mode(), carried_instance_norm(net, self._norm_state, starts, self.settings.norm_momentum):
                out = translator.forward_padded(batch).clamp_(-1, 1)
        else:  # tiled frames normalise with their own global statistics (translate.infer.tiling)
            out = translator.translate_batch(batch)
        return signed_to_uint8(out).transpose(0, 2, 3, 1)  # (B, H, W, C)

    def _blend(self, frame: np.ndarray, fake: np.ndarray, start: bool) -> np.ndarray:
        small = _downscale(gray(frame))
        previous, self._input = self._input, small
        current = to_unit(fake)
        if self.settings.blend > 0 and not start and previous is not None and self._output is not None and previous.shape == small.shape:
            backward, reliable = motion(previous, small, self._flow)
            reliable = reliable.astype(np.float32)
            height, width = current.shape[:2]
            scale = np.float32([width / small.shape[1], height / small.shape[0]])
            backward = cv2.resize(backward, (width, height), interpolation=cv2.INTER_LINEAR) * scale
            weight = self.settings.blend * cv2.resize(reliable, (width, height), interpolation=cv2.INTER_LINEAR)
            carried = warp(self._output, backward).reshape(current.shape)
            weight = weight.reshape(height, width, *([1] * (current.ndim - 2)))
            current = (1 - weight) * current + weight * carried
        self._output = current
        return np.round(current * 255).astype(np.uint8)


def _downscale(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    factor = FLOW_SIDE / max(height, width)
    if factor >= 1:
        return image
    return cv2.resize(image, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA)

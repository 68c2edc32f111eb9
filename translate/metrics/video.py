"""Temporal stability of a translated video: the warping error and the flicker ratio.

The warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018) asks
how much each output frame differs from the previous output frame carried along the motion
of the *source* video:

    E = mean over t of  sum_i M_t(i) |O_{t+1}(i) - warp(O_t)(i)|^2 / (3 sum_i M_t(i))

with O in [0, 1], the flow measured once between consecutive source frames (OpenCV's DIS
optical flow), and M_t the pixels visible in both frames (forward-backward consistency,
Sundaram et al. 2010). The same flows and masks measure the source itself; the **flicker
ratio** is E(translation) / E(source): 1.0 is as stable as the source. A translation that
lowers contrast can sit below 1 (its differences shrink with its range).

Frames are read one pair at a time: memory stays flat over any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Sundaram et al. (2010): a pixel is visible in both frames when the forward and the backward
# flow undo each other up to this tolerance (relative, plus half a pixel squared)
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5


def gray(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) → (H, W) uint8, what the optical flow reads."""
    if frame.ndim == 3:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return frame if frame.dtype == np.uint8 else np.clip(np.round(frame * 255), 0, 255).astype(np.uint8)


class FlowEstimator:
    """DIS optical flow (Kroeger et al. 2016), OpenCV's fast dense flow: one instance reused."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self._dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, frame: np.ndarray, other: np.ndarray) -> np.ndarray:
        """Flow from ``frame`` to ``other`` (grey uint8, same size): (H, W, 2) float32, where
        pixel (x, y) of ``frame`` is found at (x + u, y + v) in ``other``."""
        return self._dis.calc(frame, other, None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at each pixel plus ``flow`` (bilinear, borders replicated).

    With ``flow`` from frame t+1 to frame t, an image of frame t comes out aligned with frame
    t+1. Shapes: ``image`` (H, W) or (H, W, C), ``flow`` (H, W, 2) → ``image``'s shape.
    """
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def visible(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of frame t+1 whose backward flow (t+1 → t) and the forward flow
    (t → t+1) at the point it lands on cancel out: seen in both frames, flow reliable."""
    forward_there = warp(forward, backward)
    mismatch = np.square(backward + forward_there).sum(-1)
    scale = np.square(backward).sum(-1) + np.square(forward_there).sum(-1)
    return mismatch < CONSISTENCY_RELATIVE * scale + CONSISTENCY_ABSOLUTE


CUT_THRESHOLD = 0.6
"""Colour-histogram correlation of consecutive frames below which the second starts a new shot."""


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """A normalised 2-d hue/saturation histogram (30 x 32) of an RGB uint8 frame, for cut detection."""
    hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [30, 32], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def is_cut(previous: np.ndarray | None, current: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    """Whether two consecutive frames' histograms (:func:`colour_histogram`) belong to different
    shots (or there is no previous frame)."""
    return previous is None or cv2.compareHist(previous, current, cv2.HISTCMP_CORREL) < threshold


@dataclass
class Motion:
    """What one pair of consecutive source frames says: the backward flow and the visible pixels."""

    backward: np.ndarray  # (H, W, 2) from frame t+1 to frame t
    mask: np.ndarray  # (H, W) bool


class MotionTracker:
    """Consecutive source frames in, the :class:`Motion` between each one and the one before out.

    A frame that starts a new shot (:func:`is_cut`) has no motion from the one before: no
    flow relates two shots, and a cut's difference would swamp every other frame's.
    """

    def __init__(self, flow: FlowEstimator | None = None) -> None:
        self.flow = flow or FlowEstimator()
        self.previous: np.ndarray | None = None
        self.histogram: np.ndarray | None = None
        self.cuts = 0  # shots started after the first

    def next(self, frame: np.ndarray) -> Motion | None:
        """The motion from the previous frame to ``frame`` (None for the first, after a cut or a size change)."""
        current = gray(frame)
        previous, self.previous = self.previous, current
        histogram = colour_histogram(frame) if frame.ndim == 3 else None
        cut = histogram is not None and self.histogram is not None and is_cut(self.histogram, histogram)
        self.histogram = histogram
        self.cuts += cut
        if previous is None or previous.shape != current.shape or cut:
            return None
        backward, forward = self.flow(current, previous), self.flow(previous, current)
        return Motion(backward, visible(backward, forward))


def to_unit(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) → float32 in [0, 1]; float frames pass through."""
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)


def pair_error(previous: np.ndarray, current: np.ndarray, motion: Motion) -> float | None:
    """Mean squared difference between ``current`` and ``previous`` warped onto it, over the
    visible pixels and the channels (frames in [0, 1]); None when no pixel is visible."""
    if not motion.mask.any():
        return None
    return float(np.square((current - warp(previous, motion.backward))[motion.mask]).mean())


@dataclass
class WarpingError:
    """Running warping error of one video against the source's motion."""

    errors: list[float] = field(default_factory=list)  # one per consecutive pair (NaN: nothing visible)
    previous: np.ndarray | None = field(default=None, repr=False)

    def add(self, frame: np.ndarray, motion: Motion | None) -> float:
        """Take the next frame (uint8 or [0, 1], the source's size); returns this pair's error."""
        current = to_unit(frame)
        error = math.nan
        if motion is not None and self.previous is not None and self.previous.shape == current.shape:
            found = pair_error(self.previous, current, motion)
            error = math.nan if found is None else found
            self.errors.append(error)
        self.previous = current
        return error

    @property
    def value(self) -> float:
        measured = [e for e in self.errors if not math.isnan(e)]
        return sum(measured) / len(measured) if measured else math.nan


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (peak 1) of two frames in [0, 1] or uint8."""
    mse = float(np.square(to_unit(a) - to_unit(b)).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)

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

from translate.data.flow import FlowEstimator, gray, motion, warp

__all__ = ["CUT_THRESHOLD", "Motion", "MotionTracker", "WarpingError", "colour_histogram", "is_cut", "psnr", "warp"]

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
        return Motion(*motion(previous, current, self.flow))


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

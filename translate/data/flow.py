"""Dense optical flow between two frames, warping along it, and where it can be trusted.

Shared by the video metrics (``translate eval --video``), the temporal stabiliser of
``translate video`` and datasets that draw consecutive frames for the temporal loss. The flow
is OpenCV's DIS (Kroeger et al. 2016): fast, dense, robust; not our own.
"""

from __future__ import annotations

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


def motion(previous: np.ndarray, current: np.ndarray, flow: FlowEstimator) -> tuple[np.ndarray, np.ndarray]:
    """The backward flow from ``current`` to ``previous`` ((H, W, 2) float32) and the pixels of
    ``current`` it can be trusted at ((H, W) bool: :func:`visible`); both frames grey uint8."""
    backward, forward = flow(current, previous), flow(previous, current)
    return backward, visible(backward, forward)

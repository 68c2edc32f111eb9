"""How far apart an unpaired dataset's two domains are, from simple image statistics.

Two uses: validation sets a model's change of its inputs beside the domains' colour gap
(:func:`colour_gap`) to tell a model that returns its input, and the toolkit recipe picks its
generator from :func:`domain_distance` (``net.residual=auto``, ``train/auto.py``): a generator
that starts as the identity where the two collections look alike in every simple statistic (a
grade, a tone, a sharpening), the papers' generator where they do not.

Each domain is read as a spread of at most :data:`MAX_DOMAIN_IMAGES` images, evenly spaced
through its sorted files, each read once as it is (no crop, no flip: the same for every run
seed); unreadable files are skipped, as training skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from translate.data.io import ImageReadError
from translate.data.media import Sample, read_sample

MAX_DOMAIN_IMAGES = 64  # images read per domain (evenly spaced)
STATISTIC_SIDE = 128  # images are resized so their shorter side is this before the texture statistics
MIN_SPREAD = 1e-3  # floor of a statistic's within-domain spread ([0, 1] units): constant statistics stay finite


def read_spread(samples: Sequence[Sample], channels: int, tables: dict[Any, Any], limit: int = MAX_DOMAIN_IMAGES) -> list[np.ndarray]:
    """At most ``limit`` of ``samples``, evenly spaced, read as float32 (H, W, channels) in
    [0, 1]; unreadable ones are left out (the list may be empty)."""
    if not samples:
        return []
    picked = [samples[round(i)] for i in np.linspace(0, len(samples) - 1, min(len(samples), limit))]
    images = []
    for sample in picked:
        try:
            image, _ = read_sample(sample, channels, tables)
        except ImageReadError:  # an unreadable file: training skips it too (load_skipping_unreadable)
            continue
        images.append(image)
    return images


def colour_gap(images_a: Sequence[np.ndarray], images_b: Sequence[np.ndarray]) -> float | None:
    """The mean over channels of |mean colour of ``images_a`` - of ``images_b``|, in [-1, 1]
    units; None when either is empty or their channels differ."""
    if not images_a or not images_b or images_a[0].shape[-1] != images_b[0].shape[-1]:
        return None
    means = [np.mean([image.reshape(-1, image.shape[-1]).mean(0) for image in images], axis=0) for images in (images_a, images_b)]
    return float(2 * np.abs(means[0] - means[1]).mean())  # [0, 1] -> [-1, 1] units


STATISTICS_RGB = ("mean R", "mean G", "mean B", "spread R", "spread G", "spread B", "saturation", "gradient", "detail")
STATISTICS_GREY = ("mean", "spread", "gradient", "detail")


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of one image: float32 (H, W, C) in [0, 1], C = 1 or 3 →
    float64 (9,) for RGB (:data:`STATISTICS_RGB`) or (4,) for grey (:data:`STATISTICS_GREY`).

    Colour: each channel's mean and standard deviation, and (RGB) the mean HSV saturation.
    Texture, on the luma at a fixed scale (shorter side :data:`STATISTIC_SIDE`, so the values do
    not depend on the file's resolution): the mean Sobel gradient magnitude (edges, contrast) and
    the mean |Laplacian| (fine detail, grain, noise).
    """
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"image_statistics: expected a float (H, W, 1 or 3) image, got shape {image.shape}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    pixels = image.reshape(-1, image.shape[2])
    colour = [*pixels.mean(0), *pixels.std(0)]
    if image.shape[2] == 3:
        colour.append(float(cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1].mean()))
        luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    else:
        luma = image[..., 0]
    scale = STATISTIC_SIDE / min(luma.shape)
    if scale != 1:
        size = (max(1, round(luma.shape[1] * scale)), max(1, round(luma.shape[0] * scale)))
        luma = cv2.resize(luma, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    gradient = np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1)).mean()
    detail = np.abs(cv2.Laplacian(luma, cv2.CV_32F)).mean()
    return np.array([*colour, gradient, detail], dtype=np.float64)


def domain_distance(images_a: Sequence[np.ndarray], images_b: Sequence[np.ndarray]) -> float | None:
    """How far apart two collections are, in within-collection spreads: for each statistic of
    :func:`image_statistics`, the difference of the two collections' means divided by its pooled
    standard deviation over the images (an effect size: 0 = alike, 1 = one spread apart), then
    the root mean square over the statistics.

    A film grade or a sharpening moves every statistic by a fraction of how much photos already
    differ among themselves (about 0.3 and 0.6 on docs/QUALITY.md's grade and detail tasks);
    day→night moves them by several (about 4). None when either collection is empty or their
    channels differ.
    """
    if not images_a or not images_b or images_a[0].shape[-1] != images_b[0].shape[-1]:
        return None
    stats_a, stats_b = (np.stack([image_statistics(image) for image in images]) for images in (images_a, images_b))
    spread = np.maximum(np.sqrt((stats_a.var(0) + stats_b.var(0)) / 2), MIN_SPREAD)
    effect = (stats_b.mean(0) - stats_a.mean(0)) / spread
    return float(np.sqrt(np.mean(effect**2)))

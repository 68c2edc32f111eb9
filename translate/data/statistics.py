"""How far apart an unpaired dataset's two domains are, from simple image statistics.

Two uses: validation sets a model's change of its inputs beside the domains' colour gap
(:func:`colour_gap`) to tell a model that returns its input, and the toolkit recipe picks its
generator from :func:`domain_distance` (``net.residual=auto``, ``train/auto.py``): a generator
that starts as the identity where the two collections look alike in every simple statistic (a
grade, a tone, a sharpening), the papers' generator where they do not.

Each domain is read as a spread of at most :data:`MAX_DOMAIN_IMAGES` files, evenly spaced
through its sorted files, one image (a video: its middle frame) each, read once as it is (no
crop, no flip: the same for every run seed) and reduced to a row of statistics before the next
is read; unreadable files are skipped, as training skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from translate.data.io import ImageReadError
from translate.data.media import Sample, read_sample

MAX_DOMAIN_IMAGES = 64  # files read per domain (evenly spaced)
MIN_DOMAIN_IMAGES = 8  # readable files a domain needs before its statistics' spread means anything
STATISTIC_SIDE = 128  # larger images are brought down to this shorter side before the texture statistics
MIN_SPREAD = 1e-3  # floor of a statistic's within-domain spread ([0, 1] units): constant statistics stay finite


def spread(samples: Sequence[Sample], limit: int = MAX_DOMAIN_IMAGES) -> list[Sample]:
    """At most ``limit`` of ``samples``, one per file (a video's middle frame: its frames vary
    too little among themselves to say how a collection varies), evenly spaced through the files."""
    by_file: dict[Any, list[Sample]] = {}
    for sample in samples:
        by_file.setdefault(sample.path, []).append(sample)
    files = [group[len(group) // 2] for group in by_file.values()]
    return [files[round(i)] for i in np.linspace(0, len(files) - 1, min(len(files), limit))] if files else []


def domain_statistics(samples: Sequence[Sample], channels: int, tables: dict[Any, Any], limit: int = MAX_DOMAIN_IMAGES) -> np.ndarray:
    """:func:`image_statistics` of each of :func:`spread` ``(samples, limit)``, read as
    ``channels`` channels one at a time (memory: one image): float64 (N, K), one row per readable
    file (N may be 0); unreadable files are left out, as training leaves them out."""
    rows = []
    for sample in spread(samples, limit):
        try:
            image, _ = read_sample(sample, channels, tables)
        except ImageReadError:  # an unreadable file: training skips it too (load_skipping_unreadable)
            continue
        rows.append(image_statistics(image))
    width = len(STATISTICS_RGB) if channels == 3 else len(STATISTICS_GREY)
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


def dataset_statistics(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`domain_statistics` of an unpaired dataset's two domains (``samples_a``,
    ``samples_b``, read as its ``channels_a``), or None when its domains' channels differ (grey
    against RGB: no statistic compares)."""
    if dataset.channels_a != dataset.channels_b:
        return None
    return domain_statistics(dataset.samples_a, dataset.channels_a, dataset.tables), domain_statistics(
        dataset.samples_b, dataset.channels_a, dataset.tables
    )


def colour_gap(stats_a: np.ndarray, stats_b: np.ndarray) -> float | None:
    """The mean over channels of |mean colour of the A images - of the B images|, in [-1, 1]
    units, from two :func:`domain_statistics` tables; None when either is empty or their
    channels differ."""
    if not len(stats_a) or not len(stats_b) or stats_a.shape[1] != stats_b.shape[1]:
        return None
    channels = 3 if stats_a.shape[1] == len(STATISTICS_RGB) else 1  # the first columns: each channel's mean
    return float(2 * np.abs(stats_a[:, :channels].mean(0) - stats_b[:, :channels].mean(0)).mean())  # [0, 1] -> [-1, 1] units


STATISTICS_RGB = ("mean R", "mean G", "mean B", "spread R", "spread G", "spread B", "saturation", "gradient", "detail")
STATISTICS_GREY = ("mean", "spread", "gradient", "detail")


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of one image: float32 (H, W, C) in [0, 1], C = 1 or 3 →
    float64 (9,) for RGB (:data:`STATISTICS_RGB`) or (4,) for grey (:data:`STATISTICS_GREY`).

    Colour: each channel's mean and standard deviation, and (RGB) the mean HSV saturation.
    Texture, on the luma, brought down to a shorter side of :data:`STATISTIC_SIDE` when larger (so
    large photos of one scene give about the same values whatever their resolution; smaller images
    are taken as they are): the mean Sobel gradient magnitude (edges, contrast) and the mean
    |Laplacian| (fine detail, grain, noise).
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
    if scale < 1:
        size = (max(1, round(luma.shape[1] * scale)), max(1, round(luma.shape[0] * scale)))
        luma = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
    gradient = np.hypot(cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1)).mean()
    detail = np.abs(cv2.Laplacian(luma, cv2.CV_32F)).mean()
    return np.array([*colour, gradient, detail], dtype=np.float64)


def domain_distance(stats_a: np.ndarray, stats_b: np.ndarray) -> float | None:
    """How far apart two collections are, in within-collection spreads, from their
    :func:`domain_statistics`: for each statistic, the difference of the two collections' means
    divided by its pooled standard deviation over the images (an effect size: 0 = alike, 1 = one
    spread apart), then the root mean square over the statistics.

    A film grade or a sharpening moves every statistic by a fraction of how much photos already
    differ among themselves (about 0.2 and 0.6 on docs/QUALITY.md's grade and detail tasks);
    day→night moves them by several (about 4). None when either collection has fewer than
    :data:`MIN_DOMAIN_IMAGES` images (too few to say how a collection varies) or their channels differ.
    """
    if min(len(stats_a), len(stats_b)) < MIN_DOMAIN_IMAGES or stats_a.shape[1] != stats_b.shape[1]:
        return None
    spread = np.maximum(np.sqrt((stats_a.var(0) + stats_b.var(0)) / 2), MIN_SPREAD)
    effect = (stats_b.mean(0) - stats_a.mean(0)) / spread
    return float(np.sqrt(np.mean(effect**2)))

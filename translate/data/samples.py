"""Small real-photo datasets for the demo, the tests and the benchmarks.

The photos are scikit-image's bundled test images (``skimage.data``: astronaut, coffee,
chelsea, rocket, camera, …), so nothing is downloaded:

- ``unpaired``: day -> night. A holds crops of some photos; B holds crops of *other* photos
  rendered as night (:func:`render_night`), so that, as in real unpaired data, no B image is
  the translation of an A image.
- ``paired``: edges -> photo. Each side-by-side image holds the Canny edges of a photo crop
  (A, black lines on white, as edges2shoes) and the crop itself (B).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from translate.errors import UserError
from translate.files import to_channels, to_unit

# Disjoint sources for the two unpaired domains; grayscale photos are used as RGB.
DAY_PHOTOS = ("astronaut", "coffee", "camera", "coins")
NIGHT_PHOTOS = ("chelsea", "rocket", "clock", "brick")
EDGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "clock")


def _load_photo(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise UserError("sample datasets are built from scikit-image's photos — pip install scikit-image") from None
    photo = np.asarray(getattr(skimage.data, name)())
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    return np.ascontiguousarray(photo[:, :, :3], dtype=np.uint8)


def random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (40–90 % of the short side) of a uint8 HWC photo, resized to ``size``."""
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.4, 0.9) * min(h, w))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def render_night(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render a daylight photo as a night shot.

    Darkened with a gamma curve and a lower exposure, desaturated, shifted towards blue
    (moonlight / the eye's scotopic vision), then given signal-dependent sensor noise. The
    strength of each step is drawn from ``rng`` so the night images vary.

    Args:
        img: uint8 (H, W, 3) RGB, or float (H, W, 3) in [0, 1].
        rng: Source of the random strengths.

    Returns:
        The night image, with ``img``'s dtype and shape.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    x = to_unit(img)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(1.8, 2.6) * rng.uniform(0.45, 0.7)
    luma = to_channels(x, 1)
    x = luma + rng.uniform(0.25, 0.5) * (x - luma)
    x = x * np.array([0.7, 0.85, 1.25], dtype=np.float32) + np.array([0.0, 0.01, 0.04], dtype=np.float32)
    # Shot noise grows with the signal, read noise does not.
    sigma = np.sqrt(rng.uniform(0.0004, 0.001) * x + rng.uniform(0.00005, 0.0002))
    x = np.clip(x + sigma * rng.standard_normal(x.shape).astype(np.float32), 0.0, 1.0)
    if img.dtype == np.uint8:
        return np.round(x * 255.0).astype(np.uint8)
    return x.astype(img.dtype)


GRADE_CURVES = np.array([0.85, 1.0, 1.25], dtype=np.float32)  # R, G, B gamma: warmer mid-tones
GRADE_BLACK = np.array([0.06, 0.05, 0.02], dtype=np.float32)  # faded, warm shadows
GRADE_WHITE = np.array([0.96, 0.93, 0.85], dtype=np.float32)  # soft, cream highlights
GRADE_SATURATION = 0.75


def render_grade(img: np.ndarray) -> np.ndarray:
    """A subtle photographic change, always the same: a warm, faded film grade.

    Per-channel tone curves warm the mid-tones, blacks are lifted and whites lowered towards
    warm tints, and colours lose a quarter of their saturation. Every pixel keeps its place and
    most of its value, so returning the input is already close (a strong "do nothing"
    baseline); a translation that changes content or adds artefacts scores below it.

    Args:
        img: uint8 (H, W, 3) RGB, or float (H, W, 3) in [0, 1].

    Returns:
        The graded image, with ``img``'s dtype and shape.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    x = np.clip(to_unit(img), 0.0, 1.0) ** GRADE_CURVES
    x = GRADE_BLACK + (GRADE_WHITE - GRADE_BLACK) * x
    luma = to_channels(x, 1)
    x = np.clip(luma + GRADE_SATURATION * (x - luma), 0.0, 1.0)
    if img.dtype == np.uint8:
        return np.round(x * 255.0).astype(np.uint8)
    return x.astype(img.dtype)


def edges(photo: np.ndarray) -> np.ndarray:
    """Canny edges of a uint8 RGB photo as a uint8 RGB sketch: black lines on white."""
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    lines = cv2.Canny(cv2.GaussianBlur(gray, (3, 3), 0), 60, 150)
    return np.repeat((255 - lines)[:, :, None], 3, axis=2)


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), params):
        raise UserError(f"{path}: cannot be written — check that the folder is writable")


def make_sample_dataset(
    root: Path,
    kind: Literal["unpaired", "paired"],
    size: int = 64,
    count: int = 8,
    *,
    seed: int = 0,
) -> Path:
    """Write a small real-photo dataset into ``root`` (created if needed).

    Layouts (see ``datasets/README.md``):

    - ``unpaired``: ``root/trainA/*.jpg`` (day), ``root/trainB/*.png`` (night), and
      ``testA``/``testB`` with ``max(2, count // 4)`` images each.
    - ``paired``: ``root/train/*.png`` side by side, edges | photo, each ``2*size`` x ``size``;
      and ``root/test`` with ``max(2, count // 4)`` pairs.

    The same arguments always write the same files.

    Args:
        root: Dataset folder to write.
        kind: ``"unpaired"`` (day -> night) or ``"paired"`` (edges -> photo).
        size: Side of each (square) image in pixels.
        count: Training images per domain (or training pairs).
        seed: Seed of the crops and the night rendering.

    Returns:
        ``root``.

    Raises:
        UserError: scikit-image is not installed.
    """
    if kind not in ("unpaired", "paired"):
        raise ValueError(f"kind must be 'unpaired' or 'paired', got {kind!r}")
    if size < 8 or count < 1:
        raise ValueError(f"size must be >= 8 and count >= 1, got size={size!r}, count={count!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = {"train": count, "test": max(2, count // 4)}
    if kind == "unpaired":
        day = [_load_photo(n) for n in DAY_PHOTOS]
        night = [_load_photo(n) for n in NIGHT_PHOTOS]
        for phase, n in counts.items():
            for i in range(n):
                _write(root / f"{phase}A" / f"day_{i:04d}.jpg", random_crop(day[i % len(day)], size, rng))
                crop = random_crop(night[i % len(night)], size, rng)
                _write(root / f"{phase}B" / f"night_{i:04d}.png", render_night(crop, rng))
    else:
        photos = [_load_photo(n) for n in EDGE_PHOTOS]
        for phase, n in counts.items():
            for i in range(n):
                crop = random_crop(photos[i % len(photos)], size, rng)
                _write(root / phase / f"{i:04d}.png", np.concatenate([edges(crop), crop], axis=1))
    return root

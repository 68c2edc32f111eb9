"""Benchmark datasets for ``scripts/quality.py``, built from scikit-image's real photos.

Whole photos are held out for testing: every test crop comes from a photo no training set
has seen. Crops multiply a few photos into many samples (``random_crop``: 40–90 % of the
short side, resized).

- sketch→photo (paired, pix2pix): A = Canny edges of a crop, B = the crop.
- day→night (unpaired, CycleGAN): A = day crops of some photos, B = night renderings of crops
  of *other* photos. The test target of a day crop ``a`` is its expected night rendering
  (:func:`central_night`), known exactly because the rendering is ours.

Layouts written (``datasets/README.md``): ``ROOT/train/{A,B}`` and ``ROOT/test/{A,B}`` (paired
folders, names matched) for sketch→photo; ``ROOT/trainA``, ``ROOT/trainB``, ``ROOT/testA`` and
``ROOT/test_target`` for day→night (``testB`` holds night renderings of other held-out crops,
so the toolkit's own validation could run, but the benchmark reads ``test_target``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from translate.data.samples import _load_photo, edges, random_crop, render_night

# Held out of every training set; coffee and chelsea are color photos of scenes no training
# photo shows.
TEST_PHOTOS = ("coffee", "chelsea")
SKETCH_TRAIN_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "immunohistochemistry", "retina", "camera")
# The two unpaired domains come from disjoint photos (as horse2zebra: no B image is the
# translation of an A image); each mixes color and gray photos in similar proportions.
DAY_TRAIN_PHOTOS = ("astronaut", "motorcycle_left", "immunohistochemistry", "camera")
NIGHT_TRAIN_PHOTOS = ("rocket", "retina", "clock", "coins")


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 (H, W, 3) RGB, read-only (cached); ``motorcycle_left/right`` are the stereo pair."""
    if name in ("motorcycle_left", "motorcycle_right"):
        import skimage.data

        left, right, _ = skimage.data.stereo_motorcycle()
        photo = np.ascontiguousarray((left if name == "motorcycle_left" else right)[:, :, :3], dtype=np.uint8)
    else:
        photo = _load_photo(name)
    photo.flags.writeable = False  # shared by every caller through the cache
    return photo


def crops(names: Sequence[str], count: int, size: int, seed: int) -> list[np.ndarray]:
    """``count`` random square crops, uint8 (size, size, 3), taking the photos in turn."""
    photos = [load_photo(n) for n in names]
    rng = np.random.default_rng(seed)
    return [random_crop(photos[i % len(photos)], size, rng) for i in range(count)]


class _CentralStrengths:
    """Stands in for ``np.random.Generator`` in :func:`render_night`: every random strength at
    the middle of its range and no sensor noise, i.e. the typical rendering of the domain."""

    def uniform(self, low: float, high: float) -> float:
        return 0.5 * (low + high)

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)


def central_night(day: np.ndarray) -> np.ndarray:
    """The noise-free night rendering of uint8 (H, W, 3) ``day`` at mid-range strengths (uint8).

    Domain B's samples are random draws around it (random gamma, exposure, saturation, noise),
    so it is the target a deterministic day→night generator should aim for.
    """
    return render_night(day, _CentralStrengths())  # type: ignore[arg-type]


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"{path}: cannot be written")


@dataclass(frozen=True)
class Counts:
    """Training crops per domain (or pairs) and held-out test crops."""

    train: int
    test: int


def build_sketch2photo(root: Path, size: int, counts: Counts, seed: int = 0) -> Path:
    """Paired edges→photo data in ``root/{train,test}/{A,B}`` (PNG, lossless)."""
    for phase, names, n, s in (("train", SKETCH_TRAIN_PHOTOS, counts.train, seed),
                               ("test", TEST_PHOTOS, counts.test, seed + 1)):
        for i, crop in enumerate(crops(names, n, size, s)):
            write_png(root / phase / "A" / f"{i:04d}.png", edges(crop))
            write_png(root / phase / "B" / f"{i:04d}.png", crop)
    return root


def build_day2night(root: Path, size: int, counts: Counts, seed: int = 0) -> Path:
    """Unpaired day→night data: ``trainA``/``trainB``, ``testA`` + ``test_target``, ``testB``."""
    night_rng = np.random.default_rng(seed + 10)
    for i, crop in enumerate(crops(DAY_TRAIN_PHOTOS, counts.train, size, seed + 2)):
        write_png(root / "trainA" / f"{i:04d}.png", crop)
    for i, crop in enumerate(crops(NIGHT_TRAIN_PHOTOS, counts.train, size, seed + 3)):
        write_png(root / "trainB" / f"{i:04d}.png", render_night(crop, night_rng))
    # the same held-out crops as sketch→photo (same photos and seed): one test set for both
    for i, crop in enumerate(crops(TEST_PHOTOS, counts.test, size, seed + 1)):
        write_png(root / "testA" / f"{i:04d}.png", crop)
        write_png(root / "test_target" / f"{i:04d}.png", central_night(crop))
        write_png(root / "test_random_night" / f"{i:04d}.png", render_night(crop, night_rng))
    for i, crop in enumerate(crops(TEST_PHOTOS, counts.test, size, seed + 4)):
        write_png(root / "testB" / f"{i:04d}.png", render_night(crop, night_rng))
    return root


def subset(src: Path, dst: Path, folders: Sequence[str], count: int) -> Path:
    """Copy the first ``count`` images of each of ``src/<folder>`` to ``dst/<folder>``; others are linked whole."""
    import shutil

    for entry in sorted(src.iterdir()):
        if entry.name in folders:
            (dst / entry.name).mkdir(parents=True, exist_ok=True)
            for path in sorted(entry.iterdir())[:count]:
                shutil.copyfile(path, dst / entry.name / path.name)
        elif entry.is_dir():
            shutil.copytree(entry, dst / entry.name, dirs_exist_ok=True)
    return dst


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot be read")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def mean_image(folder: Path) -> np.ndarray:
    """Per-pixel mean of the images in ``folder`` (uint8): the best constant guess under MSE."""
    images = [read_rgb(p).astype(np.float64) for p in sorted(folder.iterdir())]
    return np.round(np.mean(images, axis=0)).astype(np.uint8)

"""The quality benchmark's datasets, built from scikit-image's real photos.

Whole photos are held out: every scored crop comes from a photo (coffee, chelsea) that no
training or validation set has seen. A validation split, which the toolkit reads as the
dataset's test split (``test/``, ``testA``/``testB``) to keep its best checkpoint, comes from
photos held out of training too (the left and right views of the stereo motorcycle), never
from the scored ones. Random crops (``translate.data.samples.random_crop``) multiply a few
photos into many samples.

- sketch2photo (paired, pix2pix): ``train/{A,B}``, ``test/{A,B}`` (validation),
  ``heldout/{A,B}`` (scored); A = Canny edges of a crop, B = the crop.
- day2night (unpaired, CycleGAN): ``trainA`` day crops, ``trainB`` night renderings of crops of
  *other* photos; ``heldout/A`` scored day crops and ``heldout/target`` their noise-free night
  rendering at mid-range strengths (known exactly, because the rendering is ours).
- grade (unpaired, CycleGAN): ``trainA`` plain crops of the left halves of seven photos,
  ``trainB`` crops of their right halves with a subtle film grade (``render_grade``: warmer,
  faded, less saturated); ``heldout/A`` scored crops and ``heldout/target`` their grade.
  Returning the input is a strong baseline here. The two collections share no pixel, yet show
  the same kinds of scenes (as horse2zebra's do), so the grade is the only systematic
  difference between them: with day2night's disjoint photo sets (greyscale clock and coins on
  one side only) the collections' colours differ by more than the grade does, and matching
  their colour distributions, which is what an unpaired model learns, scores below returning
  the input.
- detail (unpaired, CycleGAN): as grade, with ``render_detail`` (local contrast and fine detail
  boosted) in place of the grade: a texture change whose collections' mean colours differ by a few
  levels only, to judge the toolkit's choice of generator (``net.residual=auto``) beyond colour.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from translate.data.samples import edges, random_crop, render_grade, render_night

TEST_PHOTOS = ("coffee", "chelsea")  # scored; in no training or validation set
VALIDATION_PHOTOS = ("motorcycle_left",)  # the toolkit's validation split; in no training set
VALIDATION_B_PHOTOS = ("motorcycle_right",)  # the unpaired tasks' validation B images
SKETCH_TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "retina", "camera")
# disjoint photos for the two unpaired domains (as horse2zebra: no B is the translation of an A)
DAY_TRAIN_PHOTOS = ("astronaut", "immunohistochemistry", "camera")
NIGHT_TRAIN_PHOTOS = ("rocket", "retina", "clock", "coins")
GRADE_TRAIN_PHOTOS = DAY_TRAIN_PHOTOS + NIGHT_TRAIN_PHOTOS  # A: their left halves, B: their right halves


@cache
def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as read-only uint8 (H, W, 3) RGB; ``motorcycle_left`` and
    ``motorcycle_right`` are the stereo pair's two views."""
    import skimage.data

    views = {"motorcycle_left": 0, "motorcycle_right": 1}
    photo = skimage.data.stereo_motorcycle()[views[name]] if name in views else getattr(skimage.data, name)()
    photo = np.asarray(photo)
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    photo = np.ascontiguousarray(photo[:, :, :3], dtype=np.uint8)
    photo.flags.writeable = False  # shared through the cache
    return photo


Half = Literal["left", "right"]


def crops(names: Sequence[str], count: int, size: int, seed: int, half: Half | None = None) -> list[np.ndarray]:
    """``count`` random square crops, uint8 (size, size, 3), taking the photos in turn; from
    only the ``half`` of each photo when given."""
    rng = np.random.default_rng(seed)
    photos = [load_photo(name) for name in names]
    if half is not None:
        photos = [photo[:, : photo.shape[1] // 2] if half == "left" else photo[:, photo.shape[1] // 2 :] for photo in photos]
    return [random_crop(photos[i % len(photos)], size, rng) for i in range(count)]


class _Central:
    """Stands in for the random generator of ``render_night``: every strength mid-range, no noise."""

    def uniform(self, low: float, high: float) -> float:
        return 0.5 * (low + high)

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.float32)


def central_night(day: np.ndarray) -> np.ndarray:
    """The typical night rendering of a day crop: the target a deterministic generator should reach."""
    return render_night(day, _Central())  # type: ignore[arg-type]


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"{path}: cannot be written")


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot be read")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def build_sketch2photo(root: Path, size: int, train: int, test: int) -> None:
    splits = (("train", SKETCH_TRAIN_PHOTOS, train, 0), ("test", VALIDATION_PHOTOS, test, 5), ("heldout", TEST_PHOTOS, test, 1))
    for phase, names, count, seed in splits:
        for i, crop in enumerate(crops(names, count, size, seed)):
            write_png(root / phase / "A" / f"{i:04d}.png", edges(crop))
            write_png(root / phase / "B" / f"{i:04d}.png", crop)


def _build_unpaired(
    root: Path,
    size: int,
    train: int,
    test: int,
    render_b: Callable[[np.ndarray], np.ndarray],
    target: Callable[[np.ndarray], np.ndarray],
    train_a: Callable[[int, int, int], list[np.ndarray]],  # (count, size, seed) -> crops
    train_b: Callable[[int, int, int], list[np.ndarray]],
) -> None:
    for i, crop in enumerate(train_a(train, size, 2)):
        write_png(root / "trainA" / f"{i:04d}.png", crop)
    for i, crop in enumerate(train_b(train, size, 3)):
        write_png(root / "trainB" / f"{i:04d}.png", render_b(crop))
    for i, crop in enumerate(crops(VALIDATION_PHOTOS, test, size, 5)):  # validation: the toolkit's test split
        write_png(root / "testA" / f"{i:04d}.png", crop)
    for i, crop in enumerate(crops(VALIDATION_B_PHOTOS, test, size, 6)):
        write_png(root / "testB" / f"{i:04d}.png", render_b(crop))
    for i, crop in enumerate(crops(TEST_PHOTOS, test, size, 1)):  # scored: the sketch2photo held-out crops
        write_png(root / "heldout" / "A" / f"{i:04d}.png", crop)
        write_png(root / "heldout" / "target" / f"{i:04d}.png", target(crop))


def build_day2night(root: Path, size: int, train: int, test: int) -> None:
    rng = np.random.default_rng(10)
    day, night = (partial(crops, names) for names in (DAY_TRAIN_PHOTOS, NIGHT_TRAIN_PHOTOS))
    _build_unpaired(root, size, train, test, lambda crop: render_night(crop, rng), central_night, day, night)


def build_grade(root: Path, size: int, train: int, test: int) -> None:
    left, right = (partial(crops, GRADE_TRAIN_PHOTOS, half=half) for half in ("left", "right"))
    _build_unpaired(root, size, train, test, render_grade, render_grade, left, right)


DETAIL_SIGMA_S, DETAIL_SIGMA_R = 10.0, 0.15  # cv2.detailEnhance: ~10 px neighbourhoods, edges above 15% kept


def render_detail(img: np.ndarray) -> np.ndarray:
    """A texture change that keeps the colours: local contrast and fine detail boosted (OpenCV's
    ``detailEnhance``, an HDR-like look), uint8 (H, W, 3) RGB in and out. The collections' mean
    colours differ by a few levels only, as the grade's do, but every edge and texture changes."""
    return cv2.detailEnhance(np.ascontiguousarray(img[:, :, ::-1]), sigma_s=DETAIL_SIGMA_S, sigma_r=DETAIL_SIGMA_R)[:, :, ::-1].copy()


def build_detail(root: Path, size: int, train: int, test: int) -> None:
    left, right = (partial(crops, GRADE_TRAIN_PHOTOS, half=half) for half in ("left", "right"))
    _build_unpaired(root, size, train, test, render_detail, render_detail, left, right)


def source_digest() -> str:
    """A digest of this file: datasets built by another version of it are built again."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def subset(src: Path, dst: Path, count: int) -> Path:
    """``src`` with only the first ``count`` images of each training folder (``train*``, ``train/*``)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    for folder in [*dst.glob("train?"), *dst.glob("train/*")]:
        for path in sorted(folder.iterdir())[count:]:
            path.unlink()
    return dst


def colour_transfer(source: Path, reference: Path, inputs: Path, out: Path) -> None:
    """Each image of ``inputs`` with the colour statistics of ``reference`` in place of ``source``'s
    (Reinhard et al. 2001, per RGB channel: ``(x - mean_s) / std_s * std_r + mean_r`` over every
    pixel of each folder), written to ``out`` as PNG: what swapping the two training collections'
    colour means and spreads gives, with no training: a reference for what the collections say
    about a global colour change."""
    stats = []
    for folder in (source, reference):
        pixels = np.concatenate([read_rgb(p).reshape(-1, 3).astype(np.float64) for p in sorted(folder.iterdir())])
        stats.append((pixels.mean(0), pixels.std(0) + 1e-6))
    (mean_s, std_s), (mean_r, std_r) = stats
    for path in sorted(inputs.iterdir()):
        moved = (read_rgb(path).astype(np.float64) - mean_s) / std_s * std_r + mean_r
        write_png(out / f"{path.stem}.png", np.clip(np.round(moved), 0, 255).astype(np.uint8))


def mean_image(folder: Path) -> np.ndarray:
    """Per-pixel mean of a folder's images (uint8): the best constant guess under squared error."""
    return np.round(np.mean([read_rgb(p).astype(np.float64) for p in sorted(folder.iterdir())], axis=0)).astype(np.uint8)

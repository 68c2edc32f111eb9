"""Domain statistics: what net.residual=auto and the returns-input line read of two collections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from translate.data.media import Sample
from translate.data.samples import random_crop, render_grade, render_night
from translate.data.statistics import (
    MIN_DOMAIN_IMAGES,
    STATISTICS_GREY,
    STATISTICS_RGB,
    colour_gap,
    domain_distance,
    domain_statistics,
    image_statistics,
    spread,
)


def unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


def table(images: list[np.ndarray]) -> np.ndarray:
    """A domain_statistics table of uint8 images."""
    return np.stack([image_statistics(unit(image)) for image in images])


@pytest.fixture(scope="module")
def halves() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Crops (uint8, 64 px) of the left and of the right halves of four real photos."""
    rng = np.random.default_rng(0)
    left, right = [], []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        photo = np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3])
        half = photo.shape[1] // 2
        left += [random_crop(photo[:, :half], 64, rng) for _ in range(4)]
        right += [random_crop(photo[:, half:], 64, rng) for _ in range(4)]
    return left, right


def test_image_statistics_are_colour_then_texture_and_large_photos_give_them_at_one_scale() -> None:
    import cv2

    photo = unit(skimage.data.chelsea())  # 300 x 451
    stats = image_statistics(photo)
    assert stats.shape == (len(STATISTICS_RGB),) and np.isfinite(stats).all()
    np.testing.assert_allclose(stats[:3], photo.reshape(-1, 3).mean(0), rtol=1e-5)
    assert image_statistics(photo[:, :, :1]).shape == (len(STATISTICS_GREY),)
    # texture is taken at a shorter side of 128 whatever the file's: the photo at twice its size says about the same
    doubled = image_statistics(cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(doubled[-2:], stats[-2:], rtol=0.15)
    flat = image_statistics(np.full((40, 40, 3), 0.5, np.float32))
    assert flat[-2:].tolist() == [0.0, 0.0]  # no edge, no detail
    with pytest.raises(ValueError, match="shape"):
        image_statistics(photo[:, :, :2])


def test_a_grade_is_a_fraction_of_a_spread_and_night_several(halves) -> None:
    left, right = halves
    rng = np.random.default_rng(1)
    graded = domain_distance(table(left), table([render_grade(x) for x in right]))
    night = domain_distance(table(left), table([render_night(x, rng) for x in right]))
    same_kind = domain_distance(table(left), table(right))  # two halves of the same photos, unchanged
    assert graded is not None and night is not None and same_kind is not None
    assert same_kind < graded < 1.0 < 1.5 < night
    assert domain_distance(table(left), table(left)) == 0.0
    few = MIN_DOMAIN_IMAGES - 1  # too few images to say how a collection varies
    assert domain_distance(table(left[:few]), table(right)) is None
    assert domain_distance(table(left), np.stack([image_statistics(unit(x)[:, :, :1]) for x in right])) is None  # RGB against grey


def test_colour_gap_is_the_mean_colour_difference_in_signed_units() -> None:
    dark, light = np.full((4, 4, 3), 64, np.uint8), np.full((4, 4, 3), 191, np.uint8)
    assert colour_gap(table([dark]), table([light])) == pytest.approx(1.0, abs=0.01)  # half the range is 1 in [-1, 1] units
    assert colour_gap(table([dark, light]), table([light, dark])) == pytest.approx(0.0)
    assert colour_gap(table([dark]), np.zeros((0, len(STATISTICS_RGB)))) is None


def test_files_are_read_one_each_evenly_spaced_and_unreadable_ones_left_out(tmp_path: Path, halves) -> None:
    import cv2

    paths = []
    for i, crop in enumerate(halves[0][:10]):
        paths.append(tmp_path / f"{i:02d}.png")
        cv2.imwrite(str(paths[-1]), crop[:, :, ::-1])
    paths[0].write_bytes(b"not a png")
    samples = [Sample(p, None, (64, 64)) for p in paths]
    assert [s.path for s in spread(samples, 4)] == [paths[0], paths[3], paths[6], paths[9]]
    stats = domain_statistics(samples, 3, {}, limit=4)  # the first is unreadable
    assert stats.shape == (3, len(STATISTICS_RGB))
    np.testing.assert_allclose(stats[0], image_statistics(unit(halves[0][3])), rtol=1e-5)
    clip = [Sample(tmp_path / "clip.mp4", frame, (64, 64)) for frame in range(9)]
    picked = [(s.path.name, s.frame) for s in spread(clip + samples[:2])]
    assert picked == [("clip.mp4", 4), ("00.png", None), ("01.png", None)]  # a video counts once: its middle frame
    assert domain_statistics([], 3, {}).shape[0] == 0

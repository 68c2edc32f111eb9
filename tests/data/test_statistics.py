"""Domain statistics: what net.residual=auto and the returns-input line read of two collections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from translate.data.media import Sample
from translate.data.samples import random_crop, render_grade, render_night
from translate.data.statistics import (
    STATISTICS_GREY,
    STATISTICS_RGB,
    colour_gap,
    domain_distance,
    image_statistics,
    read_spread,
)


def unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


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


def test_image_statistics_are_colour_then_texture_and_do_not_depend_on_resolution() -> None:
    photo = unit(skimage.data.chelsea())
    stats = image_statistics(photo)
    assert stats.shape == (len(STATISTICS_RGB),) and np.isfinite(stats).all()
    np.testing.assert_allclose(stats[:3], photo.reshape(-1, 3).mean(0), rtol=1e-5)
    grey = image_statistics(photo[:, :, :1])
    assert grey.shape == (len(STATISTICS_GREY),)
    # the texture statistics are taken at one scale: the photo at twice its size has about the same
    import cv2

    doubled = image_statistics(cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
    np.testing.assert_allclose(doubled[-2:], stats[-2:], rtol=0.15)
    flat = image_statistics(np.full((40, 40, 3), 0.5, np.float32))
    assert flat[-2:].tolist() == [0.0, 0.0]  # no edge, no detail
    with pytest.raises(ValueError, match="shape"):
        image_statistics(photo[:, :, :2])


def test_a_grade_is_a_fraction_of_a_spread_and_night_several(halves) -> None:
    left, right = halves
    rng = np.random.default_rng(1)
    graded = domain_distance([unit(x) for x in left], [unit(render_grade(x)) for x in right])
    night = domain_distance([unit(x) for x in left], [unit(render_night(x, rng)) for x in right])
    same_kind = domain_distance([unit(x) for x in left], [unit(x) for x in right])  # two halves of the same photos, unchanged
    assert graded is not None and night is not None and same_kind is not None
    assert same_kind < graded < 1.0 < 1.5 < night
    assert domain_distance([unit(x) for x in left], [unit(x) for x in left]) == 0.0
    assert domain_distance([], [unit(x) for x in left]) is None
    assert domain_distance([unit(x) for x in left], [unit(x)[:, :, :1] for x in right]) is None  # RGB against grey


def test_colour_gap_is_the_mean_colour_difference_in_signed_units() -> None:
    dark, light = np.full((4, 4, 3), 0.25, np.float32), np.full((4, 4, 3), 0.75, np.float32)
    assert colour_gap([dark], [light]) == pytest.approx(1.0)  # half the [0, 1] range is 1 in [-1, 1] units
    assert colour_gap([dark, light], [dark, light]) == 0.0
    assert colour_gap([dark], []) is None


def test_read_spread_takes_evenly_spaced_images_and_skips_unreadable_ones(tmp_path: Path, halves) -> None:
    import cv2

    paths = []
    for i, crop in enumerate(halves[0][:10]):
        paths.append(tmp_path / f"{i:02d}.png")
        cv2.imwrite(str(paths[-1]), crop[:, :, ::-1])
    paths[0].write_bytes(b"not a png")
    samples = [Sample(p, None, (64, 64)) for p in paths]
    images = read_spread(samples, 3, {}, limit=4)  # files 0, 3, 6, 9: the first unreadable
    assert len(images) == 3 and images[0].shape == (64, 64, 3) and images[0].dtype == np.float32
    np.testing.assert_allclose(images[0], halves[0][3] / 255, atol=1e-6)
    assert read_spread([], 3, {}) == []

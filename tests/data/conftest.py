"""Fixtures for the data tests: small real photos (skimage.data) written as image files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="session")
def photo() -> Callable[..., np.ndarray]:
    """``photo(name="astronaut", width=48, height=40)``: a real photo resized small, uint8 RGB."""
    cache: dict[str, np.ndarray] = {}

    def make(name: str = "astronaut", width: int = 48, height: int = 40) -> np.ndarray:
        if name not in cache:
            image = np.asarray(getattr(skimage_data, name)())
            if image.ndim == 2:
                image = np.repeat(image[:, :, None], 3, axis=2)
            cache[name] = np.ascontiguousarray(image[:, :, :3])
        return cv2.resize(cache[name], (width, height), interpolation=cv2.INTER_AREA)

    return make


@pytest.fixture(scope="session")
def write_image() -> Callable[[Path, np.ndarray], Path]:
    """``write_image(path, rgb)``: write an RGB (or gray) uint8/uint16 array with OpenCV."""

    def write(path: Path, image: np.ndarray) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = image[:, :, ::-1] if image.ndim == 3 else image  # OpenCV writes BGR
        assert cv2.imwrite(str(path), np.ascontiguousarray(pixels)), path
        return path

    return write


@pytest.fixture
def unpaired_root(tmp_path: Path, photo, write_image) -> Path:
    """DATA/trainA (3 photos, mixed formats, one nested) and DATA/trainB (5 photos)."""
    root = tmp_path / "data"
    write_image(root / "trainA" / "a0.jpg", photo("astronaut", 48, 40))
    write_image(root / "trainA" / "a1.PNG", photo("coffee", 40, 48))
    write_image(root / "trainA" / "sub" / "a2.webp", photo("camera", 44, 44))
    for i, name in enumerate(("chelsea", "rocket", "clock", "coins", "brick")):
        write_image(root / "trainB" / f"b{i}.png", photo(name, 48, 48))
    return root


def truncated_png(path: Path, image: np.ndarray) -> Path:
    """Write a PNG whose header is valid but whose pixel data is cut short."""
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    return path


@pytest.fixture
def make_truncated_png() -> Callable[[Path, np.ndarray], Path]:
    return truncated_png

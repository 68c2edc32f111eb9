"""Shared fixtures: tiny generators saved as translate generator files, real photos.

* ``tiny_generator_factory(generator="resnet_6blocks", norm="instance", base_channels=8, ...)``
  → Path of a ``.safetensors`` generator file (built once per argument set per session).
* ``tiny_generator_file`` → Path, parametrised over a ResNet (``resnet_6blocks``, ngf 8) and a
  U-Net (``unet_128``, ngf 4), both instance norm: a test using it runs once for each.
* ``photo(height, width, name="astronaut")`` → (1, 3, H, W) float32 in [-1, 1] from
  ``skimage.data``.
* ``graded_data`` → an unpaired dataset folder whose trainB is a subtle film grade of photos
  like trainA's (:func:`write_collections`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.config import NetConfig
from translate.formats import save_generator
from translate.nets import build_generator

GeneratorFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_generator_factory(tmp_path_factory: pytest.TempPathFactory) -> GeneratorFactory:
    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("tiny_generators")

    def make(
        generator: str = "resnet_6blocks",
        *,
        norm: str = "instance",
        base_channels: int = 8,
        in_channels: int = 3,
        out_channels: int = 3,
        dropout: bool = False,
        seed: int = 0,
    ) -> Path:
        key = (generator, norm, base_channels, in_channels, out_channels, dropout, seed)
        if key not in cache:
            net_cfg = NetConfig(
                generator=generator,
                norm=norm,  # type: ignore[arg-type]
                base_channels_g=base_channels,
                in_channels=in_channels,
                out_channels=out_channels,
                dropout=dropout,
            )
            torch.manual_seed(seed)
            net = build_generator(net_cfg)  # init gain 0.02, as training starts
            path = folder / f"{generator}-{norm}-{base_channels}-{in_channels}to{out_channels}-{int(dropout)}-{seed}.safetensors"
            save_generator(path, net, net_cfg)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session", params=["resnet", "unet"])
def tiny_generator_file(request: pytest.FixtureRequest, tiny_generator_factory: GeneratorFactory) -> Path:
    if request.param == "resnet":
        return tiny_generator_factory("resnet_6blocks", base_channels=8)
    return tiny_generator_factory("unet_128", base_channels=4)


@pytest.fixture(scope="session")
def photo() -> Callable[..., torch.Tensor]:
    from skimage import data, transform

    def load(height: int, width: int, name: str = "astronaut") -> torch.Tensor:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        image = transform.resize(image[..., :3], (height, width), anti_aliasing=True).astype(np.float32)
        return torch.from_numpy(image).permute(2, 0, 1)[None] * 2 - 1

    return load


# --- the ``cuda`` marker: tests that need a CUDA GPU (tests/test_cuda.py; scripts/gpu_check.sh runs them)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped where torch.cuda.is_available() is false)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is false")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def write_collections(root: Path, render_b, count: int = 8, size: int = 48) -> Path:
    """``root/trainA`` crops of the left halves of real photos and ``root/trainB`` ``render_b``
    of crops of their right halves (two collections that share no pixel), PNG."""
    import cv2
    import numpy as np
    import skimage.data

    from translate.data.samples import random_crop

    rng = np.random.default_rng(0)
    photos = [np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3]) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    for i in range(count):
        photo = photos[i % len(photos)]
        half = photo.shape[1] // 2
        for folder, crop in (("trainA", random_crop(photo[:, :half], size, rng)), ("trainB", render_b(random_crop(photo[:, half:], size, rng)))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / f"{i:04d}.png"), np.ascontiguousarray(crop[:, :, ::-1]))
    return root


@pytest.fixture(scope="session")
def graded_data(tmp_path_factory) -> Path:
    """Unpaired collections a subtle film grade apart (``render_grade``)."""
    from translate.data.samples import render_grade

    return write_collections(tmp_path_factory.mktemp("graded"), render_grade)

from __future__ import annotations

import dataclasses
import sys

import cv2
import numpy as np
import pytest

from translate.config import DataConfig, preset
from translate.data import PairedDataset, UnpairedDataset, build_dataset
from translate.data.io import list_images, read_image
from translate.data.samples import make_sample_dataset, render_grade, render_night
from translate.errors import UserError
from translate.train.objectives import OBJECTIVES


def test_unpaired_sample_layout_is_deterministic(tmp_path):
    root = make_sample_dataset(tmp_path / "day2night", "unpaired", size=32, count=4)
    assert root == tmp_path / "day2night"
    counts = {d.name: len(list_images(d)) for d in root.iterdir()}
    assert counts == {"trainA": 4, "trainB": 4, "testA": 2, "testB": 2}
    again = make_sample_dataset(tmp_path / "again", "unpaired", size=32, count=4)
    for path in list_images(root):
        assert path.read_bytes() == (again / path.relative_to(root)).read_bytes()
    day = np.stack([read_image(p, 3) for p in list_images(root / "trainA")])
    night = np.stack([read_image(p, 3) for p in list_images(root / "trainB")])
    assert day.shape == night.shape == (4, 32, 32, 3)
    assert night.mean() < 0.6 * day.mean()  # night is darker ...
    assert night[..., 2].mean() > night[..., 0].mean()  # ... and bluer


def test_sample_datasets_load_with_build_dataset(tmp_path):
    unpaired = make_sample_dataset(tmp_path / "u", "unpaired", size=32, count=2)
    paired = make_sample_dataset(tmp_path / "p", "paired", size=32, count=2)
    for model, root, dataset_type in (("cyclegan", unpaired, UnpairedDataset), ("pix2pix", paired, PairedDataset)):
        cfg = dataclasses.replace(preset(model), data=DataConfig(root=str(root), load_size=32, crop_size=32))
        for phase in ("train", "test"):
            dataset = build_dataset(cfg, phase, kind=OBJECTIVES[model].data)
            assert isinstance(dataset, dataset_type) and len(dataset) == 2
            assert dataset[0]["A"].shape == dataset[0]["B"].shape == (3, 32, 32)


def test_paired_sample_is_edges_beside_photo(tmp_path):
    root = make_sample_dataset(tmp_path / "edges2photo", "paired", size=32, count=3)
    assert len(list_images(root / "train")) == 3 and len(list_images(root / "test")) == 2
    pair = cv2.imread(str(list_images(root / "train")[0]))
    assert pair.shape == (32, 64, 3)
    sketch, photo = pair[:, :32], pair[:, 32:]
    assert set(np.unique(sketch)) <= {0, 255} and (sketch == 255).mean() > 0.5  # black on white
    assert (sketch == 0).any()  # it has edges
    lines = cv2.Canny(cv2.GaussianBlur(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), (3, 3), 0), 60, 150)
    assert np.array_equal(255 - lines, sketch[..., 0])  # the edges are the photo's own


def test_render_night_darkens_tints_blue_and_adds_noise(photo):
    day = photo("astronaut", 32, 32)
    rng = np.random.default_rng(0)
    night = render_night(day, rng)
    assert night.dtype == np.uint8 and night.shape == day.shape
    assert night.mean() < 0.5 * day.mean()
    assert night[..., 2].mean() > night[..., 0].mean() and day[..., 2].mean() < day[..., 0].mean()
    flat = render_night(np.full((16, 16, 3), 128, np.uint8), rng)
    assert flat.std() > 0  # sensor noise
    as_float = render_night(day.astype(np.float32) / 255, np.random.default_rng(0))
    assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        render_night(day[..., 0], rng)


def test_missing_scikit_image_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(UserError, match="pip install scikit-image"):
        make_sample_dataset(tmp_path / "x", "unpaired", size=16, count=1)


def test_render_grade_is_a_subtle_warm_fade_and_always_the_same(photo):
    image = photo("coffee", 64, 64)
    graded = render_grade(image)
    assert graded.dtype == np.uint8 and graded.shape == image.shape
    assert np.array_equal(graded, render_grade(image))  # no randomness: exact targets for a benchmark
    psnr = 10 * np.log10(255**2 / np.mean((graded.astype(float) - image) ** 2))
    assert 20 < psnr < 35  # close to the input: returning it is a strong baseline
    black, white = render_grade(np.zeros((2, 2, 3), np.uint8)), render_grade(np.full((2, 2, 3), 255, np.uint8))
    assert black.min() > 0 and white.max() < 255  # faded blacks and softened whites
    assert white[0, 0, 0] > white[0, 0, 2]  # warm: more red than blue
    np.testing.assert_allclose(render_grade(image.astype(np.float32) / 255), graded / 255, atol=1 / 255)
    with pytest.raises(ValueError, match="RGB"):
        render_grade(image[..., 0])

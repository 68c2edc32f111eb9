from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.config import DataConfig, preset
from translate.data import PairedDataset, UnpairedDataset, build_dataset
from translate.data.transforms import Preprocessing
from translate.errors import UserError

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=0, atol=atol)


@pytest.fixture
def side_by_side_root(tmp_path, photo, write_image) -> Path:
    """DATA/train with side-by-side pairs whose right half is the negative of the left."""
    root = tmp_path / "side_by_side"
    for i, name in enumerate(PHOTOS):
        left = photo(name, 40 + 4 * i, 36)
        folder = root / "train" / ("nested" if i == 3 else "")
        write_image(folder / f"{i}.png", np.concatenate([left, 255 - left], axis=1))
    return root


@pytest.fixture
def folders_root(tmp_path, photo, write_image) -> Path:
    """DATA/train/A and DATA/train/B; B is the negative of A, saved with another extension."""
    root = tmp_path / "folders"
    for i, name in enumerate(PHOTOS):
        rel = f"sub/{i}" if i == 2 else f"{i}"
        image = photo(name, 44, 36)
        write_image(root / "train" / "A" / f"{rel}.png", image)
        write_image(root / "train" / "B" / f"{rel}.tif", 255 - image)
    return root


def make(folder: Path, **kwargs) -> PairedDataset:
    kwargs.setdefault("preprocessing", Preprocessing(mode="resize_and_crop", load_size=40, crop_size=32))
    return PairedDataset(folder, **kwargs)


def pix2pix_config(root: Path, **data):
    cfg = preset("pix2pix")
    return dataclasses.replace(cfg, data=DataConfig(root=str(root), load_size=40, crop_size=32, **data))


def test_side_by_side_halves_are_a_and_b(side_by_side_root, photo):
    dataset = make(side_by_side_root / "train", preprocessing=Preprocessing(mode="none", flip=False, phase="test"))
    assert dataset.layout == "side_by_side" and len(dataset) == 4
    item = dataset[0]
    expected_a = torch.from_numpy(photo(PHOTOS[0], 40, 36).transpose(2, 0, 1) / 127.5 - 1).float()
    assert_close(item["A"], expected_a, atol=1e-6)
    assert_close(item["B"], -expected_a, atol=1e-6)
    assert item["path_A"] == item["path_B"] == str(side_by_side_root / "train" / "0.png")
    assert dataset[3]["path_A"].endswith("nested/3.png")


@pytest.mark.parametrize("mode", ["resize_and_crop", "crop", "scale_width_and_crop"])
@pytest.mark.parametrize("layout", ["side_by_side", "folders"])
def test_random_crop_and_flip_keep_the_pair_aligned(side_by_side_root, folders_root, layout, mode):
    root = side_by_side_root if layout == "side_by_side" else folders_root
    dataset = make(root / "train", preprocessing=Preprocessing(mode=mode, load_size=40, crop_size=32))
    assert dataset.layout == layout
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            assert item["A"].shape == item["B"].shape == (3, 32, 32)
            # B = 255 - A on disk, so B = -A in [-1, 1] wherever the crops coincide.
            assert_close(item["B"], -item["A"], atol=1e-5)


def test_epochs_differ_and_repeat(side_by_side_root):
    dataset = make(side_by_side_root / "train", seed=2)
    epoch0 = [dataset[i]["A"] for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert any(not torch.equal(dataset[i]["A"], epoch0[i]) for i in range(len(dataset)))
    again = make(side_by_side_root / "train", seed=2)
    assert all(torch.equal(again[i]["A"], epoch0[i]) for i in range(len(dataset)))


def test_folders_matched_by_relative_path_without_extension(folders_root):
    dataset = make(folders_root / "train")
    assert dataset.layout == "folders"
    names = [(a.path.relative_to(folders_root / "train").as_posix(), b.path.relative_to(folders_root / "train").as_posix()) for a, b in dataset.pairs]
    assert names == [("A/0.png", "B/0.tif"), ("A/1.png", "B/1.tif"), ("A/3.png", "B/3.tif"), ("A/sub/2.png", "B/sub/2.tif")]


def test_direction_btoa_and_mixed_channels(side_by_side_root, folders_root):
    for root in (side_by_side_root, folders_root):
        dataset = make(root / "train", direction="BtoA", channels_a=1, channels_b=3, preprocessing=Preprocessing(mode="crop", crop_size=32))
        item = dataset[0]
        assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
        # batch A is now the negative side: its gray is the negative of B's gray
        gray_b = (0.299 * item["B"][0] + 0.587 * item["B"][1] + 0.114 * item["B"][2] + 1) / 2
        assert_close((item["A"][0] + 1) / 2, 1 - gray_b, atol=1e-5)
    assert make(folders_root / "train", direction="BtoA")[0]["path_A"].endswith("B/0.tif")


def test_odd_width_is_an_error_naming_the_file(side_by_side_root, photo, write_image):
    write_image(side_by_side_root / "train" / "odd.png", photo("camera", 41, 20))
    with pytest.raises(UserError, match=r"odd width.*odd\.png"):
        make(side_by_side_root / "train")


def test_unmatched_names_are_listed_with_a_count(folders_root, photo, write_image):
    for i in range(5):
        write_image(folders_root / "train" / "A" / f"extra{i}.png", photo(width=44, height=36))
    write_image(folders_root / "train" / "B" / "lonely.png", photo(width=44, height=36))
    with pytest.raises(UserError) as info:
        make(folders_root / "train")
    message = str(info.value)
    assert "A/extra0.* has no B/extra0.*" in message and "(6 in all)" in message
    assert "train: images without a partner" in message


def test_halves_of_different_sizes_are_listed(folders_root, photo, write_image):
    write_image(folders_root / "train" / "B" / "1.tif", photo(width=40, height=36))
    with pytest.raises(UserError, match=r"train: pairs whose A and B differ in size: 1\.png \(44x36 vs 40x36\)"):
        make(folders_root / "train")


def test_two_files_with_one_name_are_ambiguous(folders_root, photo, write_image):
    write_image(folders_root / "train" / "A" / "0.jpg", photo(width=44, height=36))
    with pytest.raises(UserError, match=r"A: names that appear with two extensions.*: 0\.jpg and 0\.png"):
        make(folders_root / "train")


def test_one_of_two_folders_missing(folders_root):
    (folders_root / "train" / "B").rename(folders_root / "B_elsewhere")
    with pytest.raises(UserError, match=r"train/B: folder not found — pairs in two folders"):
        make(folders_root / "train")


def test_unreadable_pair_is_skipped_with_a_warning(folders_root, caplog):
    (folders_root / "train" / "B" / "1.tif").write_bytes(b"II*\x00 broken")
    with caplog.at_level(logging.WARNING, logger="translate"):
        dataset = make(folders_root / "train")
    assert len(dataset) == 3
    assert any("1.tif" in r.getMessage() for r in caplog.records)


def test_crop_larger_than_pair(side_by_side_root):
    with pytest.raises(UserError, match=r"0\.png \(40x36\)"):
        make(side_by_side_root / "train", preprocessing=Preprocessing(mode="crop", crop_size=40))


def test_build_dataset_paired_and_layout_errors(side_by_side_root, folders_root, tmp_path):
    dataset = build_dataset(pix2pix_config(side_by_side_root), kind="paired")
    assert isinstance(dataset, PairedDataset) and dataset[0]["A"].shape == (3, 32, 32)
    with pytest.raises(UserError, match=r"side_by_side/test: folder not found — pix2pix expects"):
        build_dataset(pix2pix_config(side_by_side_root), "test", kind="paired")
    (side_by_side_root / "train").rename(side_by_side_root / "test")
    assert build_dataset(pix2pix_config(side_by_side_root), "test", kind="paired").preprocessing.phase == "test"

    cyclegan = dataclasses.replace(pix2pix_config(side_by_side_root), model="cyclegan")
    with pytest.raises(UserError, match=r"holds side-by-side pairs, but cyclegan needs"):
        build_dataset(cyclegan, "test", kind="unpaired")
    # cyclegan on the two-folder paired layout: the folders become its two domains
    cyclegan = dataclasses.replace(pix2pix_config(folders_root), model="cyclegan")
    domains = build_dataset(cyclegan, kind="unpaired")
    assert isinstance(domains, UnpairedDataset)
    assert "train/A" in domains[0]["path_A"] and "train/B" in domains[0]["path_B"]

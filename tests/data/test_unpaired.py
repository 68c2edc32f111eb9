from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from translate.config import DataConfig, RunConfig, TrainConfig, preset
from translate.data import UnpairedDataset, build_dataset
from translate.data.transforms import Preprocessing
from translate.errors import UserError

PREP = Preprocessing(mode="resize_and_crop", load_size=40, crop_size=32)


def make(root: Path, **kwargs) -> UnpairedDataset:
    kwargs.setdefault("preprocessing", PREP)
    return UnpairedDataset(root / "trainA", root / "trainB", **kwargs)


def cyclegan_config(root: Path, **data) -> RunConfig:
    cfg = preset("cyclegan")
    return dataclasses.replace(
        cfg,
        data=DataConfig(root=str(root), load_size=40, crop_size=32, **data),
        train=TrainConfig(seed=5),
    )


def test_items_have_the_documented_shape_and_range(unpaired_root):
    dataset = make(unpaired_root)
    assert len(dataset) == 5  # max(len(A), len(B)), as the reference
    item = dataset[4]
    assert set(item) == {"A", "B", "path_A", "path_B"}
    for key in ("A", "B"):
        assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
        assert -1.0 <= item[key].min() and item[key].max() <= 1.0
        assert item[key].std() > 0.05  # a real photo, not a blank
    assert item["path_A"].endswith("a1.PNG")  # index 4 -> A[4 % 3]; sorted: a0.jpg, a1.PNG, sub/a2.webp
    assert "trainB" in item["path_B"]
    with pytest.raises(IndexError):
        dataset[5]


def test_nested_folders_and_mixed_formats_are_found(unpaired_root):
    dataset = make(unpaired_root)
    assert [p.relative_to(unpaired_root / "trainA").as_posix() for p in dataset.paths_a] == ["a0.jpg", "a1.PNG", "sub/a2.webp"]
    assert len(dataset.paths_b) == 5


def test_same_seed_epoch_index_gives_the_same_item(unpaired_root):
    first, second = make(unpaired_root, seed=3), make(unpaired_root, seed=3)
    second[1], second[0]  # noqa: B018 - other items drawn first must not matter
    for index in range(len(first)):
        a, b = first[index], second[index]
        assert torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
        assert a["path_B"] == b["path_B"]


def test_epoch_changes_crops_and_b_choice(unpaired_root):
    dataset = make(unpaired_root, seed=3)
    epoch0 = [dataset[i] for i in range(len(dataset))]
    dataset.set_epoch(1)
    epoch1 = [dataset[i] for i in range(len(dataset))]
    assert any(not torch.equal(x["A"], y["A"]) for x, y in zip(epoch0, epoch1, strict=True))
    b_choices = {(e, i): item["path_B"] for e, items in enumerate((epoch0, epoch1)) for i, item in enumerate(items)}
    assert len(set(b_choices.values())) >= 3  # B is drawn at random, not index-aligned
    dataset.set_epoch(0)
    assert torch.equal(dataset[2]["A"], epoch0[2]["A"])
    assert dataset[2]["path_B"] == epoch0[2]["path_B"]
    other_seed = make(unpaired_root, seed=4)
    assert any(other_seed[i]["path_B"] != epoch0[i]["path_B"] or not torch.equal(other_seed[i]["A"], epoch0[i]["A"]) for i in range(5))
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        dataset.set_epoch(-1)


def test_worker_processes_give_the_same_items(unpaired_root):
    dataset = make(unpaired_root, seed=1)
    dataset.set_epoch(2)
    expected = [dataset[i] for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    got = list(loader)
    for item, batch in zip(expected, got, strict=True):
        assert torch.equal(item["A"], batch["A"][0]) and torch.equal(item["B"], batch["B"][0])
        assert batch["path_B"] == [item["path_B"]]


def test_direction_btoa_swaps_domains_and_channels(unpaired_root):
    dataset = make(unpaired_root, direction="BtoA", channels_a=1, channels_b=3)
    item = dataset[0]
    assert "trainB" in item["path_A"] and "trainA" in item["path_B"]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (3, 32, 32)
    assert len(dataset.paths_a) == 5


def test_grayscale_channels(unpaired_root):
    item = make(unpaired_root, channels_a=1, channels_b=1)[0]
    assert item["A"].shape == (1, 32, 32) and item["B"].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="channels_a must be 1 .* got 2"):
        make(unpaired_root, channels_a=2)


def test_unreadable_file_is_skipped_with_a_warning(unpaired_root, caplog):
    (unpaired_root / "trainA" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING, logger="translate"):
        dataset = make(unpaired_root)
    assert len(dataset.paths_a) == 3
    assert any("broken.jpg" in r.getMessage() for r in caplog.records)


def test_file_corrupt_past_its_header_is_replaced_at_load_time(unpaired_root, photo, caplog, make_truncated_png):
    make_truncated_png(unpaired_root / "trainA" / "a1.PNG", photo("coffee", 40, 48))
    dataset = make(unpaired_root)
    assert len(dataset.paths_a) == 3  # its header is fine, so it is only found when decoded
    with caplog.at_level(logging.WARNING, logger="translate"):
        item = dataset[1]
    assert item["path_A"].endswith("a2.webp")  # the next image stands in
    assert any("a1.PNG" in r.getMessage() for r in caplog.records)


def test_empty_domain_and_all_unreadable(unpaired_root):
    for path in (unpaired_root / "trainB").iterdir():
        path.unlink()
    with pytest.raises(UserError, match="trainB: no images or videos found"):
        make(unpaired_root)
    (unpaired_root / "trainB" / "x.png").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"trainB: no readable images \(found 1 files"):
        make(unpaired_root)


def test_crop_larger_than_image_is_reported_at_construction(unpaired_root):
    with pytest.raises(UserError, match=r"a0\.jpg \(48x40\).*crop_size"):
        make(unpaired_root, preprocessing=Preprocessing(mode="crop", crop_size=44))


def test_max_dataset_size(unpaired_root):
    dataset = make(unpaired_root, max_dataset_size=2)
    assert len(dataset.paths_a) == 2 and len(dataset.paths_b) == 2 and len(dataset) == 2


def test_build_dataset_unpaired(unpaired_root):
    dataset = build_dataset(cyclegan_config(unpaired_root), kind="unpaired")
    assert isinstance(dataset, UnpairedDataset) and dataset.seed == 5
    assert dataset[0]["A"].shape == (3, 32, 32)
    flipped = build_dataset(cyclegan_config(unpaired_root, direction="BtoA"), kind="unpaired")
    assert "trainB" in flipped[0]["path_A"]


def test_build_dataset_test_phase_and_missing_folders(unpaired_root, tmp_path):
    with pytest.raises(UserError, match="testA: folder not found"):
        build_dataset(cyclegan_config(unpaired_root), "test", kind="unpaired")
    (unpaired_root / "trainA").rename(unpaired_root / "testA")
    (unpaired_root / "trainB").rename(unpaired_root / "testB")
    dataset = build_dataset(cyclegan_config(unpaired_root), "test", kind="unpaired")
    assert dataset.preprocessing.phase == "test"
    first = dataset[0]["A"]
    dataset.set_epoch(7)
    assert torch.equal(dataset[0]["A"], first)  # centre crop, no flip: nothing random
    (unpaired_root / "testB").rename(unpaired_root / "elsewhere")
    with pytest.raises(UserError, match="testB: folder not found"):
        build_dataset(cyclegan_config(unpaired_root), "test", kind="unpaired")
    with pytest.raises(UserError, match="nowhere: dataset folder not found .*nowhere/trainA"):
        build_dataset(cyclegan_config(tmp_path / "nowhere"), kind="unpaired")
    with pytest.raises(UserError, match="data.root is not set"):
        build_dataset(RunConfig(), kind="unpaired")


def test_pix2pix_on_unpaired_layout_is_refused(unpaired_root):
    cfg = dataclasses.replace(cyclegan_config(unpaired_root), model="pix2pix")
    with pytest.raises(UserError, match="unpaired layout .* pix2pix needs aligned pairs"):
        build_dataset(cfg, kind="paired")

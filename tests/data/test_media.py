"""Video files as dataset domains: every frame a sample, read on demand, reproducibly, with the next frame and its flow."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.media import pan_frames, write_frames
from translate.data import PairedDataset, Preprocessing, UnpairedDataset
from translate.data.media import domain_samples, read_frames
from translate.errors import UserError


@pytest.fixture(scope="module")
def video_domains(tmp_path_factory) -> Path:
    """trainA: a real photo panned (a clip, nested) and one image; trainB: another clip."""
    from skimage import data

    root = tmp_path_factory.mktemp("videos")
    (root / "trainA" / "shots").mkdir(parents=True)
    (root / "trainB").mkdir()
    write_frames(
        root / "trainA" / "shots" / "coffee.mp4", pan_frames(np.ascontiguousarray(data.coffee()[150:, 250:]), 10, (64, 48), step=(2.0, 0.0)), crf=10
    )
    write_frames(root / "trainB" / "cat.mp4", pan_frames(np.ascontiguousarray(data.chelsea()[80:, 120:]), 7, (64, 48)), crf=10)
    import cv2

    cv2.imwrite(str(root / "trainA" / "still.png"), data.astronaut()[:48, :64, ::-1])
    return root


def test_every_frame_is_a_sample_read_on_demand(video_domains: Path) -> None:
    samples, tables = domain_samples(video_domains / "trainA")
    assert [str(s.path.name) for s in samples] == ["coffee.mp4"] * 10 + ["still.png"]
    assert [s.frame for s in samples[:10]] == list(range(10)) and samples[10].frame is None
    assert samples[0].size == (64, 48) and len(tables) == 1
    table = tables[samples[0].path]
    frames = read_frames(samples[0].path, table, 6, 2, 3)
    assert [f.shape for f in frames] == [(48, 64, 3)] * 2 and frames[0].dtype == np.float32
    assert 0 <= frames[0].min() and frames[0].max() <= 1
    # frame 7 is frame 6 moved 2 px left: the same content, not the same frame
    shifted, plain = np.abs(frames[1][:, :-2] - frames[0][:, 2:]).mean(), np.abs(frames[1] - frames[0]).mean()
    assert shifted < 0.5 * plain
    again = read_frames(samples[0].path, table, 7, 1, 1)[0]
    assert again.shape == (48, 64, 1)


def test_video_items_are_reproducible_and_carry_the_next_frame_and_flow(video_domains: Path) -> None:
    pre = Preprocessing(mode="crop", crop_size=32)
    dataset = UnpairedDataset(video_domains / "trainA", video_domains / "trainB", preprocessing=pre, seed=3, temporal=True)
    assert len(dataset) == 11
    dataset.set_epoch(2)
    item = dataset[4]
    assert item["path_A"].endswith("coffee.mp4#frame4")
    for key in ("A", "B"):
        assert item[f"{key}_next"].shape == (3, 32, 32) and item[f"flow_{key}"].shape == (2, 32, 32) and item[f"mask_{key}"].shape == (1, 32, 32)
    # the next frame got the same crop and flip: the flow says it moved 2 px (either way, after a flip)
    assert item["mask_A"].mean() > 0.5
    assert abs(float(item["flow_A"][0][item["mask_A"][0] > 0].median().abs()) - 2.0) < 0.4
    # the same (seed, epoch, index) gives the same item in a fresh dataset: exact resume
    fresh = UnpairedDataset(video_domains / "trainA", video_domains / "trainB", preprocessing=pre, seed=3, temporal=True)
    fresh.set_epoch(2)
    repeat = fresh[4]
    assert all(torch.equal(item[k], repeat[k]) for k in item if isinstance(item[k], torch.Tensor))
    still = dataset[10]  # an image: no next frame, so no temporal loss from it
    assert torch.equal(still["A_next"], still["A"]) and still["mask_A"].sum() == 0


def test_paired_videos_pair_frame_by_frame(video_domains: Path, tmp_path: Path) -> None:
    train = tmp_path / "train"
    (train / "A").mkdir(parents=True)
    (train / "B").mkdir()
    shutil.copy(video_domains / "trainA" / "shots" / "coffee.mp4", train / "A" / "clip.mp4")
    shutil.copy(video_domains / "trainA" / "shots" / "coffee.mp4", train / "B" / "clip.mkv")  # another extension, the same name
    dataset = PairedDataset(train, preprocessing=Preprocessing(mode="crop", crop_size=32), temporal=True)
    assert len(dataset) == 10
    item = dataset[3]
    assert torch.equal(item["A"], item["B"]) and item["path_A"].endswith("clip.mp4#frame3")
    assert item["mask_A"].mean() > 0.5
    shutil.copy(video_domains / "trainB" / "cat.mp4", train / "B" / "clip.mkv")  # 7 frames against 10
    with pytest.raises(UserError, match="10 frames but its partner"):
        PairedDataset(train)


def test_temporal_loss_without_videos_is_one_line(tmp_path: Path, video_domains: Path) -> None:
    for name in ("trainA", "trainB"):
        (tmp_path / name).mkdir()
        shutil.copy(video_domains / "trainA" / "still.png", tmp_path / name / "x.png")
    with pytest.raises(UserError, match="train.lambda_temporal needs video files"):
        UnpairedDataset(tmp_path / "trainA", tmp_path / "trainB", temporal=True)

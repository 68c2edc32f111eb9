"""Training on video files with the temporal loss: it trains, resumes exactly, and reaches the generators only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.media import pan_frames, write_frames
from translate.cli import main
from translate.train.checkpoint import load_checkpoint
from translate.train.objectives import temporal_term

from .conftest import TINY_CYCLEGAN, TINY_PIX2PIX
from .conftest import tiny_config as tiny


@pytest.fixture(scope="module")
def video_data(tmp_path_factory) -> Path:
    """Unpaired domains of real panned photos: trainA a coffee clip, trainB a cat clip (48x40)."""
    from skimage import data

    root = tmp_path_factory.mktemp("video_data")
    for name, photo, frames in (("trainA", data.coffee()[100:, 200:], 8), ("trainB", data.chelsea()[60:, 100:], 6)):
        (root / name).mkdir()
        write_frames(root / name / "clip.mp4", pan_frames(np.ascontiguousarray(photo), frames, (48, 40)), crf=12)
    return root


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cyclegan_trains_on_videos_with_the_temporal_loss_and_resumes_exactly(video_data: Path, tmp_path: Path) -> None:
    common = ["--data", str(video_data), "--seed", "5", *TINY_CYCLEGAN, "--set", "train.lambda_temporal=2", "--set", "train.val_every=0"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", *common, "--out", str(straight), "--steps", "4"]) == 0
    assert main(["train", *common, "--out", str(stopped), "--steps", "2"]) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "4"]) == 0
    logged = [r for r in rows(straight) if "images_per_s" in r]
    assert all(r["temporal_a"] > 0 and r["temporal_b"] > 0 for r in logged)
    a, b = (load_file(str(load_checkpoint(run).path / "model.safetensors")) for run in (straight, stopped))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pix2pix_trains_on_paired_videos(video_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "paired"
    (data / "train" / "A").mkdir(parents=True)
    (data / "train" / "B").mkdir()
    shutil.copy(video_data / "trainA" / "clip.mp4", data / "train" / "A" / "clip.mp4")
    shutil.copy(video_data / "trainA" / "clip.mp4", data / "train" / "B" / "clip.mp4")
    tiny_video = [
        *TINY_PIX2PIX[: TINY_PIX2PIX.index("--load-size")],
        "--set",
        "net.generator=resnet_6blocks",
        "--crop-size",
        "32",
        "--load-size",
        "32",
    ]
    run = tmp_path / "run"
    argv = ["train", "--model", "pix2pix", "--data", str(data), "--out", str(run), "--steps", "2", *tiny_video]
    assert main([*argv, "--set", "train.lambda_temporal=1", "--set", "data.preprocess=crop"]) == 0
    assert all("temporal_a" in r for r in rows(run) if "images_per_s" in r)


def test_temporal_loss_reaches_the_generator_only(photo) -> None:
    from translate.train.build import build_training

    cfg = tiny()
    cfg.train.lambda_temporal = 1.0
    training = build_training(cfg, torch.device("cpu"), planned_steps=10)
    frame = photo(32, 32, "coffee")
    following = torch.roll(frame, shifts=-1, dims=-1)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 1.0
    batch = {"A": frame, "A_next": following, "flow_A": flow, "mask_A": torch.ones(1, 1, 32, 32)}
    nets = training.nets
    losses = temporal_term(nets, batch, "A", "gen_ab", nets["gen_ab"](frame), cfg.train)
    assert set(losses) == {"temporal_a"} and losses["temporal_a"].item() > 0
    losses["temporal_a"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets["gen_ab"].parameters())
    for name in ("gen_ba", "disc_a", "disc_b"):
        assert all(p.grad is None for p in nets[name].parameters()), name
    cfg.train.lambda_temporal = 0.0
    assert temporal_term(nets, batch, "A", "gen_ab", frame, cfg.train) == {}


def test_lambda_temporal_without_videos_is_one_line(unpaired_data: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), "--steps", "1", *TINY_CYCLEGAN, "--set", "train.lambda_temporal=1"]
    assert main(argv) == 2
    assert "lambda_temporal needs video files" in capsys.readouterr().err

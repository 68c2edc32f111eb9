"""Tiny real-photo datasets and a tiny-network config for training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from translate.config import RunConfig, preset
from translate.data.samples import make_sample_dataset
from translate.train import auto

# tiny networks keep a CPU step in the tens of milliseconds
TINY_CYCLEGAN = [
    "--set",
    "net.generator=resnet_6blocks",
    "--set",
    "net.base_channels_g=4",
    "--set",
    "net.base_channels_d=4",
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--set",
    "train.log_every=1",
    "--set",
    "train.sample_every=2",
]
TINY_PIX2PIX = [
    "--set",
    "net.generator=unet_128",
    "--set",
    "net.base_channels_g=4",
    "--set",
    "net.base_channels_d=4",
    "--load-size",
    "136",
    "--crop-size",
    "128",
    "--set",
    "train.log_every=1",
    "--set",
    "train.sample_every=2",
]


def tiny_config(model: str = "cyclegan", **net: object) -> RunConfig:
    """A preset with tiny ResNet networks (a CPU step in tens of milliseconds)."""
    cfg = auto.with_residual(preset(model), False)  # what auto chooses for the day -> night test photos (built here without them)
    cfg.net.base_channels_g = cfg.net.base_channels_d = 4
    cfg.net.generator = "resnet_6blocks"
    for key, value in net.items():
        setattr(cfg.net, key, value)
    return cfg


def step_batch(step: int, photo, channels_a: int = 3) -> dict[str, torch.Tensor]:
    """A real-photo batch that differs from step to step (contiguous, as the data loader gives it)."""
    a, b = photo(32, 32, "astronaut"), photo(32, 32, "chelsea")
    if step % 2:
        a, b = a.flip(-1), b.flip(-2)
    return {"A": a[:, :channels_a].contiguous(), "B": b.contiguous()}


@pytest.fixture(scope="session")
def unpaired_data(tmp_path_factory) -> Path:
    return make_sample_dataset(tmp_path_factory.mktemp("unpaired"), "unpaired", size=48, count=6)


@pytest.fixture(scope="session")
def paired_data(tmp_path_factory) -> Path:
    return make_sample_dataset(tmp_path_factory.mktemp("paired"), "paired", size=144, count=4)

"""Tiny real-photo datasets and a tiny-network config for training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from translate.data.samples import make_sample_dataset

# tiny networks keep a CPU step in the tens of milliseconds
TINY_CYCLEGAN = [
    "--set", "net.generator=resnet_6blocks", "--set", "net.base_channels_g=4", "--set", "net.base_channels_d=4",
    "--load-size", "36", "--crop-size", "32", "--set", "train.log_every=1", "--set", "train.sample_every=2",
]
TINY_PIX2PIX = [
    "--set", "net.generator=unet_128", "--set", "net.base_channels_g=4", "--set", "net.base_channels_d=4",
    "--load-size", "136", "--crop-size", "128", "--set", "train.log_every=1", "--set", "train.sample_every=2",
]


@pytest.fixture(scope="session")
def unpaired_data(tmp_path_factory) -> Path:
    return make_sample_dataset(tmp_path_factory.mktemp("unpaired"), "unpaired", size=48, count=6)


@pytest.fixture(scope="session")
def paired_data(tmp_path_factory) -> Path:
    return make_sample_dataset(tmp_path_factory.mktemp("paired"), "paired", size=144, count=4)

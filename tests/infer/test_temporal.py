"""Temporal stabilisation: it lowers flicker and keeps content, resets at cuts, carries norm statistics."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.media import pan_frames, write_frames
from translate import Translator
from translate.config import NetConfig
from translate.files import to_unit, unit_to_signed
from translate.infer.temporal import TemporalSettings, TemporalStabilizer, carried_instance_norm, colour_histogram, is_cut
from translate.infer.tiling import instance_norms
from translate.infer.video import translate_video
from translate.metrics.video_report import evaluate_video
from translate.nets import build_generator


class FlickeringTranslator:
    """A 'model' whose output brightness jitters from frame to frame, as per-frame statistics make it."""

    in_channels = out_channels = 3

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def translate_batch(self, batch: torch.Tensor) -> torch.Tensor:
        gains = torch.tensor(self.rng.uniform(0.8, 1.2, batch.shape[0]), dtype=torch.float32)
        return ((batch + 1) * gains[:, None, None, None] - 1).clamp(-1, 1)


def tensor(frames: list[np.ndarray]) -> torch.Tensor:
    return unit_to_signed(torch.from_numpy(to_unit(np.stack(frames))).permute(0, 3, 1, 2))


@pytest.fixture(scope="module")
def coffee_pan() -> list[np.ndarray]:
    from skimage import data

    return pan_frames(data.coffee(), 16, (96, 64))


@pytest.fixture(scope="module")
def tiny_translator() -> Translator:
    torch.manual_seed(0)
    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    return Translator.from_module(build_generator(cfg), cfg)


def test_stabilised_video_flickers_less_and_keeps_the_content(coffee_pan, tmp_path: Path) -> None:
    source = write_frames(tmp_path / "pan.mp4", coffee_pan)
    plain, stable = tmp_path / "plain.mp4", tmp_path / "stable.mp4"
    # a fresh translator for each run: the same jitter, frame by frame and stabilised
    translate_video(FlickeringTranslator(), source, plain, temporal="off", batch_size=3, progress=False, crf=8)
    report = translate_video(FlickeringTranslator(), source, stable, temporal="stable", batch_size=3, progress=False, crf=8)
    assert report.frames == 16 and report.cuts == 0
    before = evaluate_video(source, plain)
    after = evaluate_video(source, stable, against=plain)
    assert before.flicker_ratio > 3  # the jitter, measured
    assert after.flicker_ratio < 0.5 * before.flicker_ratio
    assert after.psnr_to_against > 22  # the same content, steadier: not a smear


def test_a_cut_resets_everything_so_no_colour_crosses_it(tiny_translator: Translator) -> None:
    from skimage import data

    first = pan_frames(data.coffee(), 4, (96, 64))
    second = pan_frames(data.astronaut(), 4, (96, 64))
    frames = first + second
    assert not is_cut(colour_histogram(first[0]), colour_histogram(first[1]), 0.6)
    assert is_cut(colour_histogram(first[-1]), colour_histogram(second[0]), 0.6)
    stabilizer = TemporalStabilizer(tiny_translator, TemporalSettings(blend=0.7, norm_momentum=0.9))
    out = np.concatenate([stabilizer(frames[i : i + 3], tensor(frames[i : i + 3])) for i in range(0, 8, 3)])
    plain = ((tiny_translator.translate_batch(tensor(frames)).permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
    assert stabilizer.cuts == 1
    for index in (0, 4):  # the first frame of each shot: nothing carried into it
        assert np.abs(out[index].astype(int) - plain[index]).max() <= 1
    for index in (1, 5):  # later frames: tied to the ones before them
        assert np.abs(out[index].astype(int) - plain[index]).max() > 1


def test_carried_statistics_follow_the_frames_and_start_again_at_a_cut(tiny_translator: Translator, coffee_pan) -> None:
    net = copy.deepcopy(tiny_translator.net)
    batch = tensor(coffee_pan[:3]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        plain = net(batch)
        state: dict = {}
        with carried_instance_norm(net, state, [True, False, True], momentum=0.9):
            carried = net(batch)
        assert len(state) == len(instance_norms(net))
        torch.testing.assert_close(carried[0], plain[0], atol=1e-3, rtol=0)  # its own statistics (float rounding of another formula)
        torch.testing.assert_close(carried[2], plain[2], atol=1e-3, rtol=0)  # a cut: its own again
        assert not torch.allclose(carried[1], plain[1], atol=1e-3)
        with carried_instance_norm(net, state, [False], momentum=0.0):  # momentum 0: each frame on its own
            torch.testing.assert_close(net(batch[:1]), plain[:1], atol=1e-3, rtol=0)
        torch.testing.assert_close(net(batch), plain)  # the layers' own forwards are back


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="blend must be in"):
        TemporalSettings(blend=1.0)
    with pytest.raises(ValueError, match="cut_threshold"):
        TemporalSettings(cut_threshold=2)

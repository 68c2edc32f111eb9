"""torchrun on CPU (gloo): ranks stay in sync, 2×batch 1 ≈ 1×batch 2, resume on another world size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from translate.cli import main
from translate.train.checkpoint import load_checkpoint

from .conftest import TINY_CYCLEGAN


def torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "translate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_match_one_process_with_double_batch(unpaired_data: Path, tmp_path: Path) -> None:
    # a small learning rate: Adam's first steps are about lr * sign(g), so float rounding that flips
    # the sign of a near-zero gradient moves a weight by about lr either way
    # without DiffAugment: its random draws come from (seed, rank, step), so two ranks of one
    # image each augment differently from one process with a batch of two
    common = ["train", "--data", str(unpaired_data), "--seed", "2", "--device", "cpu", "--steps", "3", *TINY_CYCLEGAN, "--set", "train.lr=2e-5"]
    common += ["--set", "train.diffaug="]
    two = tmp_path / "two"
    done = torchrun(2, [*common, "--out", str(two), "--batch-size", "1"])
    # the loop checks at every checkpoint that all ranks hold identical parameters and fails otherwise
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to step 3") == 1  # only rank 0 reports and writes
    one = tmp_path / "one"
    # one thread, as each torchrun process: reductions split across threads round differently,
    # and Adam's first steps (about lr * sign(g)) turn that rounding into visible differences
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*common, "--out", str(one), "--batch-size", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    a, b = load_checkpoint(two), load_checkpoint(one)
    assert a.counters == b.counters
    for net in a.weights:
        for key, value in a.weights[net].items():
            other = b.weights[net][key]
            # same samples, averaged gradients: equal up to float summation order (Adam's first
            # steps are ~lr·sign(g), so near-zero gradients may differ by a few lr)
            assert torch.allclose(value, other, atol=3e-4), (net, key, (value - other).abs().max())
    # conv biases right before instance norm have a zero true gradient, so their values are
    # noise either way; what must agree is what the networks compute
    from translate.nets import build_discriminator, build_generator

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    outs = []
    for loaded in (a, b):
        gen = build_generator(loaded.cfg.net).eval()
        gen.load_state_dict(loaded.weights["gen_ab"])
        disc = build_discriminator(loaded.cfg.net, 3).eval()
        disc.load_state_dict(loaded.weights["disc_b"])
        with torch.no_grad():
            outs.append((gen(x), disc(x)))
    assert (outs[0][0] - outs[1][0]).abs().max() < 5e-3
    assert (outs[0][1] - outs[1][1]).abs().max() < 5e-3


def test_resume_with_a_different_number_of_processes(unpaired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = torchrun(2, ["train", "--data", str(unpaired_data), "--out", str(run), "--device", "cpu", "--steps", "2", *TINY_CYCLEGAN])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 0
    loaded = load_checkpoint(run)
    assert loaded.counters.step == 4
    # 6 photos, global batch 2 then 1: 2 steps consumed 4 samples, then 2 more finish the epoch
    assert (loaded.counters.epoch, loaded.counters.sample_offset) == (1, 0)

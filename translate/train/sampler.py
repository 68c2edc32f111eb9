"""Resumable, shardable sampling of dataset indices.

The permutation of an epoch depends only on (seed, epoch); ranks take interleaved shards of
what remains after ``sample_offset`` samples of the epoch were consumed (by all ranks
together). Resuming mid-epoch, even with another number of processes, therefore continues
with exactly the samples not yet seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=gen)


class ResumableSampler(Sampler[int]):
    def __init__(self, n: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if n <= 0:
            raise ValueError(f"dataset size must be > 0, got {n}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.sample_offset = 0

    def set_epoch(self, epoch: int, sample_offset: int = 0) -> None:
        self.epoch, self.sample_offset = epoch, sample_offset

    def _indices(self) -> list[int]:
        perm = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle)[self.sample_offset :].tolist()
        # pad so every rank gets the same count (as DistributedSampler does): ranks stay in step
        remainder = len(perm) % self.world_size
        if remainder:
            perm += perm[: self.world_size - remainder] if len(perm) >= self.world_size else [perm[0]] * (self.world_size - remainder)
        return perm[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        remaining = self.n - self.sample_offset
        return -(-remaining // self.world_size)

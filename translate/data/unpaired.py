"""Unpaired dataset (CycleGAN): two folders of images, no correspondence between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from translate.config import Direction
from translate.data.io import load_skipping_unreadable
from translate.data.media import Sample, domain_samples, read_sample, temporal_pair
from translate.data.transforms import Augmenter, Preprocessing, item_seeds, to_tensor
from translate.errors import UserError


def check_dataset_args(channels_a: int, channels_b: int, direction: str, seed: int, max_dataset_size: int) -> None:
    """ValueError quoting the first bad constructor argument shared by both datasets."""
    for name, value in (("channels_a", channels_a), ("channels_b", channels_b)):
        if value not in (1, 3):
            raise ValueError(f"{name} must be 1 (grayscale) or 3 (RGB), got {value!r}")
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    if max_dataset_size < 0:
        raise ValueError(f"max_dataset_size must be >= 0 (0 = all), got {max_dataset_size!r}")


class UnpairedDataset(Dataset):
    """Images (and video frames) of domain A and domain B, each A drawn with a random B.

    Item ``index`` is A image ``index % len(A)`` with a B image chosen at random from all of B;
    the length is ``max(len(A), len(B))``, as in the reference. Every random choice (the B
    image, both crops and flips) comes from ``(seed, epoch, index)``, so an item is the same in
    any process, worker or resumed run; call :meth:`set_epoch` at the start of each epoch
    (before the DataLoader iterator is created: workers copy the dataset then).

    Unreadable files are dropped at construction with a warning each (headers are checked);
    a file that turns out corrupt when decoded is reported and replaced by the next one. A
    domain may hold video files: each of their frames is a sample (:mod:`translate.data.media`).

    Args:
        folder_a: Images of domain A (searched recursively).
        folder_b: Images of domain B.
        channels_a: Channels of the batch's ``"A"`` images (``net.in_channels``): 1 or 3.
        channels_b: Channels of the batch's ``"B"`` images (``net.out_channels``): 1 or 3.
        preprocessing: Resize / crop / flip settings.
        direction: ``"BtoA"`` swaps the folders, so the batch's ``"A"`` comes from
            ``folder_b`` and the model still learns ``"A"`` -> ``"B"``.
        seed: Run seed (>= 0).
        max_dataset_size: Use only the first N samples of each domain (0 = all).
        temporal: also give each sample's next video frame, with the same crop and flip, and
            the optical flow from it back to the sample (``train.lambda_temporal``).

    Items:
        ``{"A": (channels_a, H, W), "B": (channels_b, H, W), "path_A": str, "path_B": str}``,
        float32 tensors in [-1, 1]; with ``temporal`` also, for X in A and B, ``"X_next"``
        (like ``"X"``), ``"flow_X"`` ((2, H, W), pixels, from the next frame back to this one)
        and ``"mask_X"`` ((1, H, W), 1 where that flow is reliable; all 0 for an image).
    """

    def __init__(
        self,
        folder_a: Path,
        folder_b: Path,
        *,
        channels_a: int = 3,
        channels_b: int = 3,
        preprocessing: Preprocessing | None = None,
        direction: Direction = "AtoB",
        seed: int = 0,
        max_dataset_size: int = 0,
        temporal: bool = False,
    ) -> None:
        check_dataset_args(channels_a, channels_b, direction, seed, max_dataset_size)
        if direction == "BtoA":
            folder_a, folder_b = folder_b, folder_a
        self.preprocessing = preprocessing or Preprocessing()
        limit = max_dataset_size or None
        samples_a, tables_a = domain_samples(Path(folder_a))
        samples_b, tables_b = domain_samples(Path(folder_b))
        self.samples_a: list[Sample] = samples_a[:limit]
        self.samples_b: list[Sample] = samples_b[:limit]
        self.tables = {**tables_a, **tables_b}
        self.preprocessing.check_sizes([(str(s), s.size) for s in self.samples_a + self.samples_b])
        self.temporal = temporal
        if temporal and not self.tables:
            raise UserError(
                f"train.lambda_temporal needs video files in {folder_a} or {folder_b} (it ties consecutive frames); "
                "add videos to the domains or set train.lambda_temporal=0"
            )
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.seed = seed
        self.epoch = 0
        self.augment = Augmenter(self.preprocessing)
        self._unreadable_a: set[int] = set()
        self._unreadable_b: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops, flips and B images of ``epoch`` (>= 0)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    @property
    def paths_a(self) -> list[Path]:
        """Domain A's samples as paths (a video frame: ``clip.mp4#frame12``)."""
        return [Path(str(s)) for s in self.samples_a]

    @property
    def paths_b(self) -> list[Path]:
        return [Path(str(s)) for s in self.samples_b]

    def __len__(self) -> int:
        return max(len(self.samples_a), len(self.samples_b))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        seed_pick_b, seed_aug_a, seed_aug_b = item_seeds(self.seed, self.epoch, index, 3)
        index_b = int(np.random.default_rng(seed_pick_b).integers(len(self.samples_b)))
        item: dict[str, torch.Tensor | str] = {}
        # Two domains with independent seeds: in an unpaired set A and B are unrelated images.
        for key, start, samples, channels, seed, unreadable in (
            ("A", index % len(self.samples_a), self.samples_a, self.channels_a, seed_aug_a, self._unreadable_a),
            ("B", index_b, self.samples_b, self.channels_b, seed_aug_b, self._unreadable_b),
        ):
            sample, (image, following) = load_skipping_unreadable(
                start,
                len(samples),
                lambda i, samples=samples, channels=channels: (samples[i], read_sample(samples[i], channels, self.tables, next_frame=self.temporal)),
                unreadable,
            )
            image, _ = self.augment(image, seed=seed)
            item[key], item[f"path_{key}"] = to_tensor(image), str(sample)
            if self.temporal:
                # the same seed: the same crop and flip for the next frame
                pair = temporal_pair(image, None if following is None else self.augment(following, seed=seed)[0])
                item[f"{key}_next"] = to_tensor(pair["next"])
                item[f"flow_{key}"] = torch.from_numpy(pair["flow"]).permute(2, 0, 1).contiguous()
                item[f"mask_{key}"] = torch.from_numpy(pair["mask"]).permute(2, 0, 1).contiguous()
        return item

"""Unpaired dataset (CycleGAN): two folders of images, no correspondence between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from translate.config import Direction
from translate.data.io import load_skipping_unreadable, read_image, readable_images
from translate.data.transforms import Augmenter, Preprocessing, item_seeds, to_tensor


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
    """Images of domain A and domain B, each A drawn with a random B.

    Item ``index`` is A image ``index % len(A)`` with a B image chosen at random from all of B;
    the length is ``max(len(A), len(B))``, as in the reference. Every random choice (the B
    image, both crops and flips) comes from ``(seed, epoch, index)``, so an item is the same in
    any process, worker or resumed run; call :meth:`set_epoch` at the start of each epoch
    (before the DataLoader iterator is created: workers copy the dataset then).

    Unreadable files are dropped at construction with a warning each (headers are checked);
    a file that turns out corrupt when decoded is reported and replaced by the next one.

    Args:
        folder_a: Images of domain A (searched recursively).
        folder_b: Images of domain B.
        channels_a: Channels of the batch's ``"A"`` images (``net.in_channels``): 1 or 3.
        channels_b: Channels of the batch's ``"B"`` images (``net.out_channels``): 1 or 3.
        preprocessing: Resize / crop / flip settings.
        direction: ``"BtoA"`` swaps the folders, so the batch's ``"A"`` comes from
            ``folder_b`` and the model still learns ``"A"`` -> ``"B"``.
        seed: Run seed (>= 0).
        max_dataset_size: Use only the first N images of each domain (0 = all).

    Items:
        ``{"A": (channels_a, H, W), "B": (channels_b, H, W), "path_A": str, "path_B": str}``,
        float32 tensors in [-1, 1].
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
    ) -> None:
        check_dataset_args(channels_a, channels_b, direction, seed, max_dataset_size)
        if direction == "BtoA":
            folder_a, folder_b = folder_b, folder_a
        self.preprocessing = preprocessing or Preprocessing()
        limit = max_dataset_size or None
        entries_a = readable_images(Path(folder_a))[:limit]
        entries_b = readable_images(Path(folder_b))[:limit]
        self.preprocessing.check_sizes(entries_a + entries_b)
        self.paths_a = [path for path, _ in entries_a]
        self.paths_b = [path for path, _ in entries_b]
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

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        seed_pick_b, seed_aug_a, seed_aug_b = item_seeds(self.seed, self.epoch, index, 3)
        index_b = int(np.random.default_rng(seed_pick_b).integers(len(self.paths_b)))
        path_a, image_a = load_skipping_unreadable(
            index % len(self.paths_a),
            len(self.paths_a),
            lambda i: (self.paths_a[i], read_image(self.paths_a[i], self.channels_a)),
            self._unreadable_a,
        )
        path_b, image_b = load_skipping_unreadable(
            index_b,
            len(self.paths_b),
            lambda i: (self.paths_b[i], read_image(self.paths_b[i], self.channels_b)),
            self._unreadable_b,
        )
        # Two calls with independent seeds: in an unpaired set A and B are unrelated images.
        image_a, _ = self.augment(image_a, seed=seed_aug_a)
        image_b, _ = self.augment(image_b, seed=seed_aug_b)
        return {"A": to_tensor(image_a), "B": to_tensor(image_b), "path_A": str(path_a), "path_B": str(path_b)}

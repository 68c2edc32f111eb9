"""Paired dataset (pix2pix): aligned A/B images, side by side or in two matching folders."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from translate.config import Direction
from translate.data.io import (
    find_images,
    format_names,
    list_images,
    load_skipping_unreadable,
    read_headers,
    read_image,
    readable_images,
    to_channels,
)
from translate.data.media import Sample, VideoTable, list_videos, read_sample, temporal_pair, video_table
from translate.data.transforms import Augmenter, Preprocessing, item_seeds, to_tensor
from translate.data.unpaired import check_dataset_args
from translate.errors import UserError

PairedLayout = Literal["side_by_side", "folders"]


def detect_paired_layout(folder: Path) -> PairedLayout:
    """``"folders"`` if ``folder`` has subfolders ``A`` and ``B``, else ``"side_by_side"``."""
    return "folders" if (folder / "A").is_dir() and (folder / "B").is_dir() else "side_by_side"


def images_by_key(folder: Path) -> dict[str, Path]:
    """The images under ``folder`` keyed by relative path without extension (``sub/x``).

    This is how pairs are matched (``A/x.png`` with ``B/x.jpg``), for datasets and for
    ``translate eval`` alike.

    Raises:
        UserError: a name appears with two extensions, so its partner would be ambiguous.
    """
    by_key: dict[str, Path] = {}
    clashes: list[str] = []
    for path in find_images(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in by_key:
            clashes.append(f"{by_key[key].relative_to(folder)} and {path.relative_to(folder)}")
        by_key[key] = path
    if clashes:
        raise UserError(
            f"{folder}: names that appear with two extensions, so their partner is ambiguous: {format_names(clashes)} — keep one file per name"
        )
    return by_key


def match_folders(folder_a: Path, folder_b: Path) -> list[tuple[Path, Path]]:
    """Pair the images of two folders by relative path without extension.

    ``A/street/001.jpg`` pairs with ``B/street/001.png``: the extension may differ, because
    the two sides are often saved in different formats (a lossless label map, a JPEG photo).

    Returns:
        ``(path_a, path_b)`` sorted by relative path.

    Raises:
        UserError: A name is in one folder only, or two files of one folder share a name
            once the extension is removed; the message lists the first few names and the count.
    """
    keyed = [images_by_key(folder) for folder in (folder_a, folder_b)]
    keys_a, keys_b = keyed[0].keys(), keyed[1].keys()
    only_a, only_b = sorted(keys_a - keys_b), sorted(keys_b - keys_a)
    if only_a or only_b:
        name_a, name_b = folder_a.name, folder_b.name
        problems = [f"{name_a}/{k}.* has no {name_b}/{k}.*" for k in only_a]
        problems += [f"{name_b}/{k}.* has no {name_a}/{k}.*" for k in only_b]
        raise UserError(
            f"{folder_a.parent}: images without a partner (pairs are matched by relative path "
            f"without extension): {format_names(problems, 3)} — add the partners or remove "
            "these files"
        )
    return [(keyed[0][k], keyed[1][k]) for k in sorted(keys_a)]


def match_videos(folder_a: Path, folder_b: Path) -> tuple[list[tuple[Sample, Sample]], dict[Path, VideoTable]]:
    """Pair the video files of two folders by relative path without extension, frame by frame.

    Returns:
        One ``(A frame, B frame)`` pair of :class:`~translate.data.media.Sample` per frame, and
        each video's frame table.

    Raises:
        UserError: a video without a partner, or two partners with different frame counts.
    """
    keyed = [{p.relative_to(f).with_suffix("").as_posix(): p for p in list_videos(f)} for f in (folder_a, folder_b)]
    only = [f"{folder_a.name}/{k}" for k in keyed[0].keys() - keyed[1].keys()] + [f"{folder_b.name}/{k}" for k in keyed[1].keys() - keyed[0].keys()]
    if only:
        raise UserError(f"{folder_a.parent}: videos without a partner (matched by relative path without extension): {format_names(sorted(only), 3)}")
    pairs: list[tuple[Sample, Sample]] = []
    tables: dict[Path, VideoTable] = {}
    for key in sorted(keyed[0]):
        path_a, path_b = keyed[0][key], keyed[1][key]
        table_a, table_b = tables[path_a], tables[path_b] = video_table(path_a), video_table(path_b)
        if len(table_a.pts) != len(table_b.pts):
            raise UserError(
                f"{path_a}: {len(table_a.pts)} frames but its partner {path_b} has {len(table_b.pts)} — paired videos need the same frames"
            )
        if table_a.stored_size != table_b.stored_size:
            raise UserError(
                f"{path_a}: frames {table_a.stored_size[0]}x{table_a.stored_size[1]} but its partner {path_b}'s differ — resize B to match A"
            )
        pairs += [(Sample(path_a, i, table_a.stored_size), Sample(path_b, i, table_b.stored_size)) for i in range(len(table_a.pts))]
    return pairs, tables


class PairedDataset(Dataset):
    """Aligned pairs (A, B); the same random resize, crop and flip is applied to both.

    Two layouts of ``folder`` are accepted (see ``datasets/README.md``):

    - side by side: each image holds A on its left half and B on its right half (the
      reference's ``AlignedDataset``); an odd width is an error naming the file.
    - folders: ``folder/A/<name>.*`` pairs with ``folder/B/<name>.*`` (relative path, any
      extension); both must have the same size. Video files pair the same way, frame by frame
      (the two clips must have as many frames).

    Every random choice comes from ``(seed, epoch, index)``; call :meth:`set_epoch` at the
    start of each epoch, before the DataLoader iterator is created.

    Args:
        folder: ``DATA/train`` or ``DATA/test``.
        channels_a: Channels of the batch's ``"A"`` images (``net.in_channels``): 1 or 3.
        channels_b: Channels of the batch's ``"B"`` images (``net.out_channels``): 1 or 3.
        preprocessing: Resize / crop / flip settings.
        direction: ``"BtoA"`` makes the batch's ``"A"`` the right half (or ``folder/B``).
        seed: Run seed (>= 0).
        max_dataset_size: Use only the first N pairs (0 = all).
        temporal: also give A's next video frame (same crop and flip) and the flow from it
            back to A (``train.lambda_temporal``), as :class:`UnpairedDataset` does.

    Items:
        ``{"A": (channels_a, H, W), "B": (channels_b, H, W), "path_A": str, "path_B": str}``,
        float32 tensors in [-1, 1]; for side-by-side images both paths name the same file;
        with ``temporal`` also ``"A_next"``, ``"flow_A"`` and ``"mask_A"``.
    """

    def __init__(
        self,
        folder: Path,
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
        folder = Path(folder)
        self.temporal = temporal
        self.tables: dict[Path, VideoTable] = {}
        self.preprocessing = preprocessing or Preprocessing()
        self.layout: PairedLayout = detect_paired_layout(folder)
        halves = [name for name in ("A", "B") if (folder / name).is_dir()]
        if len(halves) == 1:  # half of a two-folder layout, not side-by-side images
            missing = "B" if halves == ["A"] else "A"
            raise UserError(f"{folder / missing}: folder not found — pairs in two folders need both {folder / 'A'} and {folder / 'B'}")
        self.swap = direction == "BtoA"
        limit = max_dataset_size or None
        if self.layout == "folders":
            videos, self.tables = match_videos(folder / "A", folder / "B")
            images, sizes = self._scan_folders(folder / "A", folder / "B", allow_none=bool(videos))
            self.pairs = [(Sample(a, None, size), Sample(b, None, size)) for (a, b), size in zip(images, sizes, strict=True)] + videos
        else:
            images, sizes = self._scan_side_by_side(folder)
            self.pairs = [(Sample(a, None, size), Sample(b, None, size)) for (a, b), size in zip(images, sizes, strict=True)]
        self.pairs = self.pairs[:limit]
        self.preprocessing.check_sizes([(str(a), a.size) for a, _ in self.pairs])
        if temporal and not self.tables:
            raise UserError(
                f"train.lambda_temporal needs paired video files in {folder}/A and {folder}/B (it ties consecutive frames); "
                "add videos or set train.lambda_temporal=0"
            )
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.seed = seed
        self.epoch = 0
        self.augment = Augmenter(self.preprocessing)
        self._unreadable: set[int] = set()

    @staticmethod
    def _scan_folders(folder_a: Path, folder_b: Path, *, allow_none: bool = False) -> tuple[list[tuple[Path, Path]], list[tuple[int, int]]]:
        if allow_none and not list_images(folder_a) and not list_images(folder_b):
            return [], []  # video pairs only
        pairs = match_folders(folder_a, folder_b)
        sizes = read_headers([p for pair in pairs for p in pair])
        readable = [(a, b) for a, b in pairs if a in sizes and b in sizes]
        if not readable:
            raise UserError(f"{folder_a.parent}: no readable pairs (found {len(pairs)}) — see the warnings above and replace or re-save the files")
        mismatched = [
            f"{a.relative_to(folder_a)} ({sizes[a][0]}x{sizes[a][1]} vs {sizes[b][0]}x{sizes[b][1]})" for a, b in readable if sizes[a] != sizes[b]
        ]
        if mismatched:
            raise UserError(f"{folder_a.parent}: pairs whose A and B differ in size: {format_names(mismatched, 3)} — resize B to match A")
        return readable, [sizes[a] for a, _ in readable]

    @staticmethod
    def _scan_side_by_side(
        folder: Path,
    ) -> tuple[list[tuple[Path, Path]], list[tuple[int, int]]]:
        entries = readable_images(folder)
        odd = [str(path) for path, (w, _) in entries if w % 2]
        if odd:
            raise UserError(
                "side-by-side images with an odd width cannot be split into A|B halves: "
                f"{format_names(odd, 3)} — each must be A and B of equal width "
                "joined horizontally"
            )
        return [(p, p) for p, _ in entries], [(w // 2, h) for _, (w, h) in entries]

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops and flips of ``epoch`` (>= 0)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray | None]:
        sample_a, sample_b = self.pairs[index]
        channels = max(self.channels_a, self.channels_b)
        following = None
        if self.layout == "side_by_side":
            # Read once with as many channels as either side needs, then split.
            image = read_image(sample_a.path, channels)
            half = image.shape[1] // 2
            image_a, image_b = image[:, :half], image[:, half:]
        else:
            # the temporal loss follows the translated side: A's next frame (B's after a swap)
            image_a, next_a = read_sample(sample_a, channels, self.tables, next_frame=self.temporal and not self.swap)
            image_b, next_b = read_sample(sample_b, channels, self.tables, next_frame=self.temporal and self.swap)
            following = next_b if self.swap else next_a
        path_a, path_b = str(sample_a), str(sample_b)
        if image_a.shape[:2] != image_b.shape[:2]:
            raise UserError(
                f"{path_a}: A is {image_a.shape[1]}x{image_a.shape[0]} but B ({path_b}) is "
                f"{image_b.shape[1]}x{image_b.shape[0]} — resize B to match A"
            )
        if self.swap:
            path_a, path_b, image_a, image_b = path_b, path_a, image_b, image_a
        if following is not None:
            following = to_channels(np.ascontiguousarray(following), self.channels_a)
        return (
            path_a,
            path_b,
            to_channels(np.ascontiguousarray(image_a), self.channels_a),
            to_channels(np.ascontiguousarray(image_b), self.channels_b),
            following,
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        (seed_aug,) = item_seeds(self.seed, self.epoch, index, 1)
        path_a, path_b, image_a, image_b, following = load_skipping_unreadable(index, len(self.pairs), self._load, self._unreadable)
        # ONE call for both images: the same resize, crop and flip keep A and B aligned.
        image_a, image_b = self.augment(image_a, image_b, seed=seed_aug)
        item: dict[str, torch.Tensor | str] = {"A": to_tensor(image_a), "B": to_tensor(image_b), "path_A": path_a, "path_B": path_b}
        if self.temporal:
            # the same seed: the next frame gets the same resize, crop and flip as A
            pair = temporal_pair(image_a, None if following is None else self.augment(following, seed=seed_aug)[0])
            item["A_next"] = to_tensor(pair["next"])
            item["flow_A"] = torch.from_numpy(pair["flow"]).permute(2, 0, 1).contiguous()
            item["mask_A"] = torch.from_numpy(pair["mask"]).permute(2, 0, 1).contiguous()
        return item

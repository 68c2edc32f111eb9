"""Preprocessing and augmentation (albumentations), reproducible per (seed, epoch, index).

The modes are those of the reference CycleGAN/pix2pix code (``--preprocess``):

- ``resize_and_crop``: resize to load_size x load_size, then crop crop_size x crop_size.
- ``crop``: crop crop_size x crop_size only.
- ``scale_width``: resize the width to load_size keeping the aspect ratio (height at least
  crop_size), sides then rounded to a multiple of ``multiple``.
- ``scale_width_and_crop``: as scale_width (without the rounding), then crop.
- ``none``: no resize except rounding both sides to the nearest multiple of ``multiple``, which
  the generator needs (the reference rounds to a multiple of 4).

In the train phase the crop is random and the image is flipped horizontally with probability
1/2 (when ``flip``); in the test phase the crop is centred and nothing is flipped. For a pair,
A and B go through ONE albumentations call (``image`` and ``image_b``), so they receive the same
resize, crop and flip.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

# albumentations asks PyPI for a newer version on import (up to 2 s, and a warning on offline
# machines); a training toolkit must not phone home. The user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from translate.config import DataConfig, Preprocess
from translate.data.io import format_names
from translate.errors import UserError
from translate.files import unit_to_signed

Phase = Literal["train", "test"]


def item_seeds(seed: int, epoch: int, index: int, count: int) -> list[int]:
    """Independent 32-bit seeds for the random choices of one sample.

    They depend only on ``(seed, epoch, index)``, never on global state, worker id or the
    order in which samples are drawn, so a resumed run sees exactly the same augmentations.

    Args:
        seed: Run seed (``train.seed``), >= 0.
        epoch: Epoch number, >= 0.
        index: Sample index, >= 0.
        count: How many seeds to return.

    Returns:
        ``count`` ints in [0, 2**32).
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(count)
    return [int(s) for s in state]


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize float HWC ``image`` to ``(width, height)``, keeping the channel axis.

    Area averaging when either side shrinks (antialiased, as the Pillow bicubic of the
    reference), bicubic otherwise: the rule of ``A.Resize(area_for_downscale="image")``.
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    shrinking = width < w or height < h
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return out.reshape(height, width, image.shape[2])


def round_to_multiple(size: int, multiple: int) -> int:
    """Nearest multiple of ``multiple`` to ``size`` (at least ``multiple``)."""
    return max(multiple, int(round(size / multiple)) * multiple)


@dataclass(frozen=True)
class Preprocessing:
    """How images are resized, cropped and flipped.

    Attributes:
        mode: One of the reference's ``--preprocess`` modes (see the module docstring).
        load_size: Side (or width, for scale_width*) images are resized to before cropping.
        crop_size: Side of the square crop.
        flip: Random horizontal flip in the train phase.
        phase: ``"train"`` (random crop and flip) or ``"test"`` (centre crop, no flip).
        multiple: The generator needs sides divisible by this (4 for ResNet generators,
            256 for unet_256); used by modes ``none`` and ``scale_width``.
    """

    mode: Preprocess = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    phase: Phase = "train"
    multiple: int = 4

    def __post_init__(self) -> None:
        if self.mode not in get_args(Preprocess):
            raise ValueError(f"mode must be one of {get_args(Preprocess)}, got {self.mode!r}")
        if self.phase not in get_args(Phase):
            raise ValueError(f"phase must be 'train' or 'test', got {self.phase!r}")
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {self.multiple!r}")
        if self.load_size < 1:
            raise UserError(f"data.load_size {self.load_size}: must be a positive number of pixels")
        if self.crop_size < 1:
            raise UserError(f"data.crop_size {self.crop_size}: must be a positive number of pixels")
        if self.mode in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
            raise UserError(
                f"data.load_size {self.load_size} is smaller than data.crop_size {self.crop_size}: "
                f"preprocess {self.mode} resizes to load_size and then crops crop_size — "
                "set load_size >= crop_size (--load-size, --crop-size)"
            )
        if self.crops and self.crop_size % self.multiple:
            raise UserError(
                f"data.crop_size {self.crop_size} is not a multiple of {self.multiple}, which the "
                f"generator needs — use e.g. {round_to_multiple(self.crop_size, self.multiple)}"
            )

    @classmethod
    def from_config(cls, data: DataConfig, phase: Phase = "train", multiple: int = 4) -> Preprocessing:
        """The preprocessing a run config asks for."""
        return cls(
            mode=data.preprocess,
            load_size=data.load_size,
            crop_size=data.crop_size,
            flip=data.flip,
            phase=phase,
            multiple=multiple,
        )

    @property
    def crops(self) -> bool:
        return self.mode in ("resize_and_crop", "crop", "scale_width_and_crop")

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the result for an input of ``(width, height)``."""
        if self.crops:
            return self.crop_size, self.crop_size
        if self.mode == "scale_width":
            w, h = self._scale_width_size(width, height)
            return round_to_multiple(w, self.multiple), round_to_multiple(h, self.multiple)
        return round_to_multiple(width, self.multiple), round_to_multiple(height, self.multiple)

    def check_sizes(self, sizes: Iterable[tuple[Path | str, tuple[int, int]]]) -> None:
        """Raise a UserError naming the images (``(path, (width, height))``) too small to crop."""
        if self.mode != "crop":
            return  # the other modes resize first, so any image fits
        too_small = [f"{path} ({w}x{h})" for path, (w, h) in sizes if w < self.crop_size or h < self.crop_size]
        if too_small:
            raise UserError(
                f"images smaller than data.crop_size {self.crop_size} with preprocess crop: "
                f"{format_names(too_small)} — lower data.crop_size (--crop-size), or set "
                "data.preprocess=resize_and_crop with data.load_size (--load-size) >= crop_size"
            )

    def _scale_width_size(self, width: int, height: int) -> tuple[int, int]:
        # Reference __scale_width: width -> load_size, height keeps the aspect ratio but is
        # never below crop_size so that a later crop fits.
        new_height = int(max(self.load_size * height / width, self.crop_size))
        return self.load_size, new_height


class Augmenter:
    """Applies a :class:`Preprocessing` to one image or to an aligned pair.

    Example:
        >>> aug = Augmenter(Preprocessing(mode="crop", crop_size=32))
        >>> a, b = aug(image_a, image_b, seed=1234)  # same crop and flip for both

    Not thread-safe (the albumentations pipeline is re-seeded on each call); DataLoader
    workers are processes, each with its own copy.
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing
        p = preprocessing
        steps: list[A.BasicTransform] = []
        if p.mode == "resize_and_crop":
            steps.append(A.Resize(p.load_size, p.load_size, interpolation=cv2.INTER_CUBIC, area_for_downscale="image"))
        elif p.mode in ("scale_width", "scale_width_and_crop", "none"):
            steps.append(A.Lambda(image=self._resize_to_output, name=f"resize_{p.mode}"))
        if p.crops:
            crop = A.RandomCrop if p.phase == "train" else A.CenterCrop
            steps.append(crop(p.crop_size, p.crop_size))
        if p.flip and p.phase == "train":
            steps.append(A.HorizontalFlip(p=0.5))
        self.compose = A.Compose(steps, additional_targets={"image_b": "image"})

    def _resize_to_output(self, image: np.ndarray, **_: object) -> np.ndarray:
        p = self.preprocessing
        h, w = image.shape[:2]
        if p.mode == "scale_width_and_crop":
            return resize(image, *p._scale_width_size(w, h))
        return resize(image, *p.output_size(w, h))

    def __call__(self, image: np.ndarray, image_b: np.ndarray | None = None, *, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocess ``image`` (and ``image_b`` with the same random parameters).

        Args:
            image: float32 (H, W, C) in [0, 1].
            image_b: Optional float32 (H, W, C') in [0, 1], same H and W as ``image``.
            seed: Seed of every random choice of this call (see :func:`item_seeds`).

        Returns:
            ``(image, image_b)`` float32 (h, w, C) in [0, 1]; ``image_b`` is None if not given.
        """
        if image_b is not None and image_b.shape[:2] != image.shape[:2]:
            raise ValueError(f"image and image_b must have the same size, got {image.shape} and {image_b.shape}")
        # One seed per transform: albumentations' set_random_seed gives every transform the
        # SAME seed, so their first draws coincide (e.g. "flip" iff "crop near the top").
        seeds = np.random.SeedSequence(seed).generate_state(1 + len(self.compose.transforms))
        self.compose.set_random_seed(int(seeds[0]))
        for transform, transform_seed in zip(self.compose.transforms, seeds[1:], strict=True):
            transform.set_random_seed(int(transform_seed))
        inputs = {"image": image} if image_b is None else {"image": image, "image_b": image_b}
        out = self.compose(**inputs)
        # Bicubic enlargement overshoots; keep the documented [0, 1] range.
        result_a = np.clip(out["image"], 0.0, 1.0, dtype=np.float32)
        result_b = None if image_b is None else np.clip(out["image_b"], 0.0, 1.0, dtype=np.float32)
        return result_a, result_b


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 HWC numpy image in [0, 1] -> float32 tensor (C, H, W) in [-1, 1]."""
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    return unit_to_signed(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)))

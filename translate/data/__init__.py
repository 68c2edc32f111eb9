"""Datasets: folders of images -> items ``{"A", "B", "path_A", "path_B"}``.

``build_dataset`` picks the dataset of a kind (paired or unpaired: the model's objective says
which) for a run config; the layouts are documented in ``datasets/README.md``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from translate.config import RunConfig
from translate.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images, read_image, read_image_header
from translate.data.paired import PairedDataset, detect_paired_layout
from translate.data.transforms import Augmenter, Preprocessing, item_seeds, to_tensor
from translate.data.unpaired import UnpairedDataset
from translate.errors import UserError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Augmenter",
    "ImageReadError",
    "PairedDataset",
    "Preprocessing",
    "UnpairedDataset",
    "build_dataset",
    "item_seeds",
    "list_images",
    "read_image",
    "read_image_header",
    "to_tensor",
]

logger = logging.getLogger("translate")

DataKind = Literal["paired", "unpaired"]


def _layouts(root: Path | str, phase: str) -> str:
    return (
        f"unpaired: {root}/{phase}A and {root}/{phase}B; paired: {root}/{phase} with side-by-side "
        f"A|B images, or {root}/{phase}/A and {root}/{phase}/B (see datasets/README.md)"
    )


def build_dataset(
    cfg: RunConfig,
    phase: Literal["train", "test"] = "train",
    *,
    kind: DataKind,
    multiple: int = 4,
) -> Dataset:
    """The dataset of ``kind`` a run config asks for (the model's, from its objective).

    Unpaired data also accepts a paired two-folder layout (``DATA/<phase>/A``,
    ``DATA/<phase>/B``) and uses the folders as its two domains, ignoring the pairing.

    Args:
        cfg: Run config; uses ``data.*``, ``net.in_channels`` (channels of the batch's
            ``"A"``), ``net.out_channels`` (of ``"B"``), ``train.seed``, and ``model`` to
            name the model in messages.
        phase: ``"train"`` (random crop/flip) or ``"test"`` (centre crop, no flip; reads
            ``testA``/``testB`` or ``DATA/test``).
        kind: ``"unpaired"`` (two domains) or ``"paired"`` (aligned A|B pairs): the model's
            ``Objective.data`` (``translate.train.objectives``).
        multiple: Image sides the generator needs to be divisible by (preprocess ``none``
            and ``scale_width`` round to it; crop sizes must be multiples of it).

    Returns:
        An :class:`UnpairedDataset` or :class:`PairedDataset`.

    Raises:
        UserError: ``data.root`` unset or missing, or its layout does not suit the model.
    """
    if phase not in ("train", "test"):
        raise ValueError(f"phase must be 'train' or 'test', got {phase!r}")
    if kind not in ("paired", "unpaired"):
        raise ValueError(f"kind must be 'paired' or 'unpaired', got {kind!r}")
    if not cfg.data.root:
        raise UserError(f"data.root is not set — give the dataset folder ({_layouts('DATA', phase)})")
    root = Path(cfg.data.root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found — expected {_layouts(root, phase)}")
    preprocessing = Preprocessing.from_config(cfg.data, phase, multiple)
    common = dict(
        channels_a=cfg.net.in_channels,
        channels_b=cfg.net.out_channels,
        preprocessing=preprocessing,
        direction=cfg.data.direction,
        seed=cfg.train.seed,
        max_dataset_size=cfg.data.max_dataset_size,
        temporal=phase == "train" and cfg.train.lambda_temporal > 0,  # the next video frame and its flow, for the temporal loss
    )
    folder_a, folder_b, paired = root / f"{phase}A", root / f"{phase}B", root / phase
    model = cfg.model
    if kind == "unpaired":
        if folder_a.is_dir() or folder_b.is_dir():
            for folder in (folder_a, folder_b):
                if not folder.is_dir():
                    raise UserError(f"{folder}: folder not found — {model} needs {folder_a.name} and {folder_b.name} side by side in {root}")
            return UnpairedDataset(folder_a, folder_b, **common)
        if paired.is_dir() and detect_paired_layout(paired) == "folders":
            logger.info("%s: using paired folders A and B as the two %s domains", paired, model)
            return UnpairedDataset(paired / "A", paired / "B", **common)
        if paired.is_dir():
            raise UserError(
                f"{paired}: holds side-by-side pairs, but {model} needs two folders "
                f"{folder_a} and {folder_b} — use a model for paired data (--model pix2pix), or "
                f"put the two halves in {paired}/A and {paired}/B"
            )
        raise UserError(f"{folder_a}: folder not found — {model} expects {folder_a} and {folder_b} (or paired folders {paired}/A and {paired}/B)")
    if paired.is_dir():
        return PairedDataset(paired, **common)
    if folder_a.is_dir() or folder_b.is_dir():
        raise UserError(
            f"{root}: has the unpaired layout ({folder_a.name}/{folder_b.name}), but {model} needs "
            f"aligned pairs in {paired} (side-by-side A|B images, or {paired}/A and {paired}/B "
            "with matching names) — use a model for unpaired images (--model cyclegan)"
        )
    raise UserError(
        f"{paired}: folder not found — {model} expects side-by-side A|B images in {paired}, or {paired}/A and {paired}/B with matching names"
    )

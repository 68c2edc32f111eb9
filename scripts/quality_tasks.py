"""The quality benchmark's tasks: what each trains, on which dataset, and where that dataset is.

Shared by ``quality.py`` (training and scoring) and ``adversarial_probe.py`` (which reads the same
datasets). The datasets themselves are built by ``quality_data``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import quality_data as data

from translate.files import atomic_write


@dataclass(frozen=True)
class Task:
    name: str
    model: str  # translate train --model
    generator: str
    steps: int  # of the full plan
    build: Callable[[Path, int, int, int], None]  # (root, size, train images, test images)
    test_input: str  # the scored held-out folders under the dataset root (the toolkit's own test split validates)
    test_target: str
    train_target: str  # its mean image is the constant baseline


TASKS = (
    Task("sketch2photo", "pix2pix", "unet_128", 1000, data.build_sketch2photo, "heldout/A", "heldout/B", "train/B"),
    Task("day2night", "cyclegan", "resnet_6blocks", 220, data.build_day2night, "heldout/A", "heldout/target", "trainB"),
    Task("grade", "cyclegan", "resnet_6blocks", 220, data.build_grade, "heldout/A", "heldout/target", "trainB"),
    Task("detail", "cyclegan", "resnet_6blocks", 220, data.build_detail, "heldout/A", "heldout/target", "trainB"),
)
PLANS = {  # by --quick: image side, images per training set and held out; steps, generator (None: the task's); width; sheet rows
    False: dict(size=128, train_images=400, test_images=24, steps=None, generator=None, base_channels=16, sheet_rows=3),
    True: dict(size=64, train_images=8, test_images=4, steps=2, generator="resnet_6blocks", base_channels=4, sheet_rows=2),
}


BUILT_FILE = "built.json"  # beside a task's dataset: what built it (two invocations may share it)


def dataset(task: Task, plan: dict, work: Path) -> Path:
    """The task's dataset under ``work/data``, built unless the same plan and builder built it."""
    root = work / "data" / task.name
    built = {"task": task.name, "plan": [plan[k] for k in ("size", "train_images", "test_images")], "code": data.source_digest()}
    if saved_with_key(root / BUILT_FILE, built) is None:  # a folder from another plan or builder would mix in
        shutil.rmtree(root, ignore_errors=True)
        task.build(root, plan["size"], plan["train_images"], plan["test_images"])
        atomic_write(root / BUILT_FILE, json.dumps({"key": built}) + "\n")
    return root


def saved_with_key(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON record at ``path`` if it was saved under ``key``, else None (also when missing or torn)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("key") == key else None

"""The quality benchmark's tasks: what each trains, on which dataset, where that dataset is, and
what a run's score depends on (:func:`run_key`: a finished run with the same key is kept).

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


def run_key(line: list[str]) -> dict[str, Any]:
    """What a run's score depends on besides the code: its command and, for the default recipe,
    what that recipe changes for its model (a paper-preset run does not depend on it), with its
    ``auto`` settings as this run resolves them (:func:`recipe_changes`)."""
    model, recipe = (line[line.index(flag) + 1] for flag in ("--model", "--preset"))
    changes = recipe_changes(model, line) if recipe == "toolkit" else {}
    return {"command": line, "toolkit": json.loads(json.dumps(changes, default=str))}


def recipe_changes(model: str, line: list[str]) -> dict[str, dict[str, Any]]:
    """``TOOLKIT_CHANGES[model]`` as the run of ``line`` meets them: an ``auto`` setting that the
    command's ``--set`` overrides is the command's, one resolved from the data to the paper's
    value changes nothing, and one resolved to another value is that value. A recipe whose auto
    settings choose the paper's behaviour on a task keeps that task's earlier runs."""
    from translate.cli import build_parser
    from translate.commands.train import resolve_config
    from translate.config import TOOLKIT_CHANGES, preset
    from translate.data import build_dataset
    from translate.nets import size_multiple
    from translate.train import auto
    from translate.train.objectives import OBJECTIVES

    changes = TOOLKIT_CHANGES[model]
    autos = [(section, key) for section, fields in changes.items() for key, value in fields.items() if value == "auto"]
    if not autos:
        return changes
    overrides = [line[i + 1] for i, flag in enumerate(line) if flag == "--set"]
    cfg = resolve_config(build_parser().parse_args(line))[0]  # as `translate train` builds it
    resolved = auto.resolve(cfg, build_dataset(cfg, "train", kind=OBJECTIVES[model].data, multiple=size_multiple(cfg.net)), announce=False)
    paper = preset(model, "paper")
    set_keys = {key for key, _, value in (item.partition("=") for item in overrides) if value != "auto"}  # given as values
    out = {section: dict(fields) for section, fields in changes.items()}
    for section, key in autos:
        value = getattr(getattr(resolved, section), key)
        if f"{section}.{key}" in set_keys or value == getattr(getattr(paper, section), key):
            del out[section][key]
        else:
            out[section][key] = value
    return out

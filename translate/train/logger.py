"""Metrics log (JSONL, TensorBoard when installed) and sample grids of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from translate.files import atomic_path, signed_to_uint8


class MetricsLog:
    """Appends one JSON object per line to ``RUN/metrics.jsonl``; mirrors to TensorBoard if present."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional extra

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL only
                self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in row.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
        if self.tb is not None:
            step = int(row.get("step", 0))
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] → (H, W, 3) uint8 (grayscale repeated to RGB)."""
    pixels = signed_to_uint8(image[:3]).transpose(1, 2, 0)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def save_grid(path: Path, rows: list[list[torch.Tensor]], *, hint: str = "free disk space or fix permissions") -> None:
    """Save rows of (C, H, W) images in [-1, 1] as one PNG (rows of equal height), atomically.

    Raises:
        UserError: The PNG cannot be written; the line names ``path`` and ends with ``hint``.
    """
    lines = []
    for row in rows:
        h = max(t.shape[-2] for t in row)
        tiles = [np.pad(_rgb_uint8(t), ((0, h - t.shape[-2]), (0, 0), (0, 0))) for t in row]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines]
    with atomic_path(path, hint=hint) as tmp:
        Image.fromarray(np.concatenate(lines, axis=0)).save(tmp, format="PNG")

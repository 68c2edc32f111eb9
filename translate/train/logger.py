"""Metrics log (JSONL, TensorBoard when installed) and sample grids of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


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


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] → (H, W, 3) uint8 (grayscale repeated to RGB)."""
    image = image.detach().float().cpu().clamp(-1, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return ((image[:3] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_grid(path: Path, rows: list[list[torch.Tensor]]) -> None:
    """Save rows of (C, H, W) images in [-1, 1] as one PNG (rows of equal height)."""
    lines = []
    for row in rows:
        h = max(t.shape[-2] for t in row)
        tiles = [np.pad(to_uint8(t), ((0, h - t.shape[-2]), (0, 0), (0, 0))) for t in row]
        lines.append(np.concatenate(tiles, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0))) for line in lines]
    tmp = path.with_name(".tmp-" + path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.concatenate(lines, axis=0)).save(tmp, format="PNG")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)

"""Evaluate folders of images: paired metrics per image, FID/KID per folder, and the report.

``evaluate_folders(pred_dir, target_dir)`` is what ``translate eval`` runs; the pieces
(``match_pairs``, ``evaluate_paired``, ``distribution_metrics``) are there for training-time
validation and scripts.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from translate.data.io import find_images, format_names, read_image, read_image_header
from translate.data.paired import images_by_key
from translate.errors import UserError
from translate.files import atomic_write
from translate.metrics.distribution import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    compute_features,
    fid_from_features,
    kid_from_features,
)
from translate.metrics.paired import PAIRED_METRICS, SSIM_WINDOW, paired_scores

logger = logging.getLogger("translate")

_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "l1": "L1", "fid": "FID", "kid": "KID"}


@dataclass
class EvalReport:
    """What ``translate eval`` measured.

    Attributes:
        pred_dir: Folder of the predictions (generated images).
        target_dir: Folder of the targets (real images).
        names: Relative path (without extension) of each pair, for per-image metrics.
        per_image: Metric name (``psnr``, ``ssim``, ``l1``) -> one value per entry of ``names``.
        fid: FID of all predictions vs all targets, if computed.
        kid: ``(mean, std)`` of KID over subsets, if computed.
        kid_subset_size: Subset size used for KID.
        kid_subsets: Number of KID subsets.
        counts: Images used from each folder: ``{"pred": N, "target": M}``.
        inception_weights: Weights file FID/KID were computed with.
    """

    pred_dir: str
    target_dir: str
    names: list[str] = field(default_factory=list)
    per_image: dict[str, list[float]] = field(default_factory=dict)
    fid: float | None = None
    kid: tuple[float, float] | None = None
    kid_subset_size: int | None = None
    kid_subsets: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    inception_weights: str | None = None

    @property
    def means(self) -> dict[str, float]:
        """Mean of each per-image metric (``inf`` PSNR if any pair is identical)."""
        return {name: float(np.mean(values)) for name, values in self.per_image.items() if values}

    def summary(self) -> dict[str, float]:
        """Flat ``{metric: value}``: paired means, ``fid``, ``kid`` and ``kid_std``; for logging."""
        out = dict(self.means)
        if self.fid is not None:
            out["fid"] = self.fid
        if self.kid is not None:
            out["kid"], out["kid_std"] = self.kid
        return out

    def table(self) -> str:
        """A small text table of the dataset-level numbers."""
        lines = []
        if self.names:
            lines.append(f"{len(self.names)} pairs: {self.pred_dir} vs {self.target_dir}")
        else:
            lines.append(f"{self.counts.get('pred', 0)} predictions ({self.pred_dir}) vs {self.counts.get('target', 0)} targets ({self.target_dir})")
        rows = [(_LABELS[name], f"{value:.4f}" if name != "psnr" else f"{value:.2f}", "mean over pairs") for name, value in self.means.items()]
        if self.fid is not None:
            rows.append(("FID", f"{self.fid:.2f}", f"{self.counts['pred']} vs {self.counts['target']} images"))
        if self.kid is not None:
            rows.append(("KID", f"{self.kid[0]:.5f} ± {self.kid[1]:.5f}", f"{self.kid_subsets} subsets of {self.kid_subset_size}"))
        width = max([len("metric")] + [len(r[0]) for r in rows])
        value_width = max([len("value")] + [len(r[1]) for r in rows])
        lines.append(f"{'metric':<{width}}  {'value':>{value_width}}")
        lines += [f"{label:<{width}}  {value:>{value_width}}  ({note})" for label, value, note in rows]
        identical = sum(1 for v in self.per_image.get("psnr", []) if math.isinf(v))
        if identical:
            lines.append(f"note: {identical} pairs are identical (PSNR inf), so the mean PSNR is inf")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers become the strings ``"inf"``/``"nan"``."""
        data: dict[str, Any] = {
            "pred_dir": self.pred_dir,
            "target_dir": self.target_dir,
            "counts": dict(self.counts),
            "mean": self.means,
        }
        if self.fid is not None:
            data["fid"] = self.fid
        if self.kid is not None:
            data["kid"] = {"mean": self.kid[0], "std": self.kid[1], "subset_size": self.kid_subset_size, "subsets": self.kid_subsets}
        if self.inception_weights:
            data["inception_weights"] = self.inception_weights
        metrics = list(self.per_image)
        data["per_image"] = [{"name": name, **{m: self.per_image[m][i] for m in metrics}} for i, name in enumerate(self.names)]
        return _json_safe(data)

    def to_csv(self) -> str:
        """Per-image CSV text: ``name,psnr,ssim,l1`` (``inf`` written as ``inf``)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        metrics = list(self.per_image)
        writer.writerow(["name", *metrics])
        for i, name in enumerate(self.names):
            writer.writerow([name, *(repr(float(self.per_image[m][i])) for m in metrics)])
        return buffer.getvalue()

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``metrics.json`` and (when there are paired metrics) ``metrics.csv`` into ``out_dir``.

        Returns:
            The JSON and CSV paths (the CSV path is returned even if not written).
        """
        out_dir = output_folder(out_dir)
        json_path, csv_path = out_dir / "metrics.json", out_dir / "metrics.csv"
        atomic_write(json_path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        if self.names:
            atomic_write(csv_path, self.to_csv())
        return json_path, csv_path


def output_folder(out_dir: str | Path) -> Path:
    """``--out``, created when missing (one UserError line naming it when it cannot be)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot create the folder ({exc.strerror or exc})") from None
    return out_dir


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def match_pairs(pred_dir: str | Path, target_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """Pair the images of two folders by relative path, ignoring the extension.

    ``pred/street/001.png`` pairs with ``target/street/001.jpg`` (translations are often saved
    in another format than the originals).

    Returns:
        ``(name, pred_path, target_path)`` sorted by name (relative path without extension).

    Raises:
        UserError: A folder is missing or empty, a name appears twice in one folder with
            different extensions, or a name is in one folder only; the message gives both
            counts and the first few unmatched names.
    """
    pred_dir, target_dir = Path(pred_dir), Path(target_dir)
    pred, target = images_by_key(pred_dir), images_by_key(target_dir)
    only_pred, only_target = sorted(pred.keys() - target.keys()), sorted(target.keys() - pred.keys())
    if only_pred or only_target:
        parts = []
        if only_pred:
            parts.append(f"{len(only_pred)} only in {pred_dir}: {format_names(only_pred, 3)}")
        if only_target:
            parts.append(f"{len(only_target)} only in {target_dir}: {format_names(only_target, 3)}")
        raise UserError(
            f"{pred_dir} ({len(pred)} images) and {target_dir} ({len(target)} images) do not match "
            f"by name (relative path, extension ignored): {'; '.join(parts)} — paired metrics need "
            "one prediction per target; use --unpaired for FID/KID of unrelated folders"
        )
    return [(key, pred[key], target[key]) for key in sorted(pred)]


def check_pair_sizes(pairs: Sequence[tuple[str, Path, Path]]) -> None:
    """UserError naming the pairs whose two images differ in size (read from headers only)."""
    mismatched = []
    for name, pred_path, target_path in pairs:
        pred_size, target_size = read_image_header(pred_path), read_image_header(target_path)
        if pred_size != target_size:
            mismatched.append(f"{name} ({pred_path.name} {pred_size[0]}x{pred_size[1]} vs {target_path.name} {target_size[0]}x{target_size[1]})")
    if mismatched:
        raise UserError(
            f"{len(mismatched)} pairs differ in size: {format_names(mismatched, 3)} — paired metrics "
            "compare pixel by pixel, so each prediction must have its target's size; resize them "
            "beforehand, or use --unpaired for FID/KID only"
        )


def evaluate_pairs(pairs: Sequence[tuple[str, Path, Path]], *, check_sizes: bool = True) -> dict[str, list[float]]:
    """PSNR, SSIM and L1 of each ``(name, pred_path, target_path)`` pair, read as RGB.

    Args:
        pairs: As returned by :func:`match_pairs`.
        check_sizes: Check all sizes from the headers first (skip if already done), so that
            a bad pair fails before any metric is computed.

    Raises:
        UserError: A pair differs in size, is smaller than the SSIM window, or a file
            cannot be read.
    """
    if check_sizes:
        check_pair_sizes(pairs)
    values: dict[str, list[float]] = {name: [] for name in PAIRED_METRICS}
    for _, pred_path, target_path in pairs:
        pred = torch.from_numpy(read_image(pred_path, 3)).permute(2, 0, 1)[None]
        target = torch.from_numpy(read_image(target_path, 3)).permute(2, 0, 1)[None]
        if min(pred.shape[-2:]) < SSIM_WINDOW:
            raise UserError(
                f"{pred_path}: {pred.shape[-1]}x{pred.shape[-2]} is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window — evaluate larger images"
            )
        for metric, value in paired_scores(pred, target).items():
            values[metric].append(float(value[0]))
    return values


def evaluate_paired(pred_dir: str | Path, target_dir: str | Path) -> EvalReport:
    """Per-image PSNR, SSIM and L1 of two folders matched by name (see :func:`match_pairs`).

    Images are read as RGB float in [0, 1] (gray is repeated to three channels).

    Raises:
        UserError: The folders do not match, a pair differs in size, or a file is unreadable.
    """
    pairs = match_pairs(pred_dir, target_dir)
    return EvalReport(
        pred_dir=str(pred_dir),
        target_dir=str(target_dir),
        names=[name for name, _, _ in pairs],
        per_image=evaluate_pairs(pairs),
        counts={"pred": len(pairs), "target": len(pairs)},
    )


def check_kid_size(n_pred: int, n_target: int, subset_size: int) -> None:
    """Fail before any feature is computed if KID cannot use ``subset_size`` images."""
    if min(n_pred, n_target) < subset_size:
        raise UserError(
            f"KID subset size {subset_size} is larger than the images available ({n_pred} "
            f"predictions, {n_target} targets) — pass --kid-subset-size {min(n_pred, n_target)} "
            "or less, or evaluate more images"
        )


def distribution_metrics(
    pred_paths: Sequence[Path],
    target_paths: Sequence[Path],
    model: nn.Module,
    *,
    fid: bool = True,
    kid: bool = False,
    kid_subset_size: int = KID_SUBSET_SIZE,
    kid_subsets: int = KID_SUBSETS,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """FID and/or KID of two sets of image files with ``model``'s features.

    Returns:
        ``{"fid": float}`` and/or ``{"kid": (mean, std)}``.
    """
    if kid:
        check_kid_size(len(pred_paths), len(target_paths), kid_subset_size)
    if len(pred_paths) < 2 or len(target_paths) < 2:
        raise UserError(f"FID/KID need at least 2 images per folder, got {len(pred_paths)} predictions and {len(target_paths)} targets")
    features_pred = compute_features(pred_paths, model, batch_size=batch_size)
    features_target = compute_features(target_paths, model, batch_size=batch_size)
    out: dict[str, Any] = {}
    if fid:
        out["fid"] = fid_from_features(features_pred, features_target)
    if kid:
        out["kid"] = kid_from_features(features_pred, features_target, subset_size=kid_subset_size, n_subsets=kid_subsets, seed=seed)
    return out


def evaluate_folders(
    pred_dir: str | Path,
    target_dir: str | Path,
    *,
    paired: bool = True,
    fid: bool = False,
    kid: bool = False,
    inception: nn.Module | None = None,
    inception_weights: str | Path | None = None,
    kid_subset_size: int = KID_SUBSET_SIZE,
    kid_subsets: int = KID_SUBSETS,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> EvalReport:
    """Everything ``translate eval`` measures for a folder of predictions and one of targets.

    Args:
        pred_dir: Generated images.
        target_dir: Real images: the ground truth of each prediction (``paired``), or of the
            target domain (FID/KID).
        paired: Match the folders by name and compute PSNR/SSIM/L1; False for unrelated folders.
        fid: Compute FID of all predictions vs all targets.
        kid: Compute KID (needs ``kid_subset_size`` images in each folder).
        inception: Feature network for FID/KID; if None, loaded from ``inception_weights``
            (or the standard places, no download) once the folders have been checked.
        inception_weights: Weights file, recorded in the report.
        kid_subset_size: Images per KID subset.
        kid_subsets: Number of KID subsets.
        batch_size: Images per Inception forward pass.
        device: Where a network loaded here runs.

    Raises:
        UserError: Missing or mismatched folders, pairs of different sizes, too few images
            for KID, missing Inception weights, unreadable files.
    """
    if not (paired or fid or kid):
        raise UserError("nothing to measure: the folders are unpaired, so ask for --fid and/or --kid")
    pred_dir, target_dir = Path(pred_dir), Path(target_dir)
    if paired:
        pairs = match_pairs(pred_dir, target_dir)
        check_pair_sizes(pairs)
        pred_paths, target_paths = [p for _, p, _ in pairs], [t for _, _, t in pairs]
    else:
        pairs = []
        pred_paths, target_paths = find_images(pred_dir), find_images(target_dir)
    if kid:
        check_kid_size(len(pred_paths), len(target_paths), kid_subset_size)
    report = EvalReport(pred_dir=str(pred_dir), target_dir=str(target_dir), counts={"pred": len(pred_paths), "target": len(target_paths)})
    if (fid or kid) and inception is None:  # checks above are cheap; loading takes seconds
        from translate.metrics.inception import find_inception_weights, load_fid_inception

        inception_weights = find_inception_weights(inception_weights)
        inception = load_fid_inception(inception_weights, device=device)
    if pairs:
        report.names = [name for name, _, _ in pairs]
        report.per_image = evaluate_pairs(pairs, check_sizes=False)
    if fid or kid:
        logger.info("computing Inception features of %d + %d images", len(pred_paths), len(target_paths))
        found = distribution_metrics(
            pred_paths, target_paths, inception, fid=fid, kid=kid, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, batch_size=batch_size
        )
        report.fid, report.kid = found.get("fid"), found.get("kid")
        if kid:
            report.kid_subset_size, report.kid_subsets = kid_subset_size, kid_subsets
        report.inception_weights = str(inception_weights) if inception_weights else None
    return report

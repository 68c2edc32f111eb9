"""Validation during training: fixed held-out images, metrics, a sample grid, the best checkpoint.

The held-out set is the dataset's test split (``testA``/``testB`` or ``test/``), deterministic
(centre crops, no flips), the first ``train.val_images`` items. What is measured is the
model's (its objective's ``validation``, ``objectives.py``):

- ``paired`` (pix2pix): PSNR, SSIM and L1 of G(A) vs B;
- ``cycle`` (CycleGAN): the cycle-reconstruction L1 of A→B→A and B→A→B (lower is better),
  since no target exists for G(A);
- ``kid`` (CycleGAN): when the FID Inception weights are present locally (see ``translate
  eval``; never downloaded here), KID of G(A) against the held-out real B images, with one
  subset of all held-out images (few images: noisy, but comparable across steps).

Unpaired models also log ``change_l1``, the mean |G(A) - A|: how much the model changes its
inputs. Set beside how far apart the domains' test images are in mean colour (:func:`domain_gap`),
it tells a model that returns its input (a residual generator stays near its starting identity on
large changes, README) from one that translates, as does a change too small to see (a texture
change whose domains hardly differ in mean colour, not made); the validation at the run's final step
(``--steps``; not one stopped early by a signal) says so in one line (:meth:`Validator.returns_input`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from translate.config import RunConfig
from translate.errors import UserError
from translate.files import signed_to_unit
from translate.train.logger import save_grid
from translate.train.objectives import OBJECTIVES

log = logging.getLogger("translate")

# metric -> True when larger is better
METRIC_DIRECTION = {"psnr": True, "ssim": True, "l1": False, "cycle_l1": False, "kid": False}
# metric -> what measures it (objectives.Validation.measures)
METRIC_MEASURE = {"psnr": "paired", "ssim": "paired", "l1": "paired", "cycle_l1": "cycle", "kid": "kid"}
# a model whose change_l1 is under this fraction of the domains' colour gap is said to return its input
RETURNS_INPUT_FRACTION = 0.1
MIN_DOMAIN_GAP = 2 * 2 / 255  # [-1, 1] units (2 levels of 255): closer domains say nothing about it
NO_CHANGE = 0.5 * 2 / 255  # [-1, 1] units (half a level of 255 on average): a change no one sees, whatever the domains


class NoTestSplit(UserError):
    """The data has no usable test split to validate on."""


def build_validator(cfg: RunConfig, run_dir: Path, device: torch.device) -> Validator | None:
    """The run's validator, or None when it validates nothing.

    ``train.val_every``: 0 is off; N > 0 validates every N steps and needs a test split;
    -1 (the toolkit recipe's default) validates at every ``save_every`` when the data has a
    test split and says in one line that it does not otherwise. Every validator also runs at
    the run's last step, so the final weights compete for ``checkpoints/best``.
    """
    every = cfg.train.val_every
    if every == 0:
        return None
    try:
        validator = Validator(cfg, run_dir, device)
    except NoTestSplit:
        if every > 0:
            raise
        log.info("validation: %s has no test split (testA/testB or test/), so no best checkpoint is kept", cfg.data.root)
        return None
    validator.every = every if every > 0 else cfg.train.save_every
    return validator


def domain_gap(dataset: Any) -> float | None:
    """How far apart an unpaired test split's two domains are in colour
    (:func:`translate.data.statistics.colour_gap` of at most 64 images a domain, each read
    once as it is: the same for every run seed), in [-1, 1] units. None when A and B have
    different channels or no image of a domain could be read."""
    from translate.data.statistics import colour_gap, dataset_statistics

    stats = dataset_statistics(dataset)
    return None if stats is None else colour_gap(*stats)


class Validator:
    """Runs the held-out evaluation and keeps track of the best value."""

    def __init__(self, cfg: RunConfig, run_dir: Path, device: torch.device) -> None:
        from translate.data import build_dataset
        from translate.nets import size_multiple

        self.run_dir, self.device = run_dir, device
        self.every = max(cfg.train.val_every, 1)  # steps between validations (build_validator resolves -1)
        objective = OBJECTIVES[cfg.model]
        self.spec, self.generators = objective.validation, tuple(objective.generators)
        tc = cfg.train
        try:
            dataset = build_dataset(cfg, "test", kind=objective.data, multiple=size_multiple(cfg.net))
        except UserError as exc:
            raise NoTestSplit(
                f"train.val_every is set but the data has no usable test split ({exc}); add testA/testB (or test/) or set train.val_every=0"
            ) from None
        dataset.set_epoch(0)
        self.items = [dataset[i] for i in range(min(tc.val_images, len(dataset)))]
        self.domain_gap = domain_gap(dataset) if "paired" not in self.spec.measures else None
        self.residual = cfg.net.residual  # named in the returns-input line: the usual reason
        measures = self.spec.measures
        metric = self.spec.best_metric if tc.best_metric == "auto" else tc.best_metric
        if metric not in METRIC_MEASURE:
            raise UserError(f"config train.best_metric: {metric!r} is not one of auto, {', '.join(METRIC_MEASURE)}")
        if METRIC_MEASURE[metric] not in measures:
            offered = ", ".join(m for m, group in METRIC_MEASURE.items() if group in measures)
            raise UserError(f"config train.best_metric: {metric} is not measured for {cfg.model}; use {offered} (or auto)")
        self.inception = self._inception(device) if "kid" in measures else None
        if metric == "kid" and self.inception is None:
            if tc.best_metric == "kid":
                raise UserError("config train.best_metric: kid needs the FID Inception weights (see translate eval --help)")
            log.info("validation: no best checkpoint (choosing by KID needs the FID Inception weights); inference uses the latest")
            metric = None
        self.metric = metric
        self.best: float | None = None

    def returns_input(self, scores: dict[str, float]) -> str | None:
        """One line when ``scores`` (from :meth:`run`) show a model that returns its inputs: it
        changes them by less than :data:`RETURNS_INPUT_FRACTION` of the domains' colour gap (a
        large colour change not made), or by less than :data:`NO_CHANGE` whatever the gap (a
        texture change not made either: the colour gap of such domains is small; the change is a
        mean over every pixel, so a model that edits a small region only could fall under it). None otherwise,
        and where that says nothing: no ``val_change_l1`` (a paired model) or A and B with
        different channels."""
        change, gap = scores.get("val_change_l1"), self.domain_gap
        if change is None or gap is None:
            return None
        levels = 255 / 2  # [-1, 1] units -> levels of an 8-bit image
        if gap >= MIN_DOMAIN_GAP and change < RETURNS_INPUT_FRACTION * gap:
            line = (
                f"validation: the A→B generator changes the held-out A images by {change * levels:.1f} levels of 255 on average, "
                f"while the two domains' held-out images differ in mean colour by {gap * levels:.1f}: it is returning its input"
            )
        elif change < NO_CHANGE:
            line = (
                f"validation: the A→B generator changes the held-out A images by {change * levels:.2f} levels of 255 on average, "
                "too little to see: it is returning its input"
            )
        else:
            return None
        hint = "; a residual generator (net.residual=true) stays near its starting identity: net.residual=false trains the papers' generator instead"
        return line + (hint + "; compare both with the input (translate eval)" if self.residual else "")

    @staticmethod
    def _inception(device: torch.device) -> nn.Module | None:
        from translate.metrics import find_inception_weights, load_fid_inception

        try:
            find_inception_weights()
        except UserError:  # absent: validation logs the cycle error only, and never downloads
            return None
        return load_fid_inception(device=device)

    def improved(self, value: float) -> bool:
        if self.metric is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if METRIC_DIRECTION[self.metric] else value < self.best

    @torch.inference_mode()
    def run(self, nets: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Evaluate ``nets`` in eval mode; returns ``{"val_<metric>": value}``; writes a grid."""
        from translate.metrics import paired_scores

        measures, reverse = self.spec.measures, self.spec.reverse
        modes = {n: nets[n].training for n in self.generators}
        for n in self.generators:
            nets[n].eval()
        sums: dict[str, float] = {}
        rows = []
        fakes, reals = [], []
        try:
            for item in self.items:
                real_a = item["A"][None].to(self.device)
                real_b = item["B"][None].to(self.device)
                fake_b = nets["gen_ab"](real_a).float()
                named = {"A": real_a, "B": real_b, "fake_b": fake_b}
                scores: dict[str, float] = {}
                if "paired" not in measures and fake_b.shape == real_a.shape:
                    scores["change_l1"] = float((fake_b - real_a.float()).abs().mean())
                if "paired" in measures:
                    for k, v in paired_scores(signed_to_unit(fake_b), signed_to_unit(real_b.float())).items():
                        scores[k] = float(v[0])
                if "cycle" in measures:
                    named["rec_a"] = rec_a = nets[reverse](fake_b).float()
                    rec_b = nets["gen_ab"](nets[reverse](real_b)).float()
                    scores["cycle_l1"] = 0.5 * float((rec_a - real_a).abs().mean() + (rec_b - real_b).abs().mean())
                if self.inception is not None and fake_b.shape[1] == 3:
                    fakes.append(self.inception(signed_to_unit(fake_b)).double().cpu())
                    reals.append(self.inception(signed_to_unit(real_b.float())).double().cpu())
                rows.append([named[n][0] for n in self.spec.row])
                for k, v in scores.items():
                    sums[k] = sums.get(k, 0.0) + v
        finally:
            for n in self.generators:
                nets[n].train(modes[n])
        if rows:
            save_grid(self.run_dir / "samples" / f"val_step_{step:07d}.png", rows[:4])
        scores = {f"val_{k}": v / max(1, len(self.items)) for k, v in sums.items()}
        if len(fakes) >= 2:
            from translate.metrics import kid_from_features

            fake_f, real_f = torch.cat(fakes).numpy(), torch.cat(reals).numpy()
            scores["val_kid"] = kid_from_features(fake_f, real_f, subset_size=len(fake_f), n_subsets=1)[0]
        return scores

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("metric") == self.metric:
            self.best = state.get("best")

"""Settings the toolkit recipe chooses from the training data when a run starts (``auto``).

``net.residual=auto`` (the toolkit's CycleGAN default): the generators start as the identity
(``net.residual=true``) when the two training collections look alike, i.e. their
:func:`~translate.data.statistics.domain_distance` (colour and texture statistics, in
within-collection spreads) is under :data:`SUBTLE_DISTANCE`; otherwise they are the papers'
(``false``). Why, measured in docs/QUALITY.md: where the change is subtle (a film grade, a
sharpening), the papers' generator redraws every image and scores far below returning the
input, while one that starts as the input keeps it; where the change is large (day→night), the
cycle and identity terms hold a generator that starts as the input there, and the papers'
generator wins.

``train.recon_huber=auto``: Huber's distance of width :data:`RESIDUAL_HUBER` for the cycle and
identity terms with a residual generator (the L1 distance's constant pull at zero otherwise
holds it exactly at its start), L1 (the paper's) without one.

The choice is made once, logged in one line with its numbers, and saved in the run's config and
checkpoints as plain values, so resume, fine-tuning and inference never choose again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from translate.config import RunConfig, auto_fields
from translate.errors import UserError

log = logging.getLogger("translate")

SUBTLE_DISTANCE = 1.0  # domain_distance under this: one collection is a subtle change of the other
RESIDUAL_HUBER = 0.05  # [-1, 1] units: the Huber width the residual generator trains with


def unresolved(cfg: RunConfig) -> list[str]:
    """The settings of ``cfg`` still set to ``auto`` (:func:`translate.config.auto_fields`)."""
    return auto_fields(cfg)


def resolve(cfg: RunConfig, dataset: Any, *, announce: bool = True) -> RunConfig:
    """``cfg`` with every ``auto`` setting chosen from the training ``dataset`` (one line logged
    for each choice made from the data, when ``announce``); unchanged when none is ``auto``.

    Raises:
        UserError: ``net.residual=auto`` on paired data (it compares two unpaired collections).
    """
    if cfg.net.residual == "auto":
        return with_residual(cfg, _choose_residual(dataset, announce))
    return with_residual(cfg, cfg.net.residual)


def with_residual(cfg: RunConfig, residual: bool) -> RunConfig:
    """``cfg`` with ``net.residual`` set to ``residual`` where it is ``auto``, and
    ``train.recon_huber`` where it is ``auto`` following the generator (:data:`RESIDUAL_HUBER`
    with a residual one, 0 = L1 without); settings given as values stay."""
    net = dataclasses.replace(cfg.net, residual=residual) if cfg.net.residual == "auto" else cfg.net
    train = cfg.train
    if train.recon_huber == "auto":
        train = dataclasses.replace(train, recon_huber=RESIDUAL_HUBER if net.residual else 0.0)
    return dataclasses.replace(cfg, net=net, train=train)


def _choose_residual(dataset: Any, announce: bool) -> bool:
    from translate.data.statistics import MIN_DOMAIN_IMAGES, dataset_statistics, domain_distance

    if not hasattr(dataset, "samples_b"):
        raise UserError("net.residual=auto compares two unpaired collections (trainA/trainB); for paired data set net.residual=true or false")
    stats = dataset_statistics(dataset)
    if stats is None:  # a residual generator needs the same channels in and out
        if announce:
            log.info("net.residual=auto: the two domains' images have different channels, so the generators are the papers' (net.residual=false)")
        return False
    distance = domain_distance(*stats)
    if distance is None:
        if announce:
            log.info(
                "net.residual=auto: a training collection has fewer than %d readable files (a video counts once), too few to tell "
                "a subtle change from a large one, so the generators are the papers' (net.residual=false)",
                MIN_DOMAIN_IMAGES,
            )
        return False
    subtle = distance < SUBTLE_DISTANCE
    if not announce:
        return subtle
    log.info(
        "net.residual=auto: the two training collections are %.2f spreads apart in colour and texture statistics (%s %.1f): %s",
        distance,
        "under" if subtle else "at least",
        SUBTLE_DISTANCE,
        "a subtle change, so the generators start as the identity (net.residual=true; set false for the papers' generator)"
        if subtle
        else "a large change, so the generators are the papers' (net.residual=false)",
    )
    return subtle

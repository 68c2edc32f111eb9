"""Translation quality: paired metrics (PSNR, SSIM, L1) and distribution metrics (FID, KID).

- :mod:`~translate.metrics.paired`: per-image PSNR / SSIM / L1 of (B, C, H, W) tensors in [0, 1].
- :mod:`~translate.metrics.inception`: the FID Inception-v3 and where its weights come from.
- :mod:`~translate.metrics.distribution`: features, FID and KID from features.
- :mod:`~translate.metrics.report`: folders in, :class:`EvalReport` out (``translate eval``).

Validation during training can call the tensor functions directly::

    from translate.metrics import psnr, ssim
    scores = psnr((fake_b + 1) / 2, (real_b + 1) / 2)     # (B,) in dB
"""

from __future__ import annotations

from translate.metrics.distribution import (
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    compute_features,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    mmd2_unbiased,
)
from translate.metrics.inception import (
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_URL,
    WEIGHTS_ENV,
    FIDInceptionV3,
    find_inception_weights,
    load_fid_inception,
    weights_cache_path,
)
from translate.metrics.paired import l1, mse, paired_scores, psnr, ssim
from translate.metrics.report import (
    EvalReport,
    distribution_metrics,
    evaluate_folders,
    evaluate_paired,
    evaluate_pairs,
    match_pairs,
)

__all__ = [
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_URL",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "WEIGHTS_ENV",
    "EvalReport",
    "FIDInceptionV3",
    "compute_features",
    "distribution_metrics",
    "evaluate_folders",
    "evaluate_paired",
    "evaluate_pairs",
    "feature_statistics",
    "fid_from_features",
    "find_inception_weights",
    "frechet_distance",
    "kid_from_features",
    "l1",
    "load_fid_inception",
    "match_pairs",
    "mmd2_unbiased",
    "mse",
    "paired_scores",
    "psnr",
    "ssim",
    "weights_cache_path",
]

"""Distribution metrics on Inception features: FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018).

Features come from :class:`~translate.metrics.inception.FIDInceptionV3` (2048-d pool
features); every image is resized to 299x299 on its own before batching, as the reference
implementation does, so folders may mix image sizes.

The linear algebra runs in float64 numpy. The matrix square root of FID uses a symmetric
eigen-decomposition instead of ``scipy.linalg.sqrtm`` (scipy is not a dependency):
``Tr sqrt(S1 S2) = Tr sqrt(sqrt(S1) S2 sqrt(S1))`` because the two products are similar, and
the right-hand one is symmetric positive semi-definite, so ``eigh`` is exact and stable even
for the rank-deficient covariances of fewer than 2048 images, where ``sqrtm`` can return
complex noise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from translate.errors import UserError
from translate.metrics.inception import FEATURE_DIM, INPUT_SIZE

logger = logging.getLogger("translate")

KID_SUBSET_SIZE = 1000  # Bińkowski et al. 2018 and torch-fidelity / clean-fid defaults
KID_SUBSETS = 100


def _check_features(features: np.ndarray, name: str, min_count: int = 2) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be (N, D) features, got shape {features.shape}")
    if features.shape[0] < min_count:
        raise UserError(f"{name}: {features.shape[0]} images are too few; FID/KID need at least {min_count}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return features


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, in float64 (covariance with N - 1)."""
    features = _check_features(features, "features")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    # rounding makes zero eigenvalues of a PSD matrix slightly negative
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``d² = |mu1 - mu2|² + Tr(sigma1) + Tr(sigma2) - 2 Tr(sqrt(sigma1 sigma2))``, computed in
    float64 with the symmetric form of the trace term (see the module docstring).

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) symmetric positive semi-definite covariances.

    Returns:
        The squared distance (what papers report as FID), >= 0.

    Raises:
        ValueError: Shapes do not agree.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: expected mu (D,) and sigma (D, D) for both, got {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    sqrt_sigma1 = _psd_sqrt((sigma1 + sigma1.T) / 2)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(value, 0.0)  # float64 rounding can give -1e-12 for identical statistics


def _fid_from_samples(x: np.ndarray, y: np.ndarray) -> float:
    """FID without forming the (D, D) covariances, for sets smaller than the feature size.

    With centred features ``A`` (n1, D) and ``B`` (n2, D), ``S1 = AᵀA / (n1-1)`` and
    ``S2 = BᵀB / (n2-1)``; the non-zero eigenvalues of ``S1 S2`` are those of ``M Mᵀ`` with
    ``M = A Bᵀ / sqrt((n1-1)(n2-1))``, so ``Tr sqrt(S1 S2)`` is the sum of the singular values
    of the small (n1, n2) matrix ``M``.
    """
    a, b = x - x.mean(axis=0), y - y.mean(axis=0)
    n1, n2 = len(x), len(y)
    trace_sqrt = np.linalg.svd(a @ b.T / np.sqrt((n1 - 1) * (n2 - 1)), compute_uv=False).sum()
    diff = x.mean(axis=0) - y.mean(axis=0)
    value = float(diff @ diff + np.sum(a * a) / (n1 - 1) + np.sum(b * b) / (n2 - 1) - 2 * trace_sqrt)
    return max(value, 0.0)


def fid_from_features(features_fake: np.ndarray, features_real: np.ndarray) -> float:
    """FID between two sets of Inception features.

    The Fréchet distance of Gaussians fitted to each set (mean, covariance with N - 1). When
    the sets are small compared with the feature size, the trace term is computed from the
    samples (an (N1, N2) SVD) instead of (D, D) eigen-decompositions: same value, far faster.

    Args:
        features_fake: (N1, D) features of the generated images, N1 >= 2.
        features_real: (N2, D) features of the real images, N2 >= 2.

    Returns:
        FID (>= 0; 0 for identical sets). Below D (2048) images per set the covariances are
        rank-deficient and FID is biased upward: compare only values computed from the same
        number of images.

    Raises:
        UserError: Fewer than 2 images in a set.
        ValueError: Not 2-D, different feature sizes, or non-finite values.
    """
    features_fake = _check_features(features_fake, "features_fake")
    features_real = _check_features(features_real, "features_real")
    if features_fake.shape[1] != features_real.shape[1]:
        raise ValueError(f"feature sizes differ: {features_fake.shape} vs {features_real.shape}")
    dims = features_fake.shape[1]
    small, large = sorted((len(features_fake), len(features_real)))
    if small < dims:
        logger.warning(
            "FID from %d images (fewer than the %d feature dimensions) is biased upward; compare it "
            "only with FIDs computed from the same number of images",
            small,
            dims,
        )
    if small * small * large < dims**3:  # cost of the sample SVD vs the (D, D) eigen-decompositions
        return _fid_from_samples(features_fake, features_real)
    return frechet_distance(*feature_statistics(features_fake), *feature_statistics(features_real))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² between (m, D) sets with the kernel ``k(a, b) = (a·b / D + 1)³``.

    The within-set sums leave out the diagonal (``k(a, a)``); the cross term keeps all m²
    pairs, as in the KID reference code (Bińkowski et al. 2018, ``mmd_est="unbiased"``).
    """
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"mmd2_unbiased: needs two sets of the same size >= 2, got {x.shape} and {y.shape}")
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid_from_features(
    features_fake: np.ndarray,
    features_real: np.ndarray,
    *,
    subset_size: int = KID_SUBSET_SIZE,
    n_subsets: int = KID_SUBSETS,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD² with a cubic polynomial kernel, averaged over random subsets.

    Each of ``n_subsets`` rounds draws ``subset_size`` images without replacement from each
    set and computes :func:`mmd2_unbiased`; the result is the mean and standard deviation of
    those estimates. Unlike FID it is unbiased, so it can be negative near 0.

    Args:
        features_fake: (N1, D) features of the generated images.
        features_real: (N2, D) features of the real images.
        subset_size: Images per subset (1000 in the literature); at most min(N1, N2).
        n_subsets: Number of subsets (100 in the literature).
        seed: Seed of the subset draws, so that a result can be reproduced.

    Returns:
        ``(mean, std)`` of the subset estimates.

    Raises:
        UserError: A set has fewer than ``subset_size`` images (the message suggests
            ``--kid-subset-size``).
        ValueError: ``subset_size < 2``, ``n_subsets < 1``, or bad feature arrays.
    """
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an integer >= 2, got {subset_size!r}")
    if not isinstance(n_subsets, int) or n_subsets < 1:
        raise ValueError(f"n_subsets must be an integer >= 1, got {n_subsets!r}")
    features_fake = _check_features(features_fake, "features_fake")
    features_real = _check_features(features_real, "features_real")
    if features_fake.shape[1] != features_real.shape[1]:
        raise ValueError(f"feature sizes differ: {features_fake.shape} vs {features_real.shape}")
    smallest = min(len(features_fake), len(features_real))
    if smallest < subset_size:
        raise UserError(
            f"KID subset size {subset_size} is larger than the {smallest} images available "
            f"({len(features_fake)} generated, {len(features_real)} real) — pass --kid-subset-size "
            f"{smallest} or less (values from different subset sizes are not comparable)"
        )
    rng = np.random.default_rng(seed)
    estimates = np.array(
        [
            mmd2_unbiased(
                features_fake[rng.choice(len(features_fake), subset_size, replace=False)],
                features_real[rng.choice(len(features_real), subset_size, replace=False)],
            )
            for _ in range(n_subsets)
        ]
    )
    return float(estimates.mean()), float(estimates.std())


def _load_for_inception(path: Path) -> torch.Tensor:
    from translate.data.io import read_image

    image = torch.from_numpy(read_image(path, 3)).permute(2, 0, 1)[None]
    if tuple(image.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        # the reference resizes each image in the network; doing it per image here lets
        # images of different sizes share a batch with the same result
        image = F.interpolate(image, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return image[0]


@torch.inference_mode()
def compute_features(
    paths: Sequence[str | Path],
    model: nn.Module,
    *,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Inception features of image files.

    Each file is read with :func:`translate.data.io.read_image` as RGB in [0, 1] (gray is
    repeated, alpha dropped) and resized to 299x299 bilinearly before batching.

    Args:
        paths: Image files.
        model: A feature network mapping (B, 3, H, W) in [0, 1] to (B, D), normally
            :func:`~translate.metrics.inception.load_fid_inception`'s.
        batch_size: Images per forward pass.
        device: Where to run; defaults to the model's device.

    Returns:
        (N, D) float64 features, in the order of ``paths``.

    Raises:
        ImageReadError: A file cannot be read (a UserError naming it).
        ValueError: ``batch_size < 1`` or no paths.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if len(paths) == 0:
        raise ValueError("compute_features: no image paths given")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    model.eval()
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([_load_for_inception(Path(p)) for p in paths[start : start + batch_size]])
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        chunks.append(model(batch).double().cpu().numpy())
    features = np.concatenate(chunks)
    if features.shape[1] != FEATURE_DIM:
        logger.debug("feature network returns %d-d features (FID standard is %d)", features.shape[1], FEATURE_DIM)
    return features

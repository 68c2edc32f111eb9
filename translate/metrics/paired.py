"""Paired (full-reference) metrics: PSNR, SSIM and L1 between a prediction and its target.

All functions take images in [0, 1] as (B, C, H, W) tensors and return one value per image,
shape (B,); take ``.mean()`` for the dataset figure. Values are computed in float32 at least
(float64 inputs stay float64), whatever the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from translate.losses import SSIM_WINDOW  # one window for the metric and pix2pix's SSIM loss

# Inputs may overshoot [0, 1] by float rounding after a conversion; more than this is a
# caller passing [-1, 1] tensors (the toolkit's network range), which would skew every number.
_RANGE_TOLERANCE = 1e-3


def _check_pair(pred: Tensor, target: Tensor, name: str, min_side: int = 1) -> tuple[Tensor, Tensor]:
    for label, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{name}: {label} must be (B, C, H, W), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name}: {label} must be a float tensor in [0, 1], got dtype {t.dtype}")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if min(pred.shape[-2:]) < min_side:
        raise ValueError(f"{name}: images of {pred.shape[-2]}x{pred.shape[-1]} are smaller than {min_side}x{min_side}")
    if pred.numel() == 0:
        raise ValueError(f"{name}: empty batch of shape {tuple(pred.shape)}")
    for label, t in (("pred", pred), ("target", target)):
        low, high = float(t.min()), float(t.max())
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(f"{name}: {label} values span [{low:.3g}, {high:.3g}], expected [0, 1] (convert network outputs with (x + 1) / 2)")
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return pred.to(dtype), target.to(dtype)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error of each image.

    Args:
        pred: (B, C, H, W) float in [0, 1].
        target: (B, C, H, W) float in [0, 1], same shape.

    Returns:
        (B,) mean |pred - target| over channels and pixels, in [0, 1]; 0 for identical images.

    Raises:
        ValueError: Shapes differ or are not 4-D, or values are outside [0, 1].
    """
    pred, target = _check_pair(pred, target, "l1")
    return (pred - target).abs().flatten(1).mean(1)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of each image: (B,) for (B, C, H, W) inputs in [0, 1]."""
    pred, target = _check_pair(pred, target, "mse")
    return (pred - target).square().flatten(1).mean(1)


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio of each image, in dB, with a peak value of 1.

    ``PSNR = 10 * log10(1 / MSE)`` with the MSE over channels and pixels of one image (the
    per-image PSNR that papers then average). Identical images give ``inf``.

    Args:
        pred: (B, C, H, W) float in [0, 1].
        target: (B, C, H, W) float in [0, 1], same shape.

    Returns:
        (B,) PSNR in dB; ``inf`` where pred equals target exactly.

    Raises:
        ValueError: Shapes differ or are not 4-D, or values are outside [0, 1].
    """
    error = mse(pred, target)
    # 10 * log10(1 / 0) is +inf with a divide warning in numpy; torch gives inf quietly.
    return -10.0 * torch.log10(error)


def ssim(pred: Tensor, target: Tensor, window_size: int = SSIM_WINDOW) -> Tensor:
    """Structural similarity of each image (Wang et al. 2004), averaged over channels.

    Gaussian window of ``window_size`` (default 11) with sigma 1.5, constants
    ``K1 = 0.01, K2 = 0.03`` for a data range of 1, and only the window positions that lie
    fully inside the image ("valid"), as in the reference MATLAB code and
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``.

    Args:
        pred: (B, C, H, W) float in [0, 1]; H and W at least ``window_size``.
        target: (B, C, H, W) float in [0, 1], same shape.
        window_size: Odd side of the Gaussian window.

    Returns:
        (B,) mean SSIM in [-1, 1]; 1 for identical images.

    Raises:
        ValueError: Shapes differ or are not 4-D, images are smaller than the window,
            values are outside [0, 1], or ``window_size`` is not a positive odd integer.
    """
    import kornia

    if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"ssim: window_size must be a positive odd integer, got {window_size!r}")
    pred, target = _check_pair(pred, target, "ssim", min_side=window_size)
    ssim_map = kornia.metrics.ssim(pred, target, window_size, max_val=1.0, padding="valid")
    return ssim_map.flatten(1).mean(1)


PAIRED_METRICS = {"psnr": psnr, "ssim": ssim, "l1": l1}


def paired_scores(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """PSNR, SSIM and L1 of each image: ``{"psnr": (B,), "ssim": (B,), "l1": (B,)}``.

    Args:
        pred: (B, C, H, W) float in [0, 1].
        target: (B, C, H, W) float in [0, 1], same shape; H, W >= 11 for SSIM.
    """
    return {name: fn(pred, target) for name, fn in PAIRED_METRICS.items()}

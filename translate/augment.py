"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

With few training images the discriminator memorises them. DiffAugment applies the same
random, differentiable transformations to the real and the generated images every time
they are shown to the discriminator (both in its own update and in the generator's), so
the generator still receives gradients through the augmentation::

    logits_real = disc_b(diff_augment(real_b))
    logits_fake = disc_b(diff_augment(fake_b))

Each call draws new parameters per image; real and fake batches need not share them.
Policies (names as in the paper's code):

- ``color``: brightness shift in [-0.5, 0.5), saturation scale in [0, 2), contrast scale in
  [0.5, 1.5) (for images in [-1, 1]);
- ``translation``: integer shift of up to 1/8 of each side, zero fill;
- ``cutout``: a zeroed square of half each side, centred anywhere in the image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from translate.config import DIFFAUGMENT_POLICY as DEFAULT_POLICY

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, 1, 1, 1) uniform [0, 1) numbers on ``x``'s device, drawn from ``generator``."""
    device = generator.device if generator is not None else x.device
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=device, dtype=torch.float32).to(x.device, x.dtype)


def _randint(low: int, high: int, count: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """(count,) integers in [low, high) on ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(low, high, (count,), generator=generator, device=gen_device).to(device)


def _color(x: Tensor, generator: torch.Generator | None) -> Tensor:
    x = x + (_uniform(x, generator) - 0.5)
    channel_mean = x.mean(dim=1, keepdim=True)
    x = (x - channel_mean) * (_uniform(x, generator) * 2) + channel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * (_uniform(x, generator) + 0.5) + image_mean


def _translation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    b, _, h, w = x.shape
    max_dy, max_dx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = _randint(-max_dy, max_dy + 1, b, generator, x.device)
    dx = _randint(-max_dx, max_dx + 1, b, generator, x.device)
    # Output pixel (i, j) reads input pixel (i + dy, j + dx); reads outside the image land on
    # the one-pixel zero border of the padded copy. Indexing keeps the gradient exact.
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None] + 1).clamp(0, h + 1)  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None] + 1).clamp(0, w + 1)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indexing on dims 0, 2, 3 puts the indexed dims first: (B, H, W, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: Tensor, generator: torch.Generator | None) -> Tensor:
    b, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # centres as in the paper's code: an even-sized square may start at the last row too
    top = _randint(0, h + (1 - size_h % 2), b, generator, x.device) - size_h // 2
    left = _randint(0, w + (1 - size_w % 2), b, generator, x.device) - size_w // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


POLICIES: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation"`` -> ``["color", "translation"]``; ``""`` -> ``[]`` (no augmentation).

    Raises:
        ValueError: Not a string, an unknown or repeated name, or an empty item (``"color,,cutout"``).
    """
    if not isinstance(policy, str):
        raise ValueError(f"policy must be a comma-separated string, got {policy!r}")
    if not policy.strip():
        return []
    names = [name.strip() for name in policy.split(",")]
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"DiffAugment policy {policy!r}: unknown item {name!r}; choose from {', '.join(POLICIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"DiffAugment policy {policy!r}: an item is repeated")
    return names


def diff_augment(x: Tensor, policy: str = DEFAULT_POLICY, generator: torch.Generator | None = None) -> Tensor:
    """Apply DiffAugment to a batch, differentiably.

    Args:
        x: (B, C, H, W) float images, normally in [-1, 1] (the color ranges assume it).
        policy: Comma-separated transformations, applied in the order given: any of
            ``color``, ``translation``, ``cutout``; ``""`` returns ``x`` unchanged.
        generator: Source of the random parameters; with a seeded generator the result is
            reproducible. It may live on the CPU while ``x`` is on a GPU. ``None`` uses
            torch's global generator of ``x``'s device.

    Returns:
        (B, C, H, W) augmented images, same dtype and device; gradients flow to ``x``.

    Raises:
        ValueError: ``x`` is not a 4-D float tensor, or the policy is malformed.
    """
    names = parse_policy(policy)
    if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"diff_augment expects a (B, C, H, W) float tensor, got {shape}")
    for name in names:
        x = POLICIES[name](x, generator)
    return x.contiguous()


class DiffAugment(nn.Module):
    """Module form of :func:`diff_augment`; the policy is checked once, at construction.

    Args:
        policy: As in :func:`diff_augment`.
        generator: Optional generator used for every call.
    """

    def __init__(self, policy: str = DEFAULT_POLICY, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.names = parse_policy(policy)
        self.policy = ",".join(self.names)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W) augmented (in training and eval mode alike)."""
        return diff_augment(x, self.policy, self.generator)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

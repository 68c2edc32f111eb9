"""Heads that training attaches to a generator's features (not used at inference).

:class:`PatchMLP` is CUT's projection head (Park et al. 2020, ``PatchSampleF``): for each
feature layer PatchNCE compares, a two-layer MLP maps the features at sampled locations to an
L2-normalised embedding. It is trained with the generator and saved in the run's checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812


class PatchMLP(nn.Module):
    """One ``Linear(C_l, width) -> ReLU -> Linear(width, width)`` per feature layer.

    Args:
        in_channels: channels of each feature layer, in order.
        width: the embedding size (256 in the paper).

    Forward: ``features`` (one ``(B, C_l, H_l, W_l)`` per layer) and ``locations`` (one
    ``(P_l,)`` long tensor of flat ``y * W_l + x`` indices per layer, the same for every image)
    → one ``(B * P_l, width)`` L2-normalised embedding per layer, image-major.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        if not in_channels or min(in_channels) < 1 or width < 1:
            raise ValueError(f"PatchMLP: needs feature channels >= 1 and width >= 1, got {list(in_channels)} and {width!r}")
        self.in_channels, self.width = list(in_channels), width
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width)) for c in in_channels)

    def forward(self, features: Sequence[Tensor], locations: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.mlps) or len(locations) != len(self.mlps):
            raise ValueError(f"PatchMLP: expected {len(self.mlps)} feature layers and locations, got {len(features)} and {len(locations)}")
        out = []
        for feature, where, mlp in zip(features, locations, self.mlps, strict=True):
            if feature.ndim != 4 or feature.shape[1] != mlp[0].in_features:
                raise ValueError(f"PatchMLP: expected (B, {mlp[0].in_features}, H, W) features, got {tuple(feature.shape)}")
            rows = feature.flatten(2).transpose(1, 2)  # (B, H*W, C)
            picked = rows[:, where.to(feature.device)].flatten(0, 1)  # (B*P, C), image-major
            out.append(F.normalize(mlp(picked.to(mlp[0].weight.dtype)), dim=1))
        return out


def sample_locations(features: Sequence[Tensor], count: int, generator: torch.Generator | None = None) -> list[Tensor]:
    """For each feature map, ``min(count, H*W)`` distinct random flat locations (``(P,)`` long, on the CPU)."""
    return [torch.randperm(f.shape[2] * f.shape[3], generator=generator)[: min(count, f.shape[2] * f.shape[3])] for f in features]

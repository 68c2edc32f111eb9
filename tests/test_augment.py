"""DiffAugment: shapes, gradients, reproducibility, each policy's effect, policy parsing."""

from __future__ import annotations

import pytest
import torch

from translate.augment import DiffAugment, diff_augment, parse_policy
from translate.nets.discriminators import PatchDiscriminator


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout", "cutout,color"])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 1, 24, 40), (1, 3, 33, 17)])
def test_shape_dtype_and_finite_values_are_kept(policy: str, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape) * 2 - 1
    y = diff_augment(x, policy, seeded())
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)


def test_gradients_flow_through_every_policy_to_the_input_and_a_discriminator() -> None:
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    disc = PatchDiscriminator(3, base_channels=4)
    disc(diff_augment(fake, generator=seeded())).mean().backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    assert (fake.grad != 0).float().mean() > 0.2  # cutout zeroes some gradient, not most
    for p in disc.parameters():
        assert p.grad is not None


def test_seeded_generator_reproduces_and_different_seeds_differ() -> None:
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(diff_augment(x, generator=seeded(7)), diff_augment(x, generator=seeded(7)))
    assert not torch.equal(diff_augment(x, generator=seeded(7)), diff_augment(x, generator=seeded(8)))
    module = DiffAugment("translation,cutout", generator=seeded(3))
    assert torch.equal(module(x), diff_augment(x, "translation,cutout", seeded(3)))


def test_translation_shifts_by_at_most_an_eighth_and_fills_with_zero() -> None:
    x = torch.arange(1, 1 + 32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(16, 1, 1, 1)
    y = diff_augment(x, "translation", seeded(1))
    for image in y[:, 0]:
        nonzero = image[image != 0]
        # the kept values are a shifted window of the original: consecutive rows differ by 32
        rows = (image != 0).any(dim=1).sum().item()
        cols = (image != 0).any(dim=0).sum().item()
        assert 32 - 4 <= rows <= 32 and 32 - 4 <= cols <= 32
        assert nonzero.numel() == rows * cols
    assert any((y[i] == 0).any() for i in range(16))  # some image was shifted


def test_cutout_zeroes_a_square_of_half_the_side() -> None:
    x = torch.ones(32, 1, 16, 16)
    y = diff_augment(x, "cutout", seeded(2))
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    zeroed = (y == 0).flatten(1).sum(1)
    assert zeroed.max() == 8 * 8 and (zeroed > 0).all()  # a full square somewhere, clipped at borders


def test_color_changes_values_not_geometry() -> None:
    x = torch.zeros(8, 3, 8, 8)
    x[:, :, :4] = 0.5  # top half brighter
    y = diff_augment(x, "color", seeded(4))
    assert (y[:, :, :4].mean(dim=(1, 2, 3)) > y[:, :, 4:].mean(dim=(1, 2, 3))).all()
    assert not torch.allclose(y, x)


def test_empty_policy_is_identity() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(diff_augment(x, ""), x)
    assert parse_policy(" color , cutout ") == ["color", "cutout"]


@pytest.mark.parametrize(
    ("policy", "match"),
    [("colour", "unknown item 'colour'"), ("color,,cutout", "unknown item ''"), ("color,color", "repeated"), (None, "comma-separated")],
)
def test_bad_policies_raise_value_error(policy, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        diff_augment(torch.rand(1, 3, 8, 8), policy)
    with pytest.raises(ValueError, match=match):
        DiffAugment(policy)


def test_bad_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) float"):
        diff_augment(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) float"):
        diff_augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))

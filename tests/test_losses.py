"""Losses: values worked by hand, gradient penalty behaviour, dtype safety."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from translate.losses import GANLoss, cycle_loss, gan_loss, gradient_penalty, identity_loss, l1_loss, ssim_loss
from translate.metrics.paired import ssim
from translate.nets.discriminators import PatchDiscriminator

PRED = torch.tensor([0.5, -1.0, 2.0])


@pytest.mark.parametrize(
    ("mode", "target_is_real", "for_discriminator", "expected"),
    [
        ("lsgan", True, True, (0.5**2 + 2.0**2 + 1.0**2) / 3),
        ("lsgan", False, True, (0.5**2 + 1.0**2 + 2.0**2) / 3),
        ("lsgan", True, False, (0.5**2 + 2.0**2 + 1.0**2) / 3),  # no D/G difference
        # BCE with logits: -log(sigmoid(p)) = log(1 + e^-p) for real, log(1 + e^p) for fake.
        ("vanilla", True, True, (math.log1p(math.exp(-0.5)) + math.log1p(math.e) + math.log1p(math.exp(-2))) / 3),
        ("vanilla", False, True, (math.log1p(math.exp(0.5)) + math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 3),
        ("hinge", True, True, (0.5 + 2.0 + 0.0) / 3),  # relu(1 - p)
        ("hinge", False, True, (1.5 + 0.0 + 3.0) / 3),  # relu(1 + p)
        ("hinge", True, False, -0.5),  # generator: -mean(p)
        ("wgangp", True, True, -0.5),
        ("wgangp", False, True, 0.5),
        ("wgangp", True, False, -0.5),
    ],
)
def test_gan_loss_by_hand(mode: str, target_is_real: bool, for_discriminator: bool, expected: float) -> None:
    loss = gan_loss(PRED, target_is_real, mode, for_discriminator=for_discriminator)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    module = GANLoss(mode)(PRED, target_is_real, for_discriminator=for_discriminator)
    assert module.item() == loss.item()


def test_lsgan_example_from_the_brief() -> None:
    assert gan_loss(torch.tensor([0.5, -1.0]), True, "lsgan").item() == pytest.approx((0.5**2 + 2**2) / 2)


@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "hinge", "wgangp"])
def test_gan_loss_low_precision_input_and_gradient(mode: str) -> None:
    pred = torch.randn(2, 1, 6, 6).bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = gan_loss(pred, False, mode)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(gan_loss(pred.detach().float(), False, mode).item(), rel=1e-6)
    loss.backward()
    assert pred.grad is not None and pred.grad.dtype == torch.bfloat16
    assert pred.grad.float().abs().sum() > 0


def test_unknown_modes_raise() -> None:
    with pytest.raises(ValueError, match="'wgan'"):
        gan_loss(PRED, True, "wgan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'bce'"):
        GANLoss("bce")  # type: ignore[arg-type]
    assert "lsgan" in repr(GANLoss("lsgan"))


class LinearCritic(nn.Module):
    """disc(x) = <w, x> per sample: its input gradient is w everywhere."""

    def __init__(self, shape: tuple[int, ...], norm: float) -> None:
        super().__init__()
        weight = torch.randn(shape)
        self.weight = nn.Parameter(weight * norm / weight.norm())

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.weight).flatten(1).sum(dim=1)


@pytest.mark.parametrize("kind", ["mixed", "real", "fake"])
def test_gradient_penalty_of_linear_critics(kind: str) -> None:
    torch.manual_seed(0)
    real, fake = torch.rand(4, 3, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    unit = LinearCritic((3, 8, 8), norm=1.0)
    assert gradient_penalty(unit, real, fake, kind=kind).item() < 1e-10
    steep = LinearCritic((3, 8, 8), norm=3.0)
    penalty = gradient_penalty(steep, real, fake, kind=kind)
    assert penalty.item() == pytest.approx((3.0 - 1.0) ** 2, rel=1e-5)
    # d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|: the penalty trains the critic.
    penalty.backward()
    torch.testing.assert_close(steep.weight.grad, 2 * 2.0 * steep.weight.detach() / 3.0)
    assert gradient_penalty(steep, real, fake, kind=kind, constant=3.0).item() < 1e-10


def test_gradient_penalty_trains_a_patchgan_and_is_reproducible() -> None:
    torch.manual_seed(0)
    critic = PatchDiscriminator(3, base_channels=4, norm="none")
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    first = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    again = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    other = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(8))
    assert first.item() > 0 and math.isfinite(first.item())
    assert first.item() == again.item()
    assert first.item() != other.item()
    first.backward()
    for name, param in critic.named_parameters():
        if param.dim() > 1:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert fake.grad is None  # a discriminator loss: nothing flows to the generator


def test_gradient_penalty_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    critic = PatchDiscriminator(3, base_channels=4)
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty = gradient_penalty(critic, real, fake)
    assert penalty.dtype == torch.float32 and math.isfinite(penalty.item())
    penalty.backward()
    weights = [p for p in critic.parameters() if p.dim() > 1]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)


def test_gradient_penalty_bad_arguments() -> None:
    critic = LinearCritic((3, 4, 4), norm=1.0)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\) vs \(1, 3, 4, 4\)"):
        gradient_penalty(critic, torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="'both'"):
        batch = torch.zeros(2, 3, 4, 4)
        gradient_penalty(critic, batch, batch, kind="both")  # type: ignore[arg-type]


@pytest.mark.parametrize("fn", [cycle_loss, identity_loss, l1_loss])
def test_l1_terms(fn) -> None:
    a = torch.tensor([[0.5, -1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.0, 1.0], [1.0, -0.5]]).view(1, 1, 2, 2)
    assert fn(a, b).item() == pytest.approx((0.5 + 2.0 + 0.0 + 0.5) / 4)
    low = fn(a.bfloat16(), b.bfloat16())
    assert low.dtype == torch.float32 and low.item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\) vs \(1, 1, 4\)"):
        fn(a, b.view(1, 1, 4))


@pytest.mark.parametrize("fn", [cycle_loss, identity_loss])
def test_huber_reconstruction_by_hand_and_its_gradient_fades_at_the_identity(fn) -> None:
    a = torch.tensor([[0.5, -1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.0, 1.0], [1.0, -0.05]]).view(1, 1, 2, 2)
    # errors 0.5, 2 (above 0.1: |d| - 0.05), 0 and 0.05 (below: d**2 / 0.2)
    assert fn(a, b, huber=0.1).item() == pytest.approx((0.45 + 1.95 + 0.0 + 0.0125) / 4)
    assert fn(a, b, huber=0.0).item() == fn(a, b).item()  # 0 is the paper's L1
    # the reason for it: near the identity L1 pulls back with a constant force, Huber's fades
    real = torch.zeros(1, 3, 8, 8)
    for size in (1e-2, 1e-4):
        out = torch.full_like(real, size, requires_grad=True)
        (l1_grad,) = torch.autograd.grad(fn(out, real), out)
        (huber_grad,) = torch.autograd.grad(fn(out, real, huber=0.05), out)
        assert l1_grad.abs().max().item() == pytest.approx(1 / real.numel())
        assert huber_grad.abs().max().item() == pytest.approx(size / 0.05 / real.numel())
    with pytest.raises(ValueError, match="huber must be >= 0"):
        fn(a, b, huber=-0.1)


def test_ssim_loss_is_one_minus_the_metric_on_real_photos(photo) -> None:
    real = photo(48, 48, "astronaut")
    fake = photo(48, 48, "chelsea").requires_grad_()
    loss = ssim_loss(fake, real)
    expected = 1.0 - ssim((fake.detach() + 1) / 2, (real + 1) / 2).mean()  # the metric takes [0, 1] images
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5) and 0.0 < loss.item() < 2.0
    assert ssim_loss(real, real).item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    # a flat image near the target's mean beats one with invented texture of the same mean:
    # what the loss adds to L1, which scores both alike
    flat = torch.full_like(real, real.mean().item())
    noisy = flat + 0.25 * torch.sign(torch.randn(real.shape, generator=torch.Generator().manual_seed(0)))
    assert l1_loss(noisy, real).item() > 0.5 * l1_loss(flat, real).item()
    assert ssim_loss(flat, real) < ssim_loss(noisy, real)
    low = ssim_loss(fake.detach().bfloat16(), real.bfloat16())
    assert low.dtype == torch.float32 and low.item() == pytest.approx(loss.item(), abs=0.02)


def test_ssim_loss_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"shapes differ: \(1, 3, 16, 16\) vs \(1, 3, 16, 15\)"):
        ssim_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) images, got shape \(3, 16, 16\)"):
        ssim_loss(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))
    # tiny images: the window shrinks to fit (7 of 8 pixels), no error
    small = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert ssim_loss(small, small).item() == pytest.approx(0.0, abs=1e-5) and ssim_loss(small, -small).item() > 0.5


# ------------------------------------------------------------------------------------------
# temporal loss


def test_warp_tensor_matches_the_numpy_warp_and_shifts_by_the_flow() -> None:
    from translate.data.flow import warp
    from translate.losses import warp_tensor

    rng = np.random.default_rng(0)
    image = rng.random((12, 16, 3), dtype=np.float32)
    flow = rng.uniform(-2, 2, (12, 16, 2)).astype(np.float32)
    ours = warp_tensor(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(flow).permute(2, 0, 1)[None])
    np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), warp(image, flow), atol=1e-4)
    shift = torch.zeros(1, 2, 12, 16)
    shift[:, 0] = 1.0  # each pixel takes the value one pixel to its right
    x = torch.arange(16.0).expand(1, 1, 12, 16)
    torch.testing.assert_close(warp_tensor(x, shift)[..., :-1], x[..., 1:], atol=1e-5, rtol=0)


def test_temporal_loss_is_zero_along_the_motion_and_counts_reliable_pixels_only() -> None:
    from translate.losses import temporal_loss

    torch.manual_seed(0)
    frame = torch.rand(2, 3, 8, 10)
    following = torch.roll(frame, shifts=-1, dims=-1)  # content moves one pixel left
    flow = torch.zeros(2, 2, 8, 10)
    flow[:, 0] = 1.0  # from t+1 back to t: one pixel to the right
    mask = torch.ones(2, 1, 8, 10)
    mask[..., -1] = 0  # the column that wrapped around
    assert temporal_loss(frame, following, flow, mask).item() == pytest.approx(0.0, abs=1e-6)
    # by hand: a constant difference of 0.5 on the reliable pixels only
    assert temporal_loss(frame, following + 0.5 * mask, flow, mask).item() == pytest.approx(0.5, abs=1e-6)
    assert temporal_loss(frame, following + 1.0, flow, torch.zeros_like(mask)).item() == 0.0  # images: nothing
    with pytest.raises(ValueError, match="temporal_loss: shapes differ"):
        temporal_loss(frame, following[:, :1], flow, mask)

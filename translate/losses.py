"""Losses of CycleGAN and pix2pix: adversarial (four GAN modes), gradient penalty, L1 terms, SSIM.

Plain functions; objectives weight and sum them. Each casts its inputs to float32 first so it
is safe under bf16/fp16 autocast (the networks may run in low precision; reductions don't).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from translate.config import GanMode

PenaltyKind = Literal["mixed", "real", "fake"]


def gan_loss(
    prediction: Tensor,
    target_is_real: bool,
    mode: GanMode,
    *,
    for_discriminator: bool = True,
) -> Tensor:
    """Adversarial loss of discriminator logits against "real" or "fake".

    Modes (``p`` = prediction, mean over every element):

    - ``lsgan`` (Mao et al. 2017, CycleGAN's default): ``mean((p - t)**2)``, ``t`` = 1 real / 0 fake.
    - ``vanilla`` (Goodfellow et al. 2014, pix2pix's): binary cross-entropy with logits to 1 / 0.
    - ``hinge`` (Lim & Ye 2017): discriminator ``mean(relu(1 - p))`` real, ``mean(relu(1 + p))``
      fake; generator (``for_discriminator=False``) ``-mean(p)`` for real (and ``mean(p)`` for
      fake, the symmetric case).
    - ``wgangp`` (Gulrajani et al. 2017): ``-mean(p)`` real, ``mean(p)`` fake, for both players;
      add :func:`gradient_penalty` to the discriminator's loss.

    The generator calls it with ``target_is_real=True`` on its fakes' predictions.

    Args:
        prediction: discriminator logits, any shape, e.g. ``(B, 1, H', W')``; any float dtype.
        target_is_real: whether the prediction should say "real".
        mode: the GAN objective.
        for_discriminator: whose loss it is (matters for ``hinge`` only).

    Returns:
        A float32 scalar.
    """
    if not isinstance(prediction, Tensor):
        raise ValueError(f"gan_loss: prediction must be a tensor, got {type(prediction).__name__}")
    pred = prediction.float()
    if mode == "lsgan":
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "hinge":
        if for_discriminator:
            return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()
        return -pred.mean() if target_is_real else pred.mean()
    if mode == "wgangp":
        return -pred.mean() if target_is_real else pred.mean()
    raise ValueError(f"gan_loss: mode must be one of {', '.join(get_args(GanMode))}, got {mode!r}")


def gradient_penalty(
    disc: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    kind: PenaltyKind = "mixed",
    constant: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty ``mean((||grad_x disc(x)||_2 - constant)**2)`` (Gulrajani et al. 2017).

    Unweighted: the caller multiplies by ``lambda_gp``. The graph is kept (``create_graph``) so
    backpropagating the penalty trains ``disc``. ``real`` and ``fake`` are detached: the penalty
    is a discriminator loss only. For a PatchGAN the gradient is that of the sum of its patch
    logits, as the reference. Avoid batch norm in ``disc``: it couples the samples whose
    gradients are penalised one by one.

    Args:
        disc: the critic, ``(B, C, H, W) -> (B, …)`` logits.
        real: real images ``(B, C, H, W)`` in [-1, 1] (any rank >= 1 works: ``(B, …)``).
        fake: generated images, same shape as ``real``.
        kind: where to evaluate the gradient: ``mixed`` (random points on the lines between
            real and fake samples, the paper), ``real`` or ``fake``.
        constant: the target gradient norm.
        generator: the random source for the interpolation weights (one per sample), for
            reproducibility; it may live on another device than ``real``.

    Returns:
        A float32 scalar.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake shapes differ: {tuple(real.shape)} vs {tuple(fake.shape)}")
    if real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(f"gradient_penalty: expected a non-empty batch (B, …), got {tuple(real.shape)}")
    real = real.detach().float()
    fake = fake.detach().float()
    if kind == "mixed":
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        device = generator.device if generator is not None else real.device
        eps = torch.rand(shape, generator=generator, device=device).to(real.device)
        points = eps * real + (1.0 - eps) * fake
    elif kind == "real":
        points = real.clone()
    elif kind == "fake":
        points = fake.clone()
    else:
        kinds = ", ".join(get_args(PenaltyKind))
        raise ValueError(f"gradient_penalty: kind must be one of {kinds}, got {kind!r}")
    points.requires_grad_(True)
    out = disc(points)
    (grad,) = torch.autograd.grad(
        outputs=out,
        inputs=points,
        grad_outputs=torch.ones_like(out),
        create_graph=True,
    )
    grad = grad.float().flatten(1)
    # Tiny epsilon inside the sqrt: the norm's derivative is undefined at a zero gradient.
    norm = torch.sqrt(grad.pow(2).sum(dim=1) + 1e-12)
    return (norm - constant).pow(2).mean()


def _distance(a: Tensor, b: Tensor, name: str, huber: float = 0.0) -> Tensor:
    """``mean|a - b|`` in float32, or Huber's distance with that width when ``huber > 0``."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not huber >= 0:  # also NaN
        raise ValueError(f"{name}: huber must be >= 0, got {huber!r}")
    if huber == 0:
        return F.l1_loss(a.float(), b.float())
    return F.smooth_l1_loss(a.float(), b.float(), beta=huber)


def cycle_loss(rec: Tensor, real: Tensor, huber: float = 0.0) -> Tensor:
    """Cycle-consistency ``mean|rec - real|`` (CycleGAN eq. 2): ``rec_a = gen_ba(gen_ab(real_a))``.

    With ``huber > 0`` the distance is Huber's (``smooth_l1_loss``): ``d**2 / (2 huber)`` below
    ``huber``, ``|d| - huber / 2`` above, so the same as L1 for large errors. L1's gradient has
    the same size however small the error, ``weight / pixels`` for each pixel; a generator that
    starts as the identity (``net.residual``) then sits in a well that the adversarial gradient,
    several times smaller there, cannot leave (measured: docs/ADVERSARIAL_PROBE.md). Huber's gradient
    fades to 0 at the identity.

    Args:
        rec: reconstructed images ``(B, C, H, W)`` in [-1, 1].
        real: the originals, same shape.
        huber: width of the quadratic zone, in the images' [-1, 1] units; 0 = L1 (the paper's).
    """
    return _distance(rec, real, "cycle_loss", huber)


def identity_loss(idt: Tensor, real: Tensor, huber: float = 0.0) -> Tensor:
    """Identity ``mean|idt - real|`` with ``idt = gen_ab(real_b)`` (CycleGAN section 5.2).

    Args:
        idt: a generator's output on an image of its target domain, ``(B, C, H, W)`` in [-1, 1].
        real: that image, same shape.
        huber: as :func:`cycle_loss`'s; 0 = L1 (the paper's).
    """
    return _distance(idt, real, "identity_loss", huber)


def warp_tensor(image: Tensor, flow: Tensor) -> Tensor:
    """``image`` sampled at each pixel plus ``flow`` (bilinear, borders replicated), differentiably.

    The torch twin of :func:`translate.data.flow.warp`: with ``flow`` from frame t+1 back to
    frame t, an image of frame t comes out aligned with frame t+1.

    Args:
        image: ``(B, C, H, W)``.
        flow: ``(B, 2, H, W)`` in pixels (x, y), the same H and W.
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or image.shape[-2:] != flow.shape[-2:] or image.shape[0] != flow.shape[0]:
        raise ValueError(f"warp_tensor: expected image (B, C, H, W) and flow (B, 2, H, W), got {tuple(image.shape)} and {tuple(flow.shape)}")
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=flow.device), torch.arange(width, device=flow.device), indexing="ij")
    x = (xs + flow[:, 0].float()) * (2 / max(width - 1, 1)) - 1  # align_corners=True: pixel centres at -1 .. 1
    y = (ys + flow[:, 1].float()) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True).to(image.dtype)


def temporal_loss(fake: Tensor, fake_next: Tensor, flow: Tensor, mask: Tensor) -> Tensor:
    """Short-term temporal consistency (as Lai et al. 2018 and ReCoNet, 2018): the translation
    of frame t+1 should equal the translation of frame t carried along the source's motion,
    ``sum(mask * |fake_next - warp(fake, flow)|) / (C * sum(mask))``, where the flow is reliable.

    Args:
        fake: translations of frame t, ``(B, C, H, W)`` in [-1, 1].
        fake_next: translations of frame t+1, same shape.
        flow: ``(B, 2, H, W)``, pixels, from frame t+1 back to frame t (of the source frames).
        mask: ``(B, 1, H, W)``, 1 where the flow is reliable, 0 elsewhere (images: all 0).

    Returns:
        A scalar; 0 when no pixel is reliable.
    """
    if fake.shape != fake_next.shape or mask.shape[0] != fake.shape[0] or mask.shape[-2:] != fake.shape[-2:]:
        raise ValueError(f"temporal_loss: shapes differ: {tuple(fake.shape)}, {tuple(fake_next.shape)}, mask {tuple(mask.shape)}")
    diff = (fake_next.float() - warp_tensor(fake, flow).float()).abs() * mask.float()
    return diff.sum() / (mask.float().sum() * fake.shape[1]).clamp_min(1.0)


def patch_nce_loss(query: Tensor, key: Tensor, *, images: int, temperature: float = 0.07) -> Tensor:
    """PatchNCE (Park et al. 2020, CUT eq. 2-3): each query patch must pick out the key patch at
    its own location among the other locations of the same image.

    For patch ``i`` of an image, the logits are ``q_i . k_i`` (the positive) and ``q_i . k_j``
    for every other patch ``j`` of that image (the negatives), divided by ``temperature``; the
    loss is the cross-entropy of choosing the positive, averaged over patches. The keys are
    detached, as in the paper's code: the gradient flows through the queries (the translated
    image's features) only.

    Args:
        query: ``(images * P, D)`` L2-normalised features of the output's patches, image-major.
        key: the same shape: the input's features at the same locations.
        images: the batch size: negatives come from the patch's own image.
        temperature: the softmax temperature (0.07 in the paper).

    Returns:
        ``(images * P,)`` per-patch losses (take the mean).
    """
    if query.shape != key.shape or query.ndim != 2:
        raise ValueError(f"patch_nce_loss: query and key must be (N, D) of one shape, got {tuple(query.shape)} and {tuple(key.shape)}")
    if images < 1 or query.shape[0] % images:
        raise ValueError(f"patch_nce_loss: {query.shape[0]} patches do not split into {images} images")
    key = key.detach()
    patches = query.shape[0] // images
    q = query.float().view(images, patches, -1)
    k = key.float().view(images, patches, -1)
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature  # (images, P, P): row i, column j = q_i . k_j
    return F.cross_entropy(logits.flatten(0, 1), torch.arange(patches, device=query.device).repeat(images), reduction="none")


def l1_loss(fake: Tensor, real: Tensor) -> Tensor:
    """pix2pix's reconstruction term ``mean|fake_b - real_b|``.

    Args:
        fake: generated images ``(B, C, H, W)`` in [-1, 1].
        real: the paired targets, same shape.
    """
    return _distance(fake, real, "l1_loss")


SSIM_WINDOW = 11  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5 (kornia's sigma); the SSIM metric's too


def ssim_loss(fake: Tensor, real: Tensor) -> Tensor:
    """``1 - SSIM(fake, real)``, the structure term beside pix2pix's L1 (Zhao et al. 2017, "Loss
    functions for image restoration with neural networks": SSIM with L1 beats L1 alone).

    L1 alone pays the same for a wrong texture in a flat region as for a blurred edge; SSIM
    compares local means, contrasts and correlations, so it pays most where the output invents
    structure the target lacks, or loses structure it has.

    Args:
        fake: generated images ``(B, C, H, W)`` in [-1, 1]; on sides under 11 pixels the window
            shrinks to the largest odd size that fits.
        real: the paired targets, same shape.

    Returns:
        A scalar in [0, 2] (0 when equal).
    """
    import kornia

    if fake.shape != real.shape:
        raise ValueError(f"ssim_loss: shapes differ: {tuple(fake.shape)} vs {tuple(real.shape)}")
    if fake.ndim != 4:
        raise ValueError(f"ssim_loss: expected (B, C, H, W) images, got shape {tuple(fake.shape)}")
    side = min(fake.shape[-2:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 1:
        raise ValueError(f"ssim_loss: images need at least one pixel a side, got shape {tuple(fake.shape)}")
    unit = [(x.float() + 1.0) / 2.0 for x in (fake, real)]
    return 1.0 - kornia.metrics.ssim(*unit, window, max_val=1.0, padding="valid").mean()


class GANLoss(nn.Module):
    """Module form of :func:`gan_loss` with the mode fixed at construction."""

    def __init__(self, mode: GanMode) -> None:
        super().__init__()
        if mode not in get_args(GanMode):
            raise ValueError(f"GANLoss: mode must be one of {', '.join(get_args(GanMode))}, got {mode!r}")
        self.mode = mode

    def forward(self, prediction: Tensor, target_is_real: bool, *, for_discriminator: bool = True) -> Tensor:
        return gan_loss(prediction, target_is_real, self.mode, for_discriminator=for_discriminator)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

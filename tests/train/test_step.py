"""One training step (train/step.py): generator parts backpropagated one at a time give the
gradient of one backward over all losses, with one part's activations alive at a time."""

from __future__ import annotations

import copy

import pytest
import torch
from skimage import data as skdata

from translate.config import preset
from translate.train import auto
from translate.train.build import build_training
from translate.train.objectives import OBJECTIVES


def tiny(model: str, **train: float):
    cfg = auto.with_residual(preset(model), False)  # the papers' generator, as auto chooses for these photos
    cfg.train.diffaug = ""  # these tests compare steps computed two ways: no augmentation randomness between them
    cfg.net.base_channels_g = cfg.net.base_channels_d = 4
    if model == "cyclegan":
        cfg.net.generator = "resnet_6blocks"
    else:
        cfg.net.generator = "unet_128"
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def photo_batch(side: int) -> dict[str, torch.Tensor]:
    def to_tensor(image) -> torch.Tensor:
        t = torch.from_numpy(image[:side, :side].copy()).permute(2, 0, 1).float() / 127.5 - 1
        return t.unsqueeze(0).contiguous(memory_format=torch.channels_last)

    return {"A": to_tensor(skdata.astronaut()), "B": to_tensor(skdata.chelsea())}


def build(cfg):
    """The training the loop builds, on the CPU."""
    return build_training(cfg, torch.device("cpu"), planned_steps=100)


def test_cyclegan_has_a_part_per_independent_graph():
    parts = OBJECTIVES["cyclegan"].generator_parts
    assert [p.__name__ for p in parts(tiny("cyclegan"))] == ["cyclegan_cycle_a", "cyclegan_cycle_b", "cyclegan_identity"]
    assert len(parts(tiny("cyclegan", lambda_identity=0.0))) == 2
    gray_to_rgb = tiny("cyclegan")
    gray_to_rgb.net.in_channels = 1  # identity needs G to take B's images
    assert len(parts(gray_to_rgb)) == 2
    assert len(OBJECTIVES["pix2pix"].generator_parts(tiny("pix2pix"))) == 1


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_parts_give_the_gradient_of_one_backward_over_all_losses(model):
    cfg = tiny(model)
    training = build(cfg)
    nets = training.nets
    reference = copy.deepcopy(nets)
    batch = photo_batch(128 if model == "pix2pix" else 32)

    torch.manual_seed(1)  # the same dropout masks (pix2pix) in both
    result = training.train_step(batch)
    assert result.applied
    # the same losses, summed and backpropagated once (the pre-parts way)
    objective = OBJECTIVES[model]
    for name in objective.discriminators:
        reference[name].requires_grad_(False)
    torch.manual_seed(1)
    losses = {}
    for part in objective.generator_parts(cfg):
        losses.update(part(reference, batch, cfg.train)[0])
    assert losses.keys() == result.g_losses.keys()
    sum(losses.values()).backward()
    for name in objective.generators:
        for (key, p), q in zip(nets[name].named_parameters(), reference[name].parameters(), strict=True):
            # the step has already applied Adam: compare the gradients it stepped with
            assert p.grad is not None, key
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=key)
    for key in losses:
        torch.testing.assert_close(result.g_losses[key], losses[key])
    expected_images = {"cyclegan": {"fake_a", "fake_b", "rec_a", "rec_b"}, "pix2pix": {"fake_b"}}[model]
    assert set(result.outputs) == expected_images


def saved_bytes_peak(fn) -> int:
    """The most bytes autograd held saved for backward at any moment while ``fn`` ran."""
    state = {"now": 0, "peak": 0}

    class Saved:
        def __init__(self, t: torch.Tensor) -> None:
            self.t, self.n = t, t.untyped_storage().nbytes()
            state["now"] += self.n
            state["peak"] = max(state["peak"], state["now"])

        def __del__(self) -> None:
            state["now"] -= self.n

    with torch.autograd.graph.saved_tensors_hooks(Saved, lambda saved: saved.t):
        fn()
    return state["peak"]


def test_only_one_parts_activations_are_alive_at_a_time():
    cfg = tiny("cyclegan")
    training = build(cfg)
    nets = training.nets
    batch = photo_batch(64)
    parts_peak = saved_bytes_peak(lambda: training.train_step(batch))

    def all_at_once() -> None:
        losses = {}
        for part in OBJECTIVES["cyclegan"].generator_parts(cfg):
            losses.update(part(nets, batch, cfg.train)[0])
        sum(losses.values()).backward()

    once_peak = saved_bytes_peak(all_at_once)
    # six generator passes held at once vs the largest part's two (plus a discriminator)
    assert parts_peak < 0.45 * once_peak, (parts_peak, once_peak)

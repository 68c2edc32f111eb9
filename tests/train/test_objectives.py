"""The objective table (train/objectives.py): each model declared fully, so a new model is one entry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import get_args

import pytest
import torch

from translate.config import ModelKind, NetConfig, preset
from translate.losses import gan_loss, l1_loss
from translate.train.build import build_training
from translate.train.loop import train
from translate.train.objectives import A_TO_B, OBJECTIVES, Objective, Validation, channels_b

from .conftest import step_batch as batch
from .conftest import tiny_config as tiny


def test_every_model_the_config_accepts_has_an_entry() -> None:
    assert set(OBJECTIVES) == set(get_args(ModelKind))


@pytest.mark.parametrize("model", sorted(OBJECTIVES))
def test_an_entry_names_only_what_its_functions_make(model, photo) -> None:
    objective = OBJECTIVES[model]
    assert objective.data in ("paired", "unpaired") and "gen_ab" in objective.generators
    spec = objective.validation
    assert spec.reverse is None or spec.reverse in objective.generators
    assert set(spec.row) <= {"A", "B", "fake_b"} | ({"rec_a"} if "cycle" in spec.measures else set())
    result = build_training(tiny(model), torch.device("cpu"), planned_steps=1).train_step(batch(0, photo))
    for row in objective.sample_rows:
        assert set(row) <= {"A", "B"} | set(result.outputs), row


def test_channels_are_functions_of_the_architecture() -> None:
    net = NetConfig(in_channels=1, out_channels=3)
    gens = OBJECTIVES["cyclegan"].generators
    assert (gens["gen_ab"].in_channels(net), gens["gen_ab"].out_channels(net)) == (1, 3)
    assert (gens["gen_ba"].in_channels(net), gens["gen_ba"].out_channels(net)) == (3, 1)
    assert {n: c(net) for n, c in OBJECTIVES["cyclegan"].discriminators.items()} == {"disc_a": 1, "disc_b": 3}
    assert {n: c(net) for n, c in OBJECTIVES["pix2pix"].discriminators.items()} == {"disc_b": 4}


def test_pix2pix_adds_the_ssim_term_when_weighted(photo) -> None:
    from translate.losses import ssim_loss
    from translate.train.objectives import pix2pix_generator

    cfg = tiny("pix2pix")
    assert cfg.train.lambda_ssim == 100.0  # the default recipe's; the paper's has none
    assert preset("pix2pix", "paper").train.lambda_ssim == 0.0
    nets = build_training(cfg, torch.device("cpu"), planned_steps=1).nets
    images = batch(0, photo)
    with torch.no_grad():
        losses, outputs = pix2pix_generator(nets, images, cfg.train)
        assert losses["ssim"].item() == pytest.approx(100.0 * ssim_loss(outputs["fake_b"], images["B"]).item(), rel=1e-5)
        assert losses["l1"].item() == pytest.approx(cfg.train.lambda_l1 * l1_loss(outputs["fake_b"], images["B"]).item(), rel=1e-5)
        cfg.train.lambda_ssim = 0.0
        assert "ssim" not in pix2pix_generator(nets, images, cfg.train)[0]


def test_cyclegan_reconstruction_terms_use_the_configured_distance(photo) -> None:
    from translate.losses import cycle_loss, identity_loss
    from translate.train.objectives import cyclegan_cycle_a, cyclegan_identity

    cfg = tiny("cyclegan")
    assert cfg.train.recon_huber == 0.0 and preset("cyclegan", "paper").train.recon_huber == 0.0
    nets = build_training(cfg, torch.device("cpu"), planned_steps=1).nets
    images = batch(0, photo)
    for huber in (0.0, 0.05):
        cfg.train.recon_huber = huber
        with torch.no_grad():
            losses, out = cyclegan_cycle_a(nets, images, cfg.train)
            idt = cyclegan_identity(nets, images, cfg.train)[0]["idt_a"]
            expected_idt = cfg.train.lambda_cycle * cfg.train.lambda_identity * identity_loss(nets["gen_ab"](images["B"]), images["B"], huber)
        assert losses["cycle_a"].item() == pytest.approx(cfg.train.lambda_cycle * cycle_loss(out["rec_a"], images["A"], huber).item(), rel=1e-5)
        assert idt.item() == pytest.approx(expected_idt.item(), rel=1e-5)


def test_cycle_validation_needs_a_reverse_generator() -> None:
    with pytest.raises(ValueError, match="reverse"):
        Validation(measures=("cycle",), best_metric="cycle_l1", row=("A", "fake_b", "rec_a"))


# ---------------------------------------------------------------------------- a new model: one entry


def toy_generator(nets, batch, cfg):
    """An unconditional pix2pix: D judges B-images alone."""
    fake_b = nets["gen_ab"](batch["A"])
    losses = {
        "g_ab": gan_loss(nets["disc_b"](fake_b), True, cfg.gan_mode, for_discriminator=False),
        "l1": cfg.lambda_l1 * l1_loss(fake_b, batch["B"]),
    }
    return losses, {"fake_b": fake_b}


def toy_discriminator_step(nets, batch, outputs, ctx):
    disc, mode = nets["disc_b"], ctx.cfg.gan_mode
    fake = ctx.pools["b"].query(outputs["fake_b"].detach())
    return {"d_b": 0.5 * (gan_loss(disc(batch["B"]), True, mode) + gan_loss(disc(fake), False, mode))}


TOY = Objective(
    data="paired",
    generators={"gen_ab": A_TO_B},
    discriminators={"disc_b": channels_b},
    pools=("b",),
    generator_parts=lambda cfg: (toy_generator,),
    discriminator_step=toy_discriminator_step,
    sample_rows=(("A", "fake_b", "B"),),
    validation=Validation(measures=("paired",), best_metric="l1", row=("A", "fake_b", "B")),
)


def test_a_new_model_is_one_table_entry(monkeypatch, paired_data: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(OBJECTIVES, "toy", TOY)
    cfg = dataclasses.replace(preset("pix2pix"), model="toy")  # the config's Literal is checked on load only
    cfg.net.generator, cfg.net.base_channels_g, cfg.net.base_channels_d = "resnet_6blocks", 4, 4
    cfg.data.root, cfg.data.load_size, cfg.data.crop_size = str(paired_data), 36, 32
    cfg.train.steps, cfg.train.val_every, cfg.train.val_images, cfg.train.sample_every = 2, 2, 2, 2
    run = tmp_path / "run"
    assert train(cfg, run).step == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"g_ab", "l1", "d_b"} <= set(rows[0]) and "val_l1" in rows[-1] and "val_psnr" in rows[-1]
    assert (run / "samples" / "step_0000002.png").is_file() and (run / "samples" / "val_step_0000002.png").is_file()
    assert (run / "checkpoints" / "best").is_dir()

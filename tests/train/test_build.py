"""build_training (train/build.py): the one set-up the loop, the benchmark and the tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from translate.config import RunConfig
from translate.errors import UserError
from translate.train.build import Training, build_training
from translate.train.checkpoint import Counters, load_checkpoint, save_checkpoint

from .conftest import step_batch as batch
from .conftest import tiny_config as tiny

CPU = torch.device("cpu")


def build(cfg: RunConfig, **kwargs: object) -> Training:
    return build_training(cfg, CPU, planned_steps=10, **kwargs)


def weights(training: Training) -> dict[str, torch.Tensor]:
    """Every saved network's weights, averaged generators (train.ema_decay) included."""
    return {f"{n}.{k}": v.clone() for n, m in training.saved_nets().items() for k, v in m.state_dict().items()}


def out_channels(net: torch.nn.Module, in_channels: int) -> int:
    with torch.no_grad():
        return net.eval()(torch.zeros(1, in_channels, 32, 32)).shape[1]


def test_networks_and_channels_come_from_the_objective_table() -> None:
    gray_to_rgb = build(tiny("cyclegan", in_channels=1, residual=True))  # residual only where channels match: none here
    nets = gray_to_rgb.nets
    assert list(nets) == ["gen_ab", "gen_ba", "disc_a", "disc_b"]
    assert out_channels(nets["gen_ab"], 1) == 3 and out_channels(nets["gen_ba"], 3) == 1
    assert out_channels(nets["disc_a"], 1) == 1 and out_channels(nets["disc_b"], 3) == 1
    assert set(gray_to_rgb.pools) == {"a", "b"}
    pix2pix = build(tiny("pix2pix", in_channels=1))
    assert list(pix2pix.nets) == ["gen_ab", "disc_b"]
    assert out_channels(pix2pix.nets["disc_b"], 4) == 1  # the conditional D judges (A, B) pairs


def test_optimizers_hold_each_phases_networks_with_fused_adam_on_cpu() -> None:
    training = build(tiny())
    nets = training.nets
    gen = {id(p) for n in ("gen_ab", "gen_ba") for p in nets[n].parameters()}
    disc = {id(p) for n in ("disc_a", "disc_b") for p in nets[n].parameters()}
    assert {id(p) for g in training.opt_g.param_groups for p in g["params"]} == gen
    assert {id(p) for g in training.opt_d.param_groups for p in g["params"]} == disc
    assert training.opt_g.defaults["fused"] and training.opt_d.defaults["fused"]
    assert training.amp_dtype is None and not training.scaler.is_enabled() and training.channels_last


def test_same_seed_same_weights() -> None:
    cfg = tiny()
    assert all(torch.equal(a, b) for a, b in zip(weights(build(cfg)).values(), weights(build(cfg)).values(), strict=True))
    cfg.train.seed = 1
    other = weights(build(cfg))
    assert not all(torch.equal(a, b) for a, b in zip(weights(build(tiny())).values(), other.values(), strict=True))


def test_train_step_moves_the_batch_to_the_devices_layout(photo) -> None:
    training = build(tiny())
    b = batch(0, photo)
    result = training.train_step(b)
    assert result.applied and b["A"].is_contiguous(memory_format=torch.channels_last)
    assert set(result.g_losses) == {"g_ab", "cycle_a", "g_ba", "cycle_b", "idt_a", "idt_b"}
    assert set(result.d_losses) == {"d_a", "d_b"}


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_state_through_a_checkpoint_continues_exactly(model, photo, tmp_path: Path) -> None:
    cfg = tiny(model)
    cfg.train.pool_size = 1  # the pool's contents and RNG are part of the state
    cfg.train.ema_decay = 0.99  # and the averaged generators

    def step(training: Training, i: int) -> None:
        training.seed_step(i)
        assert training.train_step(batch(i, photo)).applied
        training.sched_g.step()
        training.sched_d.step()

    straight = build(cfg)
    for i in range(3):
        step(straight, i)
    stopped = build(cfg)
    for i in range(2):
        step(stopped, i)
    save_checkpoint(tmp_path, cfg, stopped.saved_nets(), stopped.state_dict(), Counters(2), keep_last=0)
    loaded = load_checkpoint(tmp_path)
    resumed = build(cfg)
    resumed.load_nets(loaded.weights, loaded.path)
    resumed.load_state_dict(loaded.state, loaded.path)
    step(resumed, 2)
    expected, got = weights(straight), weights(resumed)
    assert expected.keys() == got.keys() and any(k.startswith("ema_gen_ab.") for k in expected)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.opt_g.param_groups[0]["lr"] == straight.opt_g.param_groups[0]["lr"]


def test_state_of_another_model_is_one_error_naming_the_file(tmp_path: Path) -> None:
    state = build(tiny("pix2pix")).state_dict()
    with pytest.raises(UserError, match=r"state\.safetensors: training state does not fit this run") as info:
        build(tiny("cyclegan")).load_state_dict(state, tmp_path / "step_0000002")
    assert "\n" not in str(info.value)
    gens_only = {n: m.state_dict() for n, m in build(tiny()).nets.items() if n.startswith("gen")}
    with pytest.raises(UserError, match=r"model\.safetensors: has no disc_a weights"):
        build(tiny()).load_nets(gens_only, tmp_path / "step_0000002")


def test_init_from_loads_the_generators_it_has() -> None:
    source = build(tiny())
    source.nets["gen_ab"].apply(lambda m: torch.nn.init.constant_(m.weight, 0.5) if isinstance(m, torch.nn.Conv2d) else None)
    gen_ab = {k: v.clone() for k, v in source.nets["gen_ab"].state_dict().items()}
    fresh = weights(build(tiny()))
    tuned = build(tiny(), init_from=({"gen_ab": gen_ab}, "a run"))
    assert all(torch.equal(v, tuned.nets["gen_ab"].state_dict()[k]) for k, v in gen_ab.items())
    assert all(torch.equal(v, fresh[f"disc_b.{k}"]) for k, v in tuned.nets["disc_b"].state_dict().items())
    with pytest.raises(UserError, match="a run: holds no generator"):
        build(tiny(), init_from=({"disc_b": source.nets["disc_b"].state_dict()}, "a run"))


def test_bad_diffaug_policy_and_precision_are_one_line() -> None:
    cfg = tiny()
    cfg.train.diffaug = "colour"
    with pytest.raises(UserError, match="config train.diffaug"):
        build(cfg)
    cfg = tiny()
    cfg.train.precision = "fp16"
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        build(cfg)


def test_weight_average_follows_the_trained_generators_and_ramps_up(photo) -> None:
    cfg = tiny()
    cfg.train.ema_decay = 0.999
    training = build(cfg)
    assert set(training.ema) == {"gen_ab", "gen_ba"} and set(training.saved_nets()) == {*training.nets, "ema_gen_ab", "ema_gen_ba"}
    assert all(not p.requires_grad for m in training.ema.values() for p in m.parameters())
    before = {k: v.clone() for k, v in training.ema["gen_ab"].state_dict().items()}
    assert training.train_step(batch(0, photo), 0).applied
    live, average = training.nets["gen_ab"].state_dict(), training.ema["gen_ab"].state_dict()
    decay = 2 / 11  # min(ema_decay, (1 + step) / (10 + step)) after the first step: early weights fade fast
    for key, value in average.items():
        torch.testing.assert_close(value, decay * before[key] + (1 - decay) * live[key]), key
    assert training.inference_nets()["gen_ab"] is training.ema["gen_ab"]
    moved = [k for k in average if not torch.equal(live[k], before[k])]
    assert moved and not any(torch.equal(average[k], live[k]) for k in moved)


def test_gan_warmup_ramps_the_adversarial_weight_from_zero(photo) -> None:
    cfg = tiny()
    cfg.train.gan_warmup = 4
    training = build(cfg)
    first = training.train_step(batch(0, photo), 0).g_losses
    assert first["g_ab"].item() == 0 and first["g_ba"].item() == 0 and first["cycle_a"].item() > 0
    later = training.train_step(batch(4, photo), 4).g_losses
    assert later["g_ab"].item() > 0 and later["g_ba"].item() > 0

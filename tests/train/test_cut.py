"""CUT and FastCUT: PatchNCE by hand, where gradients go, training, exact resume, inference, one direction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from translate.cli import main
from translate.config import preset
from translate.losses import patch_nce_loss
from translate.train.build import build_training
from translate.train.checkpoint import load_checkpoint

from .conftest import TINY_CYCLEGAN
from .conftest import tiny_config as tiny


def test_patch_nce_by_hand_on_three_patches() -> None:
    # three unit features; each query must find the key at its own location among the three
    s = 1 / math.sqrt(2)
    key = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s]])
    query = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])  # the second and third queries point at the wrong keys
    temperature = 0.5
    expected = []
    for i in range(3):
        logits = [float(query[i] @ key[j]) / temperature for j in range(3)]
        expected.append(-logits[i] + math.log(sum(math.exp(v) for v in logits)))
    got = patch_nce_loss(query, key, images=1, temperature=temperature)
    assert got.tolist() == pytest.approx(expected, abs=1e-6)
    assert expected[0] < expected[1]  # the right patch wins, the wrong ones cost more
    # two images: negatives come from each patch's own image only
    two = patch_nce_loss(torch.cat([query, query]), torch.cat([key, key]), images=2, temperature=temperature)
    assert two.tolist() == pytest.approx(expected * 2, abs=1e-6)
    with pytest.raises(ValueError, match="do not split into 2 images"):
        patch_nce_loss(query, key, images=2)


def test_generator_step_reaches_the_generator_and_the_heads_not_the_discriminator(photo) -> None:
    for model in ("cut", "fastcut"):
        cfg = tiny(model)
        training = build_training(cfg, torch.device("cpu"), planned_steps=10)
        nets = training.nets
        assert set(nets) == {"gen_ab", "disc_b", "nce_mlp"}
        head_params = {id(p) for p in nets["nce_mlp"].parameters()}
        assert head_params <= {id(p) for g in training.opt_g.param_groups for p in g["params"]}  # trained with G
        batch = {"A": photo(32, 32, "coffee"), "B": photo(32, 32, "chelsea")}
        for disc in training.step.discriminators:
            disc.requires_grad_(False)
        training.seed_step(0)
        losses, outputs = training.step.generator_parts[0](nets, batch, cfg.train)
        assert set(losses) == {"g_ab", "nce"} and ("idt_b" in outputs) == (model == "cut")
        sum(losses.values()).backward()
        for name in ("gen_ab", "nce_mlp"):
            assert all(p.grad is not None for p in nets[name].parameters()), name
        assert all(p.grad is None for p in nets["disc_b"].parameters())


@pytest.mark.parametrize("model", ["cut", "fastcut"])
def test_cut_trains_resumes_exactly_and_translates(model: str, unpaired_data: Path, tmp_path: Path, capsys) -> None:
    common = ["--model", model, "--data", str(unpaired_data), "--seed", "7", *TINY_CYCLEGAN, "--set", "train.nce_patches=32"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", *common, "--out", str(straight), "--steps", "4"]) == 0
    assert main(["train", *common, "--out", str(stopped), "--steps", "2"]) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "4"]) == 0
    a, b = (load_file(str(load_checkpoint(run).path / "model.safetensors")) for run in (straight, stopped))
    assert a.keys() == b.keys() and any(k.startswith("nce_mlp.") for k in a)  # the heads are saved and resumed
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    out = tmp_path / "out"
    assert main(["apply", "--model", str(straight), str(unpaired_data / "testA"), str(out), "--device", "cpu"]) == 0
    assert len(list(out.iterdir())) == len(list((unpaired_data / "testA").iterdir()))
    capsys.readouterr()
    assert (
        main(["apply", "--model", str(straight), "--direction", "BtoA", str(unpaired_data / "testA"), str(tmp_path / "o2"), "--device", "cpu"]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{model} trains only AtoB" in err
    # fine-tuning from it: the generator and heads carry over
    tuned = tmp_path / "tuned"
    assert main(["train", *common, "--out", str(tuned), "--steps", "1", "--init-from", str(straight), "--set", "train.lr=0"]) == 0
    c = load_file(str(load_checkpoint(tuned).path / "model.safetensors"))
    assert all(torch.equal(c[k], a[k]) for k in a if k.startswith(("gen_ab.", "nce_mlp.")))


def test_presets_follow_the_paper() -> None:
    cut, fast = preset("cut", "paper").train, preset("fastcut", "paper").train
    assert (cut.lambda_nce, cut.nce_identity, cut.flip_equivariance) == (1.0, True, False)
    assert (fast.lambda_nce, fast.nce_identity, fast.flip_equivariance) == (10.0, False, True)
    assert cut.nce_layers == "0,4,8,12,16" and cut.nce_patches == 256 and cut.nce_temperature == 0.07 and cut.gan_mode == "lsgan"


def test_cut_with_a_unet_or_bad_layers_is_one_line(unpaired_data: Path, tmp_path: Path, capsys) -> None:
    base = ["train", "--model", "cut", "--data", str(unpaired_data), "--steps", "1", *TINY_CYCLEGAN]
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "net.generator=unet_128", "--crop-size", "128", "--load-size", "128"]) == 2
    assert "needs a ResNet generator" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "train.nce_layers=0,99"]) == 2
    assert "train.nce_layers" in capsys.readouterr().err


def test_encode_features_match_the_forward_pass() -> None:
    from translate.config import NetConfig
    from translate.nets import PatchMLP, build_generator

    gen = build_generator(NetConfig(generator="resnet_6blocks", base_channels_g=4))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = gen.encode(x, [0, 4, 8])
    assert [f.shape[1] for f in feats] == gen.feature_channels([0, 4, 8]) == [3, 8, 16]
    torch.testing.assert_close(feats[2], gen.model[:9](x))
    head = PatchMLP([3, 8, 16], width=8)
    out = head(feats, [torch.arange(5), torch.arange(5), torch.arange(5)])
    assert [o.shape for o in out] == [(10, 8)] * 3
    torch.testing.assert_close(out[0].norm(dim=1), torch.ones(10))
    with pytest.raises(ValueError, match="ascending indices"):
        gen.encode(x, [8, 4])

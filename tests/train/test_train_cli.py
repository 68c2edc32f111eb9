"""End-to-end training through the real CLI on tiny real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from translate.cli import main
from translate.formats import list_checkpoints
from translate.train.checkpoint import load_checkpoint

from .conftest import TINY_CYCLEGAN, TINY_PIX2PIX


def weights_of(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt_dir / "model.safetensors"))


def test_cyclegan_run_writes_checkpoint_samples_metrics(unpaired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "cyclegan",
            "--data",
            str(unpaired_data),
            "--out",
            str(run),
            "--steps",
            "3",
            "--save-every",
            "2",
            "--seed",
            "1",
            *TINY_CYCLEGAN,
        ]
    )
    assert code == 0
    ckpts = list_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["step_0000002", "step_0000003"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"] == "cyclegan" and cfg["net"]["base_channels_g"] == 4
    grid = Image.open(run / "samples" / "step_0000002.png")
    assert grid.size == (3 * 32, 2 * 32)  # rows A|fake_b|rec_a and B|fake_a|rec_b
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "images_per_s" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("g_ab", "g_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "d_a", "d_b", "images_per_s", "lr"):
        assert key in steps[-1]
    # the default recipe validates on the test split at every save and at the end
    assert [r["step"] for r in rows if "val_cycle_l1" in r] == [2, 3]
    loaded = load_checkpoint(run)
    assert loaded.counters.step == 3
    assert set(loaded.weights) == {"gen_ab", "gen_ba", "disc_a", "disc_b"}
    assert loaded.cfg.net.base_channels_g == 4  # the architecture travels with the checkpoint


def test_pix2pix_run(paired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "p2p"
    code = main(["train", "--model", "pix2pix", "--data", str(paired_data), "--out", str(run), "--steps", "2", "--direction", "AtoB", *TINY_PIX2PIX])
    assert code == 0
    loaded = load_checkpoint(run)
    assert set(loaded.weights) == {"gen_ab", "disc_b"}
    assert loaded.cfg.train.gan_mode == "vanilla" and loaded.cfg.net.norm == "instance"  # the toolkit recipe
    # conditional discriminator sees (A, B) stacked: 6 input channels
    first = [v for k, v in loaded.weights["disc_b"].items() if v.ndim == 4][0]
    assert first.shape[1] == 6
    assert Image.open(run / "samples" / "step_0000002.png").size == (3 * 128, 128)


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_resume_is_bit_exact(model: str, unpaired_data: Path, paired_data: Path, tmp_path: Path) -> None:
    data = unpaired_data if model == "cyclegan" else paired_data
    tiny = TINY_CYCLEGAN if model == "cyclegan" else TINY_PIX2PIX
    common = ["--model", model, "--data", str(data), "--seed", "3", "--batch-size", "2", *tiny]
    # pool of 2 so the CycleGAN history pool fills and starts swapping within 4 steps
    common += ["--set", "train.pool_size=2"] if model == "cyclegan" else []
    # 5 photos, batch 2: an epoch is 3 steps, so the resume point falls mid-epoch and the run crosses an epoch
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", *common, "--out", str(straight), "--steps", "4"]) == 0
    assert main(["train", *common, "--out", str(stopped), "--steps", "2"]) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "4"]) == 0
    a = load_checkpoint(straight)
    b = load_checkpoint(stopped)
    assert a.counters == b.counters and a.counters.step == 4
    wa, wb = weights_of(a.path), weights_of(b.path)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    sa = load_file(str(a.path / "state.safetensors"))
    sb = load_file(str(b.path / "state.safetensors"))
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_resume_extends_a_finished_run(unpaired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN]) == 0
    assert main(["train", "--resume", str(run), "--steps", "2"]) == 0
    assert load_checkpoint(run).counters.step == 2


def test_finetune_from_run_and_from_generator_file(unpaired_data: Path, paired_data: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "source"
    # with averaged generators: fine-tuning starts from them, what the source's inference used
    assert main(["train", "--data", str(unpaired_data), "--out", str(source), "--steps", "1", *TINY_CYCLEGAN, "--set", "train.ema_decay=0.9"]) == 0
    src = load_checkpoint(source)
    # lr 0: weights after one step must equal the source's exactly, proving they were loaded
    ft = tmp_path / "ft"
    assert (
        main(
            [
                "train",
                "--data",
                str(unpaired_data),
                "--out",
                str(ft),
                "--init-from",
                str(source),
                "--steps",
                "1",
                "--set",
                "train.lr=0",
                "--set",
                "train.sample_every=0",
            ]
        )
        == 0
    )
    tuned = load_checkpoint(ft)
    assert tuned.counters.step == 1 and tuned.cfg.net == src.cfg.net
    for net in ("gen_ab", "gen_ba", "disc_a", "disc_b"):
        # a generator starts from the source's averaged weights: what its inference used
        source_weights = src.weights.get(f"ema_{net}", src.weights[net])
        for key, value in source_weights.items():
            assert torch.equal(value, tuned.weights[net][key]), (net, key)

    from translate.formats import generator_net_config, save_generator
    from translate.nets import build_generator

    gen = build_generator(src.cfg.net)
    gen.load_state_dict(src.weights["gen_ab"])
    gen_file = tmp_path / "g.safetensors"
    save_generator(gen_file, gen, generator_net_config(src.cfg, "AtoB"))
    capsys.readouterr()
    # a generator-only file: the architecture comes from its metadata, discriminators start fresh
    ft2 = tmp_path / "ft2"
    assert (
        main(
            [
                "train",
                "--data",
                str(unpaired_data),
                "--out",
                str(ft2),
                "--init-from",
                str(gen_file),
                "--steps",
                "1",
                "--set",
                "train.lr=0",
                "--set",
                "train.sample_every=0",
            ]
        )
        == 0
    )
    tuned2 = load_checkpoint(ft2)
    assert tuned2.cfg.net.base_channels_g == 4
    for key, value in src.weights["gen_ab"].items():
        assert torch.equal(value, tuned2.weights["gen_ab"][key]), key
    assert set(tuned2.weights) == {"gen_ab", "gen_ba", "disc_a", "disc_b"}


def test_paper_preset_is_the_papers_recipe(capsys) -> None:
    assert main(["train", "--model", "pix2pix", "--preset", "paper", "--dry-run"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["net"]["norm"] == "batch" and cfg["train"]["ema_decay"] == 0 and cfg["train"]["val_every"] == 0
    assert main(["train", "--model", "cyclegan", "--preset", "paper", "--dry-run"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert not cfg["net"]["residual"] and cfg["train"]["ema_decay"] == 0 and cfg["train"]["lambda_identity"] == 0.5
    assert cfg["net"]["upsample"] == "transposed"
    assert main(["train", "--model", "cyclegan", "--dry-run"]) == 0
    toolkit = yaml.safe_load(capsys.readouterr().out)
    assert toolkit["net"]["upsample"] == "resize" and toolkit["train"]["val_every"] == -1


def test_dry_run_prints_resolved_config(capsys) -> None:
    assert main(["train", "--model", "pix2pix", "--dry-run", "--set", "train.lr=0.001", "--crop-size", "128"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"] == "pix2pix" and cfg["train"]["lr"] == 0.001 and cfg["data"]["crop_size"] == 128
    assert cfg["net"]["generator"] == "unet_256" and cfg["train"]["lambda_l1"] == 100.0


def test_config_file_and_set_precedence(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: pix2pix\ntrain:\n  lr: 0.01\n  epochs: 7\n")
    assert main(["train", "--config", str(config), "--set", "train.epochs=9", "--dry-run"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["model"] == "pix2pix" and cfg["train"]["lr"] == 0.01 and cfg["train"]["epochs"] == 9
    assert cfg["net"]["generator"] == "unet_256"  # the pix2pix preset, not cyclegan's


def test_resume_of_a_run_killed_during_its_first_save_starts_it_from_step_0(unpaired_data: Path, tmp_path: Path, caplog) -> None:
    args = ["--model", "cyclegan", "--data", str(unpaired_data), "--steps", "2", "--save-every", "2", "--seed", "3", *TINY_CYCLEGAN]
    whole = tmp_path / "whole"
    assert main(["train", *args, "--out", str(whole)]) == 0
    # what a run killed in its first checkpoint write leaves: its config and a temporary folder
    killed = tmp_path / "killed"
    (killed / "checkpoints" / ".tmp-step_0000002-0badc0de").mkdir(parents=True)
    (killed / "config.yaml").write_text((whole / "config.yaml").read_text())
    with caplog.at_level("INFO", logger="translate"):
        assert main(["train", "--resume", str(killed)]) == 0
    assert any("starting it from step 0" in r.getMessage() for r in caplog.records)
    assert [p.name for p in list_checkpoints(killed / "checkpoints")] == ["step_0000002"]
    ours, theirs = weights_of(killed / "checkpoints" / "step_0000002"), weights_of(whole / "checkpoints" / "step_0000002")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_resume_of_a_folder_without_config_or_checkpoint_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_resume_of_an_unstarted_run_keeps_its_architecture(tmp_path: Path, capsys) -> None:
    """A run stopped before its first save restarts with its saved config; --set may not change what it trains."""
    killed = tmp_path / "killed"
    killed.mkdir()
    assert main(["train", "--model", "cyclegan", "--data", str(tmp_path), "--dry-run", *TINY_CYCLEGAN]) == 0
    (killed / "config.yaml").write_text(capsys.readouterr().out)
    assert main(["train", "--resume", str(killed), "--set", "net.base_channels_g=8"]) == 2
    assert "net.*" in capsys.readouterr().err

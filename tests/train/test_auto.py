"""net.residual=auto and train.recon_huber=auto: chosen once from the training data, then fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from translate.cli import main
from translate.config import NetConfig, apply_overrides, preset
from translate.data import build_dataset
from translate.errors import UserError
from translate.nets import build_generator
from translate.train import auto
from translate.train.checkpoint import load_checkpoint

from .conftest import TINY_CYCLEGAN, tiny_config


def saved(run: Path) -> tuple[object, object]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return cfg["net"]["residual"], cfg["train"]["recon_huber"]


def test_the_toolkit_recipe_chooses_from_the_data_and_the_paper_recipe_does_not() -> None:
    cfg = preset("cyclegan")
    assert auto.unresolved(cfg) == ["net.residual", "train.recon_huber"]
    assert auto.unresolved(preset("cyclegan", "paper")) == []
    assert auto.unresolved(preset("pix2pix")) == []  # chosen for unpaired collections only
    assert apply_overrides(cfg, ["net.residual=true"]).net.residual is True
    with pytest.raises(UserError, match="net.residual: 'sometimes' is not true/false or one of auto"):
        apply_overrides(cfg, ["net.residual=sometimes"])
    with pytest.raises(UserError, match="recon_huber"):
        apply_overrides(cfg, ["train.recon_huber=wide"])


def test_subtle_collections_get_the_identity_start_and_large_ones_the_papers_generator(
    graded_data: Path, unpaired_data: Path, tmp_path: Path, caplog
) -> None:
    for data, expected in ((graded_data, (True, auto.RESIDUAL_HUBER)), (unpaired_data, (False, 0.0))):
        run = tmp_path / data.name
        caplog.clear()
        with caplog.at_level("INFO", logger="translate"):
            assert main(["train", "--data", str(data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN]) == 0
        assert saved(run) == expected  # plain values: resume and inference never choose again
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("net.residual=auto")]
        assert f"net.residual={str(expected[0]).lower()}" in line
        loaded = load_checkpoint(run)
        assert (loaded.cfg.net.residual, loaded.cfg.train.recon_huber) == expected


def test_a_setting_given_is_kept_and_resume_does_not_choose_again(graded_data: Path, tmp_path: Path, caplog) -> None:
    run = tmp_path / "run"
    args = ["--data", str(graded_data), *TINY_CYCLEGAN, "--set", "net.residual=false"]
    with caplog.at_level("INFO", logger="translate"):
        assert main(["train", "--out", str(run), "--steps", "1", *args]) == 0
        assert main(["train", "--resume", str(run), "--steps", "2"]) == 0
    assert saved(run) == (False, 0.0)  # the Huber width follows the generator it was given
    assert not [r for r in caplog.records if r.getMessage().startswith("net.residual=auto")]
    assert load_checkpoint(run).cfg.net.residual is False


def test_auto_needs_two_unpaired_collections_and_nets_are_never_built_unresolved(graded_data: Path, paired_data: Path) -> None:
    paired = apply_overrides(preset("pix2pix"), ["net.residual=auto", f"data.root={paired_data}", "data.crop_size=128", "data.load_size=136"])
    with pytest.raises(UserError, match="paired data"):
        auto.resolve(paired, build_dataset(paired, "train", kind="paired"))
    grey_b = apply_overrides(
        tiny_config(residual="auto"), [f"data.root={graded_data}", "data.crop_size=32", "net.out_channels=1", "train.recon_huber=auto"]
    )
    resolved = auto.resolve(grey_b, build_dataset(grey_b, "train", kind="unpaired"))
    assert (resolved.net.residual, resolved.train.recon_huber) == (False, 0.0)  # RGB -> grey cannot add its input
    with pytest.raises(ValueError, match="residual must be true or false"):
        build_generator(NetConfig(residual="auto"))
    from translate.runtime import resolve_device
    from translate.train.build import build_training

    with pytest.raises(ValueError, match="still auto"):
        build_training(tiny_config(residual="auto"), resolve_device("cpu"), planned_steps=1)

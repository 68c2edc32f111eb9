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

from ..conftest import write_collections
from .conftest import TINY_CYCLEGAN, tiny_config


@pytest.fixture(scope="module")
def night_data(tmp_path_factory) -> Path:
    """Unpaired collections a night rendering apart (enough files for auto to judge)."""
    import numpy as np

    from translate.data.samples import render_night

    rng = np.random.default_rng(3)
    return write_collections(tmp_path_factory.mktemp("night"), lambda crop: render_night(crop, rng))


def saved(run: Path) -> tuple[object, object]:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return cfg["net"]["residual"], cfg["train"]["recon_huber"]


def test_the_toolkit_recipe_chooses_from_the_data_and_the_paper_recipe_does_not() -> None:
    cfg = preset("cyclegan")
    assert auto.unresolved(cfg) == ["net.residual", "train.recon_huber"]
    assert auto.unresolved(preset("cyclegan", "paper")) == []
    assert auto.unresolved(preset("pix2pix")) == []  # chosen for unpaired collections only
    assert apply_overrides(cfg, ["net.residual=true"]).net.residual is True
    with pytest.raises(UserError, match="net.residual"):
        apply_overrides(cfg, ["net.residual=sometimes"])
    with pytest.raises(UserError, match="recon_huber"):
        apply_overrides(cfg, ["train.recon_huber=wide"])


def test_subtle_collections_get_the_identity_start_and_large_ones_the_papers_generator(
    graded_data: Path, night_data: Path, tmp_path: Path, caplog
) -> None:
    for data, expected in ((graded_data, (True, auto.RESIDUAL_HUBER)), (night_data, (False, 0.0))):
        run = tmp_path / data.name
        caplog.clear()
        with caplog.at_level("INFO", logger="translate"):
            assert main(["train", "--data", str(data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN]) == 0
        assert saved(run) == expected  # plain values: resume and inference never choose again
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("net.residual=auto")]
        assert f"net.residual={str(expected[0]).lower()}" in line and "spreads apart" in line
        loaded = load_checkpoint(run)
        assert (loaded.cfg.net.residual, loaded.cfg.train.recon_huber) == expected
        caplog.clear()
        with caplog.at_level("INFO", logger="translate"):  # a resumed run holds its choice: nothing is read or chosen again
            assert main(["train", "--resume", str(run), "--steps", "2"]) == 0
        assert saved(run) == expected and not [r for r in caplog.records if r.getMessage().startswith("net.residual=auto")]


def test_too_few_files_or_different_channels_keep_the_papers_generator(graded_data: Path, tmp_path: Path, caplog) -> None:
    few = tmp_path / "few"
    for folder in ("trainA", "trainB"):
        (few / folder).mkdir(parents=True)
        for path in sorted((graded_data / folder).iterdir())[:3]:
            (few / folder / path.name).write_bytes(path.read_bytes())
    for data, extra in ((few, []), (graded_data, ["--set", "net.in_channels=1"])):  # grey -> RGB: it cannot add its input
        run = tmp_path / f"run_{len(extra)}"
        caplog.clear()
        with caplog.at_level("INFO", logger="translate"):
            assert main(["train", "--data", str(data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN, *extra]) == 0
        assert saved(run) == (False, 0.0)
        (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("net.residual=auto")]
        assert "net.residual=false" in line


def test_a_model_file_saying_auto_is_refused_in_one_line(tmp_path: Path) -> None:
    """Training always writes its choice; a file whose architecture still says auto was made
    some other way, and its weights could go into either kind of generator."""
    from translate.formats import read_generator, save_generator

    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    path = tmp_path / "g.safetensors"
    save_generator(path, build_generator(cfg), NetConfig(generator="resnet_6blocks", base_channels_g=4, residual="auto"))
    with pytest.raises(UserError, match="net.residual is 'auto'"):
        read_generator(path)


def test_a_setting_given_is_kept(graded_data: Path, tmp_path: Path, caplog) -> None:
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="translate"):
        assert main(["train", "--data", str(graded_data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN, "--set", "net.residual=false"]) == 0
    assert saved(run) == (False, 0.0)  # the Huber width follows the generator it was given
    assert not [r for r in caplog.records if r.getMessage().startswith("net.residual=auto")]


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

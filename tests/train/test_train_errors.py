"""Bad input to ``translate train``: one clear line (exit 2), no traceback, nothing overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

from translate.cli import main

from .conftest import TINY_CYCLEGAN


def run_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_data_folder(capsys, tmp_path: Path) -> None:
    msg = run_error(capsys, ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert "nope" in msg


def test_missing_domain_folder(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(unpaired_data / "trainA", data / "trainA")
    msg = run_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_CYCLEGAN])
    assert "trainB" in msg


def test_empty_domain(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(unpaired_data / "trainA", data / "trainA")
    (data / "trainB").mkdir()
    msg = run_error(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_CYCLEGAN])
    assert "trainB" in msg


def test_unknown_config_key_and_value(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    msg = run_error(capsys, ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), "--set", "train.lrr=1"])
    assert "lrr" in msg
    msg = run_error(capsys, ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), "--set", "train.gan_mode=best"])
    assert "gan_mode" in msg and "lsgan" in msg
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  nonsense: 3\n")
    msg = run_error(capsys, ["train", "--config", str(bad), "--data", str(unpaired_data), "--out", str(tmp_path / "r")])
    assert "nonsense" in msg
    msg = run_error(capsys, ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), "--set", "net.generator=resnet_99"])
    assert "resnet_99" in msg and "resnet_9blocks" in msg


def test_crop_larger_than_image(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    msg = run_error(
        capsys,
        ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), *TINY_CYCLEGAN, "--set", "data.preprocess=crop", "--crop-size", "512"],
    )
    assert "512" in msg or "crop" in msg


def test_existing_run_is_not_overwritten(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN]) == 0
    before = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    msg = run_error(capsys, ["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN])
    assert "--resume" in msg
    after = {p: p.read_bytes() for p in (run / "checkpoints").rglob("*") if p.is_file()}
    assert before == after


def test_resume_refuses_architecture_change_and_missing_run(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    msg = run_error(capsys, ["train", "--resume", str(tmp_path / "none")])
    assert "none" in msg
    run = tmp_path / "run"
    assert main(["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "1", *TINY_CYCLEGAN]) == 0
    msg = run_error(capsys, ["train", "--resume", str(run), "--set", "net.base_channels_g=8"])
    assert "architecture" in msg
    msg = run_error(capsys, ["train", "--resume", str(run), "--crop-size", "64"])
    assert "--crop-size" in msg


def test_fp16_on_cpu_is_refused(capsys, tmp_path: Path, unpaired_data: Path) -> None:
    msg = run_error(
        capsys, ["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), "--device", "cpu", "--precision", "fp16", *TINY_CYCLEGAN]
    )
    assert "fp16" in msg and "bf16" in msg

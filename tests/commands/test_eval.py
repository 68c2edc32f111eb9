"""``translate eval`` through the real CLI on small real photos (skimage.data)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from translate.cli import main
from translate.config import NetConfig
from translate.data.samples import make_sample_dataset
from translate.metrics import FID_WEIGHTS_FILE, WEIGHTS_ENV, FIDInceptionV3

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SIGMA = 0.03
TINY = NetConfig(generator="resnet_6blocks", base_channels_g=4)


def real_photo(name: str, width: int = 48, height: int = 40) -> np.ndarray:
    image = np.asarray(getattr(skimage_data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return cv2.resize(np.ascontiguousarray(image[:, :, :3]), (width, height), interpolation=cv2.INTER_AREA)


def write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """target/: real photos (PNG); pred/: noisy copies (PNG), with one in a subfolder."""
    rng = np.random.default_rng(0)
    target, pred = tmp_path / "target", tmp_path / "pred"
    for i, name in enumerate(PHOTOS):
        rel = f"sub/{name}.png" if i == 0 else f"{name}.png"
        image = real_photo(name)
        write(target / rel, image)
        noisy = image.astype(np.float64) + rng.normal(0, SIGMA * 255, image.shape)
        write(pred / rel, np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return pred, target


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A randomly initialised FID Inception state dict: the real weights are not downloaded in tests."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return tmp_path / "hub" / "checkpoints" / FID_WEIGHTS_FILE


def test_two_folders_print_a_table_and_write_csv_and_json(folders, tmp_path: Path, capsys) -> None:
    pred, target = folders
    out = tmp_path / "report"
    assert main(["eval", str(pred), str(target), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 pairs" in printed and "PSNR (dB)" in printed and "SSIM" in printed and "L1" in printed
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["name"] for r in rows] == ["chelsea", "coffee", "rocket", "sub/astronaut"]
    expected_psnr = 10 * math.log10(1 / SIGMA**2)  # 30.5 dB; clipping at 0/255 only raises it
    for row in rows:
        assert expected_psnr - 0.3 < float(row["psnr"]) < expected_psnr + 1.5
        assert 0.5 < float(row["ssim"]) < 1 and 0.01 < float(row["l1"]) < 0.03
    data = json.loads((out / "metrics.json").read_text())
    assert data["counts"] == {"pred": 4, "target": 4}
    assert data["mean"]["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]))
    assert f"{data['mean']['psnr']:.2f}" in printed and "fid" not in data


def test_identical_folders_report_inf_psnr(folders, tmp_path: Path, capsys) -> None:
    _, target = folders
    assert main(["eval", str(target), str(target), "--out", str(tmp_path / "r")]) == 0
    assert "PSNR inf" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["mean"]["psnr"] == "inf"


def test_mismatched_names_are_listed(folders, capsys) -> None:
    pred, target = folders
    (pred / "coffee.png").rename(pred / "coffee_translated.png")
    (pred / "rocket.png").unlink()
    assert main(["eval", str(pred), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "(3 images)" in err and "(4 images)" in err
    assert "coffee_translated" in err and "coffee, rocket" in err


def test_pairs_of_different_sizes_are_named(folders, capsys) -> None:
    pred, target = folders
    write(pred / "rocket.png", real_photo("rocket", 50, 40))
    assert main(["eval", str(pred), str(target)]) == 2
    assert "rocket (rocket.png 50x40 vs rocket.png 48x40)" in capsys.readouterr().err


def test_missing_weights_say_which_file_to_place_where(folders, no_weights: Path, capsys) -> None:
    pred, target = folders
    assert main(["eval", str(pred), str(target), "--fid"]) == 2
    err = capsys.readouterr().err
    assert FID_WEIGHTS_FILE in err and str(no_weights) in err and "--download" in err


def test_fid_and_kid_with_given_weights(folders, weights_file: Path, tmp_path: Path, capsys) -> None:
    pred, target = folders
    for name in ("chelsea.png", "rocket.png"):  # two pairs: a 299x299 forward pass costs ~0.2 s of CPU
        (pred / name).unlink(), (target / name).unlink()
    out = tmp_path / "report"
    code = main(
        [
            "eval",
            str(pred),
            str(target),
            "--fid",
            "--kid",
            "--kid-subset-size",
            "2",
            "--kid-subsets",
            "4",
            "--inception-weights",
            str(weights_file),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "FID" in printed and "KID" in printed and "4 subsets of 2" in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["fid"] > 1e-3 and math.isfinite(data["kid"]["mean"]) and data["kid"]["std"] >= 0
    assert data["kid"]["subset_size"] == 2 and data["inception_weights"] == str(weights_file)


def test_kid_with_too_few_images_fails_before_any_work(folders, weights_file: Path, capsys) -> None:
    pred, target = folders
    assert main(["eval", str(pred), str(target), "--kid", "--inception-weights", str(weights_file)]) == 2
    assert "--kid-subset-size 4" in capsys.readouterr().err


def test_unpaired_folders_need_a_distribution_metric(folders, capsys) -> None:
    pred, target = folders
    assert main(["eval", str(pred), str(target), "--unpaired"]) == 2
    assert "--fid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["eval"], "expected PRED_DIR TARGET_DIR"),
        (["eval", "a", "b", "--model", "m", "--data", "d"], "not both"),
        (["eval", "--model", "m"], "--model needs --data"),
        (["eval", "nowhere", "nowhere_either"], "nowhere: folder not found"),
    ],
)
def test_bad_invocations_are_one_line_errors(argv: list[str], match: str, capsys) -> None:
    assert main(argv) == 2
    assert match in capsys.readouterr().err


@pytest.fixture(scope="module")
def generator_file(tiny_generator_factory) -> Path:
    return tiny_generator_factory("resnet_6blocks", base_channels=4)


def test_model_on_paired_side_by_side_data(generator_file: Path, tmp_path: Path, capsys) -> None:
    data = make_sample_dataset(tmp_path / "data", "paired", size=32, count=8)  # test/: 2 pairs of 64x32
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(generator_file), "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "left halves" in printed and "2 pairs" in printed
    translated = sorted(p.relative_to(out / "translated").as_posix() for p in (out / "translated").rglob("*.png"))
    assert translated == ["0000.png", "0001.png"]
    assert cv2.imread(str(out / "translated" / "0000.png")).shape[:2] == (32, 32)
    data_json = json.loads((out / "metrics.json").read_text())
    assert data_json["target_dir"].endswith("(right halves)") and len(data_json["per_image"]) == 2
    # a second run into the same folder would measure stale images: refused
    assert main(["eval", "--model", str(generator_file), "--data", str(data), "--out", str(out)]) == 2
    assert "already holds images" in capsys.readouterr().err


def test_model_on_unpaired_data_needs_distribution_metrics(generator_file: Path, tmp_path: Path, capsys) -> None:
    data = make_sample_dataset(tmp_path / "data", "unpaired", size=32, count=8)
    assert main(["eval", "--model", str(generator_file), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "no per-image ground truth" in err and "--fid" in err

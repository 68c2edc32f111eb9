"""Validation during training, the best checkpoint, and DiffAugment inside the loop."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from translate.cli import main
from translate.formats import read_generator
from translate.train.checkpoint import load_checkpoint

from .conftest import TINY_CYCLEGAN, TINY_PIX2PIX


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_pix2pix_validation_logs_paired_metrics_and_keeps_best(paired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "pix2pix",
                "--data",
                str(paired_data),
                "--out",
                str(run),
                "--steps",
                "4",
                *TINY_PIX2PIX,
                "--set",
                "train.val_every=2",
                "--set",
                "train.val_images=2",
            ]
        )
        == 0
    )
    val = [r for r in rows(run) if "val_psnr" in r]
    assert [r["step"] for r in val] == [2, 4]
    for r in val:
        assert 0 < r["val_psnr"] < 100 and 0 <= r["val_ssim"] <= 1 and r["val_l1"] >= 0
    best = load_checkpoint(run / "checkpoints" / "best")
    best_step = max(val, key=lambda r: r["val_psnr"])["step"]
    assert best.counters.step == best_step
    assert best.state["validation"]["metric"] == "psnr"
    assert (run / "samples" / "val_step_0000004.png").is_file()
    # inference from the run takes the best checkpoint and says which step
    weights, _, source = read_generator(run)
    assert Path(source.split(" (")[0]) == run / "checkpoints" / "best" and f"step {best_step}" in source
    assert all(torch.equal(v, best.weights["gen_ab"][k]) for k, v in weights.items())
    latest, _, source = read_generator(run / "checkpoints" / "step_0000004")  # a checkpoint: itself
    assert "best" not in source and all(torch.equal(v, load_checkpoint(run).weights["gen_ab"][k]) for k, v in latest.items())


def test_averaged_weights_are_what_the_best_checkpoint_gives_inference(paired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--set", "train.val_every=1", "--set", "train.val_images=2", "--set", "train.ema_decay=0.9"]
    assert main(["train", "--model", "pix2pix", "--data", str(paired_data), "--out", str(run), "--steps", "2", *TINY_PIX2PIX, *args]) == 0
    best = load_checkpoint(run / "checkpoints" / "best")
    weights, _, source = read_generator(run)
    assert "averaged weights" in source and all(torch.equal(v, best.weights["ema_gen_ab"][k]) for k, v in weights.items())


def test_paper_preset_validates_nothing_and_infers_from_the_latest_trained_weights(paired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(["train", "--model", "pix2pix", "--preset", "paper", "--data", str(paired_data), "--out", str(run), "--steps", "2", *TINY_PIX2PIX]) == 0
    )
    assert not any("val_psnr" in r for r in rows(run)) and not (run / "checkpoints" / "best").exists()
    weights, _, source = read_generator(run)
    assert Path(source.split(" (")[0]) == run / "checkpoints" / "step_0000002"
    assert all(torch.equal(v, load_checkpoint(run).weights["gen_ab"][k]) for k, v in weights.items())


def test_cyclegan_validation_uses_cycle_error_and_resume_keeps_best(unpaired_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--set", "train.val_every=1", "--set", "train.val_images=2", "--set", "train.best_metric=cycle_l1"]
    assert main(["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "2", *TINY_CYCLEGAN, *args]) == 0
    first_best = load_checkpoint(run / "checkpoints" / "best").state["validation"]["best"]
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0
    val = [r for r in rows(run) if "val_cycle_l1" in r]
    assert [r["step"] for r in val] == [1, 2, 3]
    best = load_checkpoint(run / "checkpoints" / "best").state["validation"]
    assert best["best"] == min(r["val_cycle_l1"] for r in val) <= first_best


def test_cyclegan_keeps_no_best_checkpoint_by_the_cycle_error_unless_asked(unpaired_data: Path, tmp_path: Path, caplog) -> None:
    # a generator near the identity (a residual one, at its start) has the lowest cycle error, so
    # auto chooses by KID, which needs the Inception weights: without them no best is kept
    run = tmp_path / "run"
    with caplog.at_level("INFO", logger="translate"):
        assert main(["train", "--data", str(unpaired_data), "--out", str(run), "--steps", "2", *TINY_CYCLEGAN, "--set", "train.val_every=1"]) == 0
    assert "no best checkpoint" in caplog.text
    assert not (run / "checkpoints" / "best").exists()
    assert [r["step"] for r in rows(run) if "val_cycle_l1" in r] == [1, 2]  # still measured and logged


def test_diffaugment_trains_and_resumes_exactly(unpaired_data: Path, tmp_path: Path) -> None:
    common = ["--data", str(unpaired_data), "--seed", "4", *TINY_CYCLEGAN, "--set", "train.diffaug=color,translation,cutout"]
    plain, straight, stopped = tmp_path / "plain", tmp_path / "straight", tmp_path / "stopped"
    assert (
        main(["train", "--data", str(unpaired_data), "--seed", "4", *TINY_CYCLEGAN, "--out", str(plain), "--steps", "2", "--set", "train.diffaug="])
        == 0
    )
    assert main(["train", *common, "--out", str(straight), "--steps", "2"]) == 0
    assert main(["train", *common, "--out", str(stopped), "--steps", "1"]) == 0
    assert main(["train", "--resume", str(stopped), "--steps", "2"]) == 0
    wp = load_file(str(load_checkpoint(plain).path / "model.safetensors"))
    wa = load_file(str(load_checkpoint(straight).path / "model.safetensors"))
    wb = load_file(str(load_checkpoint(stopped).path / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # augmentation randomness is reseeded per step
    # the augmentation changes what the discriminator learns
    assert not all(torch.equal(wa[k], wp[k]) for k in wa if k.startswith("disc_b"))


def test_bad_diffaug_policy_and_val_without_test_split(capsys, unpaired_data: Path, tmp_path: Path) -> None:
    code = main(["train", "--data", str(unpaired_data), "--out", str(tmp_path / "r"), *TINY_CYCLEGAN, "--set", "train.diffaug=colour"])
    assert code == 2 and "diffaug" in capsys.readouterr().err
    import shutil

    data = tmp_path / "notest"
    shutil.copytree(unpaired_data / "trainA", data / "trainA")
    shutil.copytree(unpaired_data / "trainB", data / "trainB")
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "r2"), *TINY_CYCLEGAN, "--set", "train.val_every=1"])
    err = capsys.readouterr().err
    assert code == 2 and "val_every" in err


def test_unpaired_validation_logs_kid_when_inception_weights_are_present(unpaired_data: Path, tmp_path: Path, monkeypatch) -> None:
    from translate.metrics import FIDInceptionV3

    torch.manual_seed(0)
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = tmp_path / "pt_inception.pth"
    torch.save(state, weights)  # a randomly initialised network of the real architecture
    monkeypatch.setenv("TRANSLATE_INCEPTION_WEIGHTS", str(weights))
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(unpaired_data),
                "--out",
                str(run),
                "--steps",
                "1",
                *TINY_CYCLEGAN,
                "--set",
                "train.val_every=1",
                "--set",
                "train.val_images=3",
                "--set",
                "train.best_metric=kid",
            ]
        )
        == 0
    )
    val = [r for r in rows(run) if "val_kid" in r]
    assert len(val) == 1 and "val_cycle_l1" in val[0]
    assert load_checkpoint(run / "checkpoints" / "best").state["validation"]["metric"] == "kid"


def test_unpaired_validation_says_when_the_model_returns_its_input(unpaired_data: Path, tmp_path: Path, caplog) -> None:
    """A residual generator starts as the identity: after two steps it still returns its input,
    far less than day and night differ, and the validation at the final step (only that one) says
    so; the plain generator starts far from its input and gets no such line."""
    args = ["--data", str(unpaired_data), "--steps", "2", *TINY_CYCLEGAN, "--set", "train.val_every=1", "--set", "train.val_images=2"]
    for residual in (True, False):
        run = tmp_path / str(residual)
        caplog.clear()
        with caplog.at_level("WARNING", logger="translate"):
            assert main(["train", "--model", "cyclegan", "--out", str(run), *args, "--set", f"net.residual={residual}"]) == 0
        lines = [r.getMessage() for r in caplog.records if "returning its input" in r.getMessage()]
        changes = [r["val_change_l1"] for r in rows(run) if "val_change_l1" in r]
        assert len(changes) == 2  # steps 1 and 2
        if residual:
            (line,) = lines
            assert "levels of 255" in line and "net.residual=true" in line
            assert max(changes) < 0.01  # [-1, 1] units
        else:
            assert lines == [] and min(changes) > 0.05


def test_the_domain_gap_is_the_test_split_colour_difference_and_says_nothing_below_its_floor(tmp_path: Path) -> None:
    from translate.data.samples import make_sample_dataset
    from translate.data.unpaired import UnpairedDataset
    from translate.train.validation import MIN_DOMAIN_GAP, NO_CHANGE, Validator, domain_gap

    root = make_sample_dataset(tmp_path / "data", "unpaired", size=32, count=3)
    night = UnpairedDataset(root / "testA", root / "testB")
    gap = domain_gap(night)
    assert gap is not None and gap > 10 * MIN_DOMAIN_GAP  # day against night: far apart
    assert domain_gap(UnpairedDataset(root / "testA", root / "testA")) == 0.0
    assert domain_gap(UnpairedDataset(root / "testA", root / "testB", channels_b=1)) is None  # RGB -> grey
    judge = Validator.__new__(Validator)  # returns_input reads only the gap and the generator kind
    judge.domain_gap, judge.residual = gap, False
    assert judge.returns_input({"val_change_l1": 0.05 * gap}) is not None
    assert judge.returns_input({"val_change_l1": 0.2 * gap}) is None
    assert judge.returns_input({"val_cycle_l1": 0.0}) is None  # a paired model logs no change
    judge.domain_gap = MIN_DOMAIN_GAP / 2  # domains alike in colour (a texture change): only a change no one sees is claimed
    assert judge.returns_input({"val_change_l1": 0.3 * NO_CHANGE}) is not None
    assert judge.returns_input({"val_change_l1": 3 * NO_CHANGE}) is None
    judge.residual = True  # the hint for a residual generator that never moved
    assert "net.residual=false" in judge.returns_input({"val_change_l1": 0.0})
    judge.domain_gap = None  # A and B with different channels
    assert judge.returns_input({"val_change_l1": 0.0}) is None

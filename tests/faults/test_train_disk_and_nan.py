"""Faults injected into in-process training runs by monkeypatching: a full disk, NaN losses, vanishing files.

Each runs ``translate.cli.main`` (the CLI minus the interpreter) with tiny networks.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import translate.train.checkpoint as checkpoint_module
import translate.train.loop as loop_module
from translate.cli import main
from translate.formats import list_checkpoints
from translate.train.checkpoint import load_checkpoint

from .conftest import metrics_rows, one_error_line, train_args

# ---------------------------------------------------------------------------- full disk


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _fail_weights_file(monkeypatch) -> None:
    real, calls = checkpoint_module.save_file, []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:  # step 1 wrote model + state; this is step 2's model file
            Path(filename).write_bytes(b"\0" * 64)  # a full disk leaves a partial file behind
            raise _enospc(filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file)


def _fail_rename(monkeypatch) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src).name.startswith(".tmp-step_0000002"):
            raise _enospc(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _fail_pointer(monkeypatch) -> None:
    real, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "latest":
            calls.append(dst)
            if len(calls) == 2:
                raise _enospc(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _read_only(monkeypatch) -> None:
    # root ignores file modes, so an unwritable run directory is simulated where it bites: the
    # checkpoint folder cannot be created (as on a file system remounted read-only)
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name.startswith(".tmp-step_0000002"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


SAVE_FAULTS = {
    "weights file": _fail_weights_file,
    "rename into place": _fail_rename,
    "latest pointer": _fail_pointer,
    "run directory read-only": _read_only,
}


@pytest.mark.parametrize("where", list(SAVE_FAULTS))
def test_full_disk_during_checkpoint_save(where, tiny_unpaired, tmp_path, monkeypatch, capsys, reliability) -> None:
    run = tmp_path / "run"
    SAVE_FAULTS[where](monkeypatch)
    code = main(train_args(tiny_unpaired, run, 4))
    err = capsys.readouterr().err
    assert code == 2, err
    line = one_error_line(err)
    reason = os.strerror(errno.EROFS if where == "run directory read-only" else errno.ENOSPC)
    assert reason in line and "previous checkpoint is intact" in line and "step_0000002" in line
    ckpts = run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_0000001"
    assert load_checkpoint(run).counters.step == 1  # the previous checkpoint loads
    assert [p.name for p in list_checkpoints(ckpts)][0] == "step_0000001"
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".tmp-step")]  # the half-written folder is gone
    assert max(r["step"] for r in metrics_rows(run)) == 2  # training stopped at the failed save
    monkeypatch.undo()  # space freed: the run resumes from its last checkpoint
    assert main(["train", "--resume", str(run)]) == 0
    assert load_checkpoint(run).counters.step == 4
    what = "run directory read-only (EROFS)" if where == "run directory read-only" else f"disk full (ENOSPC) while saving: {where}"
    reliability.fault(
        what, "`translate train`", "one `error:` line, exit 2, previous checkpoint intact and loadable, no steps after it; resume works"
    )


def _fail_metrics(monkeypatch) -> None:
    real = loop_module.MetricsLog.write

    def write(self, row):
        if row.get("step") == 2:
            raise _enospc(self.path)
        return real(self, row)

    monkeypatch.setattr(loop_module.MetricsLog, "write", write)


def _fail_samples(monkeypatch) -> None:
    real = loop_module.save_grid

    def save_grid(path, rows):
        if Path(path).name == "step_0000002.png":
            raise _enospc(path)
        return real(path, rows)

    monkeypatch.setattr(loop_module, "save_grid", save_grid)


@pytest.mark.parametrize("where", ["metrics.jsonl", "sample grid"])
def test_full_disk_while_logging(where, tiny_unpaired, tmp_path, monkeypatch, capsys, reliability) -> None:
    run = tmp_path / "run"
    (_fail_metrics if where == "metrics.jsonl" else _fail_samples)(monkeypatch)
    try:
        code = main(train_args(tiny_unpaired, run, 3, "--set", "train.sample_every=1"))
    finally:
        reliability.fault(
            f"disk full (ENOSPC) while writing {where}", "`translate train`", "must stop with one `error:` line (exit 2), last checkpoint intact"
        )
    err = capsys.readouterr().err
    assert code == 2, err
    one_error_line(err)
    assert load_checkpoint(run).counters.step >= 1


# ---------------------------------------------------------------------------- non-finite losses


def _nan_objective(monkeypatch, bad_steps: set[int]) -> None:
    """Make the generator loss NaN at the given (1-based) steps."""
    original = loop_module.OBJECTIVES["cyclegan"]
    calls = []

    def generator_parts(cfg):
        first, *rest = original.generator_parts(cfg)

        def cycle_a(nets, batch, train_cfg):  # the first part: called once per step
            losses, outputs = first(nets, batch, train_cfg)
            calls.append(1)
            if len(calls) in bad_steps:
                losses = {**losses, "cycle_a": losses["cycle_a"] * float("nan")}
            return losses, outputs

        return (cycle_a, *rest)

    monkeypatch.setitem(loop_module.OBJECTIVES, "cyclegan", dataclasses.replace(original, generator_parts=generator_parts))


def all_checkpoints_finite(run: Path) -> bool:
    return all(
        torch.isfinite(v).all()
        for ckpt in list_checkpoints(run / "checkpoints")
        for v in load_file(str(ckpt / "model.safetensors")).values()
        if v.is_floating_point()
    )


def test_one_nan_step_is_skipped_and_logged(tiny_unpaired, tmp_path, monkeypatch, caplog, reliability) -> None:
    run = tmp_path / "run"
    _nan_objective(monkeypatch, {3})
    assert main(train_args(tiny_unpaired, run, 4, "--set", "train.keep_last=0")) == 0
    events = [r for r in metrics_rows(run) if r.get("event")]
    assert events == [{"step": 3, "event": "non_finite_skipped"}]
    assert "step 3: non-finite loss or gradient, update skipped" in caplog.text
    before, after = (load_file(str(run / "checkpoints" / f"step_{s:07d}" / "model.safetensors")) for s in (2, 3))
    assert all(torch.equal(before[k], after[k]) for k in before)  # step 3 changed no weight
    assert load_checkpoint(run).counters.step == 4 and all_checkpoints_finite(run)
    reliability.fault(
        "NaN loss at one step", "`translate train`", "update skipped (weights unchanged), logged in metrics.jsonl with its step; training went on"
    )


def test_repeated_nan_stops_with_a_clear_message(tiny_unpaired, tmp_path, monkeypatch, capsys, reliability) -> None:
    run = tmp_path / "run"
    _nan_objective(monkeypatch, set(range(2, 100)))
    code = main(train_args(tiny_unpaired, run, 30))
    err = capsys.readouterr().err
    assert code == 2
    line = one_error_line(err)
    assert "training diverged" in line and "10 consecutive" in line and "train.lr" in line and f"--resume {run}" in line
    events = [r["step"] for r in metrics_rows(run) if r.get("event") == "non_finite_skipped"]
    assert events == list(range(2, 12))
    assert max(r["step"] for r in metrics_rows(run)) == 11  # stopped there
    assert all_checkpoints_finite(run)
    reliability.fault(
        "NaN loss at every step from step 2",
        "`translate train`",
        "10 skipped steps logged, then `error: training diverged …` (exit 2); no non-finite checkpoint",
    )


def test_diverging_learning_rate_stops_cleanly(tiny_unpaired, tmp_path, capsys, reliability) -> None:
    run = tmp_path / "run"
    code = main(train_args(tiny_unpaired, run, 30, "--set", "train.lr=1e30"))
    err = capsys.readouterr().err
    assert code == 2
    assert "training diverged" in one_error_line(err)
    assert list_checkpoints(run / "checkpoints") and all_checkpoints_finite(run)
    reliability.fault(
        "a config that diverges (train.lr=1e30)",
        "`translate train`",
        "non-finite steps skipped, then a clear stop (exit 2); no non-finite checkpoint",
    )


def test_non_finite_weights_after_an_update_stop_cleanly(tiny_unpaired, tmp_path, monkeypatch, capsys, reliability) -> None:
    run = tmp_path / "run"
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        if self.state and next(iter(self.state.values()))["step"] >= 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    try:
        code = main(train_args(tiny_unpaired, run, 4))
    finally:
        # the guarantee that holds today: nothing non-finite reaches the disk
        assert all_checkpoints_finite(run)
        reliability.fault(
            "weights overflow to inf after an update", "`translate train`", "no non-finite checkpoint written; must stop with one `error:` line"
        )
    err = capsys.readouterr().err
    assert code == 2
    one_error_line(err)


@pytest.mark.parametrize("lr", ["inf", "nan", "-1"])
def test_invalid_learning_rate_is_refused(lr, tiny_unpaired, tmp_path, capsys, reliability) -> None:
    value = {"inf": ".inf", "nan": ".nan", "-1": "-1"}[lr]
    try:
        code = main(train_args(tiny_unpaired, tmp_path / "run", 2, "--set", f"train.lr={value}"))
    finally:
        reliability.bad_input(f"train.lr={lr}", "`translate train --set`", "must be refused with one `error:` line")
    err = capsys.readouterr().err
    assert code == 2
    assert "train.lr" in one_error_line(err)


# ---------------------------------------------------------------------------- files vanish


def test_training_image_deleted_mid_run_is_skipped(tiny_unpaired, tmp_path, monkeypatch, caplog, reliability) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_unpaired, data)
    victim = sorted((data / "trainA").iterdir())[1]
    real_build = loop_module.build_dataset

    def build_dataset(*args, **kwargs):
        dataset = real_build(*args, **kwargs)  # headers checked: the file was fine then
        victim.unlink()
        return dataset

    monkeypatch.setattr(loop_module, "build_dataset", build_dataset)
    assert main(train_args(data, tmp_path / "run", 6, "--set", "train.save_every=100")) == 0
    warnings = [r.getMessage() for r in caplog.records if "skipping unreadable image" in r.getMessage()]
    assert len(warnings) == 1 and str(victim) in warnings[0] and "not found" in warnings[0]
    reliability.fault(
        "a training image deleted after the dataset was listed",
        "`translate train`",
        "one warning naming the file; the next image used instead; training completed",
    )

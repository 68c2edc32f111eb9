"""Signals and SIGKILL during real training runs; resumed runs must match a never-stopped one bit for bit.

The runs are real processes: one through ``python -m translate`` itself, the others forked by
the zygote (``launcher.py``), which is the same CLI without the seconds of imports.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from translate.formats import list_checkpoints, resolve_checkpoint
from translate.train.checkpoint import load_checkpoint

from .conftest import TARGET, metrics_rows, train_args


def tensors_of(ckpt: Path) -> dict[str, torch.Tensor]:
    return {
        **{f"model/{k}": v for k, v in load_file(str(ckpt / "model.safetensors")).items()},
        **{f"state/{k}": v for k, v in load_file(str(ckpt / "state.safetensors")).items()},
    }


def assert_same_as_reference(run: Path, reference: dict[str, torch.Tensor]) -> None:
    final = run / "checkpoints" / f"step_{TARGET:07d}"
    assert (run / "checkpoints" / "latest").read_text().strip() == final.name
    got = tensors_of(final)
    assert got.keys() == reference.keys()
    different = [k for k in got if not torch.equal(got[k], reference[k])]
    assert not different, f"{len(different)} tensors differ from the never-stopped run, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(zygote, tiny_unpaired: Path, tmp_path_factory) -> tuple[dict[str, torch.Tensor], float]:
    """Final tensors of a run that was never stopped, and its wall time (same zygote, same threads)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    child = zygote.run(train_args(tiny_unpaired, run))
    assert child.status == 0, child.err()
    return tensors_of(run / "checkpoints" / f"step_{TARGET:07d}"), time.monotonic() - child.started


def wait_for_rows(run: Path, rows: int, proc_alive, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    metrics = run / "metrics.jsonl"
    while time.monotonic() < deadline and proc_alive():
        if metrics.exists() and len(metrics.read_text().splitlines()) >= rows:
            return
        time.sleep(0.005)
    raise AssertionError(f"training never logged {rows} steps")


# ---------------------------------------------------------------------------- SIGINT / SIGTERM


def check_stopped_run(run: Path, code: int, err: str, signum: int) -> int:
    assert code == 128 + signum, err
    assert f"signal {signal.Signals(signum).name}" in err
    match = re.search(r"stopped at step (\d+); continue with: translate train --resume (\S+)", err)
    assert match, err
    step = int(match.group(1))
    assert Path(match.group(2)) == run and 1 <= step < TARGET
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{step:07d}"
    assert load_checkpoint(run).counters.step == step  # a checkpoint of the step it stopped at
    assert max(r["step"] for r in metrics_rows(run)) == step  # and no step after it
    return step


def test_sigterm_real_process_checkpoints_and_resumes_exactly(zygote, reference, tiny_unpaired, tmp_path, reliability) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # as the zygote's children
    proc = subprocess.Popen(
        [sys.executable, "-m", "translate", *train_args(tiny_unpaired, run)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # signal early: even a test process stalled by a busy machine then stops it before its end
        wait_for_rows(run, 1, lambda: proc.poll() is None)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    step = check_stopped_run(run, proc.returncode, err, signal.SIGTERM)
    resumed = zygote.run(["train", "--resume", str(run)])
    assert resumed.status == 0, resumed.err()
    assert f"at step {step} " in resumed.err()
    assert_same_as_reference(run, reference[0])
    reliability.fault(
        "SIGTERM mid-training",
        "`python -m translate train`",
        f"exit 143 at step {step}, checkpoint of that step, `--resume` hint; resumed run bit-identical",
    )


def test_sigint_checkpoints_and_resumes_exactly(zygote, reference, tiny_unpaired, tmp_path, reliability) -> None:
    run = tmp_path / "run"
    child = zygote.spawn(train_args(tiny_unpaired, run))
    wait_for_rows(run, 1, child.alive)
    child.signal(signal.SIGINT)
    step = check_stopped_run(run, zygote.wait(child), child.err(), signal.SIGINT)
    resumed = zygote.run(["train", "--resume", str(run)])
    assert resumed.status == 0, resumed.err()
    assert_same_as_reference(run, reference[0])
    reliability.fault(
        "SIGINT (Ctrl-C) mid-training",
        "`translate train`",
        f"exit 130 at step {step}, checkpoint of that step, `--resume` hint; resumed run bit-identical",
    )


def test_second_sigint_stops_at_once_without_a_partial_checkpoint(zygote, reference, tiny_unpaired, tmp_path, reliability) -> None:
    run = tmp_path / "run"
    child = zygote.spawn(train_args(tiny_unpaired, run))
    wait_for_rows(run, 1, child.alive)
    child.signal(signal.SIGINT)
    time.sleep(0.002)  # the second Ctrl-C lands while the first is being handled (often mid-save)
    child.signal(signal.SIGINT)
    code = zygote.wait(child)
    assert code == 130, child.err()
    complete = list_checkpoints(run / "checkpoints")
    for ckpt in complete:
        assert load_checkpoint(ckpt).counters.step == int(ckpt.name.split("_")[1])
    if complete:  # the second signal may also cut the very first save short: then there is none
        assert (run / "checkpoints" / "latest").read_text().strip() in {p.name for p in complete}
    resumed = zygote.run(["train", "--resume", str(run)] if complete else train_args(tiny_unpaired, run))
    assert resumed.status == 0, resumed.err()
    assert_same_as_reference(run, reference[0])
    reliability.fault("two SIGINTs in a row", "`translate train`", "exit 130 at once; every checkpoint on disk complete; resumed run bit-identical")


# ---------------------------------------------------------------------------- SIGKILL


def _newest(run: Path) -> int:
    found = list_checkpoints(run / "checkpoints")
    return int(found[-1].name.split("_")[1]) if found else 0


def _kill_during_write(child, run: Path, step: int, delay: float, deadline: float) -> None:
    """SIGKILL ``delay`` seconds after the ``.tmp-`` folder of checkpoint ``step`` appears."""
    ckpts, prefix = run / "checkpoints", f".tmp-step_{step:07d}"
    while time.monotonic() < deadline and child.alive():
        try:
            if any(name.startswith(prefix) for name in os.listdir(ckpts)):
                time.sleep(delay)
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    child.signal(signal.SIGKILL)


def test_sigkill_at_random_moments_then_resume_is_exact(zygote, reference, tiny_unpaired, tmp_path, reliability) -> None:
    expected, duration = reference
    rng = random.Random(20240611)
    kills, trials, mid_write, lost = 0, 0, 0, 0
    while kills < 10 or not mid_write:
        trials += 1
        assert trials <= 20, f"{kills} kills ({mid_write} mid-write) in 20 runs: they kept finishing first"
        run = tmp_path / f"trial{trials}"
        # every third trial (and any beyond the tenth) aims at a checkpoint being written
        during_write = trials % 3 == 0 or kills >= 10
        child = zygote.spawn(train_args(tiny_unpaired, run))
        if during_write:
            _kill_during_write(child, run, rng.randint(1, TARGET - 1), rng.uniform(0, 0.002), child.started + 60)
        else:
            time.sleep(max(0.0, child.started + rng.uniform(0.05, 1.0) * duration - time.monotonic()))
        newest_before = _newest(run)  # complete before the kill: must survive it
        child.signal(signal.SIGKILL)
        if zygote.wait(child) != -signal.SIGKILL:
            continue  # it finished first: not a kill
        kills += 1
        ckpts = run / "checkpoints"
        left = sorted(p.name for p in ckpts.iterdir()) if ckpts.is_dir() else []
        mid_write += any(name.startswith(".tmp-step_") for name in left)
        complete = list_checkpoints(ckpts)
        assert not [p for p in complete if p.name.startswith(".tmp")]
        for ckpt in complete:  # everything under a final name is complete and loads
            assert load_checkpoint(ckpt).counters.step == int(ckpt.name.split("_")[1])
        if complete:
            assert resolve_checkpoint(run).name.startswith("step_")
        lost += _newest(run) < newest_before
        assert _newest(run) >= newest_before, f"trial {trials}: checkpoint {newest_before} lost; left {left}"

        pointer = (ckpts / "latest").read_text().strip() if (ckpts / "latest").exists() else ""
        args = ["train", "--resume", str(run)] if complete else train_args(tiny_unpaired, run)
        resumed = zygote.run(args)
        assert resumed.status == 0, f"trial {trials}, left {left}:\n{resumed.err()}"
        if complete:
            # the newest complete checkpoint, or the one `latest` names if the kill fell between
            # renaming a checkpoint into place and updating the pointer (one step redone, exactly)
            start = int(re.search(r"at step (\d+)", resumed.err()).group(1))
            assert start in {_newest_of(complete), _step_of(pointer)}, (start, left)
        assert_same_as_reference(run, expected)
        assert not [p for p in ckpts.iterdir() if p.name.startswith(".tmp-")]  # the next save cleaned up
    reliability.fault(
        f"SIGKILL at random moments ({kills} kills in {trials} runs, {mid_write} with a checkpoint half-written)",
        "`translate train --save-every 1`",
        "no `.tmp-` folder taken as a checkpoint; every `step_` folder complete; `--resume` reached the "
        "target with weights and optimizer state bit-identical to a never-killed run",
        checkpoints_lost=lost,
        count=kills,
    )


def _newest_of(complete: list[Path]) -> int:
    return int(complete[-1].name.split("_")[1])


def _step_of(name: str) -> int:
    return int(name.split("_")[1]) if name.startswith("step_") else -1

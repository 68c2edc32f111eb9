"""Checkpoint format: round trip, atomicity, fallback, safety of metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from translate.config import RunConfig
from translate.errors import UserError
from translate.formats import checkpoint_candidates, load_weights, read_generator
from translate.train.checkpoint import Counters, flatten_state, load_checkpoint, save_checkpoint, unflatten_state


def small_nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"gen_ab": torch.nn.Conv2d(3, 3, 3), "disc_b": torch.nn.Conv2d(3, 1, 3)}


def test_flatten_round_trip_of_optimizer_state() -> None:
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    flat = json.loads(json.dumps(flatten_state(opt.state_dict(), "opt.", tensors)))
    restored = unflatten_state(flat, tensors)
    opt2 = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt2.load_state_dict(restored)
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(v, opt2.state_dict()["state"][0][k])
    assert opt2.param_groups[0]["betas"][0] == 0.5


def test_save_load_prune_and_latest(tmp_path: Path) -> None:
    nets = small_nets()
    cfg = RunConfig()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, cfg, nets, {"x": torch.tensor([step])}, Counters(step, 0, step), keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_0000003", "step_0000004"]
    loaded = load_checkpoint(tmp_path)
    assert loaded.counters == Counters(4, 0, 4) and int(loaded.state["x"]) == 4
    assert torch.equal(loaded.weights["gen_ab"]["weight"], nets["gen_ab"].weight)


def test_interrupted_write_and_bad_pointer_fall_back(tmp_path: Path) -> None:
    nets = small_nets()
    save_checkpoint(tmp_path, RunConfig(), nets, {}, Counters(5), keep_last=3)
    root = tmp_path / "checkpoints"
    # a write that died half-way: a temporary folder with a truncated file, never taken as complete
    partial = root / ".tmp-step_0000006-123"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 10)
    # an unrenamed step folder missing its state file is incomplete too
    (root / "step_0000007").mkdir()
    (root / "step_0000007" / "model.safetensors").write_bytes(b"junk")
    (root / "latest").write_text("step_0000009\n")  # points at nothing
    assert [p.name for p in checkpoint_candidates(tmp_path)] == ["step_0000005"]
    assert load_checkpoint(tmp_path).counters.step == 5
    # the next save cleans the temporary folder
    save_checkpoint(tmp_path, RunConfig(), nets, {}, Counters(8), keep_last=3)
    assert not partial.exists()


def test_non_finite_weights_are_never_written(tmp_path: Path) -> None:
    nets = small_nets()
    with torch.no_grad():
        nets["gen_ab"].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="non-finite"):
        save_checkpoint(tmp_path, RunConfig(), nets, {}, Counters(1), keep_last=1)
    assert checkpoint_candidates(tmp_path) == []


def test_unwritable_run_directory_gives_user_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions; a file where the folder should be fails the same way
        (tmp_path / "checkpoints").write_text("not a folder")
    else:  # pragma: no cover
        tmp_path.chmod(0o500)
    with pytest.raises(UserError, match="could not be written"):
        save_checkpoint(tmp_path, RunConfig(), small_nets(), {}, Counters(1), keep_last=1)


def test_weights_with_wrong_shape_or_keys_are_rejected() -> None:
    net = torch.nn.Conv2d(3, 3, 3)
    with pytest.raises(UserError, match="shape"):
        load_weights(net, {"weight": torch.zeros(3, 3, 5, 5), "bias": torch.zeros(3)}, "x.safetensors")
    with pytest.raises(UserError, match="missing"):
        load_weights(net, {"weight": torch.zeros(3, 3, 3, 3)}, "x.safetensors")


def test_foreign_and_malformed_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain), metadata={"format": "something-else"})
    with pytest.raises(UserError, match="not a translate model"):
        read_generator(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(UserError, match="too large|cannot be read"):
        read_generator(junk)
    bad_meta = tmp_path / "bad.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad_meta), metadata={"format": "translate.generator", "version": "1", "net_config": "{not json"})
    with pytest.raises(UserError, match="JSON"):
        read_generator(bad_meta)
    evil = tmp_path / "evil.safetensors"
    meta = {"format": "translate.generator", "version": "1", "net_config": json.dumps({"generator": "resnet_9blocks", "__class__": "os.system"})}
    save_file({"w": torch.zeros(2)}, str(evil), metadata=meta)
    with pytest.raises(UserError, match="unknown key"):
        read_generator(evil)

"""Checkpoints: safetensors only, written atomically, carrying their own architecture.

Layout of a run directory::

    RUN/config.yaml                        resolved config of the run
    RUN/checkpoints/step_0001000/model.safetensors   all network weights (+ config in metadata)
    RUN/checkpoints/step_0001000/state.safetensors   optimizers, schedulers, RNG, pools, counters
    RUN/checkpoints/latest                 name of the newest complete checkpoint
    RUN/checkpoints/best/                  best checkpoint by the validation metric (if any)

The file format of the weights and the run layout are :mod:`translate.formats`'; this module
holds what only training needs: the training state beside the weights, and writing both.

A checkpoint directory is first written under a temporary ``.tmp-step_…`` name
(:func:`translate.files.atomic_path`) and renamed into place only when both files are complete
and synced, so a directory under a final ``step_…`` name is always complete; an interrupted
write leaves a ``.tmp-`` folder that the next save removes.

Nothing in a checkpoint is executed: tensors come from safetensors, everything else is JSON,
validated before use (see ``config.from_dict``).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from translate.config import RunConfig, to_json
from translate.errors import UserError
from translate.files import atomic_path, atomic_write, is_temp
from translate.formats import (
    FORMAT_CHECKPOINT,
    FORMAT_VERSION,
    MODEL_FILE,
    STATE_FILE,
    list_checkpoints,
    load_tensors,
    named,
    read_metadata,
    read_model_file,
    resolve_checkpoint,
)

log = logging.getLogger("translate")


class NonFiniteWeights(RuntimeError):
    """Raised instead of writing a checkpoint whose weights contain NaN or Inf."""


# ----------------------------------------------------------------------------------------
# nested state <-> (tensors, JSON)


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors`` and leave a JSON reference."""
    if isinstance(obj, torch.Tensor):
        key = prefix.rstrip(".")
        # clone: safetensors refuses tensors that share storage, and the live ones keep training
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten_key(k), flatten_state(v, f"{prefix}{k}.", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}{i}.", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def flatten_key(key: Any) -> Any:
    # optimizer state dicts use int keys; JSON objects would turn them into strings
    if isinstance(key, (int, str)):
        return key
    raise TypeError(f"cannot store dict key {key!r} in a checkpoint")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise UserError(f"checkpoint state refers to a missing tensor {key!r}; the file is damaged")
            return tensors[key]
        if set(obj) == {"__dict__"} and isinstance(obj["__dict__"], list):
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        raise UserError("checkpoint state: malformed entry; the file is damaged")
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# ----------------------------------------------------------------------------------------
# saving


@dataclass
class Counters:
    """Where training stands: enough to continue exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    sample_offset: int = 0  # samples of the current epoch already consumed, over all ranks


def save_checkpoint(
    run_dir: Path,
    cfg: RunConfig,
    nets: dict[str, torch.nn.Module],
    state: dict[str, Any],
    counters: Counters,
    *,
    keep_last: int,
    name: str | None = None,
) -> Path:
    """Write ``RUN/checkpoints/step_XXXXXXX`` atomically and point ``latest`` at it.

    Args:
        nets: modules by name (``gen_ab``, ``disc_b``, …), unwrapped (no DDP).
        state: everything else to restore (optimizer/scheduler state dicts, RNG, pools); a
            nested structure of dicts, lists, tensors and JSON scalars.
        name: directory name; default ``step_{step:07d}``. ``best`` is never pruned.

    Raises:
        UserError: when the run directory cannot be written (full disk, permissions); the
            previous checkpoint stays intact.
    """
    ckpt_root = run_dir / "checkpoints"
    name = name or f"step_{counters.step:07d}"
    final = ckpt_root / name
    weights = {}
    for net_name, module in nets.items():
        for key, value in module.state_dict().items():
            weights[f"{net_name}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
    for key, value in weights.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise NonFiniteWeights(f"refusing to write a checkpoint with non-finite weights ({key})")
    meta = {
        "format": FORMAT_CHECKPOINT,
        "version": FORMAT_VERSION,
        "model": cfg.model,
        "run_config": to_json(cfg),
        "nets": json.dumps(sorted(nets)),
        "step": str(counters.step),
    }
    tensors: dict[str, torch.Tensor] = {}
    flat = flatten_state(state, "", tensors)
    state_meta = {
        "format": FORMAT_CHECKPOINT + ".state",
        "version": FORMAT_VERSION,
        "state": json.dumps(flat),
        "counters": json.dumps(counters.__dict__),
    }
    hint = "free disk space or fix permissions, the previous checkpoint is intact"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(ckpt_root)
    except OSError as exc:
        raise UserError(f"{final}: checkpoint could not be written ({exc.strerror or exc}); {hint}") from None
    with atomic_path(final, hint=hint) as tmp:  # re-saving the same step (or best) replaces it whole
        tmp.mkdir()
        save_file(weights, str(tmp / MODEL_FILE), metadata=meta)
        save_file(tensors, str(tmp / STATE_FILE), metadata=state_meta)
    if name != "best":
        try:
            atomic_write(ckpt_root / "latest", name + "\n", hint=hint)
        except UserError as exc:
            raise UserError(f"{final}: written, but {exc}") from None
    if name != "best":
        prune_checkpoints(ckpt_root, keep_last)
    return final


def _remove_stale_tmp(ckpt_root: Path) -> None:
    for entry in ckpt_root.iterdir():
        if is_temp(entry.name):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


def prune_checkpoints(ckpt_root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# loading


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: RunConfig
    weights: dict[str, dict[str, torch.Tensor]]  # net name -> its state dict
    state: dict[str, Any] | None
    counters: Counters


def load_checkpoint(path: Path, *, with_state: bool = True, prefer_best: bool = False) -> LoadedCheckpoint:
    """Read a checkpoint directory (or a run directory's latest; ``prefer_best``: its best, when
    validation kept one) without building networks."""
    ckpt = resolve_checkpoint(path, prefer_best=prefer_best)
    cfg, weights, meta = read_model_file(ckpt)
    state = None
    counters = Counters()
    if with_state:
        state_path = ckpt / STATE_FILE
        smeta = read_metadata(state_path)
        try:
            flat = json.loads(smeta["state"])
            raw_counters = json.loads(smeta["counters"])
            counters = Counters(**{k: int(raw_counters[k]) for k in ("step", "epoch", "sample_offset")})
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{state_path}: training state metadata is malformed; the file is damaged") from None
        try:
            state = unflatten_state(flat, load_tensors(state_path))
        except UserError as exc:
            raise named(state_path, exc) from None
        if not isinstance(state, dict):
            raise UserError(f"{state_path}: training state is malformed (not a mapping); the file is damaged")
    else:
        try:
            counters.step = int(meta.get("step", "0"))
        except ValueError:
            counters.step = 0
    return LoadedCheckpoint(ckpt, cfg, weights, state, counters)

"""The model file format: safetensors weights whose metadata carries their architecture.

Two kinds of file, both safetensors with JSON metadata (nothing in them is executed):

* a **generator file** (``format: translate.generator``): one generator's weights and its
  ``NetConfig``; what ``translate export`` and fine-tuning hand around.
* a run's **checkpoint model file** ``RUN/checkpoints/step_XXXXXXX/model.safetensors``
  (``format: translate.checkpoint``): every network of a run, keyed ``<net>.<param>``, with the
  run's config. The training state beside it (``state.safetensors``) is ``train/checkpoint.py``'s.

Layout of a run directory::

    RUN/config.yaml                                   resolved config of the run
    RUN/checkpoints/step_0001000/model.safetensors    all network weights (+ config in metadata)
    RUN/checkpoints/step_0001000/state.safetensors    optimizers, schedulers, RNG, pools, counters
    RUN/checkpoints/latest                            name of the newest complete checkpoint
    RUN/checkpoints/best/                             best checkpoint by the validation metric

This module reads both kinds for inference and fine-tuning, checks every header, shape and dtype
before anything is built (architectures from a file are built on the meta device first), and
writes generator files atomically.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from translate.config import NetConfig, RunConfig, net_from_json, run_from_json, to_json
from translate.errors import UserError
from translate.files import atomic_path

FORMAT_CHECKPOINT = "translate.checkpoint"
FORMAT_GENERATOR = "translate.generator"
FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
MAX_METADATA_BYTES = 16 * 1024 * 1024  # JSON state of a checkpoint is small; refuse absurd headers
STEP_DIR = re.compile(r"^step_(\d{7,})$")
BEST_DIR = "best"
EMA_PREFIX = "ema_"  # a checkpoint's averaged generator: ema_gen_ab (train.ema_decay), what inference reads first


def named(path: Path, exc: UserError) -> UserError:
    """The same error, prefixed with the file it came from (unless it already names it)."""
    text = str(exc)
    return exc if text.startswith(str(path)) else UserError(f"{path}: {text}")


def read_metadata(path: Path) -> dict[str, str]:
    """Header metadata of a safetensors file, refusing oversized or malformed headers."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8:
            raise UserError(f"{path}: not a safetensors file (too short); pass a checkpoint written by translate")
        header_len = int.from_bytes(head, "little")
        if header_len > MAX_METADATA_BYTES:
            raise UserError(f"{path}: header of {header_len} bytes is too large; the file is damaged or not a checkpoint")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as safetensors ({exc}); pass a checkpoint written by translate") from None
    return dict(meta)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as safetensors ({exc}); the file is damaged") from None


def save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (:func:`translate.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


# ----------------------------------------------------------------------------------------
# where a run keeps its model files


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    if not ckpt_root.is_dir():
        return []
    found = []
    for entry in ckpt_root.iterdir():
        m = STEP_DIR.match(entry.name)
        if m and entry.is_dir() and (entry / MODEL_FILE).is_file() and (entry / STATE_FILE).is_file():
            found.append((int(m.group(1)), entry))
    return [p for _, p in sorted(found)]


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, the one ``latest`` names first, then the rest newest first."""
    ckpt_root = run_dir / "checkpoints"
    complete = list_checkpoints(ckpt_root)
    ordered = list(reversed(complete))
    pointer = ckpt_root / "latest"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    if STEP_DIR.match(name) and (ckpt_root / name) in complete:
        ordered.remove(ckpt_root / name)
        ordered.insert(0, ckpt_root / name)
    return ordered


def best_checkpoint(run_dir: Path) -> Path | None:
    """``RUN/checkpoints/best`` when it is complete (validation keeps it: ``train.val_every``)."""
    best = Path(run_dir) / "checkpoints" / BEST_DIR
    return best if (best / MODEL_FILE).is_file() else None


def resolve_checkpoint(path: Path, *, prefer_best: bool = False) -> Path:
    """A run directory → its latest complete checkpoint dir (``prefer_best``: its best one, when
    validation kept one); a checkpoint dir → itself."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    if path.is_dir():
        best = best_checkpoint(path) if prefer_best else None
        if best is not None:
            return best
        candidates = checkpoint_candidates(path)
        if candidates:
            return candidates[0]
        raise UserError(f"{path}: no complete checkpoint in {path / 'checkpoints'}; train first or pass another run")
    raise UserError(f"{path}: not found; pass a run directory, a checkpoint directory or a .safetensors file")


def read_model_file(ckpt: Path) -> tuple[RunConfig, dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """A checkpoint directory's model file: (run config, weights by net name, metadata)."""
    model_path = ckpt / MODEL_FILE
    meta = read_metadata(model_path)
    if meta.get("format") != FORMAT_CHECKPOINT:
        raise UserError(f"{model_path}: not a translate checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise UserError(f"{model_path}: checkpoint format version {meta.get('version')!r} is not supported; upgrade translate")
    try:
        cfg = run_from_json(meta.get("run_config", ""))
    except UserError as exc:
        raise named(model_path, exc) from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_tensors(model_path).items():
        net_name, _, param = key.partition(".")
        weights.setdefault(net_name, {})[param] = value
    return cfg, weights, meta


# ----------------------------------------------------------------------------------------
# checking weights against an architecture


def check_weights(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], source: str) -> None:
    """Refuse ``weights`` unless keys, shapes and dtype kinds match ``expected`` (a state dict,
    possibly of a module on the meta device, so nothing is allocated before the check)."""
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserError(f"{source}: weights do not match the architecture ({detail}); check --arch or the config")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise UserError(
                f"{source}: weight {key} has shape {tuple(value.shape)}, the architecture needs "
                f"{tuple(expected[key].shape)}; check --arch or the config"
            )
        if value.dtype.is_floating_point != expected[key].dtype.is_floating_point:
            raise UserError(f"{source}: weight {key} has dtype {value.dtype}; expected {expected[key].dtype}")


def build_checked(build: Any, weights: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """Build a network with ``build()`` only after its shapes were checked against ``weights``.

    The architecture comes from a file's metadata; building it on the meta device first means
    a hostile config (say, 20,000 channels) is refused before any memory is allocated.
    """
    try:
        with torch.device("meta"):
            probe = build()
    except UserError as exc:
        raise named(Path(source), exc) from None
    check_weights(probe.state_dict(), weights, source)
    module = build()
    load_weights(module, weights, source)
    return module


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the source."""
    expected = module.state_dict()
    check_weights(expected, weights, source)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)


# ----------------------------------------------------------------------------------------
# generator files


def save_generator(path: Path, module: torch.nn.Module, net_cfg: NetConfig, *, dtype: torch.dtype | None = None) -> None:
    """Write one generator with its architecture in metadata (atomic).

    ``net_cfg.in_channels``/``out_channels`` must be those of this generator.
    """
    tensors = {}
    for k, v in module.state_dict().items():
        v = v.detach().to("cpu", copy=True).contiguous()
        tensors[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    meta = {"format": FORMAT_GENERATOR, "version": FORMAT_VERSION, "net_config": to_json(net_cfg)}
    save_safetensors(path, tensors, meta)


def generator_net_config(cfg: RunConfig, direction: str) -> NetConfig:
    """The NetConfig of the generator for ``direction`` (BtoA swaps channels)."""
    if direction == "AtoB":
        return cfg.net
    return replace(cfg.net, in_channels=cfg.net.out_channels, out_channels=cfg.net.in_channels)


def read_generator(path: str | Path, direction: str = "AtoB") -> tuple[dict[str, torch.Tensor], NetConfig, str]:
    """Weights and architecture of one generator from a run dir, checkpoint dir or generator file.

    A run directory gives its best checkpoint when validation kept one, else its latest; a
    checkpoint gives its averaged generator (``ema_gen_ab``) when it has one. The source
    description says which step and which weights were chosen.

    Returns:
        (state_dict, net_config, source description)
    """
    path = Path(path)
    if direction not in ("AtoB", "BtoA"):
        raise UserError(f"--direction {direction!r}: choose AtoB or BtoA")
    if path.is_file():
        meta = read_metadata(path)
        fmt = meta.get("format")
        if fmt == FORMAT_GENERATOR:
            if meta.get("version") != FORMAT_VERSION:
                raise UserError(f"{path}: generator format version {meta.get('version')!r} is not supported; upgrade translate")
            try:
                net_cfg = net_from_json(meta.get("net_config", ""))
            except UserError as exc:
                raise named(path, exc) from None
            return load_tensors(path), net_cfg, str(path)
        if fmt == FORMAT_CHECKPOINT:
            path = path.parent
        else:
            raise UserError(f"{path}: not a translate model (format {fmt!r}); pass a run directory, a checkpoint or a generator file")
    ckpt = resolve_checkpoint(path, prefer_best=True)
    cfg, weights, meta = read_model_file(ckpt)
    name = "gen_ab" if direction == "AtoB" else "gen_ba"
    if name not in weights:
        raise UserError(f"{ckpt}: has no {direction} generator ({cfg.model} trains only AtoB); use --direction AtoB")
    averaged = EMA_PREFIX + name in weights
    return weights[EMA_PREFIX + name if averaged else name], generator_net_config(cfg, direction), describe(ckpt, meta, averaged)


def describe(ckpt: Path, meta: dict[str, str], averaged: bool) -> str:
    """``RUN/checkpoints/best (step 800, the best by validation; averaged weights)``."""
    details = [f"step {meta['step']}"] if meta.get("step", "").isdigit() else []
    if ckpt.name == BEST_DIR:
        details.append("the best by validation")
    if averaged:
        details.append("averaged weights")
    return f"{ckpt} ({', '.join(details)})" if details else str(ckpt)

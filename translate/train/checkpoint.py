"""Checkpoints: safetensors only, written atomically, carrying their own architecture.

Layout of a run directory::

    RUN/config.yaml                        resolved config of the run
    RUN/checkpoints/step_0001000/model.safetensors   all network weights (+ config in metadata)
    RUN/checkpoints/step_0001000/state.safetensors   optimizers, schedulers, RNG, pools, counters
    RUN/checkpoints/latest                 name of the newest complete checkpoint
    RUN/checkpoints/best/                  best checkpoint by the validation metric (if any)

A checkpoint directory is first written as ``.tmp-step_…`` and renamed into place only when
both files are complete and synced, so a directory under a final ``step_…`` name is always
complete; an interrupted write leaves a ``.tmp-`` folder that the next save removes.

Nothing in a checkpoint is executed: tensors come from safetensors, everything else is JSON,
validated before use (see ``config.from_dict``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from translate.config import NetConfig, RunConfig, net_from_json, run_from_json, to_json
from translate.errors import UserError

log = logging.getLogger("translate")

FORMAT_CHECKPOINT = "translate.checkpoint"
FORMAT_GENERATOR = "translate.generator"
FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
MAX_METADATA_BYTES = 16 * 1024 * 1024  # JSON state of a checkpoint is small; refuse absurd headers
STEP_DIR = re.compile(r"^step_(\d{7,})$")


class NonFiniteWeights(RuntimeError):
    """Raised instead of writing a checkpoint whose weights contain NaN or Inf."""


def _named(path: Path, exc: UserError) -> UserError:
    """The same error, prefixed with the file it came from (unless it already names it)."""
    text = str(exc)
    return exc if text.startswith(str(path)) else UserError(f"{path}: {text}")


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
# atomic file helpers


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_file(tensors, str(path), metadata=metadata)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


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


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as safetensors ({exc}); the file is damaged") from None


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
    tmp = ckpt_root / f".tmp-{name}-{os.getpid()}"
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
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(ckpt_root)
        tmp.mkdir()
        _save_safetensors(tmp / MODEL_FILE, weights, meta)
        _save_safetensors(tmp / STATE_FILE, tensors, state_meta)
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (or best): move the old one aside first
            old = ckpt_root / f".tmp-old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(ckpt_root)
        if name != "best":
            write_text_atomic(ckpt_root / "latest", name + "\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(
            f"{final}: checkpoint could not be written ({exc.strerror or exc}); "
            "free disk space or fix permissions, the previous checkpoint is intact"
        ) from None
    if name != "best":
        prune_checkpoints(ckpt_root, keep_last)
    return final


def _remove_stale_tmp(ckpt_root: Path) -> None:
    for entry in ckpt_root.iterdir():
        if entry.name.startswith(".tmp-"):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)


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


def prune_checkpoints(ckpt_root: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in list_checkpoints(ckpt_root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# loading


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


def resolve_checkpoint(path: Path) -> Path:
    """A run directory → its latest complete checkpoint dir; a checkpoint dir → itself."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    if path.is_dir():
        candidates = checkpoint_candidates(path)
        if candidates:
            return candidates[0]
        raise UserError(f"{path}: no complete checkpoint in {path / 'checkpoints'}; train first or pass another run")
    raise UserError(f"{path}: not found; pass a run directory, a checkpoint directory or a .safetensors file")


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: RunConfig
    weights: dict[str, dict[str, torch.Tensor]]  # net name -> its state dict
    state: dict[str, Any] | None
    counters: Counters


def load_checkpoint(path: Path, *, with_state: bool = True) -> LoadedCheckpoint:
    """Read a checkpoint directory (or a run directory's latest) without building networks."""
    ckpt = resolve_checkpoint(path)
    model_path = ckpt / MODEL_FILE
    meta = read_metadata(model_path)
    if meta.get("format") != FORMAT_CHECKPOINT:
        raise UserError(f"{model_path}: not a translate checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise UserError(f"{model_path}: checkpoint format version {meta.get('version')!r} is not supported; upgrade translate")
    try:
        cfg = run_from_json(meta.get("run_config", ""))
    except UserError as exc:
        raise _named(model_path, exc) from None
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in _load_tensors(model_path).items():
        net_name, _, param = key.partition(".")
        weights.setdefault(net_name, {})[param] = value
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
            state = unflatten_state(flat, _load_tensors(state_path))
        except UserError as exc:
            raise _named(state_path, exc) from None
        if not isinstance(state, dict):
            raise UserError(f"{state_path}: training state is malformed (not a mapping); the file is damaged")
    else:
        try:
            counters.step = int(meta.get("step", "0"))
        except ValueError:
            counters.step = 0
    return LoadedCheckpoint(ckpt, cfg, weights, state, counters)


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
        raise _named(Path(source), exc) from None
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
# generator-only files


def save_generator(path: Path, module: torch.nn.Module, net_cfg: NetConfig, *, dtype: torch.dtype | None = None) -> None:
    """Write one generator with its architecture in metadata (atomic).

    ``net_cfg.in_channels``/``out_channels`` must be those of this generator.
    """
    tensors = {}
    for k, v in module.state_dict().items():
        v = v.detach().to("cpu", copy=True).contiguous()
        tensors[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    meta = {"format": FORMAT_GENERATOR, "version": FORMAT_VERSION, "net_config": to_json(net_cfg)}
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        _save_safetensors(tmp, tensors, meta)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: could not be written ({exc.strerror or exc})") from None


def generator_net_config(cfg: RunConfig, direction: str) -> NetConfig:
    """The NetConfig of the generator for ``direction`` (BtoA swaps channels)."""
    from dataclasses import replace

    if direction == "AtoB":
        return cfg.net
    return replace(cfg.net, in_channels=cfg.net.out_channels, out_channels=cfg.net.in_channels)


def read_generator(path: str | Path, direction: str = "AtoB") -> tuple[dict[str, torch.Tensor], NetConfig, str]:
    """Weights and architecture of one generator from a run dir, checkpoint dir or generator file.

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
                raise _named(path, exc) from None
            return _load_tensors(path), net_cfg, str(path)
        if fmt == FORMAT_CHECKPOINT:
            path = path.parent
        else:
            raise UserError(f"{path}: not a translate model (format {fmt!r}); pass a run directory, a checkpoint or a generator file")
    loaded = load_checkpoint(path, with_state=False)
    name = "gen_ab" if direction == "AtoB" else "gen_ba"
    if name not in loaded.weights:
        raise UserError(
            f"{loaded.path}: has no {direction} generator ({loaded.cfg.model} trains only AtoB); use --direction AtoB"
        )
    return loaded.weights[name], generator_net_config(loaded.cfg, direction), str(loaded.path)

"""Generators trained elsewhere: the reference CycleGAN/pix2pix ``.pth`` layout.

The reference code (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) saves each
generator as a plain PyTorch state dict (``latest_net_G_A.pth``, ``latest_net_G.pth``, …) of
``resnet_6blocks``, ``resnet_9blocks``, ``unet_128`` or ``unet_256``. Our generators keep its
module order and ``nn.Sequential`` indices, so the keys map one to one once the variants seen
in the wild are normalised:

* a ``module.`` prefix (saved from ``DataParallel``);
* ``block`` instead of ``conv_block`` inside residual blocks (re-implementations);
* ``num_batches_tracked`` buffers (added by PyTorch 0.4.1; refilled when batch norm needs them);
* running-stat buffers of instance-norm layers, saved by PyTorch < 0.4 and never used at test
  time by the reference (it deletes them on load, as we do).

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only. A
pickle that carries code is refused, never executed.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch

from translate.config import NetConfig, NormKind
from translate.errors import UserError

_RESNET_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.")
# What torch's weights-only unpickler says when a pickle asks to import or call something
_CODE_MARKERS = re.compile(r"GLOBAL|Can only (?:create|build)|call reduce")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_CONTAINER_KEYS = ("state_dict", "model_state_dict")


def read_reference_generator(path: str | Path, arch: str | None = None) -> tuple[dict[str, torch.Tensor], NetConfig, str]:
    """Read a reference-layout generator ``.pth`` and map it onto our architecture.

    Args:
        path: the ``.pth`` file (a state dict, possibly inside ``{"state_dict": …}``).
        arch: ``resnet_6blocks``, ``resnet_9blocks``, ``unet_128`` or ``unet_256``; inferred
            from the keys when None (residual blocks counted, U-Net depth from the nesting).
            Channels, ``base_channels_g`` (ngf) and the norm are always inferred: ``instance``
            (no norm parameters), ``instance_affine`` (norm weight and bias, no running stats),
            ``batch`` (running stats, bias-free convolutions) or ``none``.

    Returns:
        (state dict with our keys, float32 tensors; the generator's ``NetConfig``; a source
        description for messages).

    Raises:
        UserError: unreadable file, a pickle carrying code, keys of another architecture, or
            any tensor whose shape the architecture does not expect (naming file and key).
    """
    path = Path(path)
    raw = _load(path)
    state = _normalise_keys(raw, path)
    net_cfg = _infer_config(state, path, arch)
    weights = _map_to_ours(state, net_cfg, path)
    source = f"{path} (reference {net_cfg.generator}, ngf {net_cfg.base_channels_g}, {net_cfg.norm} norm)"
    return weights, net_cfg, source


# ----------------------------------------------------------------------------------------
# reading


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if not _CODE_MARKERS.search(message):  # a damaged file or not a pickle at all
            first = (message.split("WeightsUnpickler error:")[-1].strip().splitlines() or ["unpickling failed"])[0]
            raise UserError(f"{path}: not a readable PyTorch weights file ({first})") from None
        found = _GLOBAL.search(message)
        detail = f" (it names {found.group(1)})" if found else ""
        raise UserError(
            f"{path}: refused: the file contains code, not just weights{detail}; "
            "only plain state dicts are loaded, re-save it with torch.save(net.state_dict())"
        ) from None
    except FileNotFoundError:
        raise UserError(f"{path}: not found") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable PyTorch weights file ({first})") from None
    if isinstance(obj, dict):
        for key in _CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        what = f"a dict with keys {', '.join(map(str, list(obj)[:5]))}" if isinstance(obj, dict) and obj else type(obj).__name__
        raise UserError(f"{path}: expected a generator state dict (names → tensors), found {what}")
    return obj


def _normalise_keys(raw: dict[str, torch.Tensor], path: Path) -> OrderedDict[str, torch.Tensor]:
    """Strip ``module.``, rename ``block`` → ``conv_block``, drop ``num_batches_tracked``."""
    keys = [str(k) for k in raw]
    strip = all(k.startswith("module.") for k in keys)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in zip(keys, raw.values(), strict=True):
        if strip:
            key = key[len("module.") :]
        key = re.sub(r"^(model\.\d+)\.block\.", r"\1.conv_block.", key)
        if key.endswith("num_batches_tracked"):
            continue
        if not value.is_floating_point():
            raise UserError(f"{path}: tensor {key} has dtype {value.dtype}; expected floating-point weights")
        state[key] = value
    return state


# ----------------------------------------------------------------------------------------
# architecture inference


def _infer_config(state: dict[str, torch.Tensor], path: Path, arch: str | None) -> NetConfig:
    from translate.nets import generator_names

    if arch is not None and arch not in generator_names():
        raise UserError(f"--arch {arch!r}: unknown generator; choose one of {', '.join(generator_names())}")
    blocks = sorted({int(m.group(1)) for k in state if (m := _RESNET_BLOCK.match(k))})
    if blocks:
        family = "resnet"
        first, last = _first_and_last_conv(state, path, "model.")
        base_channels, in_channels = first.shape[:2]
        out_channels = last.shape[0]
        second_conv = state.get(f"model.{blocks[0]}.conv_block.6.weight")
        dropout = second_conv is not None and second_conv.ndim == 4  # Dropout shifts the 2nd conv
        inferred = f"resnet_{len(blocks)}blocks"
    elif any(k.startswith("model.model.") for k in state):
        family = "unet"
        down, up = state.get("model.model.0.weight"), state.get("model.model.3.weight")
        if down is None or up is None or down.ndim != 4 or up.ndim != 4:
            raise UserError(f"{path}: U-Net keys without an outermost conv (model.model.0 / model.model.3); not a reference U-Net")
        base_channels, in_channels = down.shape[:2]
        out_channels = up.shape[1]  # ConvTranspose2d weights are (in, out, kH, kW)
        depth = max(k.split(".").count("model") for k in state) - 1
        inferred = f"unet_{2**depth}"
        dropout = False  # appended after the up path: no key moves, and eval mode ignores it
    else:
        sample = ", ".join(list(state)[:3])
        raise UserError(
            f"{path}: not a reference CycleGAN/pix2pix generator (keys {sample} …); expected model.N.conv_block.* (ResNet) or model.model.* (U-Net)"
        )
    name = arch or inferred
    if arch is None and name not in generator_names():
        raise UserError(
            f"{path}: looks like a {inferred} generator, which translate does not build; "
            f"pass --arch with one of {', '.join(generator_names())} if that is wrong"
        )
    if not name.startswith(family):
        raise UserError(f"{path}: --arch {name} does not match the file, which holds a {family} generator ({inferred})")
    return NetConfig(
        generator=name,
        in_channels=int(in_channels),
        out_channels=int(out_channels),
        base_channels_g=int(base_channels),
        norm=_infer_norm(state),
        dropout=dropout,
    )


def _first_and_last_conv(state: dict[str, torch.Tensor], path: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    convs = [(int(k.split(".")[1]), v) for k, v in state.items() if re.fullmatch(r"model\.\d+\.weight", k) and v.ndim == 4]
    if not convs:
        raise UserError(f"{path}: no convolution weights under {prefix}N.weight; not a reference ResNet generator")
    convs.sort(key=lambda item: item[0])
    return convs[0][1], convs[-1][1]


def _infer_norm(state: dict[str, torch.Tensor]) -> NormKind:
    """The norm from the parameters: see ``read_reference_generator``."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = value
    convs = [m for m in modules.values() if "weight" in m and m["weight"].ndim == 4]
    affine = any("weight" in m and m["weight"].ndim == 1 for m in modules.values())
    running = any("running_mean" in m for m in modules.values())
    # The reference gives convolutions a bias exactly when the norm is instance norm; only the
    # final conv (not followed by a norm) always has one.
    bias_free = sum("bias" not in m for m in convs) > 0
    if running and affine and bias_free:
        return "batch"
    if affine:
        return "instance_affine"
    if running or not bias_free:
        return "instance"  # running stats without affine: pre-0.4 instance norm, unused
    return "none"


# ----------------------------------------------------------------------------------------
# mapping onto our modules


def _map_to_ours(state: OrderedDict[str, torch.Tensor], net_cfg: NetConfig, path: Path) -> dict[str, torch.Tensor]:
    from translate.nets import build_generator

    with torch.device("meta"):  # shapes only: no memory, no init cost
        target = build_generator(net_cfg).state_dict()
    if net_cfg.norm in ("instance", "instance_affine"):
        state = OrderedDict((k, v) for k, v in state.items() if not k.endswith(("running_mean", "running_var")))
    wanted = [k for k in target if not k.endswith("num_batches_tracked")]
    if net_cfg.norm == "none":
        # The reference drops conv biases without a norm; ours keeps them: zero is the same map.
        for key in wanted:
            weight_key = key[: -len("bias")] + "weight"
            if key.endswith(".bias") and key not in state and weight_key in state:
                state[key] = torch.zeros(target[key].shape)
        state = OrderedDict((k, state[k]) for k in sorted(state, key=_order_in(wanted)))

    if set(state) == set(wanted):
        pairs = [(k, k) for k in wanted]
    elif len(state) == len(wanted):
        # Same modules in the same order under other names: pair by position, leaf names must agree.
        pairs = list(zip(state, wanted, strict=True))
        for ref_key, our_key in pairs:
            if ref_key.rpartition(".")[2] != our_key.rpartition(".")[2]:
                raise UserError(
                    f"{path}: {ref_key} does not correspond to {our_key} of {net_cfg.generator}; the file has another module layout (check --arch)"
                )
    else:
        missing = [k for k in wanted if k not in state]
        unexpected = [k for k in state if k not in target]
        detail = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise UserError(
            f"{path}: {len(state)} tensors, {net_cfg.generator} (ngf {net_cfg.base_channels_g}) has {len(wanted)} ({detail}); check --arch"
        )

    weights: dict[str, torch.Tensor] = {}
    for ref_key, our_key in pairs:
        value = state[ref_key]
        if tuple(value.shape) != tuple(target[our_key].shape):
            raise UserError(
                f"{path}: {ref_key} has shape {tuple(value.shape)}, {net_cfg.generator} (ngf "
                f"{net_cfg.base_channels_g}, {net_cfg.in_channels}→{net_cfg.out_channels} channels) "
                f"needs {tuple(target[our_key].shape)}; check --arch"
            )
        weights[our_key] = value.to(torch.float32)
    for key in target:
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.zeros((), dtype=torch.long)
    return weights


def _order_in(keys: list[str]):  # type: ignore[no-untyped-def]
    position = {k: i for i, k in enumerate(keys)}
    return lambda k: position.get(k, len(position))

"""Typed run configuration: one source of truth, YAML on disk, ``--set a.b=c`` overrides.

The resolved config is saved into each run directory and inside each checkpoint, so that
resume and inference need no flags repeated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from translate.errors import UserError

DEFAULT_MEMORY_BUDGET_MB = 1280
"""Memory (MB) translating one image may use beyond the loaded model: activations plus, when
tiling, the full-resolution input and output. With PyTorch's own ~0.6 GB on CPU, a process
translating a 4096x4096 photo stays under 2 GB (docs/PERFORMANCE.md)."""

ModelKind = Literal["cyclegan", "pix2pix", "cut", "fastcut"]
MODELS: tuple[str, ...] = get_args(ModelKind)
NormKind = Literal["instance", "instance_affine", "batch", "none"]
DiscNormKind = Literal["same", "instance", "instance_affine", "batch", "none"]  # same: the generators' NormKind
InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]
UpsampleKind = Literal["transposed", "resize", "blur"]
DownsampleKind = Literal["strided", "blur"]
GanMode = Literal["lsgan", "vanilla", "hinge", "wgangp"]
Preprocess = Literal["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"]
Direction = Literal["AtoB", "BtoA"]
Schedule = Literal["linear", "step", "cosine", "plateau", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]
Auto = Literal["auto"]  # a setting the toolkit recipe chooses from the training data when a run starts (train/auto.py)


@dataclass
class NetConfig:
    """Architecture of the generators and discriminators (saved inside every checkpoint)."""

    generator: str = "resnet_9blocks"  # resnet_6blocks | resnet_9blocks | unet_128 | unet_256
    discriminator: str = "basic"  # basic (PatchGAN 70x70) | n_layers | pixel
    in_channels: int = 3  # channels of domain A images
    out_channels: int = 3  # channels of domain B images
    base_channels_g: int = 64  # ngf in the papers
    base_channels_d: int = 64  # ndf in the papers
    n_layers_d: int = 3  # PatchGAN depth when discriminator == "n_layers"
    norm: NormKind = "instance"
    # the discriminators' norm: the generators' (same: the papers') or its own, e.g. none (SN-GAN's D)
    norm_d: DiscNormKind = "same"
    init: InitKind = "normal"
    init_gain: float = 0.02
    dropout: bool = False  # dropout in generator (pix2pix U-Net uses it)
    spectral_norm: bool = False  # spectral norm on discriminator convolutions
    # generator upsampling: transposed convolution (the papers'), nearest resize + 3x3 convolution (no
    # checkerboard) or blur (anti-aliased, as CUT's code by default) + 3x3 convolution
    upsample: UpsampleKind = "transposed"
    # ResNet generator downsampling: stride-2 convolution (the papers') or 3x3 convolution + anti-aliased blur (CUT's code by default)
    downsample: DownsampleKind = "strided"
    # generator output = input + a learned change (in tanh space), starting as the identity (generators with in == out
    # channels); CycleGAN's L1 cycle and identity losses hold it there: pair it with train.recon_huber (README).
    # auto (the toolkit's): true where the two training domains look alike in simple image statistics (train/auto.py)
    residual: bool | Auto = False
    nce_mlp_channels: int = 256  # CUT: width of the 2-layer MLP head on each PatchNCE feature layer


@dataclass
class DataConfig:
    """Where the images are and how they are prepared."""

    root: str = ""
    direction: Direction = "AtoB"
    preprocess: Preprocess = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1
    num_workers: int = 0
    max_dataset_size: int = 0  # 0 = all images


@dataclass
class TrainConfig:
    """Objective, optimisation, schedule and bookkeeping."""

    gan_mode: GanMode = "lsgan"
    lambda_cycle: float = 10.0  # CycleGAN: weight of each cycle loss (A->B->A and B->A->B)
    lambda_identity: float = 0.5  # CycleGAN: identity weight, as a fraction of lambda_cycle
    # CycleGAN: cycle and identity distances are Huber's with this width ([-1, 1] units); 0 = L1 (the paper's);
    # auto (the toolkit's): 0.05 with a residual generator, else 0
    recon_huber: float | Auto = 0.0
    lambda_l1: float = 100.0  # pix2pix: weight of the L1 loss
    lambda_ssim: float = 0.0  # pix2pix: weight of the 1 - SSIM loss beside L1 (0 = off, as the paper)
    lambda_nce: float = 1.0  # CUT: weight of the PatchNCE loss (FastCUT: 10)
    nce_identity: bool = True  # CUT: also PatchNCE between G(B) and B (FastCUT: off)
    nce_layers: str = "0,4,8,12,16"  # CUT: generator layers (indices of its layer sequence) whose features PatchNCE compares
    nce_patches: int = 256  # CUT: patch locations sampled per layer per image
    nce_temperature: float = 0.07  # CUT: temperature of the PatchNCE softmax
    flip_equivariance: bool = False  # CUT: randomly flip the generator's input and flip its features back (FastCUT: on)
    lambda_gp: float = 10.0  # wgan-gp: gradient-penalty weight
    lambda_gan: float = 1.0  # weight of the generators' adversarial losses
    lambda_temporal: float = 0.0  # weight of the temporal loss on video-frame samples (0 = off; needs video files in the data)
    gan_warmup: int = 0  # steps over which the generators' adversarial weight ramps linearly from 0 to lambda_gan (0 = none)
    ema_decay: float = 0.0  # generator weights averaged with this decay for validation, samples of held-out images and inference (0 = off)
    pool_size: int = 50  # CycleGAN history pool of generated images; 0 disables it
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    schedule: Schedule = "linear"
    decay_start: float = 0.5  # linear: fraction of the run at constant lr before decaying to zero
    step_size: int = 0  # step: decay every N steps (0 = a third of the run)
    step_gamma: float = 0.1
    plateau_patience: int = 5  # plateau: evaluations of the mean generator loss without improvement
    plateau_factor: float = 0.5
    steps: int = 0  # stop when the run's total step count reaches this (0 = at the end of the planned epochs)
    epochs: int = 200  # planned length; the lr schedule spans it
    schedule_steps: int = 0  # planned length in steps instead of epochs (0 = epochs x steps per epoch)
    save_every: int = 1000
    keep_last: int = 3  # newest step checkpoints kept (0 = all)
    sample_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    precision: Precision = "fp32"
    diffaug: str = ""  # DiffAugment policy before every discriminator call, e.g. "color,translation,cutout"; "" = off
    val_every: int = 0  # validate on the test split every N steps (0 = off; -1 = at every save_every, when the data has a test split)
    val_images: int = 8  # held-out images per validation
    best_metric: str = "auto"  # keep checkpoints/best by: auto (psnr if paired, else cycle_l1), psnr, ssim, l1, cycle_l1, kid


@dataclass
class RunConfig:
    """Everything a training run needs; written to ``RUN/config.yaml`` and into checkpoints."""

    model: ModelKind = "cyclegan"
    net: NetConfig = field(default_factory=NetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


Recipe = Literal["toolkit", "paper"]
RECIPES: tuple[str, ...] = get_args(Recipe)


def preset(model: ModelKind, recipe: Recipe = "toolkit") -> RunConfig:
    """A model's starting config: ``paper`` is the paper's recipe, CycleGAN (Zhu et al. 2017)
    or pix2pix (Isola et al. 2017), as the reference code trains it; ``toolkit`` (the default)
    is that recipe with the changes ``docs/QUALITY.md`` measured to give better held-out
    results at small data and short runs (:data:`TOOLKIT_CHANGES`).

    The dataclass defaults are the paper's values, so a config or checkpoint written before a
    field existed keeps meaning what it meant.
    """
    if model == "cyclegan":
        cfg = RunConfig(model="cyclegan")
    elif model == "pix2pix":
        cfg = RunConfig(
            model="pix2pix",
            net=NetConfig(generator="unet_256", norm="batch", dropout=True),
            train=TrainConfig(gan_mode="vanilla", pool_size=0),
        )
    elif model in ("cut", "fastcut"):
        # Park et al. 2020 as their code trains it: ResNet-9, LSGAN, no history pool; FastCUT
        # weighs PatchNCE 10x, drops its identity term and adds flip equivariance
        fast = model == "fastcut"
        cfg = RunConfig(
            model=model,
            train=TrainConfig(pool_size=0, lambda_identity=0.0, lambda_nce=10.0 if fast else 1.0, nce_identity=not fast, flip_equivariance=fast),
        )
    else:
        raise UserError(f"unknown model {model!r}: choose {', '.join(MODELS)}")
    if recipe == "paper":
        return cfg
    if recipe != "toolkit":
        raise UserError(f"unknown preset {recipe!r}: choose {' or '.join(RECIPES)}")
    return merge(cfg, TOOLKIT_CHANGES[model])


DIFFAUGMENT_POLICY = "color,translation,cutout"  # Zhao et al. 2020's policy for small data (translate.augment)

TOOLKIT_CHANGES: dict[str, dict[str, dict[str, Any]]] = {
    # what the default recipe changes from the paper's, per model (measured: docs/QUALITY.md)
    "cyclegan": {
        "net": {"upsample": "resize", "norm_d": "none", "residual": "auto"},
        "train": {"val_every": -1, "diffaug": DIFFAUGMENT_POLICY, "recon_huber": "auto"},
    },
    "pix2pix": {"net": {"norm": "instance"}, "train": {"val_every": -1, "lambda_gan": 0.1, "lambda_ssim": 100.0, "diffaug": DIFFAUGMENT_POLICY}},
    # the paper's recipe (no lever measured on CUT yet), validating when the data has a test split
    "cut": {"train": {"val_every": -1}},
    "fastcut": {"train": {"val_every": -1}},
}


# ----------------------------------------------------------------------------------------
# dict / YAML conversion with validation


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _check_value(key: str, hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):  # e.g. bool | Auto: the first arm that takes the value
        errors = []
        for arm in get_args(hint):
            try:
                return _check_value(key, arm, value)
            except UserError as exc:
                errors.append(str(exc).removeprefix(f"config {key}: {value!r} is not "))
        raise UserError(f"config {key}: {value!r} is not {' or '.join(errors)}")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise UserError(f"config {key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UserError(f"config {key}: {value!r} is not true/false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.lstrip("-").isdigit()):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"config {key}: {value!r} is not an integer")
        return int(value)
    if hint is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"config {key}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise UserError(f"config {key}: {value!r} is not a finite number")
        return number
    if hint is str:
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, refusing unknown keys and bad values."""
    if not isinstance(data, dict):
        raise UserError(f"config {prefix.rstrip('.') or '<root>'}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise UserError(f"config {prefix}{key}: unknown key; known keys are {', '.join(sorted(names))}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_value(prefix + key, hint, value)
            _check_limits(cls, key, prefix + key, kwargs[key])
    return cls(**kwargs)


# (config class, field) -> (minimum, maximum or None, what it is). Checked wherever a config is
# built, checkpoint metadata included: a file cannot ask for 10**13 channels.
LIMITS: dict[tuple[str, str], tuple[float, float | None, str]] = {
    ("TrainConfig", "lr"): (0.0, None, "a learning rate"),
    ("TrainConfig", "beta1"): (0.0, 0.999999, "an Adam beta (below 1)"),
    ("TrainConfig", "beta2"): (0.0, 0.999999, "an Adam beta (below 1)"),
    ("TrainConfig", "lambda_cycle"): (0.0, None, "a loss weight"),
    ("TrainConfig", "lambda_identity"): (0.0, None, "a loss weight"),
    ("TrainConfig", "recon_huber"): (0.0, 2.0, "a distance in [-1, 1] image units (0 = L1)"),
    ("TrainConfig", "lambda_l1"): (0.0, None, "a loss weight"),
    ("TrainConfig", "lambda_ssim"): (0.0, None, "a loss weight"),
    ("TrainConfig", "lambda_nce"): (0.0, None, "a loss weight"),
    ("TrainConfig", "nce_patches"): (1, None, "a patch count"),
    ("TrainConfig", "nce_temperature"): (1e-6, None, "a softmax temperature"),
    ("NetConfig", "nce_mlp_channels"): (1, None, "a channel count"),
    ("TrainConfig", "lambda_gp"): (0.0, None, "a loss weight"),
    ("TrainConfig", "pool_size"): (0, None, "a pool size"),
    ("TrainConfig", "steps"): (0, None, "a step count"),
    ("TrainConfig", "epochs"): (1, None, "an epoch count"),
    ("TrainConfig", "schedule_steps"): (0, None, "a step count"),
    ("TrainConfig", "save_every"): (1, None, "a step interval"),
    ("TrainConfig", "log_every"): (1, None, "a step interval"),
    ("TrainConfig", "sample_every"): (0, None, "a step interval"),
    ("TrainConfig", "val_every"): (-1, None, "a step interval (-1: at every save)"),
    ("TrainConfig", "lambda_gan"): (0.0, None, "a loss weight"),
    ("TrainConfig", "lambda_temporal"): (0.0, None, "a loss weight"),
    ("TrainConfig", "gan_warmup"): (0, None, "a step count"),
    ("TrainConfig", "ema_decay"): (0.0, 0.999999, "an averaging decay (below 1; 0 turns it off)"),
    ("TrainConfig", "val_images"): (1, None, "an image count"),
    ("TrainConfig", "keep_last"): (0, None, "a checkpoint count (0 keeps all)"),
    ("TrainConfig", "seed"): (0, None, "a seed"),
    ("DataConfig", "batch_size"): (1, None, "a batch size"),
    ("DataConfig", "num_workers"): (0, 256, "a worker count"),
    ("DataConfig", "load_size"): (1, 65536, "a size in pixels"),
    ("DataConfig", "crop_size"): (1, 65536, "a size in pixels"),
    ("NetConfig", "in_channels"): (1, 64, "an image channel count"),
    ("NetConfig", "out_channels"): (1, 64, "an image channel count"),
    ("NetConfig", "base_channels_g"): (1, 4096, "a channel count"),
    ("NetConfig", "base_channels_d"): (1, 4096, "a channel count"),
    ("NetConfig", "n_layers_d"): (0, 12, "a layer count"),
}


def _check_limits(cls: type, key: str, full_key: str, value: Any) -> None:
    limit = LIMITS.get((cls.__name__, key))
    if limit is None:
        return
    low, high, what = limit
    if isinstance(value, str):  # "auto" (the types allow no other string here)
        return
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise UserError(f"config {full_key}: {value!r} is not valid for {what}; use a value {bound}")


def merge(base: RunConfig, data: dict[str, Any]) -> RunConfig:
    """Overlay a (partial) nested dict on ``base``; the result is validated."""
    merged = to_dict(base)

    def overlay(dst: dict, src: dict, prefix: str) -> None:
        if not isinstance(src, dict):
            raise UserError(f"config {prefix.rstrip('.') or '<root>'}: expected a mapping")
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                overlay(dst[k], v, f"{prefix}{k}.")
            else:
                dst[k] = v

    overlay(merged, data, "")
    return from_dict(RunConfig, merged)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``key.sub=value`` strings (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value, e.g. --set train.lr=1e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        nested: dict[str, Any] = {}
        cur = nested
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
        _check_path(parts, key)
        cfg = merge(cfg, nested)
    return cfg


def _check_path(parts: list[str], key: str) -> None:
    cls: Any = RunConfig
    for i, p in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            raise UserError(f"--set {key}: {'.'.join(parts[:i])} is not a section")
        hints = get_type_hints(cls)
        if p not in hints:
            raise UserError(f"--set {key}: unknown key {p!r}; known keys are {', '.join(sorted(hints))}")
        cls = hints[p]
    if dataclasses.is_dataclass(cls):
        raise UserError(f"--set {key}: is a section; set one of its keys, e.g. {key}.<name>=…")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"config file {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping of sections at the top level")
    return data


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def net_from_json(text: str) -> NetConfig:
    """Parse a NetConfig stored in checkpoint metadata (untrusted data: validated)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise UserError("checkpoint metadata: the network config is not valid JSON") from None
    return _chosen(from_dict(NetConfig, data, "net."), "net.")


def run_from_json(text: str) -> RunConfig:
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise UserError("checkpoint metadata: the run config is not valid JSON") from None
    return _chosen(from_dict(RunConfig, data), "")


def auto_fields(cfg: Any, prefix: str = "") -> list[str]:
    """The dotted names of ``cfg``'s ``Auto``-typed fields (nested configs included) still set to
    "auto": what training chooses from the data before it builds anything (``train/auto.py``)."""
    hints = get_type_hints(type(cfg))
    found = []
    for item in dataclasses.fields(cfg):
        value, hint = getattr(cfg, item.name), hints[item.name]
        if dataclasses.is_dataclass(value):
            found += auto_fields(value, f"{prefix}{item.name}.")
        elif value == "auto" and get_origin(hint) in (Union, types.UnionType) and Auto in get_args(hint):
            found.append(f"{prefix}{item.name}")
    return found


def _chosen(cfg: Any, prefix: str) -> Any:
    """``cfg`` (a config dataclass) if none of its ``Auto`` fields is "auto": a saved model holds
    what its run chose (training writes plain values), so a file saying "auto" was not written by it."""
    unchosen = auto_fields(cfg, prefix)
    if unchosen:
        raise UserError(
            f"checkpoint metadata: {unchosen[0]} is 'auto', which training always replaces by its choice; this file was not written by translate train"
        )
    return cfg

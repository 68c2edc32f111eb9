"""Where and how computation runs: device, precision, threads, memory pages, torchrun ranks.

One place that both training and inference ask, so ``translate train`` and ``translate apply``
choose devices, autocast dtypes and placement the same way. Nothing here knows about networks'
architecture or files.

bf16 is only worth asking for where it is native: CUDA GPUs that support it, and CPUs with
AVX512-BF16 or AMX. Elsewhere PyTorch emulates it and bf16 runs at a fraction of fp32's speed
(docs/avx2/PERFORMANCE.md), so "supported" is not enough.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from translate.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo: ``flags`` on x86, ``Features`` on Arm (empty
    where there is no /proc/cpuinfo, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AVX512-BF16 or AMX-BF16 on x86, the BF16
    extension on Arm (Graviton 3, Neoverse V1 and later). Unknown (no /proc/cpuinfo) counts as
    no, which at worst costs a warning."""
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & cpu_flags())


def native_bf16(device: str) -> bool:
    """Whether bf16 is computed natively (and so faster than fp32) where ``device`` runs."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_native_bf16()


@functools.lru_cache(maxsize=1)
def warn_emulated_bf16() -> None:
    """Say once per process that bf16 on this CPU is emulated (slower than fp32)."""
    log.warning(
        "--precision bf16: this CPU shows no native bf16 (no AVX512-BF16, AMX or Arm BF16), so PyTorch "
        "emulates it at a fraction (0.1-0.6x) of the speed of fp32; --precision fp32 is likely faster here"
    )


def prefer_huge_pages() -> None:
    """Have PyTorch's CPU allocator ask for transparent huge pages on tensors of 2 MB or more.

    PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, when it starts, so this must run before torch
    is imported (the CLI does it first thing); a value the user set, ``0`` included, is kept.
    Large activations are freed and mapped afresh at every layer, one page fault per 4 KB page:
    with 2 MB pages a ResNet-9 forward at 1024² takes 1.5 M faults fewer and ran 4 % faster
    (kernel and user time both down, the same peak memory; no change at 256²; docs/PERFORMANCE.md,
    levers). Where the kernel's THP mode is ``never`` it does nothing.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def set_threads(threads: int | None) -> None:
    """``--threads N``: PyTorch's intra-op threads (None leaves PyTorch's default, one per core).

    On a machine shared with other jobs, fewer threads than cores can be much faster: an
    intra-op thread that loses its core stalls every other thread at the next barrier.
    """
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads {threads}: must be at least 1 (e.g. --threads 1 on a busy machine)")
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# devices and precision


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``--device`` (auto, cpu, cuda, cuda:N, mps) → a torch.device, or one UserError line."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    elif device.type not in ("cpu", "mps"):
        raise UserError(f"--device {name!r}: unsupported; use auto, cpu or cuda")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (fp32, bf16, fp16) on ``device`` (None = fp32)."""
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs a CUDA GPU; on CPU use --precision bf16 or fp32")
        return torch.float16
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("--precision bf16: this GPU does not support bf16; use fp16 or fp32")
        if device.type == "cpu" and not cpu_native_bf16():
            warn_emulated_bf16()
        return torch.bfloat16
    raise UserError(f"--precision {precision!r}: choose fp32, bf16 or fp16")


def channels_last_activations(device: torch.device) -> bool:
    """Whether batches go channels-last (NHWC): oneDNN's and cuDNN's convolutions run fastest so."""
    return device.type in ("cpu", "cuda")


def channels_last_weights(device: torch.device) -> bool:
    """Whether convolution weights are kept channels-last too.

    CUDA: yes, cuDNN's NHWC kernels want both. CPU: no. oneDNN re-lays out weights inside every
    call whatever their layout, but PyTorch's fused CPU Adam copies each channels-last tensor to a
    contiguous one and back at every step (docs/PERFORMANCE.md).
    """
    return device.type == "cuda"


def place(module: nn.Module, device: torch.device, *, inference: bool = False) -> nn.Module:
    """Move a built network to ``device`` in its best layout; on CPU apply :mod:`translate.accel`.

    Inference keeps weights channels-last on CPU too (no optimizer copies them there); training
    follows :func:`channels_last_weights`. The network itself stays plain ``torch.nn``; the CPU
    kernels are swapped in from outside (``TRANSLATE_CPU_KERNELS=0`` turns them off). Returns the
    same module.
    """
    import torch

    module.to(device)
    if channels_last_weights(device) or (inference and channels_last_activations(device)):
        module.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        from translate import accel

        accel.accelerate(module)
    return module


# ---------------------------------------------------------------------------------------------
# torchrun


@dataclass(frozen=True)
class DistInfo:
    """This process's place among torchrun's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

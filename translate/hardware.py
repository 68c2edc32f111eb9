"""What the machine computes well, and how many threads to compute with.

bf16 is only worth asking for where it is native: CUDA GPUs that support it, and CPUs with
AVX512-BF16 or AMX. Elsewhere PyTorch emulates it and bf16 runs at a fraction of fp32's speed
(measured: 0.2-0.6x on an AVX-512 CPU without either, 0.14x for ResNet-9 on an AVX2-only CPU,
docs/avx2/PERFORMANCE.md), so "supported" is not enough.
"""

from __future__ import annotations

import functools
import logging
import os

from translate.errors import UserError

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
    log.warning("--precision bf16: this CPU shows no native bf16 (no AVX512-BF16, AMX or Arm BF16), so PyTorch "
                "emulates it at a fraction (0.1-0.6x) of the speed of fp32; --precision fp32 is likely faster here")


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


"""What the machine computes well, how many threads to compute with, and how memory is handed out.

bf16 is only worth asking for where it is native: CUDA GPUs that support it, and CPUs with
AVX512-BF16 or AMX. Elsewhere oneDNN emulates it and bf16 runs at 0.2-0.6x fp32's speed
(measured on an AVX-512 CPU without either, docs/PERFORMANCE.md), so "supported" is not enough.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

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
                "emulates it at about 0.2-0.6x the speed of fp32; --precision fp32 is likely faster here")


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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 64 << 20


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """glibc: serve tensors up to 1 GB from the heap and keep up to 64 MB of freed memory there.

    By default glibc maps every allocation above 32 MB freshly from the kernel and unmaps it on
    free, so each large activation (a 64-channel 1024x1024 map is 256 MB) is page-faulted and
    zeroed anew at every layer: kernel time was 20 % of a ResNet-9 forward at 1024x1024, and a
    32 MB copy ran 6x slower than from reused memory (one core). Reusing freed heap memory
    removes most of that; the cost is resident memory held between layers, bounded by the trim
    threshold (measured: +0.1 GB peak at 1024x1024). The command line calls this at start; the
    Python API leaves the process's allocator alone unless asked. ``TRANSLATE_MALLOC=system``
    turns it off. Returns whether the settings were applied (glibc on Linux only).
    """
    if os.environ.get("TRANSLATE_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, …)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

"""Measurement tools shared by the benchmark: isolation, timing, FLOP counting, ceilings, profiles.

Every workload runs in a forked child process, for two reasons: its peak memory is the child's
own RSS high-water mark (``ru_maxrss``), untouched by the workloads before it, and a crash or
an out-of-memory kill ends one row, not the run. The parent only imports torch and never
computes with it, so no OpenMP thread pool exists when it forks (libgomp is not fork-safe once
its pool has started).

The machine may be shared with other jobs, so absolute speeds drift during a run. Each child
therefore measures the convolution ceiling of its own precision right before its workload
(:func:`conv_ceiling`), and the "% of ceiling" of a row divides by that local ceiling: both
numbers come from the same process, seconds apart.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench_profile import profile_call

Precision = Literal["fp32", "bf16"]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# The ceiling probe: one large 3x3 convolution, as the ResNet blocks' (256 -> 256 channels).
CEILING_SHAPE = (4, 256, 64, 64)  # (B, C, H, W), channels-last
LOCAL_CEILING_SHAPE = (1, 256, 64, 64)  # the same convolution, batch 1: a quarter of the time, same speed
QUICK_CEILING_SHAPE = (1, 64, 32, 32)


# ---------------------------------------------------------------------------------- isolation


THREADS: int | None = None  # torch threads in the children; None keeps torch's default (one per core)


def set_threads(threads: int | None) -> None:
    """Set torch's threads in a child (None keeps torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run ``fn(*args, **kwargs)`` in a forked child; return its dict plus ``peak_rss_mb``.

    A child that raises or dies returns ``{"status": "error", "error": <one line>}`` (with
    ``traceback`` when Python saw the exception), so one failing workload does not end the run.
    """
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(sender, fn, args, kwargs))
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = "died", None
    process.join()
    if status == "ok":
        return payload
    if status == "died":
        return {"status": "error", "error": f"the child process died (exit code {process.exitcode}; killed for memory?)"}
    return {"status": "error", "error": payload[0], "traceback": payload[1]}


def prewarm() -> None:
    """Pay one-time import costs once, in the parent, so that every forked child starts warm.

    The first ``FlopCounterMode`` use loads its formula tables (~2 s); it runs here on the meta
    device, which computes nothing (the parent must not start OpenMP's thread pool).
    """
    import importlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    for name in ("cv2", "av", "skimage.data", "torch.profiler", "translate.infer.translator", "translate.infer.folder",
                 "translate.train.loop", "translate.data.samples"):
        importlib.import_module(name)
    with flop_counter():
        torch.nn.functional.conv2d(torch.empty(1, 3, 8, 8, device="meta"), torch.empty(3, 3, 3, 3, device="meta"))


def _child(sender: Any, fn: Callable[..., dict[str, Any]], args: tuple, kwargs: dict) -> None:
    try:
        set_threads(THREADS)
        result = fn(*args, **kwargs)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        # ru_maxrss is in KiB on Linux; a forked child starts from its own current RSS
        result["peak_rss_mb"] = usage.ru_maxrss / 1024
        # kernel time is mostly page faults on freshly mapped activation buffers
        result["process"] = {"user_s": usage.ru_utime, "sys_s": usage.ru_stime, "minor_faults": usage.ru_minflt}
        result.setdefault("status", "ok")
        sender.send(("ok", result))
    except BaseException as exc:  # noqa: BLE001  reported as the row's error
        sender.send(("error", (f"{type(exc).__name__}: {exc}".splitlines()[0][:300], traceback.format_exc())))
    finally:
        sender.close()
        os._exit(0)  # skip atexit handlers inherited from the parent


# ---------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall times of the timed repetitions (warm-ups excluded) and the FLOPs of one repetition."""

    runs: list[float] = field(default_factory=list)
    flops: int = 0
    warmups: int = 0
    warmup_runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.median, "runs": [round(r, 4) for r in self.runs], "warmups": self.warmups,
                "warmup_runs": [round(r, 4) for r in self.warmup_runs],
                "flops": self.flops, "gflops": self.flops / self.median / 1e9 if self.flops else None}


def flop_counter():
    """``FlopCounterMode`` that also counts the packed oneDNN convolutions of ``nets.convs``."""
    from torch.utils.flop_counter import FlopCounterMode

    from translate.nets.convs import flop_formulas

    return FlopCounterMode(display=False, custom_mapping=flop_formulas())


def measure(fn: Callable[[], Any], *, warmup: int, repeats: int, budget_s: float,
            count_flops: bool = True, profile: bool = False) -> tuple[Timing, Any, dict[str, Any] | None]:
    """Time ``fn``: ``warmup`` untimed calls, then up to ``repeats`` timed ones within ``budget_s``.

    At least one timed call always runs. FLOPs are counted with ``FlopCounterMode`` around the
    first call (a warm-up when there is one, so counting costs the timed calls nothing; else the
    first timed call, where its per-op Python hook adds well under 1 %). With ``profile``, the
    first timed call also runs under ``torch.profiler`` (a few microseconds per op) and its
    summary is returned.

    Returns:
        The timing, the value of the last call, and the profile summary (or None).
    """
    from torch.utils.flop_counter import FlopCounterMode

    timing = Timing(warmups=warmup)
    value, summary = None, None
    for i in range(warmup):
        with flop_counter() if (count_flops and i == 0) else nullcontext() as counter:
            tick = time.perf_counter()
            value = fn()
            timing.warmup_runs.append(time.perf_counter() - tick)
        if counter is not None:
            timing.flops = counter.get_total_flops()
    started = time.perf_counter()
    for i in range(max(1, repeats)):
        counting = count_flops and not timing.flops
        with flop_counter() if counting else nullcontext() as counter:
            tick = time.perf_counter()
            if profile and i == 0:
                summary, value = profile_call(fn)
            else:
                value = fn()
            timing.runs.append(time.perf_counter() - tick)
        if counter is not None:
            timing.flops = counter.get_total_flops()
        if _out_of_time(started, budget_s, timing):
            break
    if summary is not None and summary["conv_self_s"]:
        summary["conv_gflops"] = timing.flops / summary["conv_self_s"] / 1e9
    return timing, value, summary


def _out_of_time(started: float, budget_s: float, timing: Timing) -> bool:
    if not timing.runs:
        return False
    # stop when one more call (of the typical length) would overrun the budget
    return time.perf_counter() - started + statistics.median(timing.runs) > budget_s


class RssSampler:
    """The highest resident set size of this process while active (sampled every few ms).

    Used where several variants share one process (so that their ratios are measured under the
    same load): each variant's peak is sampled during its own calls. Large buffers are returned
    to the system when freed (glibc maps them), so a variant mostly does not inherit the other's
    peak; what the allocator keeps may still count.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current_bytes() -> int:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, self.current_bytes())

    def __enter__(self) -> RssSampler:
        self.peak_bytes = max(self.peak_bytes, self.current_bytes())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes())


@dataclass
class Variant:
    """One of several workloads measured in one process: its timing, peak RSS and profile."""

    fn: Callable[[], Any]
    warmup: int = 1
    repeats: int = 1  # timed calls per round
    profile: bool = False
    timing: Timing = field(default_factory=Timing)
    rss: RssSampler = field(default_factory=RssSampler)
    summary: dict[str, Any] | None = None
    value: Any = None


def measure_interleaved(variants: dict[str, Variant], *, rounds: int, budget_s: float) -> dict[str, Variant]:
    """Time several variants in one process, interleaved, so that load drift hits them alike.

    Warm-ups first (FLOPs are counted on each variant's first call), then rounds in which every
    variant runs ``repeats`` timed calls, in forward order on even rounds and reverse order on
    odd ones (A B, B A, …). At least one round runs; later rounds only while the elapsed time
    plus one more round fits ``budget_s``. A profiled variant's first timed call runs under
    ``torch.profiler``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    def call(v: Variant, *, timed: bool) -> None:
        counting = not v.timing.flops
        with v.rss, flop_counter() if counting else nullcontext() as counter:
            tick = time.perf_counter()
            if timed and v.profile and v.summary is None:
                v.summary, v.value = profile_call(v.fn)
            else:
                v.value = v.fn()
            (v.timing.runs if timed else v.timing.warmup_runs).append(time.perf_counter() - tick)
        if counter is not None:
            v.timing.flops = counter.get_total_flops()

    for v in variants.values():
        v.timing.warmups = v.warmup
        for _ in range(v.warmup):
            call(v, timed=False)
    started, names = time.perf_counter(), list(variants)
    for r in range(max(1, rounds)):
        for name in names if r % 2 == 0 else names[::-1]:
            for _ in range(variants[name].repeats):
                call(variants[name], timed=True)
        elapsed = time.perf_counter() - started
        if elapsed / (r + 1) + elapsed > budget_s:
            break
    for v in variants.values():
        if v.summary is not None and v.summary["conv_self_s"]:
            v.summary["conv_gflops"] = v.timing.flops / v.summary["conv_self_s"] / 1e9
    return variants


# ---------------------------------------------------------------------------------- ceiling


def autocast_context(precision: Precision):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def conv_ceiling(precision: Precision, *, quick: bool = False, repeats: int = 3, batch_size: int | None = None) -> dict[str, Any]:
    """GFLOP/s of one large channels-last 3x3 convolution (256 -> 256, 64x64, batch 4).

    bf16 runs under CPU autocast, as the networks do. FLOPs come from ``FlopCounterMode``
    (2 per multiply-add). Median of ``repeats`` timed calls after one warm-up. ``batch_size``
    overrides the batch (the per-workload checks use 1).
    """
    import torch

    batch, channels, height, width = QUICK_CEILING_SHAPE if quick else CEILING_SHAPE
    batch = batch_size or batch
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, height, width).contiguous(memory_format=torch.channels_last)

    def call() -> Any:
        with torch.inference_mode(), autocast_context(precision):
            return conv(x)

    timing, _, _ = measure(call, warmup=1, repeats=repeats, budget_s=60.0)
    return {"precision": precision, "shape": [batch, channels, height, width], **timing.as_dict()}


def conv_backward_ceiling(*, quick: bool = False, repeats: int = 5) -> dict[str, Any]:
    """fp32 GFLOP/s of the ceiling convolution's backward (input and weight gradients, batch 1,
    as training runs it) against its own forward with autograd on, in one process: through the
    toolkit's ``Conv2d`` (what training runs; on AVX2 CPUs its weight gradient is computed as
    matrix products) and through ``torch.nn.Conv2d`` (oneDNN's own backward, ``onednn_*`` keys).

    Backward FLOPs are everything ``FlopCounterMode`` counts in forward + backward minus the
    forward's; its time is the forward + backward median minus the forward median.
    """
    import torch

    from translate.nets import convs

    _, channels, height, width = QUICK_CEILING_SHAPE if quick else CEILING_SHAPE
    x = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad_out = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)

    def backward_of(layer_type: type) -> dict[str, float]:
        torch.manual_seed(0)
        conv = layer_type(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)

        def forward() -> Any:
            return conv(x)

        def forward_backward() -> Any:
            x.grad = conv.weight.grad = None
            conv(x).backward(grad_out)

        fwd, _, _ = measure(forward, warmup=1, repeats=repeats, budget_s=60.0)
        both, _, _ = measure(forward_backward, warmup=1, repeats=repeats, budget_s=60.0)
        backward_s, backward_flops = both.median - fwd.median, both.flops - fwd.flops
        return {"forward_gflops": fwd.flops / fwd.median / 1e9, "backward_gflops": backward_flops / backward_s / 1e9,
                "backward_vs_forward": (backward_flops / backward_s) / (fwd.flops / fwd.median),
                "forward_s": fwd.median, "backward_s": backward_s}

    toolkit = backward_of(convs.Conv2d)
    onednn = backward_of(torch.nn.Conv2d)
    return {"shape": [1, channels, height, width], **toolkit, **{f"onednn_{k}": v for k, v in onednn.items()},
            "weight_grad_products": convs._weight_grad_products(convs.Conv2d(channels, channels, 3), x)}


# ---------------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, ISA features that decide bf16 speed, library versions, load."""
    import torch

    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": torch.get_num_threads(),
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "torch": torch.__version__,
        "onednn": _onednn_version(torch.__config__.parallel_info()),
        "python": platform.python_version(),
        "loadavg": load_average(),
    }


def _onednn_version(info: str) -> str | None:
    for line in info.splitlines():
        if "MKL-DNN v" in line or "oneDNN v" in line:
            return line.split(" v", 1)[1].split()[0]
    return None


def load_average() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


# ---------------------------------------------------------------------------------- images


def photo(name: str, size: int | tuple[int, int]) -> np.ndarray:
    """A scikit-image photo as uint8 (H, W, 3), center-cropped to the aspect and resized."""
    import cv2
    import skimage.data

    width, height = (size, size) if isinstance(size, int) else size
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    h, w = image.shape[:2]
    if w / h > width / height:  # too wide: crop the sides
        crop = int(round(h * width / height))
        image = image[:, (w - crop) // 2 : (w - crop) // 2 + crop]
    else:
        crop = int(round(w * height / width))
        image = image[(h - crop) // 2 : (h - crop) // 2 + crop]
    interpolation = cv2.INTER_AREA if image.shape[1] >= width else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def to_batch(images: list[np.ndarray]):
    """uint8 (H, W, 3) images → (B, 3, H, W) float32 tensor in [-1, 1]."""
    import torch

    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (stacked / 127.5 - 1).contiguous()


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 2.0) -> float:
    """PSNR (dB) of two arrays of network outputs in [-1, 1] (range 2)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)

"""``torch.profiler`` summaries for the benchmark: top ops by self time, and time by kind of op."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# ---------------------------------------------------------------------------------- profiles

CATEGORIES: dict[str, tuple[str, ...]] = {
    # aten op names (substrings) → what a reader calls them
    # mm, im2col and col2im: convolutions computed as products with F.unfold / F.fold (nets.convs);
    # mkldnn::_convolution(_transpose)_pointwise (packed weights) match "convolution"
    "convolution": ("convolution", "conv_transpose", "conv2d", "mkldnn_conv", "aten::mm", "im2col", "col2im"),
    "normalization": ("group_norm", "batch_norm", "instance_norm", "native_layer_norm"),
    "padding": ("reflection_pad", "replication_pad", "constant_pad", "aten::pad"),
    "activation": ("clamp_min", "relu", "threshold", "leaky_relu", "tanh", "hardtanh"),
    "optimizer": ("_foreach_", "_fused_adam", "addcdiv", "lerp"),
    "copy / layout / cat": ("copy_", "aten::to", "contiguous", "aten::cat", "clone", "_to_copy"),
}


def categorize(op: str) -> str:
    for category, keys in CATEGORIES.items():
        if any(key in op for key in keys):
            return category
    return "other (add, mul, loss, reductions…)"


def profile_call(fn: Callable[[], Any], *, top: int = 8) -> tuple[dict[str, Any], Any]:
    """Run ``fn`` once under ``torch.profiler``; return the top ops by self CPU time and the time
    by category (``measure`` adds the convolutions' own GFLOP/s: their FLOPs over their time)."""
    from torch.profiler import ProfilerActivity, profile

    tick = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        value = fn()
    wall = time.perf_counter() - tick
    averages = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in averages) or 1.0
    averages.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    by_category: dict[str, float] = {}
    for e in averages:
        category = categorize(e.key)
        by_category[category] = by_category.get(category, 0.0) + e.self_cpu_time_total
    conv_s = by_category.get("convolution", 0.0) / 1e6
    summary = {
        "wall_s": wall,
        "self_cpu_s": total_us / 1e6,
        "top_ops": [{"op": e.key, "calls": e.count, "self_s": e.self_cpu_time_total / 1e6,
                     "share": e.self_cpu_time_total / total_us} for e in averages[:top]],
        "categories": {k: {"self_s": v / 1e6, "share": v / total_us}
                       for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "conv_self_s": conv_s,
        "conv_gflops": None,
    }
    return summary, value

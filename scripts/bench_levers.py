"""Before/after measurements of candidate speed levers (``python scripts/bench.py --levers``).

Each lever runs in its own forked child, with both variants built in that one process and
called in ABBA order (A B B A …), so that a machine whose load drifts favours neither; the
verdict compares medians. A variant is a monkeypatch or a setting local to the child; a lever
the toolkit has adopted measures the previous behaviour against today's and says where it lives.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import bench_common
from bench_common import photo, run_isolated, to_batch
from bench_workloads import make_translator

SIGNIFICANT = 0.05  # a change smaller than this is within the noise of a shared machine


def abba(before: Callable[[], Any], after: Callable[[], Any], rounds: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall times of ``before`` and ``after`` called in A B B A order, ``rounds`` times each pair."""
    for _ in range(warmup):
        before()
        after()
    times: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(rounds):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for key in order:
            tick = time.perf_counter()
            (before if key == "a" else after)()
            times[key].append(time.perf_counter() - tick)
    return times["a"], times["b"]


def verdict(before_s: float, after_s: float, *, cost_note: str = "") -> str:
    change = before_s / after_s - 1
    if abs(change) < SIGNIFICANT:
        return "no measurable effect" + (f" ({cost_note})" if cost_note else "")
    return ("faster: adopt" if change > 0 else "slower: keep as is") + (f" ({cost_note})" if cost_note else "")


def entry(lever: str, workload: str, before: list[float], after: list[float], unit_s: bool = True, note: str = "") -> dict[str, Any]:
    b, a = statistics.median(before), statistics.median(after)
    fmt = (lambda s: f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s") if unit_s else str
    return {"lever": lever, "workload": workload, "before": fmt(b), "after": fmt(a),
            "change": f"{100 * (b / a - 1):+.0f} % speed", "verdict": verdict(b, a, cost_note=note),
            "before_s": b, "after_s": a, "before_runs": before, "after_runs": after}


# ---------------------------------------------------------------------------------- levers


def channels_last_inference(side: int, base: int, rounds: int) -> dict[str, Any]:
    """Translator's channels-last forward vs the same network and input contiguous."""
    import torch

    out = []
    for generator in ("resnet_9blocks", "unet_256"):
        translator = make_translator(generator, "fp32", base)
        net_cl = translator.net
        net_nchw = make_translator(generator, "fp32", base).net.to(memory_format=torch.contiguous_format)
        size = side if generator == "resnet_9blocks" else max(256, side)  # the U-Net takes multiples of 256
        x = to_batch([photo("astronaut", size)])
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def run(net, inp):  # noqa: ANN001
            with torch.inference_mode():
                return net(inp)

        before, after = abba(lambda: run(net_cl, x_cl), lambda: run(net_nchw, x), rounds)
        out.append(entry("contiguous (NCHW) instead of channels-last", f"{generator} inference {size}² fp32", before, after))
    return {"levers": out}


def instance_norm_inference(side: int, base: int, rounds: int) -> dict[str, Any]:
    """Instance norm as ``F.group_norm`` (today) vs ``F.instance_norm`` under no-grad, ResNet-9 forward."""
    import torch
    import torch.nn.functional as F

    from translate.nets.layers import InstanceNorm2d

    translator = make_translator("resnet_9blocks", "fp32", base)
    x = to_batch([photo("astronaut", side)])
    original = InstanceNorm2d.forward

    def fast(self, inp):  # noqa: ANN001
        # the channels-last backward bug of F.instance_norm cannot bite without autograd
        if not torch.is_grad_enabled():
            return F.instance_norm(inp, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return original(self, inp)

    def with_forward(forward):  # noqa: ANN001
        def call():
            InstanceNorm2d.forward = forward
            try:
                return translator.translate_batch(x)
            finally:
                InstanceNorm2d.forward = original
        return call

    reference = with_forward(original)()
    patched = with_forward(fast)()
    before, after = abba(with_forward(original), with_forward(fast), rounds)
    diff = float((reference - patched).abs().max())
    return {"levers": [entry("F.instance_norm when autograd is off (InstanceNorm2d.forward)",
                             f"resnet_9blocks inference {side}² fp32", before, after, note=f"max output difference {diff:.1e}")]}


def threads(side: int, base: int, rounds: int) -> dict[str, Any]:
    """One torch thread vs one per core, for a ResNet-9 forward and a CycleGAN 128² iteration."""
    import os

    import torch

    from bench_training import training_step

    cores = len(os.sched_getaffinity(0))
    translator = make_translator("resnet_9blocks", "fp32", base)
    x = to_batch([photo("astronaut", side)])
    make_step, _ = training_step("cyclegan", max(32, side // 2), base_channels=base)
    step = make_step("fp32")

    def with_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call():
            torch.set_num_threads(n)
            return fn()
        return call

    out = []
    for name, fn, n_rounds in ((f"resnet_9blocks inference {side}² fp32", lambda: translator.translate_batch(x), rounds),
                               (f"CycleGAN iteration {max(32, side // 2)}² fp32", step, 2)):
        before, after = abba(with_threads(cores, fn), with_threads(1, fn), n_rounds)
        row = entry(f"torch.set_num_threads(1) instead of {cores}", name, before, after,
                    note="on this shared machine; on an idle one more threads should win")
        row["verdict"] += "; applied as `--threads N` on every command (the default stays one thread per core)"
        out.append(row)
    return {"levers": out}


def fused_adam(base: int, rounds: int) -> dict[str, Any]:
    """Adam(fused=True) vs Adam(foreach=True) (the loop's), one step over CycleGAN's four networks."""
    import itertools

    import torch

    from translate.config import preset
    from translate.train.loop import build_nets
    from translate.train.objectives import OBJECTIVES

    cfg = preset("cyclegan")
    cfg.net.base_channels_g = cfg.net.base_channels_d = base
    torch.manual_seed(0)
    nets = build_nets(cfg, OBJECTIVES["cyclegan"])
    params = list(itertools.chain.from_iterable(n.parameters() for n in nets.values()))
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    for p, c in zip(params, copies):
        c.grad = p.grad.clone()
    foreach = torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999), foreach=True)
    fused = torch.optim.Adam(copies, lr=2e-4, betas=(0.5, 0.999), fused=True)
    before, after = abba(foreach.step, fused.step, rounds)
    saved = statistics.median(before) - statistics.median(after)
    note = f"{sum(p.numel() for p in params) / 1e6:.1f} M parameters; saves {saved * 1000:.0f} ms per iteration"
    row = entry("Adam(fused=True) instead of foreach=True", "CycleGAN optimizer steps (all 4 nets)", before, after, note=note)
    row["verdict"] = "applied (train/loop.py; with align_to_params, as fused Adam ignores strides on CPU)"
    row["saved_per_iteration_s"] = saved  # the report sets it against the iteration's time
    return {"levers": [row]}


def channels_last_training(side: int, base: int, rounds: int) -> dict[str, Any]:
    """A CycleGAN iteration with channels-last networks and batch (the loop's) vs contiguous."""
    from bench_training import training_step

    steps = {}
    for layout in (True, False):
        make_step, _ = training_step("cyclegan", side, base_channels=base, channels_last=layout)
        steps[layout] = make_step("fp32")
    before, after = abba(steps[True], steps[False], rounds)
    return {"levers": [entry("contiguous (NCHW) instead of channels-last", f"CycleGAN iteration {side}² fp32", before, after)]}


def weights_layout_training(side: int, base: int, rounds: int) -> dict[str, Any]:
    """Training with channels-last activations and channels-last weights (the loop before) vs
    contiguous weights (the loop's on CPU): a pix2pix iteration, whose 54 M parameters make the
    optimizer's cost visible."""
    from bench_training import training_step
    from translate.train import loop

    original = loop.channels_last_weights
    steps = {}
    for layout in (True, False):
        loop.channels_last_weights = (lambda device: True) if layout else original
        try:
            make_step, _ = training_step("pix2pix", side, base_channels=base)
        finally:
            loop.channels_last_weights = original
        steps[layout] = make_step("fp32")
    before, after = abba(steps[True], steps[False], rounds)
    row = entry("contiguous weights instead of channels-last (activations stay channels-last)",
                f"pix2pix iteration {side}² fp32", before, after, note="fused CPU Adam copies channels-last tensors")
    row["predicted"] = "+3 %: Adam over U-Net-256's 54 M parameters measured 71 ms channels-last, 31 ms contiguous"
    if "faster" in row["verdict"]:
        row["verdict"] = "applied (train/loop.py channels_last_weights: CPU only; cuDNN keeps NHWC weights)"
    return {"levers": [row]}


def training_products(side: int, base: int, rounds: int) -> dict[str, Any]:
    """A pix2pix iteration with the U-Net's small-map layers as matrix products (nets/convs.py)
    vs oneDNN's convolutions throughout, fp32 and bf16 autocast."""
    from bench_training import training_step
    from translate.nets.convs import fast_inference

    make_step, _ = training_step("pix2pix", side, base_channels=base)
    out = []
    for precision in ("fp32", "bf16"):
        step = make_step(precision)

        def ordinary():  # noqa: ANN202
            with fast_inference(False):
                step()

        before, after = abba(ordinary, step, rounds)
        row = entry("small-map layers trained as matmul + unfold/fold instead of oneDNN convolutions",
                    f"pix2pix iteration {side}² {precision}", before, after)
        row["predicted"] = "+20 %: layers on ≤ 8×8 maps, forward + backward one by one, summed to ~330 ms less of a 1.7 s step"
        if "faster" in row["verdict"]:
            row["verdict"] = "applied (nets/convs.py, CPU training)"
        out.append(row)
    return {"levers": out}


def instance_norm_backward(side: int, base: int, rounds: int) -> dict[str, Any]:
    """A CycleGAN iteration with instance norm's backward on (N, H*W, C) views (nets/layers.py)
    vs PyTorch's group-norm backward on the channels-last tensors, fp32 and bf16 autocast."""
    from bench_training import training_step
    from translate.nets import layers

    make_step, _ = training_step("cyclegan", side, base_channels=base)
    original = layers._channels_last_training
    out = []
    for precision in ("fp32", "bf16"):
        step = make_step(precision)

        def plain():  # noqa: ANN202
            layers._channels_last_training = lambda x: False
            try:
                step()
            finally:
                layers._channels_last_training = original

        before, after = abba(plain, step, rounds)
        row = entry("instance-norm backward on (N, H·W, C) views instead of PyTorch's channels-last group-norm backward",
                    f"CycleGAN iteration {side}² {precision}", before, after)
        row["predicted"] = ("+5 %: the norm backward was 8 % of the step and ran 2–4× faster per layer" if precision == "fp32"
                            else "+25–35 %: the norm backward was 30 % of the step and ran 5–9× faster per layer")
        if "faster" in row["verdict"]:
            row["verdict"] = "applied (nets/layers.py InstanceNorm2d, CPU training)"
        out.append(row)
    return {"levers": out}


def _malloc_child(tuned: bool, base: int, sides: tuple[int, int]) -> dict[str, Any]:
    import ctypes
    import resource

    if tuned:  # glibc's mallopt: M_MMAP_THRESHOLD (-3) 1 GB, M_TRIM_THRESHOLD (-1) 64 MB
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)
        libc.mallopt(-1, 64 << 20)
    translator = make_translator("resnet_9blocks", "fp32", base)
    translator.memory_budget_mb = 1 << 20
    small, large = (to_batch([photo("astronaut", side)]) for side in sides)
    translator.translate_batch(small)
    times = {}
    for name, x in (("small", small), ("large", large), ("small2", small)):
        tick = time.perf_counter()
        translator.translate_batch(x)
        times[name] = time.perf_counter() - tick
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"small_s": (times["small"] + times["small2"]) / 2, "large_s": times["large"],
            "minor_faults": usage.ru_minflt, "sys_s": usage.ru_stime}


def malloc_tuning(base: int, rounds: int, sides: tuple[int, int]) -> dict[str, Any]:
    """glibc's default (fresh mappings, page-faulted anew, for every allocation over 32 MB) vs
    large allocations served from the heap with 64 MB kept on free: ResNet-9 at 256² and 1024²,
    each variant in its own process (the setting is per process), processes alternated."""
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for i in range(rounds):
        for tuned in ((False, True) if i % 2 == 0 else (True, False)):
            runs[tuned].append(run_isolated(_malloc_child, tuned, base, sides))
    out = []
    for key, label in (("large_s", f"{sides[1]}²"), ("small_s", f"{sides[0]}²")):
        before = [r[key] for r in runs[False] if r.get("status", "ok") == "ok"]
        after = [r[key] for r in runs[True] if r.get("status", "ok") == "ok"]
        peak = [statistics.median(r["peak_rss_mb"] for r in runs[t]) for t in (False, True)]
        faults = [statistics.median(r["minor_faults"] for r in runs[t]) for t in (False, True)]
        row = entry("glibc malloc: large tensors from the heap, 64 MB kept on free (mallopt)",
                    f"resnet_9blocks inference {label} fp32", before, after,
                    note=f"peak RSS {peak[0] / 1024:.2f} → {peak[1] / 1024:.2f} GB, page faults {faults[0] / 1e6:.1f} M → {faults[1] / 1e6:.1f} M")
        row["predicted"] = "+15 % at 1024² (kernel time, mostly page faults, was 20 % of the forward); none at 256²"
        row["verdict"] += "; not applied: the heap keeps what it frees, so peak memory grows (in a trial benchmark run with it, the 4096² tiled row peaked at 3.3 GB against 1.5 GB without, past its 2 GB target)"
        out.append(row)
    return {"levers": out}


def _parts_child(one_backward: bool, side: int, base: int) -> dict[str, Any]:
    from bench_training import training_step

    make_step, _ = training_step("cyclegan", side, base_channels=base, one_backward=one_backward)
    step = make_step("fp32")
    step()  # warm-up: optimizer state, oneDNN set-up
    tick = time.perf_counter()
    step()
    return {"seconds": time.perf_counter() - tick}


def generator_parts(side: int, base: int, rounds: int) -> dict[str, Any]:
    """CycleGAN's generator losses backpropagated part by part (two generator passes alive at a
    time) vs one backward over all six passes: peak memory and time, each variant in its own
    process (peak RSS is per process), processes alternated."""
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for i in range(rounds):
        for one_backward in ((True, False) if i % 2 == 0 else (False, True)):
            runs[one_backward].append(run_isolated(_parts_child, one_backward, side, base))
    if any(r.get("status", "ok") != "ok" for rs in runs.values() for r in rs):
        raise RuntimeError(next(r["error"] for rs in runs.values() for r in rs if r.get("status", "ok") != "ok"))
    peak = {k: statistics.median(r["peak_rss_mb"] for r in rs) / 1024 for k, rs in runs.items()}
    row = entry("generator losses backpropagated part by part (objectives' generator parts) instead of one backward",
                f"CycleGAN iteration {side}² fp32", [r["seconds"] for r in runs[True]], [r["seconds"] for r in runs[False]],
                note=f"peak RSS {peak[True]:.2f} → {peak[False]:.2f} GB")
    row["predicted"] = ("peak −1.2 GB: activations saved for backward held at once fell to a third "
                        "(2 of 6 generator passes; measured with saved-tensor hooks on a tiny CycleGAN)")
    row["verdict"] = "applied (train/step.py, objectives.py): " + row["verdict"]
    row["peak_before_gb"], row["peak_after_gb"] = peak[True], peak[False]
    return {"levers": [row]}


def _thp_child(sides: tuple[int, int], base: int) -> dict[str, Any]:
    """ResNet-9 forwards at two sides in this process (run with or without THP_MEM_ALLOC_ENABLE)."""
    import resource

    translator = make_translator("resnet_9blocks", "fp32", base)
    translator.memory_budget_mb = 1 << 20
    out: dict[str, Any] = {}
    for side in sides:
        x = to_batch([photo("astronaut", side)])
        translator.translate_batch(x)  # warm-up at this size
        before = resource.getrusage(resource.RUSAGE_SELF)
        tick = time.perf_counter()
        translator.translate_batch(x)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out[str(side)] = {"seconds": time.perf_counter() - tick, "sys_s": after.ru_stime - before.ru_stime,
                          "user_s": after.ru_utime - before.ru_utime, "minor_faults": after.ru_minflt - before.ru_minflt}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _spawn(fn: Callable[..., dict[str, Any]], *args: Any, env: dict[str, str]) -> dict[str, Any]:
    """``fn(*args)`` in a fresh interpreter (not a fork) with ``env`` added: for settings read
    once when torch starts."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_common, bench_levers; "
            f"bench_common.set_threads({bench_common.THREADS!r}); "
            f"print(json.dumps(bench_levers.{fn.__name__}(*{list(args)!r})))")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{fn.__name__} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def huge_pages(base: int, rounds: int, sides: tuple[int, int]) -> dict[str, Any]:
    """PyTorch's CPU allocator asking the kernel for transparent huge pages on tensors of 2 MB
    or more (``THP_MEM_ALLOC_ENABLE=1``, read once when torch starts) vs 4 KB pages: ResNet-9
    at two sides, each variant in a fresh interpreter, alternated."""
    runs: dict[str, list[dict[str, Any]]] = {"0": [], "1": []}
    for i in range(rounds):
        for flag in (("0", "1") if i % 2 == 0 else ("1", "0")):
            runs[flag].append(_spawn(_thp_child, list(sides), base, env={"THP_MEM_ALLOC_ENABLE": flag}))
    out = []
    for side in (str(sides[1]), str(sides[0])):
        def med(flag: str, key: str) -> float:
            return statistics.median(r[side][key] for r in runs[flag])

        row = entry("transparent huge pages for tensors ≥ 2 MB (THP_MEM_ALLOC_ENABLE=1)",
                    f"resnet_9blocks inference {side}² fp32", [r[side]["seconds"] for r in runs["0"]],
                    [r[side]["seconds"] for r in runs["1"]],
                    note=f"page faults {med('0', 'minor_faults') / 1e3:.0f} k → {med('1', 'minor_faults') / 1e3:.0f} k, "
                         f"kernel time {med('0', 'sys_s'):.2f} → {med('1', 'sys_s'):.2f} s, user time "
                         f"{med('0', 'user_s'):.2f} → {med('1', 'user_s'):.2f} s, peak RSS "
                         f"{statistics.median(r['peak_rss_mb'] for r in runs['0']) / 1024:.2f} → "
                         f"{statistics.median(r['peak_rss_mb'] for r in runs['1']) / 1024:.2f} GB")
        row["predicted"] = f"a few % at {sides[1]}²: 512× fewer page faults; the kernel still zeroes every fresh page"
        row["verdict"] = "applied (hardware.prefer_huge_pages, by the CLI before torch starts): " + row["verdict"]
        out.append(row)
    return {"levers": out}


def folder_workers(side: int, count: int, base: int, rounds: int) -> dict[str, Any]:
    """``translate_folder`` with 1 reader/writer thread each vs the default 2."""
    import shutil
    import tempfile
    from pathlib import Path

    import cv2

    from translate.infer.folder import translate_folder

    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        src = tmp / "in"
        src.mkdir()
        for i in range(count):
            image = photo(("astronaut", "coffee", "chelsea", "rocket")[i % 4], side)
            cv2.imwrite(str(src / f"{i:03d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        translator = make_translator("resnet_9blocks", "fp32", base)

        def run(workers: int) -> Callable[[], Any]:
            return lambda: translate_folder(translator, src, tmp / f"out{workers}", batch_size=4, workers=workers,
                                            progress=False, overwrite=True)

        before, after = abba(run(2), run(1), rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"levers": [entry("workers=1 instead of 2 (translate_folder)", f"translate apply, {count} × {side}², batch 4", before, after)]}


def cached_multiple(base: int) -> dict[str, Any]:
    """``size_multiple`` (builds the net on the meta device) vs ``Translator.multiple`` (cached)."""
    from translate.nets import size_multiple

    out = []
    for generator in ("resnet_9blocks", "unet_256"):
        translator = make_translator(generator, "fp32", base)
        translator.multiple  # noqa: B018  fills the cache
        before, after = abba(lambda: size_multiple(translator.net_config), lambda: translator.multiple, 20)
        row = entry("cache Translator.multiple", f"{generator}: per translate_batch call", before, after)
        row["verdict"] = "already applied (translator.py caches it since commit af0ff56)"
        row["before"], row["after"] = f"{row['before_s'] * 1000:.1f} ms", f"{row['after_s'] * 1e6:.1f} µs"
        out.append(row)
    return {"levers": out}


def balanced_tiles(side: int, tile: int, base: int, rounds: int) -> dict[str, Any]:
    """Tiles laid out as ``tiling.axis_layout`` does (the same count per axis, shrunk to share
    the axis evenly) vs the previous layout (full tiles every ``tile - overlap``, the last one
    flush with the edge, recomputing up to a whole tile of pixels).

    Statistics pass off (``norm_stats="tile"``) in both, so the time is the tiles' alone.
    """
    from translate.infer import tiling

    translator = make_translator("resnet_9blocks", "fp32", base)
    translator.tile = tile
    x = to_batch([photo("astronaut", side)])
    even_layout = tiling.axis_layout
    overlap, m = tiling.tile_overlap(translator), translator.multiple

    def flush_layout(size: int, length: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
        length = min(length, size)
        return length, tiling._starts(size, length, overlap)

    def run(layout) -> Callable[[], Any]:  # noqa: ANN001
        def call():
            tiling.axis_layout = layout
            try:
                return tiling.translate_tiled(translator, x, norm_stats="tile")
            finally:
                tiling.axis_layout = even_layout
        return call

    before, after = abba(run(flush_layout), run(even_layout), rounds, warmup=0)
    (old_len, old_starts), (new_len, new_starts) = flush_layout(side, tile, overlap, m), even_layout(side, tile, overlap, m)
    pixels = (len(old_starts) * old_len) ** 2, (len(new_starts) * new_len) ** 2
    note = (f"{len(old_starts) ** 2} tiles of {old_len}² vs {len(new_starts) ** 2} of {new_len}²: "
            f"{pixels[0] / pixels[1]:.2f}× the pixels")
    row = entry("even tiles (same count per axis, shrunk to cover the image)", f"tiled {side}², tile {tile}",
                before, after, note=note)
    row["verdict"] = "applied (tiling.axis_layout)"
    return {"levers": [row]}


FAST_CONV_PREDICTED = {
    "unet_256": "+25–40 %: layers on ≤ 16×16 maps took 90 of 175 ms and ran 2–40× faster packed, one by one",
    "resnet_9blocks": "none: its smallest maps are 64×64, where packing measured 1.0× per layer",
}


def fast_convolutions(rounds: int, base: int) -> dict[str, Any]:
    """Generator inference with ``nets.convs``' fast CPU routes (weights packed once for oneDNN;
    the U-Net's 3-channel output layer as a product) vs the ordinary ``torch.nn`` operators,
    which hand oneDNN unpacked weights at every call; fp32 and bf16 (autocast)."""
    from translate.nets.convs import fast_inference

    out = []
    for generator in ("unet_256", "resnet_9blocks"):
        translator = make_translator(generator, "fp32", base)
        x = to_batch([photo("astronaut", 256)])
        for precision in ("fp32", "bf16"):
            def run(fast: bool):  # noqa: ANN202
                def call():  # noqa: ANN202
                    translator.precision = precision
                    with fast_inference(fast):
                        return translator.translate_batch(x)
                return call

            diff = float((run(False)() - run(True)()).abs().max())
            before, after = abba(run(False), run(True), rounds)
            row = entry("convolutions on weights packed once for oneDNN (+ the U-Net output layer as matmul + fold)",
                        f"{generator} inference 256² {precision}", before, after, note=f"max output difference {diff:.1e}")
            row["predicted"] = FAST_CONV_PREDICTED[generator]
            gained = statistics.median(before) / statistics.median(after) - 1 >= SIGNIFICANT
            row["verdict"] = (f"{'applied' if gained else 'no measurable effect, applied all the same'} "
                              f"(nets/convs.py, every generator's CPU inference; max output difference {diff:.1e})")
            out.append(row)
    return {"levers": out}


def packing_layout(side: int, base: int, rounds: int) -> dict[str, Any]:
    """Weights packed for the input shape (today) vs for no particular input (oneDNN's default
    blocked layout, what nets.convs did before): U-Net-256 inference, fp32. The earlier variant
    is today's code with the reorders' input-shape argument dropped."""
    import torch

    from translate.nets import convs

    translator = make_translator("unet_256", "fp32", base)
    x = to_batch([photo("astronaut", side)])
    reorders = {"conv": torch._C._nn.mkldnn_reorder_conv2d_weight,
                "transpose": torch.ops.mkldnn._reorder_convolution_transpose_weight}

    def run(shape_free: bool) -> Callable[[], Any]:
        def call() -> Any:
            convs.clear_packed()  # each variant packs its own copies; packing itself is outside the timing below
            if shape_free:
                torch._C._nn.mkldnn_reorder_conv2d_weight = lambda w, *a: reorders["conv"](w, *a[:4])
                torch.ops.mkldnn._reorder_convolution_transpose_weight = lambda w, *a: reorders["transpose"](w, *a[:5], None)
            try:
                translator.translate_batch(x)  # packs
                tick = time.perf_counter()
                out = translator.translate_batch(x)
                times[shape_free].append(time.perf_counter() - tick)
                return out
            finally:
                torch._C._nn.mkldnn_reorder_conv2d_weight = reorders["conv"]
                torch.ops.mkldnn._reorder_convolution_transpose_weight = reorders["transpose"]
        return call

    times: dict[bool, list[float]] = {True: [], False: []}
    diff = float((run(True)() - run(False)()).abs().max())
    times = {True: [], False: []}
    abba(run(True), run(False), rounds, warmup=0)
    row = entry("weights packed for the input shape instead of oneDNN's shape-free default layout",
                f"unet_256 inference {side}² fp32", times[True], times[False], note=f"max output difference {diff:.1e}")
    row["predicted"] = ("AVX2: ~6× (the packed U-Net ran 4× slower than unpacked; its 2×2-map layers 10–12× slower one by "
                        "one, 2–20× faster packed for their shape); AVX-512: none (both layouts within 5 % there)")
    row["verdict"] = "applied (nets/convs.py): " + row["verdict"]
    return {"levers": [row]}


def compile_inference(side: int, base: int, rounds: int) -> dict[str, Any]:
    """``torch.compile`` (inductor) vs eager for the ResNet-9 forward, compile time reported apart."""
    import torch

    translator = make_translator("resnet_9blocks", "fp32", base)
    x = to_batch([photo("astronaut", side)]).contiguous(memory_format=torch.channels_last)
    eager = translator.net
    compiled = torch.compile(eager)
    tick = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    compile_s = time.perf_counter() - tick

    def run(net):  # noqa: ANN001
        def call():
            with torch.inference_mode():
                return net(x)
        return call

    before, after = abba(run(eager), run(compiled), rounds, warmup=0)
    return {"levers": [entry("torch.compile(net) (inductor)", f"resnet_9blocks inference {side}² fp32", before, after,
                             note=f"first call (compilation) {compile_s:.0f} s")]}


PREDICTED_WEIGHT_GRAD = {
    "cyclegan": ("AVX2: +35–45 %: layer by layer, forward + backward 1.6–2.2× faster for ResNet-9's 64–256-channel layers; "
                 "AVX-512: none (oneDNN's backward there is 0.84× its forward)"),
    "pix2pix": ("AVX2: +5–10 %: the weight gradients of its 64–1024-channel layers took 874 ms, 574 ms as products, of a "
                "3.6 s step (its small-map layers are products already); AVX-512: none"),
}


def weight_grad_products(side: int, base: int, rounds: int) -> dict[str, Any]:
    """Training with the weight gradients of layers of >= 64 channels in and out as products
    (nets/convs.py; on by default on AVX2 CPUs only) vs oneDNN's backward-weights kernel: a
    CycleGAN iteration (ResNet-9) and a pix2pix iteration (U-Net-256), fp32."""
    from bench_training import training_step
    from translate.nets import convs

    original = convs.WEIGHT_GRAD_PRODUCTS
    out = []
    for model, model_side in (("cyclegan", side), ("pix2pix", 256)):  # the U-Net takes 256²
        make_step, _ = training_step(model, model_side, base_channels=base)
        step = make_step("fp32")

        def with_route(on: bool) -> Callable[[], None]:
            def call() -> None:
                convs.WEIGHT_GRAD_PRODUCTS = on
                try:
                    step()
                finally:
                    convs.WEIGHT_GRAD_PRODUCTS = original
            return call

        before, after = abba(with_route(False), with_route(True), rounds)
        row = entry("weight gradients as one matrix product per kernel offset instead of oneDNN's backward-weights",
                    f"{'CycleGAN' if model == 'cyclegan' else 'pix2pix'} iteration {model_side}² fp32", before, after,
                    note=f"this CPU runs PyTorch's {convs._cpu_capability()} kernels")
        row["predicted"] = PREDICTED_WEIGHT_GRAD[model]
        if "faster" in row["verdict"]:
            row["verdict"] = "applied on AVX2 CPUs (nets/convs.py WEIGHT_GRAD_PRODUCTS, CPU training)"
        elif "no measurable" in row["verdict"]:
            row["verdict"] += "; applied all the same (the route of the CycleGAN row)"
        out.append(row)
    return {"levers": out}


def run_levers(*, base: int, quick: bool, names: set[str] | None = None) -> list[dict[str, Any]]:
    """Run every lever (each in its own child), or those whose function is named in ``names``,
    and return their entries, each marked with its function's name (``source``)."""
    side = 64 if quick else 256
    rounds = 2 if quick else 4
    plan = [
        (channels_last_inference, (side, base, rounds)),
        (instance_norm_inference, (side, base, rounds)),
        (threads, (side, base, rounds)),
        (fused_adam, (base, 6)),
        (channels_last_training, (32 if quick else 128, base, 2)),
        (weights_layout_training, (256, base, 2 if quick else rounds)),  # the U-Net takes 256²
        (instance_norm_backward, (32 if quick else 128, base, 2)),
        (training_products, (256, base, 2 if quick else rounds)),  # the U-Net takes 256²
        (folder_workers, (side, 4 if quick else 8, base, 2)),
        (cached_multiple, (base,)),
        (balanced_tiles, (256, 160, base, 2) if quick else (1024, 832, base, 2)),
        (fast_convolutions, (rounds, base)),
        (compile_inference, (side, base, rounds)),
        (packing_layout, (side, base, rounds)),
        (weight_grad_products, (32 if quick else 256, base, 2)),
    ]
    # these spawn their own children: per-process settings or per-process peak memory
    extra = [(malloc_tuning, (base, 2 if quick else 3, (64, 128) if quick else (256, 1024))),
             (generator_parts, (32 if quick else 256, base, 2)),
             (huge_pages, (base, 2 if quick else 4, (64, 128) if quick else (256, 1024)))]
    known = {fn.__name__ for fn, _ in plan + extra}
    if names is not None and names - known:
        raise ValueError(f"unknown lever(s) {', '.join(sorted(names - known))}; choose from {', '.join(sorted(known))}")
    out: list[dict[str, Any]] = []
    for fn, args in plan + extra:
        if names is not None and fn.__name__ not in names:
            continue
        tick = time.perf_counter()
        try:
            result = {"status": "ok", **fn(*args)} if (fn, args) in extra else run_isolated(fn, *args)
        except RuntimeError as exc:
            result = {"status": "error", "error": str(exc)}
        if result.get("status") != "ok":
            out.append({"lever": fn.__name__, "workload": "", "status": "error", "error": result.get("error"), "source": fn.__name__})
        else:
            out.extend({**row, "source": fn.__name__} for row in result["levers"])
        print(f"lever {fn.__name__}: {time.perf_counter() - tick:.0f} s", flush=True)
    return out

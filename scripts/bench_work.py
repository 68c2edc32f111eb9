"""What the benchmark's child processes run (``scripts/bench.py`` starts each in a fresh process).

A builder returns ``{variant: callable}``; one call is one timed repetition. The variants of one
process run interleaved: warm-ups first, then rounds in order A B C, C B A, … so that load drift
hits them alike. Nothing here is imported with torch: the parent imports this module too.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import resource
import runpy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Variants = dict[str, Callable[[], Any]]


def start(env: dict[str, str], threads: int | None, as_cli: bool) -> None:
    """Process initializer: the job's environment and threads, before torch is imported."""
    os.environ.update(env)
    from translate.runtime import prefer_huge_pages, set_threads

    if as_cli:  # huge pages, as ``translate`` itself asks for them; the reference runs without
        prefer_huge_pages()
    set_threads(threads)


def run(parts: list[tuple[Callable[..., dict], dict[str, Any]]], device: str, warmup: int, rounds: int) -> dict[str, Any]:
    """Build every part's variants, time them interleaved, and say what the process was."""
    built: dict[str, Any] = {}
    for build, kwargs in parts:
        built.update(build(device=device, **kwargs))
    timed = {k: v for k, v in built.items() if isinstance(v, dict)}  # parts that time themselves
    timed.update(interleave({k: v for k, v in built.items() if callable(v)}, warmup, rounds, device))
    return {"variants": timed, "process": process_info(device)}


def interleave(variants: Variants, warmup: int, rounds: int, device: str) -> dict[str, dict[str, Any]]:
    import torch

    cuda = device.startswith("cuda")
    out: dict[str, dict[str, Any]] = {k: {"warmup": [], "runs": []} for k in variants}

    def call(key: str, into: str) -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        tick = time.perf_counter()
        variants[key]()
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
            out[key]["cuda_peak_mb"] = max(out[key].get("cuda_peak_mb", 0.0), peak)
        out[key][into].append(time.perf_counter() - tick)

    for key in variants:
        for _ in range(warmup):
            call(key, "warmup")
    names = list(variants)
    for r in range(rounds):
        for key in names if r % 2 == 0 else names[::-1]:
            call(key, "runs")
    return out


def process_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "env": {k: v for k, v in os.environ.items() if k.startswith(("TRANSLATE_", "THP_", "OMP_"))},
    }
    accel = sys.modules.get("translate.accel")  # loaded where the runtime placed a network
    info["cpu_kernels"] = accel.enabled() if accel else None
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def images(count: int, side: int, seed: int = 0):
    """(count, 3, side, side) float32 in [-1, 1]: smooth random images (timing does not depend on content)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(2, side // 16), max(2, side // 16), generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False) * 2 - 1


def net_config(generator: str, base_channels: int):
    """Each model's default network: CycleGAN's ResNet-9 (instance norm), pix2pix's U-Net-256 (batch norm)."""
    from translate.config import preset

    cfg = preset("pix2pix" if generator.startswith("unet") else "cyclegan", "paper").net
    cfg.generator = generator
    cfg.base_channels_g = cfg.base_channels_d = base_channels
    return cfg


# ---------------------------------------------------------------------------------- training


def reference(*, device: str, script: str, runs: list[tuple[str, int]], warmup: int, rounds: int) -> dict[str, Any]:
    """The plain reference step, its own script run as is (it times itself; at least 3 + 1 iterations)."""
    import torch

    out = {}
    for model, size in runs:
        sys.argv = [script, str(size), str(max(1, warmup + rounds - 3)), model, device]
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its median; every time is kept here
            times = runpy.run_path(script, run_name="__main__")["times"]
        out[f"train/{model}/{size}/reference"] = {"warmup": times[:warmup], "runs": times[warmup:]}
        if device.startswith("cuda"):
            out[f"train/{model}/{size}/reference"]["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def training(*, device: str, runs: list[tuple[str, int]], precisions: list[str], base_channels: int, label: str) -> Variants:
    """``train_step`` of the toolkit's training builder, from each model's preset, batch 1: on a GPU
    with what the builder chooses there (AMP by precision, channels-last, cudnn.benchmark, fused Adam)."""
    import torch

    from translate.config import preset
    from translate.train.build import build_training

    dev = torch.device(device)
    variants: Variants = {}
    for model, size in runs:
        for precision in precisions:
            cfg = preset(model, "paper")  # what the reference trains
            cfg.net.base_channels_g = cfg.net.base_channels_d = base_channels
            cfg.data.load_size = cfg.data.crop_size = size
            cfg.train.precision, cfg.train.device = precision, device
            training = build_training(cfg, dev, planned_steps=1000)
            # as a data loader gives it; the first step moves it to the device and layout, in place
            batch = {"A": images(1, size, 1), "B": images(1, size, 2), "path_A": ["a.png"], "path_B": ["b.png"]}
            variants[f"train/{model}/{size}/{precision}/{label}"] = functools.partial(training.train_step, batch)
    return variants


# ---------------------------------------------------------------------------------- inference


def inference(*, device: str, runs: list[tuple[str, int]], precisions: list[str], base_channels: int, label: str, plain: bool) -> Variants:
    """``Translator.translate_batch`` on one image and, with ``plain``, a plain eager loop of the
    same network (same weights, ``eval()``, ``inference_mode``, autocast for bf16/fp16); both
    take a CPU batch and return a CPU image."""
    import torch

    from translate import Translator
    from translate.nets import build_generator

    variants: Variants = {}
    for generator in dict.fromkeys(g for g, _ in runs):
        cfg = net_config(generator, base_channels)
        torch.manual_seed(0)
        net = build_generator(cfg)
        plain_net = copy.deepcopy(net).eval().requires_grad_(False).to(device)  # before the runtime places the others
        for side in (s for g, s in runs if g == generator):
            x = images(1, side)
            for precision in precisions:
                # a translator per row, as a user's run has one size and precision: rows interleaved
                # through one network would evict each other's packed weights (translate.accel)
                toolkit = Translator.from_module(copy.deepcopy(net), cfg, device=device, precision=precision)
                key = f"infer/{generator}/{side}/{precision}"
                variants[f"{key}/{label}"] = functools.partial(toolkit.translate_batch, x)
                if plain:
                    variants[f"{key}/plain"] = functools.partial(_eager, plain_net, x, device, precision, to_cpu=True)
    return variants


def _eager(net, x, device: str, precision: str, *, to_cpu: bool = False):
    import torch

    from translate.runtime import autocast_dtype

    dtype = autocast_dtype(precision, torch.device(device))
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
        out = net(x.to(device))
        return out.float().cpu() if to_cpu else out


def ceiling(*, device: str, shape: tuple[int, int, int, int], precisions: list[str]) -> Variants:
    """One large channels-last 3x3 convolution (C -> C), as the ResNet blocks': the machine's ceiling."""
    import torch

    conv = torch.nn.Conv2d(shape[1], shape[1], 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    return {f"ceiling/{p}": functools.partial(_eager, conv, x, device, p) for p in precisions}


# ---------------------------------------------------------------------------------- pipelines


def pipelines(*, device: str, side: int, count: int, clip: tuple[int, int, int], batch_size: int, base_channels: int) -> Variants:
    """``translate apply`` (``Translator.translate_folder``) on JPEG photos and ``translate video``
    on an H.264 clip, end to end, each beside the model alone on the same decoded pixels."""
    import cv2
    import numpy as np
    import torch

    from translate import Translator
    from translate.files import signed_to_uint8, to_unit, unit_to_signed
    from translate.nets import build_generator

    cfg = net_config("resnet_9blocks", base_channels)
    translator = Translator.from_module(build_generator(cfg), cfg, device=device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))  # in /tmp: removed by the system, like the process's other temporaries
    (tmp / "photos").mkdir()
    for i, photo in enumerate(signed_to_uint8(images(count, side).permute(0, 2, 3, 1))):
        cv2.imwrite(str(tmp / "photos" / f"{i:03d}.jpg"), np.ascontiguousarray(photo[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])

    def model_alone(frames: list) -> Callable[[], Any]:
        batches = [
            unit_to_signed(torch.from_numpy(to_unit(np.stack(frames[i : i + batch_size])))).permute(0, 3, 1, 2)
            for i in range(0, len(frames), batch_size)
        ]
        return lambda: [translator.translate_batch(b) for b in batches]

    def apply() -> None:
        report = translator.translate_folder(tmp / "photos", tmp / "out", batch_size=batch_size, overwrite=True, progress=False)
        if report.failed or len(report.translated) != count:
            raise RuntimeError(f"translate_folder: {len(report.translated)} of {count} translated, failed {report.failed[:2]}")

    decoded = [cv2.imread(str(p))[:, :, ::-1] for p in sorted((tmp / "photos").iterdir())]
    variants: Variants = {f"apply/{side}/e2e": apply, f"apply/{side}/model": model_alone(decoded)}
    try:
        frames = make_clip(tmp / "clip.mp4", *clip)
    except ImportError:  # no PyAV here: the video rows are reported missing
        return variants
    out = tmp / "out.mp4"
    variants[f"video/{clip[0]}x{clip[1]}/e2e"] = functools.partial(
        translator.translate_video, tmp / "clip.mp4", out, batch_size=batch_size, progress=False
    )
    variants[f"video/{clip[0]}x{clip[1]}/model"] = model_alone(frames)
    return variants


def make_clip(path: Path, width: int, height: int, frames: int) -> list:
    """An H.264 clip (yuv420p, CRF 18) panning over a smooth image; returns its decoded frames."""
    import av

    from translate.files import signed_to_uint8

    scene = signed_to_uint8(images(1, 2 * max(width, height))[0].permute(1, 2, 0))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene[i : i + height, i : i + width].copy(), format="rgb24")))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def tiled(*, device: str, side: int, tile: int | None, base_channels: int) -> Variants:
    """One side x side image through ``Translator.translate_batch`` with its default memory budget
    (``tile`` forces tiles, for the quick run's small image); the row reads the process's peak RSS."""
    from translate import Translator
    from translate.nets import build_generator

    cfg = net_config("resnet_9blocks", base_channels)
    translator = Translator.from_module(build_generator(cfg), cfg, device=device, tile=tile)
    return {f"tiled/{side}/fp32/seconds": functools.partial(translator.translate_batch, images(1, side))}

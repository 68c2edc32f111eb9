"""The benchmark's inference workloads (training is in ``bench_training``). Each runs inside a forked child (see ``bench_common.run_isolated``)
and returns a dict: what ran, its timing, FLOPs, the local convolution ceiling and extras.

Networks have random weights (init as in training); a U-Net with batch norm first has its
running statistics computed on a photo (one forward in train mode), so that its activations,
and so its bf16-vs-fp32 PSNR, are those of a network that has seen images.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench_common import Precision, Variant, conv_ceiling, flop_counter, measure, measure_interleaved, photo, psnr, to_batch

GeneratorName = Literal["resnet_9blocks", "unet_256"]
DAY = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def net_config(generator: GeneratorName, base_channels: int):
    """The default architecture of each model (CycleGAN's ResNet-9, pix2pix's U-Net-256)."""
    from translate.config import NetConfig, preset

    if generator == "unet_256":
        cfg = preset("pix2pix").net
    elif generator == "resnet_9blocks":
        cfg = NetConfig(generator="resnet_9blocks")
    else:
        raise ValueError(f"generator must be resnet_9blocks or unet_256, got {generator!r}")
    cfg.base_channels_g = cfg.base_channels_d = base_channels
    return cfg


def make_translator(generator: GeneratorName, precision: Precision, base_channels: int, *, calibrate_side: int = 256):
    """A ``Translator`` around a freshly initialised generator (seed 0)."""
    import torch

    from translate.infer.translator import Translator
    from translate.nets import build_generator

    cfg = net_config(generator, base_channels)
    torch.manual_seed(0)
    net = build_generator(cfg)
    if cfg.norm == "batch":
        _calibrate_batch_norm(net, calibrate_side)
    return Translator.from_module(net, cfg, precision=precision)


def _calibrate_batch_norm(net, side: int) -> None:
    import torch

    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics
    net.train()
    with torch.no_grad():
        net(to_batch([photo(name, side) for name in DAY[:2]]))
    net.eval()


def prime(translator) -> None:
    """Run the tiling module's meta-device memory probe now, outside every FLOP count."""
    try:
        from translate.infer.tiling import bytes_per_pixel
    except ImportError:
        return
    bytes_per_pixel(translator)


def _common(precision: Precision, quick: bool) -> dict[str, Any]:
    """The row's precision and the ceiling measured just before its workload (batch 1)."""
    ceiling = conv_ceiling(precision, quick=quick, batch_size=1)
    return {"precision": precision, "ceiling_before_gflops": ceiling["gflops"]}


def _local_ceiling(row: dict[str, Any], quick: bool) -> None:
    """Measure the ceiling again after the workload; the row's ceiling is the mean of both.

    On a shared machine a check of a fraction of a second catches the load of that moment;
    bracketing the workload averages out some of it (both values are kept).
    """
    after = conv_ceiling(row["precision"], quick=quick, batch_size=1)["gflops"]
    row["ceiling_after_gflops"] = after
    row["ceiling_gflops"] = (row["ceiling_before_gflops"] + after) / 2
    if row.get("gflops"):
        row["ceiling_ratio"] = row["gflops"] / row["ceiling_gflops"]


def _finish(row: dict[str, Any], timing, profile: dict | None, quick: bool) -> dict[str, Any]:
    row.update(timing.as_dict())
    _local_ceiling(row, quick)
    if profile is not None:
        row["profile"] = profile
    return row


def variant_row(base: dict[str, Any], v: Variant, precision: Precision, before: dict[str, float],
                 after: dict[str, float]) -> dict[str, Any]:
    """A result row from one variant of an interleaved group, with its precision's ceilings."""
    row = {**base, "precision": precision, **v.timing.as_dict(), "peak_rss_mb": v.rss.peak_bytes / 2**20,
           "ceiling_before_gflops": before[precision], "ceiling_after_gflops": after[precision],
           "ceiling_gflops": (before[precision] + after[precision]) / 2}
    if row.get("gflops"):
        row["ceiling_ratio"] = row["gflops"] / row["ceiling_gflops"]
    if v.summary is not None:
        row["profile"] = v.summary
    return row


def ceilings(quick: bool) -> dict[str, float]:
    return {p: conv_ceiling(p, quick=quick, batch_size=1)["gflops"] for p in ("fp32", "bf16")}


# ---------------------------------------------------------------------------------- 1. inference


def inference(generator: GeneratorName, side: int, *, base_channels: int, quick: bool, small_side: int,
              warmup: int, repeats: int, rounds: int, budget_s: float, profile: bool = False,
              precisions: tuple[Precision, ...] = ("fp32", "bf16")) -> dict[str, Any]:
    """``Translator.translate_batch`` on one (1, 3, side, side) photo, untiled, fp32 and bf16
    (``precisions``; fp32 comes first).

    Both precisions run in this one process, interleaved, on the same network (the Translator's
    ``precision`` is switched between calls), so the bf16/fp32 ratio and the PSNR between their
    outputs are measured under the same load. For ``side != small_side`` the ``small_side``
    forwards run interleaved as well (order: small fp32, side fp32, side bf16, small bf16), so
    the cost of ``side`` relative to ``small_side`` is a same-process ratio too.

    Returns:
        ``{"rows": [fp32 row, bf16 row]}``.
    """
    translator = make_translator(generator, "fp32", base_channels)
    would_tile = {}
    try:
        from translate.infer.tiling import needs_tiling

        for precision in precisions:
            translator.precision = precision
            would_tile[precision] = bool(needs_tiling(translator, (1, 3, side, side)))
    except ImportError:
        pass
    translator.memory_budget_mb = 1 << 20  # the plain forward is measured here; tiling is its own row
    prime(translator)

    def forward(precision: Precision, batch) -> Callable[[], Any]:  # noqa: ANN001
        def call() -> Any:
            translator.precision = precision
            return translator.translate_batch(batch)
        return call

    image = to_batch([photo("astronaut", side)])
    variants: dict[str, Variant] = {}
    small = to_batch([photo("astronaut", small_side)]) if side != small_side else None
    if small is not None:
        variants["small/fp32"] = Variant(forward("fp32", small), warmup=1, repeats=1)
    for precision in precisions:
        variants[precision] = Variant(forward(precision, image), warmup=warmup, repeats=repeats, profile=profile)
    if small is not None and "bf16" in precisions:
        variants["small/bf16"] = Variant(forward("bf16", small), warmup=1, repeats=1)
    before = ceilings(quick)
    measure_interleaved(variants, rounds=rounds, budget_s=budget_s)
    after = ceilings(quick)
    outputs = {p: variants[p].value.numpy() for p in precisions}
    rows = []
    for precision in precisions:
        v = variants[precision]
        row = variant_row({"generator": generator, "side": side, "batch": 1,
                            "default_would_tile": would_tile.get(precision, False)}, v, precision, before, after)
        row["output_std"] = float(outputs[precision].std())
        if precision == "bf16" and "fp32" in outputs:
            row["psnr_vs_fp32_db"] = psnr(outputs["bf16"], outputs["fp32"])
            row["bf16_speedup_same_process"] = variants["fp32"].timing.median / v.timing.median
        if small is not None:
            ref = variants[f"small/{precision}"].timing
            row["small_side"] = small_side
            row["small_side_seconds"] = ref.median
            row["cost_vs_small_same_process"] = v.timing.median / ref.median
        rows.append(row)
    return {"rows": rows}


# ---------------------------------------------------------------------------------- 2. folder


class _TimedBatches:
    """Wraps ``translator.translate_batch`` to add up the seconds spent inside it."""

    def __init__(self, translator) -> None:  # noqa: ANN001
        self.translator, self.seconds, self.original = translator, 0.0, translator.translate_batch

    def __enter__(self) -> _TimedBatches:
        def timed(batch):  # noqa: ANN001, ANN202
            tick = time.perf_counter()
            try:
                return self.original(batch)
            finally:
                self.seconds += time.perf_counter() - tick

        self.translator.translate_batch = timed  # an instance attribute shadows the method
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.translator.translate_batch


def _model_only(translator, batches: list, count: int) -> tuple[float, int]:  # noqa: ANN001
    """Seconds and images of ``translate_batch`` over the first ``count`` batches."""
    images, tick = 0, time.perf_counter()
    for batch in batches[:count]:
        translator.translate_batch(batch)
        images += batch.shape[0]
    return time.perf_counter() - tick, images


def _pipeline_row(row: dict[str, Any], seconds: float, items: int, inside_s: float, model: list[tuple[float, int]],
                  flops_per_item: int, unit: str) -> dict[str, Any]:
    """Fill a folder/video row: end-to-end rate vs the model-only rate measured before and after."""
    model_s, model_items = sum(t for t, _ in model), sum(n for _, n in model)
    row.update({
        "seconds": seconds, "runs": [round(seconds, 4)], "flops": flops_per_item * items,
        "gflops": flops_per_item * items / seconds / 1e9, f"{unit}_per_s": items / seconds,
        f"model_{unit}_per_s": model_items / model_s, "model_runs": [round(t, 4) for t, _ in model],
        "model_items": model_items,
        # the network's own time inside the pipeline: the pipeline's overhead without load drift
        "in_pipeline_model_seconds": inside_s, "network_busy": inside_s / seconds,
        "e2e_vs_model": (items / seconds) / (model_items / model_s),
    })
    return row


def folder(side: int, count: int, batch_size: int, precision: Precision, *, base_channels: int, quick: bool,
           workers: int = 2, model_batches: int = 1) -> dict[str, Any]:
    """``translate_folder`` end to end on ``count`` JPEG photos vs ``translate_batch`` alone.

    Model only runs on the same decoded batches, ``model_batches`` of them before and as many
    after the end-to-end run (the first absorbs the one-time kernel set-up, sub-second next to
    these forwards), so that drift in the machine's load hits both sides alike.
    """
    import cv2

    from translate.data.samples import random_crop
    from translate.infer.folder import translate_folder

    tmp = Path(tempfile.mkdtemp(prefix="bench-folder-"))
    try:
        src, dst = tmp / "in", tmp / "out"
        src.mkdir()
        rng = np.random.default_rng(0)
        images = []
        for i in range(count):
            image = random_crop(photo(DAY[i % len(DAY)], max(side, 512)), side, rng)
            cv2.imwrite(str(src / f"photo_{i:03d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(cv2.cvtColor(cv2.imread(str(src / f"photo_{i:03d}.jpg")), cv2.COLOR_BGR2RGB))
        batches = [to_batch(images[i : i + batch_size]) for i in range(0, count, batch_size)]
        translator = make_translator("resnet_9blocks", precision, base_channels)
        prime(translator)
        row = {"generator": "resnet_9blocks", "side": side, "batch": batch_size, "images": count, "workers": workers,
               **_common(precision, quick)}
        model = [_model_only(translator, batches, model_batches)]
        with _TimedBatches(translator) as inside:
            report = translate_folder(translator, src, dst, batch_size=batch_size, workers=workers, progress=False,
                                      overwrite=True)
        model.append(_model_only(translator, batches[::-1], model_batches))
        if report.failed or len(report.translated) != count:
            raise RuntimeError(f"translate_folder translated {len(report.translated)} of {count}: {report.failed[:2]}")
        _pipeline_row(row, report.seconds, count, inside.seconds, model,
                      meta_flops("resnet_9blocks", side, side, base_channels), "images")
        _local_ceiling(row, quick)
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------- 3. video


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """An H.264 clip panning across a real photo (yuv420p, CRF 18, no audio)."""
    import av

    scene = np.concatenate([photo("astronaut", (height * 2, height * 2)), photo("coffee", (height * 2, height * 2))], axis=1)
    travel = scene.shape[1] - width
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x = int(round(travel * i / max(1, frames - 1)))
            y = (scene.shape[0] - height) // 2
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[y : y + height, x : x + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def video(width: int, height: int, frames: int, batch_size: int, precision: Precision, *, base_channels: int,
          quick: bool, model_batches: int = 1) -> dict[str, Any]:
    """``translate_video`` end to end on an H.264 clip vs ``translate_batch`` on its decoded frames
    (``model_batches`` batches before and as many after the end-to-end run, as for folders)."""
    import av

    from translate.infer.video import translate_video

    tmp = Path(tempfile.mkdtemp(prefix="bench-video-"))
    try:
        clip = make_clip(tmp / "clip.mp4", width, height, frames)
        with av.open(str(clip)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        batches = [to_batch(decoded[i : i + batch_size]) for i in range(0, len(decoded), batch_size)]
        batches = [b for b in batches if b.shape[0] == batch_size] or batches
        translator = make_translator("resnet_9blocks", precision, base_channels)
        prime(translator)
        row = {"generator": "resnet_9blocks", "side": f"{width}x{height}", "batch": batch_size, "frames": frames,
               **_common(precision, quick)}
        model = [_model_only(translator, batches, model_batches)]
        report = translate_video(translator, clip, tmp / "out.mp4", batch_size=batch_size, progress=False)
        model.append(_model_only(translator, batches[::-1], model_batches))
        _pipeline_row(row, report.seconds, report.frames, report.model_seconds, model,
                      meta_flops("resnet_9blocks", height, width, base_channels), "frames")
        row["frames_written"] = report.frames
        _local_ceiling(row, quick)
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------- 5. tiling


def tiled(side: int, precision: Precision, *, base_channels: int, quick: bool, tile: int | None = None) -> dict[str, Any]:
    """One (1, 3, side, side) photo through ``Translator.translate_batch``, which tiles it.

    The translator keeps its defaults (memory budget, overlap 32, tiles chosen from the budget) unless ``tile`` forces one (the quick run does, to tile a small image).
    """
    from translate.infer import tiling

    translator = make_translator("resnet_9blocks", precision, base_channels)
    if tile:
        translator.tile = tile
    prime(translator)
    image = to_batch([photo("astronaut", side)])
    if not (translator.tile or tiling.needs_tiling(translator, image.shape)):
        raise RuntimeError(f"a {side}x{side} image does not need tiling under the default budget")
    overlap = tiling.tile_overlap(translator)
    chosen = tiling.choose_tile(translator, side, side)
    length, starts = tiling.axis_layout(side, chosen, overlap, translator.multiple)
    row = {"generator": "resnet_9blocks", "side": side, "batch": 1, "tile": length, "largest_tile": chosen,
           "overlap": overlap, "tiles": len(starts) ** 2, "memory_budget_mb": translator.memory_budget_mb,
           "input_mb": image.numel() * 4 / 2**20, **_common(precision, quick)}
    timing, out, _ = measure(lambda: translator.translate_batch(image), warmup=0, repeats=1, budget_s=0)
    row["megapixels_per_s"] = side * side / 1e6 / timing.median
    row["untiled_flops"] = meta_flops("resnet_9blocks", side, side, base_channels)
    row["tiling_flops_overhead"] = timing.flops / row["untiled_flops"] - 1  # overlaps + statistics pass
    del out
    return _finish(row, timing, None, quick)


def meta_flops(generator: GeneratorName, height: int, width: int, base_channels: int) -> int:
    """FLOPs of one untiled forward of (1, 3, height, width), padded as the Translator pads,
    counted on the meta device (nothing computed, no time taken from the measured runs)."""
    import torch

    from translate.nets import build_generator, size_multiple

    cfg = net_config(generator, base_channels)
    m = size_multiple(cfg)
    with torch.device("meta"):
        net = build_generator(cfg).eval()
        x = torch.empty(1, 3, -(-height // m) * m, -(-width // m) * m)
    with torch.inference_mode(), flop_counter() as counter:
        net(x)
    return int(counter.get_total_flops())

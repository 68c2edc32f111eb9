"""Translate a folder tree (or one file) into a mirrored output tree, resumably.

The pipeline keeps the network busy: a pool of reader threads decodes ahead into a bounded
queue (OpenCV and Pillow release the GIL), consecutive images of one size are batched, and a
pool of writer threads encodes behind. Every output is written atomically
(:func:`translate.files.atomic_path`), so an output that exists under its final name is complete;
that is what makes a re-run skip finished work and redo only what an interruption cut short.

Sharding: under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` translates ``files[r::world]`` of
the sorted file list; no process group is needed, and each rank reports its own counts.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from translate.data.io import IMAGE_EXTENSIONS, ImageReadError, list_images
from translate.errors import UserError
from translate.files import remove_stale_temps, signed_to_unit, to_channels, to_unit, unit_to_signed
from translate.infer.image_files import (
    WRITABLE_EXTENSIONS,
    canonical_suffix,
    fit_format,
    read_native,
    resize_image,
    write_image_atomic,
)

logger = logging.getLogger("translate")

OutputFormat = Literal["keep", "png", "jpg", "webp"]
OUTPUT_FORMATS: tuple[str, ...] = ("keep", "png", "jpg", "webp")


@dataclass
class FolderReport:
    """What one call did. Paths are input paths; ``failed`` holds ``(path, reason)``.

    Attributes:
        translated: Inputs whose output was written.
        skipped: Inputs whose output already existed (complete) and ``overwrite`` was False.
        failed: Inputs that could not be read or written, with a one-line reason and fix.
        notes: Format compromises (alpha dropped for JPEG, 16-bit reduced to 8, fallback to PNG).
        rank: This process's rank under torchrun (0 otherwise).
        world_size: Number of ranks sharing the files (1 otherwise).
        seconds: Wall time of the call.
    """

    translated: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """``"translated 8, skipped 2, failed 1 in 3.1 s (2.6 images/s)"``, rank-prefixed when sharded."""
        rate = len(self.translated) / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"translated {len(self.translated)}, skipped {len(self.skipped)}, failed {len(self.failed)} in {self.seconds:.1f} s ({rate:.1f} images/s)"
        )
        return f"[rank {self.rank}/{self.world_size}] {text}" if self.world_size > 1 else text


@dataclass
class _Job:
    src: Path
    dst: Path | None  # None when the job is already known to fail (``reason``)
    reason: str = ""
    note: str = ""  # a format compromise known from the name (keep → png fallback)


@dataclass
class _Decoded:
    job: _Job
    pixels: np.ndarray  # float32 (C_in, H, W) in [-1, 1]
    alpha: np.ndarray | None  # (H, W, 1) in the input's dtype, passed through unchanged
    dtype: np.dtype  # uint8, uint16 or float32: what the output is written as


# ------------------------------------------------------------------------------ public API


def translate_folder(
    translator,
    src: str | Path,
    dst: str | Path,
    *,
    output_format: OutputFormat = "keep",
    quality: int = 95,
    batch_size: int = 4,
    max_side: int | None = None,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
    workers: int = 2,
    progress: bool = True,
) -> FolderReport:
    """Translate every image under ``src`` (recursively) into the mirrored tree ``dst``.

    Output names mirror input names; ``output_format`` other than ``keep`` changes the suffix.
    Each image keeps its size unless ``max_side``/``size`` resize it first, in which case the
    output has the resized size. Alpha is passed through unchanged; gray and 16-bit inputs keep
    their type where the output format allows. Non-image files (by extension) are ignored.

    Args:
        translator: A loaded :class:`~translate.infer.translator.Translator`.
        src: Input folder. Never modified.
        dst: Output folder; created if needed; must not be ``src`` or lie inside it.
        output_format: keep (fall back to png where our writer can't), png, jpg or webp.
        quality: 1-100, for jpg and webp.
        batch_size: Consecutive images of one size are translated together, up to this many.
        max_side: Downscale (never upscale) so the longer side is at most this.
        size: ``(width, height)`` to resize every image to (exclusive with ``max_side``).
        overwrite: Redo outputs that already exist instead of skipping them.
        workers: Reader threads and writer threads (each).
        progress: Show a tqdm bar (only when stderr is a terminal).

    Returns:
        A :class:`FolderReport` for this rank's share of the files.

    Raises:
        UserError: ``src`` is missing or holds no image, or ``dst`` is inside ``src``.
    """
    _check_options(output_format, quality, batch_size, max_side, size, workers)
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    check_folder_paths(src, dst)
    files = list_images(src)
    if not files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"{src}: no images found (looked recursively for {exts}) — check the folder")
    report = _new_report()
    jobs = _plan_jobs(files, src, dst, output_format)
    _run(
        translator,
        _shard(jobs, report),
        report,
        quality=quality,
        batch_size=batch_size,
        max_side=max_side,
        size=size,
        overwrite=overwrite,
        workers=workers,
        progress=progress,
    )
    report.seconds = time.perf_counter() - start
    return report


def translate_file(
    translator,
    src: str | Path,
    dst: str | Path,
    *,
    output_format: OutputFormat = "keep",
    quality: int = 95,
    max_side: int | None = None,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> FolderReport:
    """Translate one image file; ``dst`` is a file path (its suffix picks the format) or a folder.

    When ``dst`` is an existing folder (or ends with a path separator) the output is
    ``dst/<name>`` with the suffix ``output_format`` asks for. An existing ``dst`` is skipped
    unless ``overwrite``. Failures are reported in the returned :class:`FolderReport`, as for
    folders; under torchrun only rank 0 does the work.

    Raises:
        UserError: ``src`` is missing or not an image file, ``dst`` equals ``src``, or the
            suffix of ``dst`` is not writable or contradicts ``output_format``.
    """
    _check_options(output_format, quality, 1, max_side, size, 1)
    start = time.perf_counter()
    out, note = _file_output(Path(src), dst, output_format)
    report = _new_report()
    jobs = [_Job(Path(src), out, note=note)] if report.rank == 0 else []
    _run(translator, jobs, report, quality=quality, batch_size=1, max_side=max_side, size=size, overwrite=overwrite, workers=1, progress=False)
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------ planning


def file_output_path(src: str | Path, dst: str | Path, output_format: str = "keep") -> Path:
    """Where :func:`translate_file` writes ``src``: ``dst`` itself, or ``dst/<name>`` for a folder.

    Raises:
        UserError: ``src`` is missing or not an image file, ``dst`` equals ``src``, or the
            suffix of ``dst`` is not writable or contradicts ``output_format``.
    """
    return _file_output(Path(src), dst, output_format)[0]


def _file_output(src: Path, dst: str | Path, output_format: str) -> tuple[Path, str]:
    into_folder = str(dst).endswith(("/", os.sep)) or Path(dst).is_dir()
    dst, note = Path(dst), ""
    if not src.is_file():
        what = "is a folder; translate it with translate_folder" if src.exists() else "not found"
        raise UserError(f"{src}: {what} — give an existing image file")
    if src.suffix.lower() not in IMAGE_EXTENSIONS:
        raise UserError(f"{src}: not an image extension (use one of {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if into_folder:
        name, note = _output_name(src.name, output_format)
        dst = dst / name
    elif dst.suffix.lower() not in WRITABLE_EXTENSIONS:
        raise UserError(f"{dst}: cannot write {dst.suffix or 'files without a suffix'!r}; end the name in .png, .jpg, .webp, .tif or .bmp")
    elif output_format != "keep" and canonical_suffix(dst.suffix) != canonical_suffix("." + output_format):
        raise UserError(f"{dst}: suffix {dst.suffix} contradicts --format {output_format}; change one of them")
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: is the input file — choose another output path")
    return dst, note


def check_folder_paths(src: Path, dst: Path) -> None:
    """Refuse a missing input folder, an output folder equal to or inside it, or a file as output.

    Called by :func:`translate_folder`, and by the command before the model is loaded.
    """
    if not src.is_dir():
        what = "is a file; translate it with translate_file" if src.exists() else "not found"
        raise UserError(f"{src}: {what} — give an existing folder of images")
    src_real, dst_real = src.resolve(), dst.resolve()
    if dst_real == src_real:
        raise UserError(f"{dst}: is the input folder — choose an output folder outside {src}")
    if src_real in dst_real.parents:
        raise UserError(f"{dst}: is inside the input folder {src} — choose an output folder outside it")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: exists and is not a folder — give a folder for the outputs of a folder")


def _check_options(output_format, quality, batch_size, max_side, size, workers) -> None:
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality!r}")
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size!r} and {workers!r}")
    if max_side is not None and size is not None:
        raise ValueError(f"give max_side or size, not both (got {max_side!r} and {size!r})")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (width, height) >= 1, got {size!r}")


def _new_report() -> FolderReport:
    from translate.runtime import dist_from_env

    info = dist_from_env()
    return FolderReport(rank=info.rank, world_size=info.world_size)


def _shard(jobs: list[_Job], report: FolderReport) -> list[_Job]:
    # Plan on the full sorted list first, so every rank sees the same names and collisions.
    return jobs[report.rank :: report.world_size]


def _output_name(name: str, output_format: str) -> tuple[str, str]:
    """The output file name for input ``name``, and a note when "keep" had to fall back to PNG."""
    stem, suffix = os.path.splitext(name)
    if output_format != "keep":
        return f"{stem}.{output_format}", ""
    if suffix.lower() in WRITABLE_EXTENSIONS:
        return name, ""
    return f"{stem}.png", f"written as PNG because {suffix} cannot be written"


def _plan_jobs(files: list[Path], src: Path, dst: Path, output_format: str) -> list[_Job]:
    # realpath, not Path.resolve(): resolve() raises on a symlink loop, realpath returns a
    # path, and the reader then reports that one file instead of the whole run failing
    inputs = {Path(os.path.realpath(path)) for path in files}
    owner: dict[Path, Path] = {}
    jobs = []
    for path in files:
        rel = path.relative_to(src)
        name, note = _output_name(rel.name, output_format)
        out = dst / rel.parent / name
        if out in owner:
            jobs.append(_Job(path, None, f"its output {out} is also the output of {owner[out]} — rename one of them or use --format keep"))
        elif Path(os.path.realpath(out)) in inputs:
            jobs.append(_Job(path, None, f"its output {out} would overwrite an input file — choose another output folder"))
        else:
            owner[out] = path
            jobs.append(_Job(path, out, note=note))
    return jobs


def _note(notes: dict[str, int], text: str) -> None:
    notes[text] = notes.get(text, 0) + 1


# ------------------------------------------------------------------------------ pipeline


def _run(
    translator,
    jobs: list[_Job],
    report: FolderReport,
    *,
    quality: int,
    batch_size: int,
    max_side: int | None,
    size: tuple[int, int] | None,
    overwrite: bool,
    workers: int,
    progress: bool,
) -> None:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    notes: dict[str, int] = {}  # compromise → how many images it concerned
    todo: list[_Job] = []
    for job in jobs:
        if job.dst is None:
            _fail(report, job.src, job.reason)
        elif job.dst.exists() and not overwrite:
            report.skipped.append(job.src)
        else:
            todo.append(job)
    if todo:
        remove_stale_temps(job.dst for job in todo)  # only those beside what this rank writes
        # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI, pipes).
        bar = tqdm(total=len(todo), unit="img", disable=None if progress else True, dynamic_ncols=True)
        with bar, logging_redirect_tqdm():
            _pipeline(translator, todo, report, notes, bar, quality, batch_size, max_side, size, workers)
    for text, count in notes.items():
        line = f"{count} image{'s' if count != 1 else ''} {text}"
        report.notes.append(line)
        logger.warning("note: %s", line)


def _pipeline(translator, todo, report, notes, bar, quality, batch_size, max_side, size, workers) -> None:
    in_channels = translator.in_channels
    readers = ThreadPoolExecutor(workers, thread_name_prefix="translate-read")
    writers = ThreadPoolExecutor(workers, thread_name_prefix="translate-write")
    reads: deque[tuple[_Job, Future]] = deque()
    writes: deque[tuple[_Job, Future]] = deque()
    pending = iter(todo)
    read_ahead = 2 * workers + batch_size  # bounds the memory held by decoded images
    write_behind = 2 * workers + batch_size

    def refill() -> None:
        while len(reads) < read_ahead and (job := next(pending, None)) is not None:
            reads.append((job, readers.submit(_decode, job, in_channels, max_side, size)))

    def drain(limit: int) -> None:
        while writes and (len(writes) > limit or writes[0][1].done()):
            job, future = writes.popleft()
            error = future.exception()
            if error is None:
                report.translated.append(job.src)
                for text in [job.note, *future.result()]:
                    if text:
                        _note(notes, text)
            else:
                _fail(report, job.src, _write_reason(job.dst, error))
            bar.update(1)

    group: list[_Decoded] = []

    def flush() -> None:
        if not group:
            return
        batch = torch.from_numpy(np.stack([item.pixels for item in group]))
        try:
            fake = translator.translate_batch(batch)
        except (ValueError, RuntimeError) as exc:  # e.g. an image the network cannot take, or out of memory
            for item in group:
                _fail(report, item.job.src, f"could not be translated ({str(exc).splitlines()[0]})")
                bar.update(1)
            group.clear()
            return
        for item, out in zip(group, fake, strict=True):
            writes.append((item.job, writers.submit(_encode_and_write, item, out.numpy(), quality)))
        group.clear()
        drain(write_behind)

    try:
        refill()
        while reads:
            job, future = reads.popleft()
            refill()
            try:
                item = future.result()
            except ImageReadError as exc:
                _fail(report, job.src, _strip_path(str(exc), job.src))
                bar.update(1)
                continue
            if group and group[0].pixels.shape != item.pixels.shape:
                flush()
            group.append(item)
            if len(group) >= batch_size:
                flush()
        flush()
    finally:
        # On an error in the network: drop queued reads, but finish writing what was translated.
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        drain(0)


def _fail(report: FolderReport, path: Path, reason: str) -> None:
    report.failed.append((path, reason))
    logger.warning("failed: %s: %s", path, reason)


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _write_reason(dst: Path | None, error: BaseException) -> str:
    if isinstance(error, UserError):  # atomic_path's line: the output, the OS error, the fix
        return str(error)
    return f"could not encode {dst} ({type(error).__name__}: {error}) — try another --format"


# ------------------------------------------------------------------------------ reading


def _decode(job: _Job, in_channels: int, max_side: int | None, size: tuple[int, int] | None) -> _Decoded:
    """Read ``job.src`` keeping alpha and bit depth, resize, and convert to a network tensor."""
    try:
        image = read_native(job.src)
        image = resize_image(image, max_side, size)
    except ImageReadError:
        raise
    except Exception as exc:  # cv2.error, MemoryError, …: one bad file must not end the run
        raise ImageReadError(f"{job.src}: cannot be decoded ({type(exc).__name__}: {exc}) — re-save it or remove it") from None
    alpha = None
    if image.shape[2] in (2, 4):
        image, alpha = image[:, :, :-1], image[:, :, -1:]
    x = to_channels(to_unit(image), in_channels)
    pixels = unit_to_signed(np.ascontiguousarray(x.transpose(2, 0, 1)))
    return _Decoded(job, pixels, alpha, image.dtype)


# ------------------------------------------------------------------------------ writing


def _encode_and_write(item: _Decoded, fake: np.ndarray, quality: int) -> list[str]:
    """Turn one (C_out, H, W) output in [-1, 1] into the input's dtype, re-attach alpha, write it.

    Returns the format compromises made (for the report's notes).
    """
    out = signed_to_unit(fake.transpose(1, 2, 0))
    if item.alpha is not None and out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)  # gray+alpha is poorly supported by writers; RGBA is not
    if item.dtype != np.float32:
        scale = 255.0 if item.dtype == np.uint8 else 65535.0
        out = np.round(out * scale).astype(item.dtype)
    if item.alpha is not None:
        out = np.concatenate([out, item.alpha.astype(out.dtype)], axis=2)
    out, notes = fit_format(out, canonical_suffix(item.job.dst.suffix))
    write_image_atomic(item.job.dst, out, quality)
    return notes

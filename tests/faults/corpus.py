"""A corpus of bad and unusual inputs, written into a temporary folder by :func:`make_image_corpus`.

Each file is described by a :class:`Case`: what ``translate apply`` must do with it when it is
one file among many (translate it, report it as failed, or ignore it as a non-image), what
training must do (use it, skip it with a warning, or ignore it), and the words the message must
contain. The expectations follow the documented behaviour of ``translate.data.io`` (readers
refuse with ``ImageReadError``: file, reason, fix) and ``translate.infer.folder`` (non-image
extensions ignored, unreadable files reported one line each, exit status 1).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

ApplyOutcome = Literal["translated", "failed", "ignored"]
TrainOutcome = Literal["used", "skipped", "ignored"]

GOOD_NAMES = ("good_astronaut.jpg", "good_coffee.png", "good_chelsea.png")

TINY_BUG = ""  # fixed: tiny images are padded to the network's minimum side
LOOP_BUG = ""  # fixed: a symlink loop is reported as that one file failing


@dataclass(frozen=True)
class Case:
    """One corpus entry.

    Attributes:
        name: Path relative to the corpus folder.
        what: What is wrong or unusual about it, for the reliability table.
        apply: What ``translate apply`` does with it inside a folder.
        train: What training does with it inside a domain folder.
        words: Lower-case phrases; a failure message must contain one of them (and the file name).
        out_size: (width, height) of the translated output, when ``apply == "translated"``.
        apply_bug: Set when ``translate apply`` is known to mishandle the case (a bug reported
            to the lead); such cases are tested apart, as expected failures.
    """

    name: str
    what: str
    apply: ApplyOutcome
    train: TrainOutcome
    words: tuple[str, ...] = ()
    out_size: tuple[int, int] | None = None
    apply_bug: str = ""


def photo(name: str = "astronaut", width: int = 32, height: int = 24) -> np.ndarray:
    """A real photo from ``skimage.data`` as (height, width, 3) uint8 RGB."""
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(cv2.resize(image[:, :, :3], (width, height), interpolation=cv2.INTER_AREA))


def encode(image: np.ndarray | Image.Image, fmt: str, **options) -> bytes:
    """Encode with Pillow into bytes (``fmt``: PNG, JPEG, GIF, WEBP, TIFF)."""
    buffer = io.BytesIO()
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    pil.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width`` x ``height`` RGB, with a tiny IDAT.

    A decompression bomb as far as any reader that trusts the header is concerned: decoding it
    would allocate ``width * height * 3`` bytes.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(encode(photo(), "JPEG", quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 32x24 landscape, displayed rotated 90° clockwise: 24x32
    return encode(photo("chelsea"), "JPEG", exif=exif.tobytes(), quality=90)


def _animated(fmt: str) -> bytes:
    frames = [Image.fromarray(photo(name)) for name in ("astronaut", "coffee", "chelsea")]
    options = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(frames[0], fmt, **options)


def _corrupt_header_png() -> bytes:
    data = bytearray(encode(photo(), "PNG"))
    data[12:29] = b"\xff" * 17  # IHDR type, size and CRC overwritten
    return bytes(data)


def _cases() -> list[tuple[Case, bytes | None]]:
    """Every corpus case with its bytes (None: made specially by :func:`make_image_corpus`)."""
    rgb = photo()
    png, jpeg = encode(rgb, "PNG"), encode(rgb, "JPEG", quality=90)
    rgba = np.dstack([rgb, np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None, :].repeat(rgb.shape[0], 0)])
    gray16 = photo("coffee")[:, :, 0].astype(np.uint16) * 257
    ok = (32, 24)
    return [
        (Case("good_astronaut.jpg", "ordinary JPEG", "translated", "used", out_size=ok), encode(photo("astronaut"), "JPEG", quality=90)),
        (Case("good_coffee.png", "ordinary PNG", "translated", "used", out_size=ok), encode(photo("coffee"), "PNG")),
        (Case("good_chelsea.png", "ordinary PNG", "translated", "used", out_size=ok), encode(photo("chelsea"), "PNG")),
        (Case("zero_bytes.png", "zero-byte file", "failed", "skipped", ("empty file", "not a readable image")), b""),
        (Case("truncated.png", "PNG cut at 60 %", "failed", "skipped", ("truncated",)), png[: int(len(png) * 0.6)]),
        (Case("truncated.jpg", "JPEG cut at 50 %", "failed", "skipped", ("truncated",)), jpeg[: len(jpeg) // 2]),
        (Case("corrupt_header.png", "PNG with a garbled IHDR chunk", "failed", "skipped", ("not a readable image",)), _corrupt_header_png()),
        (Case("jpeg_named.png", "JPEG data under a .png name", "translated", "used", out_size=ok), jpeg),
        (Case("png_named.jpg", "PNG data under a .jpg name", "translated", "used", out_size=ok), png),
        (Case("rgba.png", "RGBA with a gradient alpha", "translated", "used", out_size=ok), encode(rgba, "PNG")),
        (Case("palette.png", "palette (P mode) PNG", "translated", "used", out_size=ok), encode(Image.fromarray(rgb).convert("P"), "PNG")),
        (Case("cmyk.jpg", "CMYK JPEG", "translated", "used", out_size=ok), encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)),
        (Case("gray16.png", "16-bit grayscale PNG", "translated", "used", out_size=ok), encode(Image.fromarray(gray16), "PNG")),
        (Case("gray.png", "8-bit grayscale PNG", "translated", "used", out_size=ok), encode(photo("camera")[:, :, 0], "PNG")),
        (Case("exif_rotated.jpg", "JPEG with EXIF orientation 6", "translated", "used", out_size=(24, 32)), _exif_rotated_jpeg()),
        (Case("animated.gif", "animated GIF (not a supported extension)", "ignored", "ignored"), _animated("GIF")),
        (Case("animated.webp", "animated WebP (first frame used)", "translated", "used", out_size=ok), _animated("WEBP")),
        (Case("one_pixel.png", "1x1 image", "translated", "used", out_size=(1, 1), apply_bug=TINY_BUG), encode(rgb[:1, :1], "PNG")),
        (
            Case("thin_1x300.png", "1x300 image", "translated", "used", out_size=(1, 300), apply_bug=TINY_BUG),
            encode(np.ascontiguousarray(cv2.resize(rgb, (1, 300))), "PNG"),
        ),
        (
            Case("bomb.png", "PNG header declaring 100000x100000", "failed", "skipped", ("larger than", "more than the limit")),
            png_header_only(100_000, 100_000),
        ),
        (
            Case(
                "bomb_17k.png",
                "PNG header declaring 17000x17000 (just over the limit, would fit in RAM)",
                "failed",
                "skipped",
                ("declares 17000x17000",),
            ),
            png_header_only(17_000, 17_000),
        ),
        (
            Case("bomb.jpg", "JPEG frame header declaring 65500x65500", "failed", "skipped", ("larger than", "more than the limit")),
            jpeg_declaring(65_500, 65_500),
        ),
        (Case("notes.txt", "text file", "ignored", "ignored"), b"not an image\n"),
        (Case("text_named.jpg", "text under a .jpg name", "failed", "skipped", ("not a readable image",)), b"hello, I am not a JPEG\n" * 20),
        (Case("with space.png", "name with spaces", "translated", "used", out_size=ok), png),
        (Case("ünïcødé 画像.png", "unicode name", "translated", "used", out_size=ok), png),
        (Case("-rf.png", "name with a leading dash", "translated", "used", out_size=ok), png),
        (Case("sub/nested.png", "image in a subfolder", "translated", "used", out_size=ok), png),
        (Case("dangling.png", "symlink to a missing file", "failed", "skipped", ("not found",)), None),
        (Case("self_loop.png", "symlink pointing at itself", "failed", "skipped", ("symbolic links", "not found"), apply_bug=LOOP_BUG), None),
        (Case("loop", "folder symlink back to the corpus (a loop)", "ignored", "ignored"), None),
    ]


CASES: tuple[Case, ...] = tuple(case for case, _ in _cases())


def make_image_corpus(root: Path) -> list[Case]:
    """Write every :data:`CASES` file under ``root`` (created) and return the cases."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for case, data in _cases():
        path = root / case.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        elif case.name == "dangling.png":
            os.symlink(root / "does_not_exist.png", path)
        elif case.name == "self_loop.png":
            os.symlink(path.name, path)
        elif case.name == "loop":
            os.symlink(".", path)
        cases.append(case)
    return cases


def make_paired_mismatch(root: Path) -> Path:
    """``root/train/{A,B}`` whose names do not all match and whose matched sizes differ."""
    for side, names in (("A", ("0001.png", "0002.png", "only_in_a.png")), ("B", ("0001.png", "0002.png", "only_in_b.png"))):
        for name in names:
            (root / "train" / side).mkdir(parents=True, exist_ok=True)
            (root / "train" / side / name).write_bytes(encode(photo(width=32, height=32), "PNG"))
    return root


def make_paired_size_mismatch(root: Path) -> Path:
    """``root/train/{A,B}`` with matching names, but B of one pair is another size."""
    for side in ("A", "B"):
        (root / "train" / side).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(("0001.png", "0002.png")):
            size = 48 if (side == "B" and i == 1) else 32
            (root / "train" / side / name).write_bytes(encode(photo(width=size, height=size), "PNG"))
    return root


def digest_tree(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (symlinks recorded by target), to prove nothing changed."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):  # not following links: the loop stays a loop
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = "link -> " + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel + "@mtime"] = str(path.stat().st_mtime_ns)
    return found

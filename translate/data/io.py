"""Safe image reading: every image the toolkit loads goes through :func:`read_image`.

Decoding is done by OpenCV with ``IMREAD_UNCHANGED`` so that 16-bit PNG/TIFF keep their full
precision; Pillow reads only the header first (size, mode, EXIF orientation), which is cheap and
lets a decompression bomb be refused before a single pixel is decoded. Modes OpenCV gets wrong
(palette, CMYK, 1-bit, …) are decoded by Pillow instead.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from translate.errors import UserError
from translate.files import to_channels, to_unit

logger = logging.getLogger("translate")
T = TypeVar("T")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# 16k x 16k: larger than any sensible training image, small enough that a hostile header
# (a few bytes claiming 100k x 100k) cannot make us allocate tens of gigabytes.
MAX_PIXELS: int = 16384 * 16384

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that (about 179 M pixels by
# default), before we get to apply our own limit. Align it with ours so that the one limit a
# user can read about (MAX_PIXELS) is the one that applies; our header check runs first, so an
# image above MAX_PIXELS is still refused before decoding.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Modes OpenCV decodes faithfully (gray, gray+alpha, RGB, RGBA at 8 or 16 bits, float).
# Anything else (P, PA, CMYK, 1, YCbCr, LAB, …) is converted by Pillow.
_OPENCV_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I", "F"})
_EXIF_ORIENTATION = 0x0112


class ImageReadError(UserError):
    """An image file that cannot be used; the message is ``"<path>: <reason> — <what to do>"``."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image file says, read without decoding pixels.

    Attributes:
        width: Width in pixels after EXIF orientation is applied.
        height: Height in pixels after EXIF orientation is applied.
        mode: Pillow mode of the stored image (``"RGB"``, ``"I;16"``, ``"P"``, …).
        orientation: EXIF orientation tag, 1 (upright) to 8.
    """

    width: int
    height: int
    mode: str
    orientation: int


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder``, recursively, in a deterministic sorted order.

    Hidden files and folders (name starting with ``.``) are skipped. Symlinked folders are
    followed, but each real folder is visited once, so a symlink loop cannot recurse forever.

    Args:
        folder: Folder to search.

    Returns:
        Paths whose extension (case-insensitive) is in :data:`IMAGE_EXTENSIONS`, sorted by
        their path relative to ``folder``.
    """
    folder = Path(folder)
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:  # a symlink back into a folder already walked
            dirnames[:] = []
            continue
        visited.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _exif(im: Image.Image) -> Image.Exif:
    """The EXIF block as far as the header holds it.

    Pillow's ``PngImageFile.getexif()`` decodes the whole image when the PNG has no eXIf chunk
    before its pixels (it looks for one after them): a 2048x2048 PNG's "header" read took 85 ms
    against 109 ms for a full decode, and a header declaring a huge image made us allocate it.
    So a PNG's orientation comes from an eXIf chunk ahead of the pixels only (the usual place).
    """
    if im.format == "PNG":
        exif = Image.Exif()
        raw = im.info.get("exif")
        if raw:
            exif.load(raw)
        return exif
    return im.getexif()


def read_header(path: Path) -> ImageHeader:
    """Size, mode and EXIF orientation of an image file, read without decoding pixels.

    Raises:
        ImageReadError: The file is missing, not an image, or larger than :data:`MAX_PIXELS`;
            the message is ``"<path>: <reason> — <what to do>"``.
    """
    try:
        with warnings.catch_warnings():
            # Pillow's warnings (bomb size, corrupt EXIF, …) would reach the user without the
            # file's name; the size limit is ours below, and a broken file raises.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:  # lazy: reads the header only
                width, height = im.size
                mode = im.mode
                try:
                    orientation = int(_exif(im).get(_EXIF_ORIENTATION, 1))
                except Exception:  # a corrupt EXIF block must not cost the whole image
                    orientation = 1
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found — check the path") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image — give an image file") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied — make the file readable") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{path}: image is larger than {MAX_PIXELS} pixels — downscale or tile it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({type(exc).__name__}: {exc}) — re-save it as PNG or JPEG, or remove it") from None
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: image has no pixels ({width}x{height}) — remove it")
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            f"{path}: image declares {width}x{height} = {width * height} pixels, more than the limit of {MAX_PIXELS} — downscale or tile it first"
        )
    if orientation not in range(1, 9):
        orientation = 1
    if orientation >= 5:  # 5..8 swap the axes
        width, height = height, width
    return ImageHeader(width=width, height=height, mode=mode, orientation=orientation)


def read_image_header(path: Path) -> tuple[int, int]:
    """Cheap check that ``path`` is a usable image, without decoding pixels.

    Args:
        path: Image file.

    Returns:
        ``(width, height)`` as the image will be read by :func:`read_image` (EXIF orientation
        applied, so a portrait photo stored sideways reports its upright size).

    Raises:
        ImageReadError: The file is missing, not an image, or larger than :data:`MAX_PIXELS`.
    """
    header = read_header(Path(path))
    return header.width, header.height


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF orientation ``orientation`` (1..8) upright.

    Args:
        image: Array (H, W) or (H, W, C).
        orientation: EXIF orientation tag value.

    Returns:
        The upright image (a view where possible).
    """
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(image, k=-1)
    if orientation == 7:
        return image.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(image, k=1)
    return image


def decode_opencv(path: Path, header: ImageHeader) -> np.ndarray | None:
    """The pixels as OpenCV decodes them (``IMREAD_UNCHANGED``: BGR(A) order, own dtype).

    None when the header's mode is one OpenCV gets wrong (palette, CMYK, 1-bit, …) or OpenCV
    cannot decode the file (e.g. truncated): decode with Pillow then.
    """
    if header.mode not in _OPENCV_MODES:
        return None
    try:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode: non-ASCII paths work
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def _decode_pillow(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in read_header
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16L", "I;16B"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode in ("I", "F"):
                return np.asarray(im)
            return np.asarray(im.convert("L" if im.mode in ("1", "L", "LA") else "RGB"))


def _to_unit_float(pixels: np.ndarray, path: Path) -> np.ndarray:
    if pixels.dtype in (np.uint8, np.uint16):
        return to_unit(pixels)
    if pixels.dtype in (np.float32, np.float64):
        # Float TIFFs carry no range; [0, 1] is the common convention.
        return np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0)
    if pixels.dtype == np.int32 and pixels.min() >= 0 and pixels.max() <= 65535:
        return to_unit(pixels.astype(np.uint16))  # Pillow's "I" mode holding 16-bit data
    raise ImageReadError(f"{path}: unsupported sample type {pixels.dtype} — re-save it as 8- or 16-bit PNG")


def read_image(path: Path, channels: int) -> np.ndarray:
    """Read an image file as float32 HWC in [0, 1], upright and with ``channels`` channels.

    8-bit images are scaled by 1/255 and 16-bit PNG/TIFF by 1/65535, so no precision is lost.
    EXIF orientation is applied. Alpha is dropped (training uses colour only); palette, CMYK,
    1-bit and gray+alpha images are converted. The header is checked against
    :data:`MAX_PIXELS` before any pixel is decoded.

    Args:
        path: Image file (any of :data:`IMAGE_EXTENSIONS`; others Pillow or OpenCV can read
            also work).
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        float32 array (H, W, channels) in [0, 1].

    Raises:
        ImageReadError: The file is missing, unreadable, truncated or too large.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    path = Path(path)
    header = read_header(path)
    pixels = decode_opencv(path, header)
    from_opencv = pixels is not None
    if pixels is None:
        try:
            pixels = _decode_pillow(path)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(
                f"{path}: cannot be decoded ({type(exc).__name__}: {exc}) — the file may be truncated or corrupt; re-save it or remove it"
            ) from None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if from_opencv and pixels.shape[2] in (3, 4):
        pixels = pixels[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    elif pixels.shape[2] == 2:
        pixels = pixels[:, :, :1]  # gray + alpha
    elif pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if pixels.shape[2] not in (1, 3):
        raise ImageReadError(f"{path}: {pixels.shape[2]} channels are not supported — re-save it as RGB or gray")
    image = _to_unit_float(np.ascontiguousarray(pixels), path)
    image = np.ascontiguousarray(apply_orientation(image, header.orientation))
    return to_channels(image, channels)


def format_names(paths: Sequence[Path | str], limit: int = 5) -> str:
    """``"a.png, b.png, c.png, … (10 in all)"``: the first few names of a list, for messages."""
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f", … ({len(paths)} in all)" if len(paths) > limit else "")


def read_headers(paths: Sequence[Path]) -> dict[Path, tuple[int, int]]:
    """``(width, height)`` of each readable image in ``paths``; unreadable ones are left out.

    Each unreadable file gets one warning line on the ``translate`` logger, followed by a
    count, so a bad file costs a warning rather than the run.
    """
    sizes: dict[Path, tuple[int, int]] = {}
    for path in paths:
        try:
            sizes[path] = read_image_header(path)
        except ImageReadError as exc:
            logger.warning("skipping unreadable image %s", exc)
    if len(sizes) < len(paths):
        logger.warning("skipped %d of %d images that cannot be read", len(paths) - len(sizes), len(paths))
    return sizes


def find_images(folder: Path) -> list[Path]:
    """:func:`list_images`, raising a UserError if ``folder`` is missing or holds no image."""
    if not Path(folder).is_dir():
        raise UserError(f"{folder}: folder not found — see datasets/README.md for the layouts")
    paths = list_images(folder)
    if not paths:
        raise UserError(
            f"{folder}: no images found (looked recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}) — put the images of this domain there"
        )
    return paths


def readable_images(folder: Path) -> list[tuple[Path, tuple[int, int]]]:
    """List the images under ``folder`` and check each header, dropping unreadable files.

    Args:
        folder: Folder searched recursively with :func:`list_images`.

    Returns:
        ``(path, (width, height))`` for every readable image, in :func:`list_images` order.

    Raises:
        UserError: ``folder`` is missing, holds no image, or none of its images is readable.
    """
    paths = find_images(folder)
    sizes = read_headers(paths)
    if not sizes:
        raise UserError(
            f"{folder}: no readable images (found {len(paths)} files, none readable) — see the warnings above and replace or re-save them"
        )
    return [(path, sizes[path]) for path in paths if path in sizes]


def load_skipping_unreadable(start: int, count: int, load: Callable[[int], T], unreadable: set[int]) -> T:
    """``load(i)`` for the first ``i`` from ``start`` (cyclically) whose image can be decoded.

    A file whose header was fine but whose pixels are corrupt is found only when it is
    decoded, mid-training; it is reported once and replaced by the next item, so the
    substitute depends only on ``start`` and the result stays reproducible.

    Args:
        start: Index to try first.
        count: Number of items; indices wrap around modulo ``count``.
        load: Loads item ``i``; raises :class:`ImageReadError` if it cannot.
        unreadable: Indices known to fail; updated in place, so each is reported once.

    Raises:
        UserError: No item at all can be loaded.
    """
    for offset in range(count):
        index = (start + offset) % count
        if index in unreadable:
            continue
        try:
            return load(index)
        except ImageReadError as exc:
            unreadable.add(index)
            logger.warning("skipping unreadable image %s", exc)
    raise UserError(f"none of the {count} images can be decoded — see the warnings above")

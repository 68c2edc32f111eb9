"""Image files as a translated copy needs them: alpha and 16-bit depth kept, writes atomic.

:func:`translate.data.io.read_image` serves training (float, alpha dropped); :func:`read_native`
keeps what a translated copy must preserve. :func:`write_image_atomic` writes through
:func:`translate.files.atomic_path`, so a file under its final name is always complete, which is
what lets ``translate apply`` resume by skipping outputs that exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import cv2
import numpy as np

from translate.data.io import ImageReadError, apply_orientation, decode_opencv, read_header
from translate.files import atomic_path

# What our writer (cv2.imencode) can produce; other extensions are written as .png.
WRITABLE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


def canonical_suffix(suffix: str) -> str:
    """``.JPEG`` → ``.jpg``, ``.tiff`` → ``.tif``: one spelling per format."""
    suffix = suffix.lower()
    return {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)


def read_native(path: Path) -> np.ndarray:
    """Read an image as HWC RGB(A)/gray(+alpha), upright, in its own dtype (uint8/uint16/float32).

    Unlike :func:`translate.data.io.read_image` (float, alpha dropped, for training), this keeps
    what a translated copy must preserve: the alpha channel and 16-bit depth.

    Raises:
        ImageReadError: missing, not an image, truncated, too large or of an unsupported type.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes) — copy it again or remove it")
    header = read_header(path)  # missing, unreadable, not an image, too large: io.py's messages
    pixels = decode_opencv(path, header)
    if pixels is None:  # unusual modes, or data OpenCV refuses (e.g. truncated): Pillow decides
        pixels = _decode_pillow_keep_alpha(path)
    elif pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[:, :, [2, 1, 0, 3][: pixels.shape[2]]]  # BGR(A) → RGB(A)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: {pixels.shape[2]} channels are not supported — re-save it as RGB(A) or gray")
    if pixels.dtype == np.float64:
        pixels = pixels.astype(np.float32)
    if pixels.dtype == np.float32:
        pixels = np.clip(np.nan_to_num(pixels), 0.0, 1.0)  # float TIFFs: [0, 1] by convention
    elif pixels.dtype == np.int32 and pixels.min() >= 0 and pixels.max() <= 65535:
        pixels = pixels.astype(np.uint16)  # Pillow's "I" mode holding 16-bit data
    elif pixels.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {pixels.dtype} — re-save it as 8- or 16-bit PNG")
    return np.ascontiguousarray(apply_orientation(pixels, header.orientation))


def _decode_pillow_keep_alpha(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16L", "I;16B"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode in ("I", "F", "L", "LA", "RGB", "RGBA"):
                return np.asarray(im)
            transparent = "A" in im.mode or "transparency" in im.info
            return np.asarray(im.convert("RGBA" if transparent else "L" if im.mode == "1" else "RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            f"{path}: cannot be decoded ({type(exc).__name__}: {exc}) — the file may be truncated or corrupt; re-save it or remove it"
        ) from None


def resize_image(image: np.ndarray, max_side: int | None, size: tuple[int, int] | None) -> np.ndarray:
    """Resize HWC ``image`` to ``size`` (width, height), or down so its longer side is ``max_side``."""
    h, w = image.shape[:2]
    if size is not None:
        new_w, new_h = size
    elif max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    else:
        return image
    if (new_w, new_h) == (w, h):
        return image
    shrinking = new_w * new_h < w * h
    out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 else out


def fit_format(image: np.ndarray, suffix: str) -> tuple[np.ndarray, list[str]]:
    """Convert an RGB(A)/gray image to what ``suffix`` can hold; say what was given up."""
    notes = []
    if image.dtype == np.float32 and suffix != ".tif":
        # PNG can keep 16 bits of a float image; the others hold 8.
        image = np.round(image * (65535.0 if suffix == ".png" else 255.0)).astype(np.uint16 if suffix == ".png" else np.uint8)
    if image.dtype == np.uint16 and suffix in (".jpg", ".webp", ".bmp"):
        image = np.round(image / 257.0).astype(np.uint8)
        notes.append(f"reduced from 16 to 8 bits ({suffix} holds 8 bits)")
    if image.shape[2] == 4 and suffix == ".jpg":
        image = image[:, :, :3]
        notes.append("lost their alpha channel (JPEG has none; use --format png or webp)")
    return image, notes


def write_image_atomic(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Write an HWC RGB(A)/gray image so that ``path`` either is complete or does not exist.

    Raises:
        UserError: The file cannot be written (disk full, permissions); names ``path``.
        ValueError: OpenCV cannot encode this image in the format of ``path``'s suffix.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        _encode_into(f, image, canonical_suffix(path.suffix), quality)


def _encode_into(f: IO[bytes], image: np.ndarray, suffix: str, quality: int) -> None:
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]  # RGB(A) → BGR(A) for OpenCV
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, quality], ".webp": [cv2.IMWRITE_WEBP_QUALITY, quality]}
    ok, data = cv2.imencode(suffix, np.ascontiguousarray(image), params.get(suffix, []))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} {image.dtype} image as {suffix}")
    f.write(data.tobytes())

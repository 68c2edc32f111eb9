"""The one way a file reaches disk, and the one set of image value/channel conversions.

Writes are atomic: the bytes go to a hidden temporary file in the same folder (so ``os.replace``
is a rename, never a copy), the file is fsync'ed, renamed over its final name and the folder is
fsync'ed. A file under its final name is therefore always complete, which is what lets
``translate apply`` resume by skipping outputs that exist and a killed training keep its last
checkpoint. A failed write removes its temporary file and raises one :class:`UserError` line
naming the path.

Temporary names are ``.tmp-<stem>-<hex token><suffix>``: hidden, recognisable by
:func:`stale_temps` and :func:`is_temp`, and ending in the final suffix because some writers
(PyAV, Pillow) pick the container from it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from translate.errors import UserError

TMP_PREFIX = ".tmp-"


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (same folder, same suffix)."""
    return path.with_name(f"{TMP_PREFIX}{path.stem}-{secrets.token_hex(4)}{path.suffix}")


def is_temp(name: str) -> bool:
    """Whether a file name is one of :func:`temp_name`'s."""
    return name.startswith(TMP_PREFIX)


def stale_temps(path: Path) -> list[Path]:
    """Temporary files (or folders) an interrupted write of ``path`` left beside it."""
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return []
    pattern = re.compile(re.escape(TMP_PREFIX + path.stem) + r"-[0-9a-f]+" + re.escape(path.suffix))
    return [path.parent / e for e in entries if pattern.fullmatch(e)]


def remove_stale_temps(path: Path) -> None:
    """Delete what :func:`stale_temps` finds for ``path``."""
    for stale in stale_temps(path):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder; filesystems that cannot sync folders are tolerated."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _sync_tree(path: Path) -> None:
    if path.is_dir():
        for entry in path.iterdir():
            _sync_tree(entry)
    fsync_path(path)


@contextmanager
def atomic_path(path: str | Path, *, hint: str = "free disk space or fix permissions") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path`` atomically.

    The caller writes the temporary path however it likes (a file, or a folder of files); after
    the block, everything under it is fsync'ed, renamed over ``path`` (an existing folder there is
    moved aside first and removed after) and the parent folder is fsync'ed. On any error the
    temporary is removed and ``path`` is left as it was; an ``OSError`` becomes one
    :class:`UserError` naming ``path`` and ending with ``hint``.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _sync_tree(tmp)
        if path.is_dir() and not path.is_symlink():
            old = temp_name(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_path(path.parent)
    except OSError as exc:
        _remove(tmp)
        raise UserError(f"{path}: could not be written ({exc.strerror or exc}); {hint}") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str, *, hint: str = "free disk space or fix permissions") -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically; see :func:`atomic_path`."""
    with atomic_path(path, hint=hint) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


# ---------------------------------------------------------------------------------------------
# image values and channels: networks see float in [-1, 1], files hold uint8/uint16 pixels

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601, as OpenCV's and Pillow's RGB→grey


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Pixels (uint8, uint16, or float already in [0, 1]) → float32 in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return pixels.astype(np.float32, copy=False)


def unit_to_signed(x):
    """[0, 1] → [-1, 1] (numpy array or tensor)."""
    return x * 2.0 - 1.0


def signed_to_unit(x):
    """[-1, 1] → [0, 1], clipped (numpy array or tensor)."""
    y = (x + 1.0) * 0.5
    return y.clamp(0.0, 1.0) if hasattr(y, "clamp") else np.clip(y, 0.0, 1.0)


def signed_to_uint8(x) -> np.ndarray:
    """A tensor or array in [-1, 1] (any shape) → uint8 pixels, rounded to nearest."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.round(np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5, 0, 255)).astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HWC image with 1 or 3 channels → ``channels`` (1 or 3): luma for grey, replicated for RGB.

    Any dtype; a float result for integer input is rounded back to that dtype.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 1 and have == 3:
        grey = image[:, :, :3].astype(np.float32) @ np.asarray(LUMA_WEIGHTS, np.float32)
        if image.dtype != np.float32:
            grey = np.round(grey).astype(image.dtype)
        return grey[:, :, None]
    raise ValueError(f"cannot convert an image with {have} channels to {channels}")


def grey_tensor(batch):
    """(B, 3, H, W) tensor → (B, 1, H, W) luma with :data:`LUMA_WEIGHTS`."""
    import torch

    weights = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * weights).sum(1, keepdim=True)

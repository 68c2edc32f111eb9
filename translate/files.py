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
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from translate.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; claim=True then protects nothing
    fcntl = None

TMP_PREFIX = ".tmp-"


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` (same folder, same suffix)."""
    return path.with_name(f"{TMP_PREFIX}{path.stem}-{secrets.token_hex(4)}{path.suffix}")


def is_temp(name: str) -> bool:
    """Whether a file name is one of :func:`temp_name`'s."""
    return name.startswith(TMP_PREFIX)


def _paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]


def _targets(entry: str) -> Iterator[tuple[str, str]]:
    """Every ``(stem, suffix)`` whose :func:`temp_name` could be ``entry``."""
    if not is_temp(entry):
        return
    rest = entry[len(TMP_PREFIX) :]
    for dash, char in enumerate(rest):
        if char == "-":
            end = dash + 1
            while end < len(rest) and rest[end] in "0123456789abcdef":
                end += 1
            if end > dash + 1:
                yield rest[:dash], rest[end:]


def stale_temps(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Temporary files (or folders) that interrupted writes of ``paths`` left beside them.

    Only temporaries of these exact paths are returned (each folder is listed once), never those
    of other files in the same folder, nor those a live writer holds (``atomic_path(claim=True)``).
    """
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for path in _paths(paths):
        wanted.setdefault(path.parent, set()).add((path.stem, path.suffix))
    found = []
    for folder, names in wanted.items():
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for entry in entries:
            if any(target in names for target in _targets(entry)) and not _claimed(folder / entry):
                found.append(folder / entry)
    return found


def remove_stale_temps(paths: str | Path | Iterable[str | Path]) -> None:
    """Delete what :func:`stale_temps` finds for ``paths``."""
    for stale in stale_temps(paths):
        _remove(stale)


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


def _claimed(path: Path) -> bool:
    """Whether a live process holds ``path`` (see ``atomic_path(claim=True)``)."""
    if fcntl is None or path.is_dir():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock just taken
    return False


@contextmanager
def atomic_path(path: str | Path, *, hint: str = "free disk space or fix permissions", claim: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path`` atomically.

    The caller writes the temporary path however it likes (a file, or a folder of files); after
    the block, everything under it is fsync'ed, renamed over ``path`` (an existing folder there is
    moved aside first and removed after) and the parent folder is fsync'ed. On any error the
    temporary is removed and ``path`` is left as it was; an ``OSError`` becomes one
    :class:`UserError` naming ``path`` and ending with ``hint``.

    Args:
        path: The final file or folder.
        hint: What the user can do when the write fails.
        claim: Create the temporary as an empty file and hold an advisory lock on it until it is
            renamed, so that :func:`stale_temps` in another process leaves a write in progress
            alone (a long one: a video). The kernel drops the lock when the process dies, so the
            temporary of a killed run is stale at once. For files only.
    """
    path = Path(path)
    tmp = temp_name(path)
    lock = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if claim and fcntl is not None:
            lock = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            fcntl.flock(lock, fcntl.LOCK_EX)
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
    finally:
        if lock is not None:
            os.close(lock)


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
    """Pixels (uint8, uint16, or float already in [0, 1]) → float32 in [0, 1].

    Args:
        pixels: Any shape; uint8 is divided by 255, uint16 by 65535, float is only cast.
    """
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return pixels.astype(np.float32, copy=False)


def unit_to_signed(x):
    """[0, 1] → [-1, 1] (numpy array or tensor, any shape)."""
    return x * 2.0 - 1.0


def signed_to_unit(x):
    """[-1, 1] → [0, 1], clipped (numpy array or tensor, any shape)."""
    y = (x + 1.0) * 0.5
    return y.clamp(0.0, 1.0) if hasattr(y, "clamp") else np.clip(y, 0.0, 1.0)


def signed_to_uint8(x) -> np.ndarray:
    """A tensor or array in [-1, 1] (any shape) → uint8 pixels ``round((x + 1) * 127.5)``, clipped.

    Rounds to nearest (ties to even, as ``torch.round``); a tensor is moved to the CPU first.
    """
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    y = np.asarray(x, dtype=np.float32) + 1.0  # a new array: the steps below work in place
    y *= 127.5
    np.clip(y, 0.0, 255.0, out=y)
    return np.round(y, out=y).astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An (H, W) or (H, W, 1 | 3) image → (H, W, ``channels``): luma for grey, replicated for RGB.

    Grey is ``0.299 R + 0.587 G + 0.114 B`` (:data:`LUMA_WEIGHTS`), computed in float32 in the
    same order as :func:`grey_tensor`, so both give the same values. Integer images are rounded
    back to their dtype; float images stay float (float32 for float32 input).

    Raises:
        ValueError: ``channels`` is not 1 or 3, or the image has another channel count.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if image.ndim == 2:
        image = image[:, :, None]
    have = image.shape[2] if image.ndim == 3 else None
    if have == channels:
        return image
    if have == 1:
        return np.repeat(image, 3, axis=2)
    if have != 3:
        raise ValueError(f"expected an (H, W, 1) or (H, W, 3) image, got shape {image.shape}")
    rgb = image.astype(np.float32, copy=False)
    r, g, b = (np.float32(w) for w in LUMA_WEIGHTS)
    grey = rgb[:, :, 0] * r + rgb[:, :, 1] * g + rgb[:, :, 2] * b
    if np.issubdtype(image.dtype, np.integer):
        grey = np.round(grey).astype(image.dtype)
    elif image.dtype != np.float32:
        grey = grey.astype(image.dtype)
    return grey[:, :, None]


def grey_tensor(batch):
    """(B, 3, H, W) tensor → (B, 1, H, W) luma with :data:`LUMA_WEIGHTS` (as :func:`to_channels`)."""
    import torch

    weights = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * weights).sum(1, keepdim=True)

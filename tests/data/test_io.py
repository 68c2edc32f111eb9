from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from translate.data.io import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageReadError,
    list_images,
    load_skipping_unreadable,
    read_image,
    read_image_header,
    readable_images,
)
from translate.errors import UserError
from translate.files import to_channels


def test_list_images_recursive_sorted_case_insensitive_and_skips_hidden(tmp_path, photo, write_image):
    img = photo(width=8, height=8)
    for rel in ["b.jpg", "a.PNG", "sub/c.Tiff", "sub/deeper/d.webp", "e.bmp", "f.JPEG", ".hidden.png", ".cache/g.png", "notes.txt"]:
        path = tmp_path / rel
        if rel.endswith(".txt"):
            path.write_text("x")
        else:
            write_image(path.with_suffix(".png"), img).rename(path)
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.PNG", "b.jpg", "e.bmp", "f.JPEG", "sub/c.Tiff", "sub/deeper/d.webp"]
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)


def test_list_images_survives_symlink_loop(tmp_path, photo, write_image):
    write_image(tmp_path / "x" / "a.png", photo(width=8, height=8))
    os.symlink(tmp_path / "x", tmp_path / "x" / "loop")
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]


def test_read_8bit_rgb_exact(tmp_path, photo, write_image):
    rgb = photo(width=24, height=16)
    image = read_image(write_image(tmp_path / "a.png", rgb), 3)
    assert image.dtype == np.float32 and image.shape == (16, 24, 3)
    np.testing.assert_array_equal(image, rgb.astype(np.float32) / 255)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_16bit_full_precision(tmp_path, write_image, suffix):
    values = np.array([[0, 1000, 1001, 65535]], dtype=np.uint16)
    rgb = np.stack([values, values // 2, 65535 - values], axis=2)
    image = read_image(write_image(tmp_path / f"a{suffix}", rgb), 3)
    np.testing.assert_allclose(image[0, :, 0], values[0] / 65535, rtol=0, atol=1e-7)
    np.testing.assert_allclose(image[0, :, 2], (65535 - values[0]) / 65535, rtol=0, atol=1e-7)
    assert image[0, 3, 0] == 1.0 and image[0, 0, 0] == 0.0
    # 1000 and 1001 would collapse to the same 8-bit value; at 16 bits they stay distinct.
    assert image[0, 1, 0] != image[0, 2, 0]
    assert abs(image[0, 1, 0] - round(1000 / 257) / 255) > 1e-4


def test_read_16bit_gray(tmp_path, write_image):
    gray = np.array([[0, 1000, 65535]], dtype=np.uint16)
    path = write_image(tmp_path / "g.png", gray)
    np.testing.assert_allclose(read_image(path, 1)[..., 0], gray / 65535, atol=1e-7)
    assert read_image(path, 3).shape == (1, 3, 3)


def test_grayscale_conversions(tmp_path, photo, write_image):
    rgb = photo(width=16, height=12)
    gray = read_image(write_image(tmp_path / "rgb.png", rgb), 1)
    assert gray.shape == (12, 16, 1)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    np.testing.assert_allclose(gray[..., 0], expected, atol=1e-5)
    from_gray_file = read_image(write_image(tmp_path / "g.png", rgb[..., 0]), 3)
    np.testing.assert_array_equal(from_gray_file[..., 0], from_gray_file[..., 2])
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        to_channels(gray, 4)


def test_rgba_palette_cmyk_1bit(tmp_path, photo):
    rgb = photo(width=16, height=12)
    rgba = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", 3), rgb / np.float32(255))
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB")) / np.float32(255)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", 3), expected)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB")) / np.float32(255)
    np.testing.assert_allclose(read_image(tmp_path / "c.jpg", 3), expected, atol=1e-6)
    Image.fromarray(rgb[..., 0] > 128).save(tmp_path / "bw.png")
    assert set(np.unique(read_image(tmp_path / "bw.png", 1))) == {0.0, 1.0}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, photo, orientation):
    rgb = photo(width=20, height=12)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(rgb).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")) / np.float32(255)
    image = read_image(path, 3)
    np.testing.assert_array_equal(image, expected)
    assert read_image_header(path) == (image.shape[1], image.shape[0])
    if orientation >= 5:
        assert image.shape[:2] == (20, 12)


def test_exif_orientation_jpeg(tmp_path, photo):
    rgb = photo(width=20, height=12)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise
    Image.fromarray(rgb).save(tmp_path / "o.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "o.jpg", 3)
    assert image.shape == (20, 12, 3)
    # JPEG blurs colour at this size: compare to the upright photo on average.
    assert np.abs(image - np.rot90(rgb, k=-1) / 255).mean() < 0.03
    assert np.abs(image - np.rot90(rgb, k=1) / 255).mean() > 0.1


def _png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_refused_from_header(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    assert 20000 * 20000 > MAX_PIXELS
    with pytest.raises(ImageReadError, match=r"bomb\.png: image declares 20000x20000 .* limit"):
        read_image_header(path)
    with pytest.raises(ImageReadError, match="bomb.png"):
        read_image(path, 3)
    huge = _png_header_only(tmp_path / "huge.png", 40000, 40000)  # beyond Pillow's own limit
    with pytest.raises(ImageReadError, match="huge.png"):
        read_image_header(huge)


def test_unreadable_files_name_path_reason_and_fix(tmp_path, photo, make_truncated_png):
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match=r"junk\.jpg: not a readable image .* — re-save"):
        read_image(tmp_path / "junk.jpg", 3)
    with pytest.raises(ImageReadError, match=r"missing\.png: file not found"):
        read_image_header(tmp_path / "missing.png")
    cut = make_truncated_png(tmp_path / "cut.png", photo(width=32, height=32))
    assert read_image_header(cut) == (32, 32)  # the header is fine ...
    with pytest.raises(ImageReadError, match=r"cut\.png: cannot be decoded"):
        read_image(cut, 3)  # ... the pixels are not
    assert issubclass(ImageReadError, UserError)


def test_readable_images_drops_bad_files_with_a_warning(tmp_path, photo, write_image, caplog):
    write_image(tmp_path / "good.png", photo(width=10, height=8))
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="translate"):
        entries = readable_images(tmp_path)
    assert entries == [(tmp_path / "good.png", (10, 8))]
    assert any("bad.jpg" in r.getMessage() for r in caplog.records)
    assert any("skipped 1 of 2" in r.getMessage() for r in caplog.records)


def test_readable_images_empty_or_all_bad(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no images found"):
        readable_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    for name in ("x.png", "y.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"bad: no readable images \(found 2 files"):
        readable_images(tmp_path / "bad")
    with pytest.raises(UserError, match="nowhere: folder not found"):
        readable_images(tmp_path / "nowhere")


def test_load_skipping_unreadable_takes_next_and_reports_once(caplog):
    calls = []

    def load(i: int) -> int:
        calls.append(i)
        if i == 2:
            raise ImageReadError(f"img{i}.png: broken — remove it")
        return i

    unreadable: set[int] = set()
    with caplog.at_level(logging.WARNING, logger="translate"):
        assert load_skipping_unreadable(2, 4, load, unreadable) == 3
        assert load_skipping_unreadable(2, 4, load, unreadable) == 3
    assert calls == [2, 3, 3] and unreadable == {2}
    assert sum("img2.png" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(UserError, match="none of the 1 images"):
        load_skipping_unreadable(0, 1, lambda i: load(2), set())


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".tiff"])
def test_formats_round_trip(tmp_path, photo, write_image, suffix):
    rgb = photo(width=16, height=12)
    image = read_image(write_image(tmp_path / f"a{suffix}", rgb), 3)
    lossless = suffix in (".bmp", ".tiff")
    np.testing.assert_allclose(image, rgb / 255, atol=0 if lossless else 0.2)
    assert cv2.imread(str(tmp_path / f"a{suffix}")) is not None


def test_png_header_read_decodes_no_pixels(tmp_path, photo, monkeypatch):
    """Pillow's PNG getexif() loads the whole image when no eXIf chunk precedes the pixels."""
    from translate.data.io import read_image_header

    rgb = photo(width=20, height=12)
    path = tmp_path / "plain.png"
    Image.fromarray(rgb).save(path)
    oriented = tmp_path / "oriented.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(oriented, exif=exif)

    decodes = []

    def no_decode(self, *args, **kwargs):
        decodes.append(self)
        raise AssertionError("the header read decoded the pixels")

    from PIL import ImageFile, PngImagePlugin

    for cls in (Image.Image, ImageFile.ImageFile, PngImagePlugin.PngImageFile):
        if "load" in vars(cls):
            monkeypatch.setattr(cls, "load", no_decode)
    height, width = rgb.shape[:2]
    assert read_image_header(path) == (width, height)
    assert read_image_header(oriented) == (height, width)  # orientation 6 swaps the axes
    assert not decodes

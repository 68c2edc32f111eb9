"""translate_folder / translate_file: mirroring, sizes, alpha, bit depth, resume, atomicity, sharding."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from translate.config import NetConfig
from translate.errors import UserError
from translate.files import is_temp, temp_name
from translate.infer import folder as folder_mod
from translate.infer import image_files
from translate.infer.folder import FolderReport, translate_file, translate_folder
from translate.infer.image_files import read_native
from translate.infer.translator import Translator

TINY = NetConfig(generator="resnet_6blocks", base_channels_g=4)


def _rgb(name: str, width: int, height: int) -> np.ndarray:
    """A real photo from skimage.data as RGB uint8 of the given size."""
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    return cv2.resize(image[:, :, :3], (width, height), interpolation=cv2.INTER_AREA)


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = rgb[:, :, [2, 1, 0, 3][: rgb.shape[2]]] if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), bgr)


def make_tree(root: Path) -> dict[str, tuple[int, int]]:
    """A nested folder of real photos; returns {relative path: upright (height, width)}."""
    _write(root / "astronaut.jpg", _rgb("astronaut", 40, 32))
    _write(root / "sub" / "coffee.png", _rgb("coffee", 36, 28))
    _write(root / "sub" / "coffee_twin.png", _rgb("coffee", 36, 28)[::-1])  # same size: batched with coffee.png
    _write(root / "sub" / "camera_gray.png", cv2.resize(skimage.data.camera(), (30, 30)))
    alpha = np.linspace(0, 255, 33 * 25).reshape(25, 33).astype(np.uint8)
    _write(root / "sub" / "deep" / "chelsea_rgba.png", np.dstack([_rgb("chelsea", 33, 25), alpha]))
    rocket16 = _rgb("rocket", 32, 24).astype(np.uint16) * 257 + np.arange(24 * 32 * 3).reshape(24, 32, 3) % 200
    _write(root / "deep16.png", rocket16.astype(np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise
    (root / "other").mkdir()
    Image.fromarray(_rgb("chelsea", 40, 24)).save(root / "other" / "rotated.jpg", exif=exif.tobytes())
    (root / "other" / "notes.txt").write_text("not an image; ignored by extension")
    return {
        "astronaut.jpg": (32, 40),
        "sub/coffee.png": (28, 36),
        "sub/coffee_twin.png": (28, 36),
        "sub/camera_gray.png": (30, 30),
        "sub/deep/chelsea_rgba.png": (25, 33),
        "deep16.png": (24, 32),
        "other/rotated.jpg": (40, 24),
    }


def hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def generator_file(tiny_generator_factory) -> Path:
    return tiny_generator_factory("resnet_6blocks", base_channels=4)


@pytest.fixture(scope="module")
def translator(generator_file) -> Translator:
    return Translator.load(generator_file, device="cpu")


@pytest.fixture()
def tree(tmp_path) -> tuple[Path, dict[str, tuple[int, int]]]:
    src = tmp_path / "photos"
    return src, make_tree(src)


@pytest.fixture()
def small_tree(tmp_path) -> tuple[Path, dict[str, tuple[int, int]]]:
    """Four same-size photos in nested folders: one batch, so runs stay fast."""
    src = tmp_path / "photos"
    names = {"astronaut.jpg": "astronaut", "a/coffee.png": "coffee", "a/b/chelsea.png": "chelsea", "c/rocket.webp": "rocket"}
    for rel, name in names.items():
        _write(src / rel, _rgb(name, 32, 24))
    return src, {rel: (24, 32) for rel in names}


def test_mirrors_tree_keeps_sizes_alpha_depth_and_inputs(translator, tree, tmp_path):
    src, expected = tree
    before = hashes(src)
    dst = tmp_path / "out"
    report = translate_folder(translator, src, dst, batch_size=4, progress=False)

    assert isinstance(report, FolderReport) and report.ok
    assert sorted(p.relative_to(src).as_posix() for p in report.translated) == sorted(expected)
    assert files_under(dst) == set(expected)  # mirrored names, notes.txt ignored, no temp files left
    for rel, (height, width) in expected.items():
        out = read_native(dst / rel)
        assert out.shape[:2] == (height, width), rel  # EXIF rotation applied, size kept
    rgba_in = cv2.imread(str(src / "sub/deep/chelsea_rgba.png"), cv2.IMREAD_UNCHANGED)
    rgba_out = cv2.imread(str(dst / "sub/deep/chelsea_rgba.png"), cv2.IMREAD_UNCHANGED)
    assert rgba_out.shape[2] == 4 and np.array_equal(rgba_out[:, :, 3], rgba_in[:, :, 3])
    deep = cv2.imread(str(dst / "deep16.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.ndim == 3
    assert len(np.unique(deep)) > 256  # really 16-bit values, not 8-bit ones scaled up
    for rel in expected:  # batched folder pipeline == the lead's one-image path, lossless files
        if rel.endswith(".png"):
            reference = translator.translate_array(read_native(src / rel))
            ours = read_native(dst / rel)
            assert np.abs(reference.astype(int) - ours.astype(int)).max() <= 1, rel
    assert hashes(src) == before  # inputs never modified


def test_resume_skips_complete_outputs_and_redoes_missing_ones(translator, small_tree, tmp_path):
    src, expected = small_tree
    dst = tmp_path / "out"
    translate_folder(translator, src, dst, progress=False)
    mtimes = {rel: (dst / rel).stat().st_mtime_ns for rel in expected}

    again = translate_folder(translator, src, dst, progress=False)
    assert again.translated == [] and len(again.skipped) == len(expected) and again.ok

    (dst / "a/coffee.png").unlink()
    redo = translate_folder(translator, src, dst, progress=False)
    assert [p.relative_to(src).as_posix() for p in redo.translated] == ["a/coffee.png"]
    assert len(redo.skipped) == len(expected) - 1
    for rel, mtime in mtimes.items():
        if rel != "a/coffee.png":
            assert (dst / rel).stat().st_mtime_ns == mtime, rel

    forced = translate_folder(translator, src, dst, overwrite=True, progress=False)
    assert len(forced.translated) == len(expected) and forced.skipped == []


def test_crash_mid_write_leaves_no_output_and_no_temp(translator, small_tree, tmp_path, monkeypatch):
    src, expected = small_tree
    dst = tmp_path / "out"
    real_encode = image_files._encode_into

    def crashing_encode(f, image, suffix, quality):
        if suffix == ".png":
            f.write(b"\x89PNG\r\n\x1a\n partial")
            raise RuntimeError("simulated crash while encoding")
        real_encode(f, image, suffix, quality)

    monkeypatch.setattr(image_files, "_encode_into", crashing_encode)
    report = translate_folder(translator, src, dst, progress=False)
    pngs = {rel for rel in expected if rel.endswith(".png")}
    assert {p.relative_to(src).as_posix() for p, _ in report.failed} == pngs
    assert files_under(dst) == set(expected) - pngs  # nothing under a final name, no temp files

    # A killed process leaves a temp file behind: the next run removes it and finishes the job;
    # temps beside outputs it does not write (skipped, or another file's) are not its to remove.
    monkeypatch.setattr(image_files, "_encode_into", real_encode)
    stale = temp_name(dst / "a" / "coffee.png")
    stale.write_bytes(b"half a png")
    others = [temp_name(dst / "astronaut.jpg"), dst / "a" / ".tmp-coffee-notes-0badc0de.png"]
    for other in others:
        other.write_bytes(b"someone else's")
    report = translate_folder(translator, src, dst, progress=False)
    assert report.ok and len(report.translated) == len(pngs)
    assert not stale.exists() and all(other.exists() for other in others)
    assert {name for name in files_under(dst) if not is_temp(Path(name).name)} == set(expected)


def test_bad_files_are_reported_by_name_and_others_translate(translator, small_tree, tmp_path, caplog):
    src, expected = small_tree
    (src / "empty.png").write_bytes(b"")
    (src / "a" / "fake.jpg").write_text("this is text with an image extension")
    data = (src / "astronaut.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    before = hashes(src)

    report = translate_folder(translator, src, tmp_path / "out", progress=False)
    failed = {p.relative_to(src).as_posix(): reason for p, reason in report.failed}
    assert set(failed) == {"empty.png", "a/fake.jpg", "truncated.jpg"}
    assert all("—" in reason for reason in failed.values())  # each says what to do
    assert len(report.translated) == len(expected) and not report.ok
    for name in failed:  # one warning line per bad file, naming it
        assert sum(str(src / name) in r.getMessage() for r in caplog.records) == 1
    assert hashes(src) == before


def test_output_inside_or_equal_to_input_is_refused(translator, tree):
    src, _ = tree
    for dst in (src, src / "translated", src / "sub"):
        with pytest.raises(UserError, match="the input folder"):
            translate_folder(translator, src, dst, progress=False)
    with pytest.raises(UserError, match="not found"):
        translate_folder(translator, src / "missing", src.parent / "out", progress=False)


def test_output_never_overwrites_an_input(translator, tmp_path):
    # dst is an ancestor of src: photos/photos/x.png would map onto the input photos/x.png
    src = tmp_path / "photos"
    _write(src / "x.png", _rgb("coffee", 24, 20))
    _write(src / "photos" / "x.png", _rgb("astronaut", 24, 20))
    before = hashes(src)
    report = translate_folder(translator, src, tmp_path, progress=False)
    assert [p.relative_to(src).as_posix() for p, _ in report.failed] == ["photos/x.png"]
    assert "overwrite an input" in report.failed[0][1]
    assert hashes(src) == before


def test_sharding_covers_every_file_exactly_once(translator, small_tree, tmp_path, monkeypatch):
    src, expected = small_tree
    dst = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    done = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        report = translate_folder(translator, src, dst, progress=False)
        assert (report.rank, report.world_size) == (rank, 2) and report.skipped == []
        assert report.summary().startswith(f"[rank {rank}/2]")
        done += [p.relative_to(src).as_posix() for p in report.translated]
    assert sorted(done) == sorted(expected)  # union is everything, no file twice
    assert files_under(dst) == set(expected)


def test_formats_resizing_and_notes(translator, tree, tmp_path):
    src, expected = tree
    dst = tmp_path / "jpg"
    report = translate_folder(translator, src, dst, output_format="jpg", quality=80, max_side=20, progress=False)
    assert files_under(dst) == {os.path.splitext(rel)[0] + ".jpg" for rel in expected}
    assert any("alpha" in note for note in report.notes) and any("16 to 8 bits" in note for note in report.notes)
    for rel, (height, width) in expected.items():
        out = read_native(dst / (os.path.splitext(rel)[0] + ".jpg"))
        scale = min(1.0, 20 / max(height, width))
        assert out.shape[:2] == (round(height * scale), round(width * scale)) and out.dtype == np.uint8

    sized = translate_folder(translator, src, tmp_path / "webp", output_format="webp", size=(24, 16), progress=False)
    assert sized.ok
    for rel in expected:
        assert read_native(tmp_path / "webp" / (os.path.splitext(rel)[0] + ".webp")).shape[:2] == (16, 24)

    name, note = folder_mod._output_name("anim.gif", "keep")
    assert name == "anim.png" and "PNG" in note  # keep falls back to PNG, and says so


def test_keep_falls_back_to_png_where_our_writer_cannot(translator, small_tree, tmp_path, monkeypatch):
    src, expected = small_tree
    monkeypatch.setattr(folder_mod, "WRITABLE_EXTENSIONS", frozenset({".png", ".jpg"}))  # as if .webp were unwritable
    report = translate_folder(translator, src, tmp_path / "out", progress=False)
    assert files_under(tmp_path / "out") == {"astronaut.jpg", "a/coffee.png", "a/b/chelsea.png", "c/rocket.png"}
    assert report.notes == ["1 image written as PNG because .webp cannot be written"]


def test_same_output_name_from_two_inputs_is_a_failure(translator, tmp_path):
    src = tmp_path / "photos"
    _write(src / "a.jpg", _rgb("coffee", 24, 20))
    _write(src / "a.png", _rgb("astronaut", 24, 20))
    report = translate_folder(translator, src, tmp_path / "out", output_format="png", progress=False)
    assert [p.name for p in report.translated] == ["a.jpg"]
    assert [p.name for p, _ in report.failed] == ["a.png"] and "also the output" in report.failed[0][1]


def test_translate_file(translator, tree, tmp_path):
    src, expected = tree
    image = src / "other" / "rotated.jpg"
    out = tmp_path / "single.png"
    report = translate_file(translator, image, out)
    assert report.ok and report.translated == [image]
    assert read_native(out).shape[:2] == expected["other/rotated.jpg"]
    assert translate_file(translator, image, out).skipped == [image]  # resumable too

    into = tmp_path / "into"
    into.mkdir()
    assert translate_file(translator, image, into, output_format="webp").ok
    assert files_under(into) == {"rotated.webp"}

    with pytest.raises(UserError, match="contradicts"):
        translate_file(translator, image, tmp_path / "x.png", output_format="jpg")
    with pytest.raises(UserError, match="is the input"):
        translate_file(translator, image, image)
    with pytest.raises(UserError, match="cannot write"):
        translate_file(translator, image, tmp_path / "x.gif")
    bad = src / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    failed = translate_file(translator, bad, tmp_path / "broken_out.png")
    assert [p for p, _ in failed.failed] == [bad] and not (tmp_path / "broken_out.png").exists()

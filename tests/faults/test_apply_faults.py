"""Faults injected into ``translate apply`` and ``translate video``: SIGKILL, vanishing files, full disk."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from pathlib import Path

import cv2
from PIL import Image

import translate.infer.folder as folder_module
import translate.infer.image_files as image_files_module
from translate.cli import main
from translate.files import is_temp, temp_name

from .corpus import encode, photo

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")


def make_photo_folder(root: Path, count: int = 30) -> dict[str, tuple[int, int]]:
    """``count`` small real photos (PNG and JPEG, three sizes, some in a subfolder); name → (w, h)."""
    sizes = {}
    for i in range(count):
        width, height = ((32, 24), (24, 32), (40, 40))[i % 3]
        name = f"{'sub/' if i % 4 == 0 else ''}img_{i:02d}.{'png' if i % 2 else 'jpg'}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if path.suffix == ".png" else "JPEG"
        path.write_bytes(encode(photo(PHOTOS[i % len(PHOTOS)], width, height), fmt, **({"quality": 90} if fmt == "JPEG" else {})))
        sizes[name] = (width, height)
    return sizes


def complete_outputs(out: Path) -> dict[str, tuple[int, int]]:
    """Every file under its final name in ``out``, fully decoded (PIL raises on truncation); name → size."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and not is_temp(path.name):
            with Image.open(path) as im:
                im.load()
                found[path.relative_to(out).as_posix()] = im.size
            assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, path
    return found


def temps(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if is_temp(p.name)] if out.exists() else []


def test_sigkill_during_apply_leaves_no_partial_output(zygote, generator_file, tmp_path, reliability) -> None:
    src, out = tmp_path / "photos", tmp_path / "out"
    sizes = make_photo_folder(src)
    argv = ["apply", "--model", str(generator_file), "--device", "cpu", "--batch-size", "2", "--workers", "2", str(src), str(out)]
    rng = random.Random(5)
    kills, partial_temps = 0, 0
    for _ in range(3):
        child = zygote.spawn(argv)
        # let a random share of the remaining images finish, then kill mid-stream
        done_before = len(complete_outputs(out)) if out.exists() else 0
        wanted = done_before + rng.randint(1, max(1, (len(sizes) - done_before) // 2))
        deadline = time.monotonic() + 60
        while child.alive() and time.monotonic() < deadline:
            if out.exists() and sum(1 for p in out.rglob("*") if p.is_file() and not is_temp(p.name)) >= wanted:
                break
            time.sleep(0.001)
        child.signal(signal.SIGKILL)
        if zygote.wait(child) != -signal.SIGKILL:
            break
        kills += 1
        partial_temps += len(temps(out))
        done = complete_outputs(out)  # raises on any partial file under a final name
        assert all(size == sizes[name] for name, size in done.items())
    assert kills >= 2, "apply finished before it could be killed"
    done_before = len(complete_outputs(out))
    final = zygote.run(argv)
    assert final.status == 0, final.err()
    assert f"translated {len(sizes) - done_before}, skipped {done_before}, failed 0" in final.out()
    assert complete_outputs(out) == sizes
    assert temps(out) == []  # the temp files the kills left were removed
    reliability.fault(
        f"SIGKILL during `translate apply` ({kills} kills, {partial_temps} temp files left mid-write)",
        "`translate apply` on 30 images",
        "no partial file under a final name; the re-run skipped finished outputs, translated the rest, removed the temps",
        count=kills,
    )


def tiny_clip(path: Path, frames: int) -> Path:
    from tests.media import make_clip

    return make_clip(path, frames=frames, size=(64, 48), audio=False)


def test_sigkill_during_video_leaves_no_partial_output(zygote, generator_file, tmp_path, reliability) -> None:
    from tests.media import read_clip

    clip = tiny_clip(tmp_path / "clip.mp4", 150)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "night.mp4"
    argv = ["video", "--model", str(generator_file), "--device", "cpu", "--no-progress", str(clip), str(dst)]
    child = zygote.spawn(argv)
    delay = random.Random(3).uniform(0.0, 0.05)
    while child.alive() and not any(is_temp(p.name) for p in out.iterdir()):
        time.sleep(0.001)
    time.sleep(delay)
    child.signal(signal.SIGKILL)
    assert zygote.wait(child) == -signal.SIGKILL, "the video finished before it could be killed"
    if dst.exists():  # killed after the rename: then it must be the complete video
        assert len(read_clip(dst).frames) == 150
    left = [p.name for p in out.iterdir()]
    final = zygote.run(argv)
    assert final.status == 0, final.err()
    assert len(read_clip(dst).frames) == 150
    reliability.fault(
        "SIGKILL during `translate video`",
        "`translate video` (150 frames)",
        f"no file under the final name; the re-run wrote a complete video (left by the kill: {', '.join(left) or 'nothing'})",
    )


def test_video_rerun_removes_the_temp_a_killed_run_left(generator_file, tmp_path, reliability) -> None:
    clip = tiny_clip(tmp_path / "clip.mp4", 5)
    out = tmp_path / "out"
    out.mkdir()
    stale = temp_name(out / "night.mp4")  # what a SIGKILLed `translate video … out/night.mp4` leaves
    stale.write_bytes(b"\0" * 4096)
    try:
        code = main(["video", "--model", str(generator_file), "--device", "cpu", "--no-progress", str(clip), str(out / "night.mp4")])
    finally:
        reliability.fault("partial video left by a killed `translate video`", "`translate video` re-run", "must be removed by the next run")
    assert code == 0
    assert not stale.exists()


# ---------------------------------------------------------------------------- inputs vanish


def test_files_that_vanish_or_break_after_listing_are_reported(generator_file, tmp_path, monkeypatch, capsys, caplog, reliability) -> None:
    src, out = tmp_path / "photos", tmp_path / "out"
    sizes = make_photo_folder(src, 8)
    gone, emptied = src / "img_01.png", src / "img_03.png"
    real_list = folder_module.list_images

    def list_images(folder):
        files = real_list(folder)
        gone.unlink()  # deleted by someone else between listing and reading
        emptied.write_bytes(b"")  # truncated by a copy still in progress
        return files

    monkeypatch.setattr(folder_module, "list_images", list_images)
    code = main(["apply", "--model", str(generator_file), "--device", "cpu", str(src), str(out)])
    stdout = capsys.readouterr().out
    assert code == 1
    assert "translated 6, skipped 0, failed 2" in stdout
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("failed:")]
    assert len(failed) == 2
    assert any(str(gone) in m and "not found" in m for m in failed)
    assert any(str(emptied) in m and "empty file" in m for m in failed)
    expected = {k: v for k, v in sizes.items() if k not in ("img_01.png", "img_03.png")}
    assert complete_outputs(out) == expected
    reliability.fault(
        "an input deleted, another emptied, after the folder was listed",
        "`translate apply`",
        "each reported on one `failed:` line (file, reason); the others translated; exit 1",
        count=2,
    )


def test_full_disk_while_writing_outputs(generator_file, tmp_path, monkeypatch, capsys, caplog, reliability) -> None:
    src, out = tmp_path / "photos", tmp_path / "out"
    sizes = make_photo_folder(src, 6)
    real_encode = image_files_module._encode_into

    def encode_into(f, image, suffix, quality):
        if Path(f.name).name.startswith(".tmp-img_02-"):
            f.write(b"\xff\xd8 half a JPEG")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_encode(f, image, suffix, quality)

    monkeypatch.setattr(image_files_module, "_encode_into", encode_into)
    argv = ["apply", "--model", str(generator_file), "--device", "cpu", str(src), str(out)]
    assert main(argv) == 1
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("failed:")]
    assert len(failed) == 1 and "img_02.jpg" in failed[0] and "No space left on device" in failed[0] and "free disk space" in failed[0]
    assert "img_02.jpg" not in complete_outputs(out) and temps(out) == []
    monkeypatch.undo()
    capsys.readouterr()
    assert main(argv) == 0
    assert "translated 1, skipped 5, failed 0" in capsys.readouterr().out
    assert complete_outputs(out) == sizes
    reliability.fault(
        "disk full (ENOSPC) while writing one output",
        "`translate apply`",
        "that file reported (file, reason, fix), no partial output or temp left, the others written; a re-run wrote only the missing one",
    )

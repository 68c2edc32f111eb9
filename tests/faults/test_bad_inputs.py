"""The bad-input corpus (``corpus.py``) through ``translate apply``, ``translate train`` and ``translate video``.

For each input: translation continues past it when it is one file among many, training skips
it (or refuses the layout) as ``translate.data`` documents, the message names the file and the
reason, the exit status says whether anything failed, and no input is modified.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from translate.cli import main

from .conftest import TINY, one_error_line
from .corpus import (
    CASES,
    Case,
    digest_tree,
    encode,
    make_image_corpus,
    make_paired_mismatch,
    make_paired_size_mismatch,
    photo,
    png_header_only,
)


def failed_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("failed:")]


def output_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()  # a partial file raises here
        return im.size


def check_apply_case(case: Case, root: Path, out: Path, failed: list[str]) -> str:
    """Assert what apply did with ``case``; returns the outcome in words."""
    path = root / case.name
    mine = [line for line in failed if f"{path}:" in line]
    if case.apply == "translated":
        assert not mine, mine
        assert output_size(out / case.name) == case.out_size, case.name
        return f"translated ({case.out_size[0]}x{case.out_size[1]})"
    if case.apply == "ignored":
        assert not mine and not (out / case.name).exists()
        return "ignored (not an image extension / loop not followed twice)"
    assert len(mine) == 1, (case.name, failed)
    assert any(word in mine[0].lower() for word in case.words), mine[0]
    assert not (out / case.name).exists()
    return "reported: " + mine[0].split(": ", 2)[-1]


def test_apply_continues_past_every_bad_file(generator_file, tmp_path, capsys, caplog, reliability) -> None:
    root, out = tmp_path / "corpus", tmp_path / "out"
    cases = [c for c in make_image_corpus(root) if not c.apply_bug]
    for case in CASES:  # the known bugs are tested below, one at a time
        if case.apply_bug:
            (root / case.name).unlink()
    before = digest_tree(root)
    code = main(["apply", "--model", str(generator_file), "--device", "cpu", str(root), str(out)])
    stdout = capsys.readouterr().out
    failed = failed_lines(caplog)
    n_failed = sum(c.apply == "failed" for c in cases)
    n_translated = sum(c.apply == "translated" for c in cases)
    assert code == 1  # something failed, and the exit status says so
    assert f"translated {n_translated}, skipped 0, failed {n_failed}" in stdout
    assert len(failed) == n_failed
    for case in cases:
        outcome = check_apply_case(case, root, out, failed)
        if not case.name.startswith("good_"):  # the good files are controls, not bad inputs
            reliability.bad_input(f"{case.what} (`{case.name}`)", "`translate apply` on a folder", outcome)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {c.name for c in cases if c.apply == "translated"}
    assert digest_tree(root) == before  # no input modified


def test_training_skips_unreadable_files_and_names_them(tiny_unpaired, tmp_path, caplog, reliability) -> None:
    data = tmp_path / "data"
    cases = make_image_corpus(data / "trainA")
    shutil.copytree(tiny_unpaired / "trainB", data / "trainB")
    before = digest_tree(data)
    # one epoch: every readable-looking file of A is loaded once (batch 1, shuffled)
    steps = sum(c.train == "used" for c in cases) + 1  # + truncated.png, whose header is fine
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", str(steps), "--save-every", "1000", *TINY])
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping unreadable image")]
    for case in cases:
        path = data / "trainA" / case.name
        mine = [w for w in warnings if f"{path}:" in w]
        if case.train == "skipped":
            assert len(mine) == 1, (case.name, warnings)
            assert any(word in mine[0].lower() for word in case.words), mine[0]
            outcome = "skipped with a warning: " + mine[0].split(": ", 1)[-1]
        else:
            assert not mine, mine
            outcome = "used" if case.train == "used" else "ignored (not an image extension)"
        if not case.name.startswith("good_"):
            reliability.bad_input(f"{case.what} (`{case.name}`)", "`translate train` (domain A)", outcome)
    assert len(warnings) == sum(c.train == "skipped" for c in cases)
    assert digest_tree(data) == before


def test_single_files_with_awkward_names(generator_file, tmp_path, monkeypatch, reliability) -> None:
    monkeypatch.chdir(tmp_path)
    png = encode(photo(), "PNG")
    for name in ("-rf.png", "with space.png", "ünïcødé 画像.png", "--help.png"):
        Path(name).write_bytes(png)
    model = ["--model", str(generator_file), "--device", "cpu"]
    assert main(["apply", *model, "--", "-rf.png", "-out.png"]) == 0  # `--` ends the options, as usual
    assert main(["apply", *model, "./--help.png", "./--out.png"]) == 0
    assert main(["apply", *model, "with space.png", "out put.png"]) == 0
    assert main(["apply", *model, "ünïcødé 画像.png", "出力.png"]) == 0
    for name in ("-out.png", "--out.png", "out put.png", "出力.png"):
        assert output_size(tmp_path / name) == (32, 24)
    assert Path("-rf.png").read_bytes() == png
    reliability.bad_input(
        "single files named `-rf.png`, `--help.png`, with spaces, unicode",
        "`translate apply FILE OUT`",
        "translated (after `--` or with `./`); inputs untouched",
        count=4,
    )


def test_decompression_bombs_are_refused_before_allocating(zygote, generator_file, tmp_path, reliability) -> None:
    """A header just over the pixel limit (a decode would need ~0.9 GB) must cost no memory."""
    good, bombs = tmp_path / "good", tmp_path / "bombs"
    for folder in (good, bombs):
        folder.mkdir()
        (folder / "photo.png").write_bytes(encode(photo(), "PNG"))
    (bombs / "bomb_17k.png").write_bytes(png_header_only(17_000, 17_000))
    (bombs / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    argv = ["apply", "--model", str(generator_file), "--device", "cpu"]
    control = zygote.run([*argv, str(good), str(tmp_path / "out_good")])
    bombed = zygote.run([*argv, str(bombs), str(tmp_path / "out_bombs")])
    assert control.status == 0 and bombed.status == 1, bombed.err()
    err = bombed.err()
    assert f"{bombs / 'bomb_17k.png'}: image declares 17000x17000" in err
    assert f"{bombs / 'bomb.png'}: image is larger than" in err
    grew_mb = (bombed.maxrss_kb - control.maxrss_kb) / 1024
    assert grew_mb < 100, f"peak memory grew by {grew_mb:.0f} MB"
    reliability.bad_input(
        "decompression bombs: PNG headers declaring 17000x17000 and 100000x100000",
        "`translate apply`",
        f"refused from the header, file named; peak memory +{max(grew_mb, 0):.0f} MB",
        count=2,
    )


@pytest.mark.parametrize("layout", ["unmatched names", "pair sizes differ", "empty domain"])
def test_training_refuses_bad_layouts(layout, tiny_unpaired, tmp_path, capsys, reliability) -> None:
    data = tmp_path / "data"
    if layout == "unmatched names":
        make_paired_mismatch(data)
        words = ["only_in_a", "only_in_b", "without a partner"]
    elif layout == "pair sizes differ":
        make_paired_size_mismatch(data)
        words = ["0002.png", "48x48", "differ in size"]
    else:
        shutil.copytree(tiny_unpaired / "trainA", data / "trainA")
        (data / "trainB").mkdir()
        words = [str(data / "trainB"), "no images or videos found"]
    model = "cyclegan" if layout == "empty domain" else "pix2pix"
    before = digest_tree(data)
    code = main(["train", "--model", model, "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1", *TINY])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert all(word in line for word in words), line
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert digest_tree(data) == before
    reliability.bad_input(f"{model} data: {layout}", "`translate train`", "refused before training: " + line[len("error: ") :])


# ---------------------------------------------------------------------------- video


@pytest.mark.parametrize("kind", ["no video stream", "index cut off", "cut short (playable start)", "odd dimensions", "text named .mp4"])
def test_bad_videos(kind, generator_file, tmp_path, capsys, caplog, reliability) -> None:
    from tests.media import make_audio_only, make_clip, read_clip, truncate_file

    src = (
        tmp_path
        / {
            "no video stream": "voice.m4a",
            "index cut off": "cut.mp4",
            "cut short (playable start)": "cut.mp4",
            "odd dimensions": "odd.mkv",
            "text named .mp4": "notes.mp4",
        }[kind]
    )
    if kind == "no video stream":
        make_audio_only(src)
    elif kind == "index cut off":  # mp4 writes its index last: a copy cut short has none
        truncate_file(make_clip(tmp_path / "full.mp4", frames=10, audio=False), src, 0.7)
    elif kind == "cut short (playable start)":
        truncate_file(make_clip(tmp_path / "full.mp4", frames=30, faststart=True), src, 0.6)
    elif kind == "odd dimensions":
        make_clip(src, frames=4, size=(63, 47), codec="mpeg4", audio=False)
    else:
        src.write_text("this is not a video\n")
    before = digest_tree(tmp_path)
    dst = tmp_path / "out" / "result.mp4"
    dst.parent.mkdir()
    code = main(["video", "--model", str(generator_file), "--device", "cpu", "--no-progress", str(src), str(dst)])
    err = capsys.readouterr().err
    if kind in ("cut short (playable start)", "odd dimensions"):
        assert code == 0, err
        clip = read_clip(dst)
        if kind == "odd dimensions":
            assert (clip.width, clip.height) == (64, 48) and len(clip.frames) == 4
            outcome = "translated; 63x47 padded to 64x48 (one repeated row and column)"
        else:
            warning = [r.getMessage() for r in caplog.records if str(src) in r.getMessage()]
            assert warning and "truncated" in warning[0] and 0 < len(clip.frames) < 30
            outcome = f"translated the {len(clip.frames)} frames that decode, with a warning naming the file"
    else:
        assert code == 2
        line = one_error_line(err)
        assert str(src) in line
        assert not dst.exists() and not [p for p in dst.parent.iterdir()]
        outcome = "refused: " + line.split(": ", 2)[-1]
    assert {k: v for k, v in digest_tree(tmp_path).items() if not k.startswith("out/")} == before
    reliability.bad_input(f"video: {kind} (`{src.name}`)", "`translate video`", outcome)

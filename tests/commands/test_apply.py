"""``translate apply`` end to end through ``translate.cli.main`` on tiny real photos."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from translate.cli import main
from translate.commands.apply import parse_size
from translate.errors import UserError


@pytest.fixture(scope="module")
def model(tiny_generator_factory) -> str:
    return str(tiny_generator_factory("resnet_6blocks", base_channels=4))


@pytest.fixture()
def photos(tmp_path) -> Path:
    """Three same-size real photos in nested folders, a corrupt-free baseline."""
    src = tmp_path / "photos"
    for rel, name in {"astronaut.jpg": "astronaut", "a/coffee.png": "coffee", "a/b/chelsea.png": "chelsea"}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        image = cv2.resize(getattr(skimage.data, name)(), (32, 24), interpolation=cv2.INTER_AREA)
        assert cv2.imwrite(str(src / rel), image[:, :, ::-1])
    return src


def digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_folder_then_resume(model, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["apply", "--model", model, "--device", "cpu", str(photos), str(out)]) == 0
    assert outputs(out) == {"astronaut.jpg", "a/coffee.png", "a/b/chelsea.png"}
    captured = capsys.readouterr()
    assert "translated 3, skipped 0, failed 0" in captured.out
    assert "img/s" not in captured.err  # no progress bar when stderr is not a terminal

    assert main(["apply", "--model", model, "--device", "cpu", str(photos), str(out)]) == 0
    assert "translated 0, skipped 3, failed 0" in capsys.readouterr().out

    assert main(["apply", "--model", model, "--device", "cpu", "--format", "png", "--max-side", "16", str(photos), str(tmp_path / "png")]) == 0
    assert outputs(tmp_path / "png") == {"astronaut.png", "a/coffee.png", "a/b/chelsea.png"}
    assert cv2.imread(str(tmp_path / "png" / "astronaut.png")).shape[:2] == (12, 16)


def test_bad_files_exit_1_name_each_and_leave_inputs_alone(model, photos, tmp_path, capsys, caplog):
    (photos / "zero.png").write_bytes(b"")
    (photos / "a" / "letter.jpg").write_text("not a picture")
    (photos / "readme.md").write_text("ignored: not an image extension")
    before = digest(photos)
    code = main(["apply", "--model", model, "--device", "cpu", str(photos), str(tmp_path / "out")])
    assert code == 1
    assert "translated 3, skipped 0, failed 2" in capsys.readouterr().out
    failed_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("failed:")]
    assert len(failed_lines) == 2
    assert any(str(photos / "zero.png") in line for line in failed_lines)
    assert any(str(photos / "a" / "letter.jpg") in line for line in failed_lines)
    assert digest(photos) == before


def test_single_file(model, photos, tmp_path, capsys):
    out = tmp_path / "single.webp"
    assert main(["apply", "--model", model, "--device", "cpu", "--quality", "80", str(photos / "a" / "coffee.png"), str(out)]) == 0
    assert cv2.imread(str(out)).shape[:2] == (24, 32)
    assert "translated 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["{photos}", "{photos}/inside"], "inside the input folder"),
        (["{photos}/missing", "{tmp}/out"], "missing: not found"),
        (["{photos}/a/coffee.png", "{tmp}/out.gif"], "cannot write"),
        (["--size", "big", "{photos}", "{tmp}/out"], "--size 'big'"),
        (["--quality", "0", "{photos}", "{tmp}/out"], "--quality 0"),
    ],
)
def test_user_errors_are_one_line_before_loading_the_model(photos, tmp_path, capsys, args, message):
    # --model does not exist: these errors must come first, without a traceback.
    argv = ["apply", "--model", str(tmp_path / "no_model.safetensors")] + [a.format(photos=photos, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err and "Traceback" not in err


def test_parse_size():
    assert parse_size("64x48") == (64, 48) and parse_size("10X20") == (10, 20)
    with pytest.raises(UserError, match="WIDTHxHEIGHT"):
        parse_size("0x5")


def test_outputs_match_between_python_api_and_cli(model, photos, tmp_path):
    from translate.infer.translator import Translator

    translator = Translator.load(model, device="cpu")
    report = translator.translate_folder(photos, tmp_path / "api", progress=False)
    assert len(report.translated) == 3
    assert main(["apply", "--model", model, "--device", "cpu", str(photos), str(tmp_path / "cli")]) == 0
    a = cv2.imread(str(tmp_path / "api" / "a" / "coffee.png"))
    b = cv2.imread(str(tmp_path / "cli" / "a" / "coffee.png"))
    assert np.array_equal(a, b)


def test_compile_flag_translates_as_eager(model, photos, tmp_path):
    """``--compile`` runs the network through torch.compile; the pictures are the same."""
    assert main(["apply", "--model", model, "--device", "cpu", "--compile", str(photos), str(tmp_path / "compiled")]) == 0
    assert main(["apply", "--model", model, "--device", "cpu", str(photos), str(tmp_path / "eager")]) == 0
    for rel in ("astronaut.jpg", "a/coffee.png", "a/b/chelsea.png"):
        a = cv2.imread(str(tmp_path / "compiled" / rel)).astype(int)
        b = cv2.imread(str(tmp_path / "eager" / rel)).astype(int)
        assert a.shape == b.shape == (24, 32, 3)
        # float rounding may differ by a level at most; JPEG re-encoding can amplify one level a little
        assert np.abs(a - b).max() <= (4 if rel.endswith(".jpg") else 1)
    from translate.infer.translator import Translator

    translator = Translator.load(model, device="cpu", compile=True)
    assert translator._network() is not translator.net  # the compiled wrapper ...
    assert translator._network() is translator._network()  # ... built once
    eager = Translator.load(model, device="cpu")
    assert eager._network() is eager.net

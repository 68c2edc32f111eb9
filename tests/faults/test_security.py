"""Untrusted model files: pickles that carry code, tampered checkpoints and metadata, and a source audit.

A model file from the internet must never run code, choose imports or paths, or exhaust memory;
anything wrong with it must end in one ``error:`` line naming the file (exit 2).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import translate
from translate.cli import main
from translate.config import NetConfig, to_dict

from .conftest import TINY, one_error_line

PACKAGE = Path(translate.__file__).parent


class CarriesCode:
    """Unpickling this calls ``open(marker, "w")``: if the marker exists, the loader ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    from .corpus import encode, photo

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(photo(), "PNG"))
    return folder


# ---------------------------------------------------------------------------- pickles with code


def _torch_save(path: Path, marker: Path) -> None:
    torch.save({"model.1.weight": CarriesCode(marker)}, path)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(CarriesCode(marker)))


def _state_dict_inside(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {"model.1.weight": torch.zeros(1)}, "hook": CarriesCode(marker)}, path)


PICKLES: dict[str, Callable[[Path, Path], None]] = {
    "evil.pth (torch.save)": _torch_save,
    "evil.pt (plain pickle)": _raw_pickle,
    "evil.ckpt (code beside a state dict)": _state_dict_inside,
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", list(PICKLES))
@pytest.mark.parametrize("command", ["apply --model", "train --init-from", "train --resume"])
def test_pickle_that_carries_code_is_refused(kind, command, photos, tiny_unpaired, tmp_path, capsys, reliability) -> None:
    marker = tmp_path / "CODE_RAN"
    evil = tmp_path / kind.split()[0]
    PICKLES[kind](evil, marker)
    if command == "train --resume":  # a run directory whose checkpoint files are pickles
        ckpt = tmp_path / "run" / "checkpoints" / "step_0000001"
        ckpt.mkdir(parents=True)
        for name in ("model.safetensors", "state.safetensors"):
            shutil.copy(evil, ckpt / name)
        (ckpt.parent / "latest").write_text("step_0000001\n")
        argv = ["train", "--resume", str(tmp_path / "run")]
        named = ckpt / "model.safetensors"
    elif command == "train --init-from":
        argv = ["train", "--init-from", str(evil), "--data", str(tiny_unpaired), "--out", str(tmp_path / "new"), "--steps", "1", *TINY]
        named = evil.parent  # not a checkpoint: the folder is searched, and holds none
    else:
        argv = ["apply", "--model", str(evil), "--device", "cpu", str(photos), str(tmp_path / "out")]
        named = evil
    code = main(argv)
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and str(named) in line
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "out").exists() and not (tmp_path / "new" / "checkpoints").exists()
    reliability.bad_input(f"pickle that runs code on load: {kind}", f"`translate {command}`", "refused, code not run: " + line.split(": ", 2)[-1])


# ---------------------------------------------------------------------------- tampered files


@pytest.fixture(scope="module")
def tiny_run(tiny_unpaired: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["train", "--data", str(tiny_unpaired), "--out", str(run), "--steps", "1", *TINY]) == 0
    return run


def rewrite(path: Path, meta: dict | None = None, tensors: Callable[[dict], dict] | None = None) -> None:
    """Rewrite a safetensors file with metadata entries replaced (None deletes) and tensors changed."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        values = {k: fh.get_tensor(k) for k in fh.keys()}
    for key, value in (meta or {}).items():
        metadata.pop(key) if value is None else metadata.__setitem__(key, value)
    save_file(tensors(values) if tensors else values, str(path), metadata=metadata)


def _run_config(run: Path, change: Callable[[dict], None]) -> str:
    with safe_open(str(run / "checkpoints" / "step_0000001" / "model.safetensors"), framework="pt") as fh:
        data = json.loads(fh.metadata()["run_config"])
    change(data)
    return json.dumps(data)


def _inferred(values: dict) -> str:
    """The generator ``translate apply`` reads: the averaged one where the run kept one."""
    return "ema_gen_ab" if any(k.startswith("ema_gen_ab.") for k in values) else "gen_ab"


def _first_conv(values: dict) -> str:
    return next(k for k, v in values.items() if k.startswith(f"{_inferred(values)}.") and v.ndim == 4)


NAMING_BUG = ""  # fixed: metadata errors name the file
STATE_BUG = ""  # fixed: --resume checks the training state and names state.safetensors

# name -> (file to tamper, metadata change, tensor change, words expected, known bug)
TAMPERING = {
    "run_config not JSON": ("model", {"run_config": "{not json"}, None, ["not valid json"], NAMING_BUG),
    "run_config names a generator 'os.system'": (
        "model",
        {"run_config": lambda r: _run_config(r, lambda d: d["net"].update(generator="os.system"))},
        None,
        ["os.system"],
        NAMING_BUG,
    ),
    "run_config with an extra key": (
        "model",
        {"run_config": lambda r: _run_config(r, lambda d: d.update(__import__="os"))},
        None,
        ["unknown key"],
        NAMING_BUG,
    ),
    "run_config model 'os'": ("model", {"run_config": lambda r: _run_config(r, lambda d: d.update(model="os"))}, None, ["'os'"], NAMING_BUG),
    "format is not translate's": ("model", {"format": "pickle"}, None, ["not a translate"], ""),
    "format version from the future": ("model", {"version": "99"}, None, ["version"], ""),
    "metadata missing": ("model", {"run_config": None}, None, ["not valid json"], NAMING_BUG),
    "weight of the wrong shape": ("model", None, lambda v: {**v, _first_conv(v): torch.zeros(1, 2, 3, 3)}, ["shape"], ""),
    "weight of an integer dtype": ("model", None, lambda v: {**v, _first_conv(v): v[_first_conv(v)].to(torch.int32)}, ["dtype"], ""),
    "weight missing": ("model", None, lambda v: {k: t for k, t in v.items() if k != _first_conv(v)}, ["missing"], ""),
    "unexpected extra tensor": ("model", None, lambda v: {**v, f"{_inferred(v)}.evil": torch.zeros(1)}, ["unexpected"], ""),
    "state counters malformed": ("state", {"counters": '{"step": "x"}'}, None, ["malformed"], ""),
    "state names a missing tensor": (
        "state",
        None,
        lambda v: {k: t for k, t in v.items() if not k.startswith("opt_g.state.0.")},
        ["missing tensor"],
        NAMING_BUG,
    ),
    "state without optimizer entries": ("state", {"state": '{"__dict__": []}'}, None, ["state"], STATE_BUG),
    "scheduler state of the wrong type": ("state", {"state": lambda r: _state(r, "sched_g", [1, 2])}, None, ["state"], STATE_BUG),
}


def _state(run: Path, key: str, value) -> str:
    with safe_open(str(run / "checkpoints" / "step_0000001" / "state.safetensors"), framework="pt") as fh:
        data = json.loads(fh.metadata()["state"])
    data["__dict__"] = [[k, value if k == key else v] for k, v in data["__dict__"]]
    return json.dumps(data)


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampered_checkpoint_is_refused_with_one_line(case, tiny_run, photos, tmp_path, capsys, request, reliability) -> None:
    which, meta, tensors, words, bug = TAMPERING[case]
    if bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    target = run / "checkpoints" / "step_0000001" / f"{which}.safetensors"
    rewrite(target, {k: (v(run) if callable(v) else v) for k, v in (meta or {}).items()}, tensors)
    if which == "model":
        argv = ["apply", "--model", str(run), "--device", "cpu", str(photos), str(tmp_path / "out")]
    else:
        argv = ["train", "--resume", str(run), "--steps", "2"]
    where = f"`translate {argv[0]}`"
    try:
        code = main(argv)
        line = one_error_line(capsys.readouterr().err)
    except BaseException:
        reliability.bad_input(f"checkpoint: {case}", where, "must be refused with one line naming the file")
        raise
    reliability.bad_input(f"checkpoint: {case}", where, "refused: " + line.split(": ", 2)[-1])
    assert code == 2
    assert any(word in line.lower() for word in words), line
    assert str(target) in line or str(target.parent) in line, f"the message does not name the file: {line}"


def test_oversized_and_malformed_headers(tiny_run, photos, tmp_path, capsys, reliability) -> None:
    cases = {
        "header length field of 10^12 bytes": (10**12).to_bytes(8, "little") + b"{}",
        "header of 17 MB (over the 16 MB limit)": (17 * 2**20).to_bytes(8, "little") + b"{" + b" " * 100,
        "header that is not JSON": (20).to_bytes(8, "little") + b'{"a": [1, 2, 3 ::::::',
        "file of 3 bytes": b"abc",
    }
    for what, data in cases.items():
        run = tmp_path / what.replace(" ", "_")
        shutil.copytree(tiny_run, run)
        target = run / "checkpoints" / "step_0000001" / "model.safetensors"
        target.write_bytes(data)
        code = main(["apply", "--model", str(target), "--device", "cpu", str(photos), str(tmp_path / "out")])
        line = one_error_line(capsys.readouterr().err)
        assert code == 2 and str(target) in line
        reliability.bad_input(f"safetensors: {what}", "`translate apply`", "refused: " + line.split(": ", 2)[-1])


def test_latest_pointer_cannot_choose_a_path(tiny_run, photos, tmp_path, capsys, reliability) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    elsewhere = tmp_path / "elsewhere" / "step_0000009"
    shutil.copytree(run / "checkpoints" / "step_0000001", elsewhere)
    rewrite(elsewhere / "model.safetensors", {"run_config": "{not json"})  # would fail if it were used
    (run / "checkpoints" / "latest").write_text("../../elsewhere/step_0000009\n")
    code = main(["apply", "--model", str(run), "--device", "cpu", str(photos), str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err  # the tampered checkpoint elsewhere would have failed
    reliability.bad_input(
        "`latest` pointer naming a path outside the run",
        "`translate apply --model RUN`",
        "ignored; the newest complete checkpoint of the run was used",
    )


# ---------------------------------------------------------------------------- generator files


def generator_file(path: Path, net: dict | str, tensors: Callable[[dict], dict] | None = None) -> Path:
    from translate.nets import build_generator

    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    values = {k: v.contiguous() for k, v in build_generator(cfg).state_dict().items()}
    text = net if isinstance(net, str) else json.dumps({**to_dict(cfg), **net})
    save_file(tensors(values) if tensors else values, str(path), metadata={"format": "translate.generator", "version": "1", "net_config": text})
    return path


SIZE_BUG = ""  # fixed: channel counts are bounded and shapes checked on the meta device first

GENERATOR_CASES = {
    "generator named 'os.system'": ({"generator": "os.system"}, ["os.system"], NAMING_BUG),
    "generator named 'translate.nets.generators.ResnetGenerator'": (
        {"generator": "translate.nets.generators.ResnetGenerator"},
        ["unknown generator"],
        NAMING_BUG,
    ),
    "extra key '__class__'": ({"__class__": "os.system"}, ["unknown key"], NAMING_BUG),
    "norm \"__import__('os')\"": ({"norm": "__import__('os')"}, ["norm"], NAMING_BUG),
    "net_config that is a list": ("[1, 2]", ["expected a mapping"], NAMING_BUG),
    # 10**13 channels: petabytes, more than any address space, so even a kernel that overcommits
    # memory refuses the allocation at once (a value that fits in RAM would be a real risk here)
    "in_channels = 10**13": ({"in_channels": 10**13}, ["in_channels"], SIZE_BUG),
    "base_channels_g = 10**13": ({"base_channels_g": 10**13}, ["base_channels_g"], SIZE_BUG),
}


@pytest.mark.parametrize("case", list(GENERATOR_CASES))
def test_generator_metadata_cannot_choose_code_or_memory(case, photos, tmp_path, capsys, request, reliability) -> None:
    net, words, bug = GENERATOR_CASES[case]
    if bug:
        request.applymarker(pytest.mark.xfail(strict=True, reason=bug))
    path = generator_file(tmp_path / "g.safetensors", net)
    try:
        code = main(["apply", "--model", str(path), "--device", "cpu", str(photos), str(tmp_path / "out")])
        line = one_error_line(capsys.readouterr().err)
    except BaseException:
        reliability.bad_input(f"generator file: {case}", "`translate apply`", "must be refused with one line naming the file")
        raise
    reliability.bad_input(f"generator file: {case}", "`translate apply`", "refused: " + line.split(": ", 2)[-1])
    assert code == 2 and any(word in line for word in words), line
    assert str(path) in line, f"the message does not name the file: {line}"


# ---------------------------------------------------------------------------- source audit

FORBIDDEN = {
    r"\bpickle\.(load|loads|Unpickler)\b": "unpickling runs code",
    r"\b(import|from)\s+(dill|cloudpickle|joblib|shelve|marshal)\b": "pickle-like loaders run code",
    r"(?<![\w.])(eval|exec|compile)\(": "evaluating strings",
    r"__import__\(": "imports chosen at run time",
    r"\byaml\.(load|unsafe_load|full_load)\(": "YAML loaders that build objects (use yaml.safe_load)",
    r"\ballow_pickle\s*=\s*True": "numpy pickles",
    r"\bos\.system\(|shell\s*=\s*True": "shell commands",
}
# a reviewed use: export reads back the TorchScript file it has just written, to check it
ALLOWED = {("infer/export.py", "torch.jit.load(")}


def test_package_source_has_no_code_loading(reliability) -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        code_lines = [(i, line) for i, line in enumerate(source.splitlines(), 1) if not line.lstrip().startswith("#")]
        for number, line in code_lines:
            for pattern, why in FORBIDDEN.items():
                if re.search(pattern, line) and not _in_docstring(source, number):
                    problems.append(f"{rel}:{number}: {why}: {line.strip()}")
            if "torch.jit.load(" in line and (rel, "torch.jit.load(") not in ALLOWED:
                problems.append(f"{rel}:{number}: torch.jit.load runs TorchScript from the file: {line.strip()}")
            if re.search(r"\bpickle\.\w+", line) and not re.search(r"\bpickle\.UnpicklingError\b", line):
                problems.append(f"{rel}:{number}: pickle used for more than its error type: {line.strip()}")
        # every torch.load call must pass weights_only=True
        for match in re.finditer(r"torch\.load\(", source):
            call = source[match.start() : source.find(")", match.start()) + 1]
            if not _in_docstring(source, source.count("\n", 0, match.start()) + 1) and "weights_only=True" not in call:
                problems.append(f"{rel}: torch.load without weights_only=True: {call}")
    assert not problems, "\n".join(problems)
    reliability.bad_input(
        "source audit: pickle.load, torch.load without weights_only=True, eval/exec, __import__, yaml.load, allow_pickle, shell",
        "`translate/**/*.py`",
        "none found",
    )


def _in_docstring(source: str, line_number: int) -> bool:
    """Whether line ``line_number`` (1-based) lies inside a triple-quoted string."""
    before = "\n".join(source.splitlines()[: line_number - 1])
    return (before.count('"""') + before.count("'''")) % 2 == 1

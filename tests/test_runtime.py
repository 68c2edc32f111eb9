"""Hardware checks and the knobs built on them: emulated bf16 is called out once, --threads,
--memory-budget."""

from __future__ import annotations

import argparse
import logging
import os

import pytest
import torch

from translate import runtime
from translate.cli import main
from translate.commands.common import load_translator
from translate.config import DEFAULT_MEMORY_BUDGET_MB
from translate.runtime import autocast_dtype


@pytest.fixture()
def flags(monkeypatch):
    """Pretend the CPU has the given feature flags."""

    def set_flags(*names: str) -> None:
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(names))
        runtime.warn_emulated_bf16.cache_clear()

    yield set_flags
    runtime.warn_emulated_bf16.cache_clear()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="no /proc/cpuinfo on this OS")
def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = runtime.cpu_flags()
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        text = fh.read()
    assert flags  # x86 "flags" or Arm "Features"
    assert all(flag in text for flag in flags)


def test_bf16_on_a_cpu_without_native_bf16_warns_once(flags, caplog):
    flags("avx512f", "avx2")
    assert not runtime.cpu_native_bf16() and not runtime.native_bf16("cpu")
    with caplog.at_level(logging.WARNING, logger="translate.runtime"):
        for _ in range(3):  # the Translator asks for every batch: one line, not one per batch
            assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    warnings = [r.getMessage() for r in caplog.records if r.name == "translate.runtime"]
    assert len(warnings) == 1 and "--precision fp32 is likely faster here" in warnings[0]


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16", "bf16"])  # x86, x86, Arm
def test_bf16_on_a_cpu_with_native_bf16_is_silent(flags, caplog, flag):
    flags("avx512f", flag)
    assert runtime.cpu_native_bf16() and runtime.native_bf16("cpu")
    with caplog.at_level(logging.WARNING, logger="translate.runtime"):
        assert autocast_dtype("bf16", torch.device("cpu")) == torch.bfloat16
        assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert not [r for r in caplog.records if r.name == "translate.runtime"]


def test_threads_option_sets_pytorch_threads_and_refuses_zero(capsys):
    before = torch.get_num_threads()
    try:
        runtime.set_threads(1)
        assert torch.get_num_threads() == 1
        runtime.set_threads(None)  # leaves the setting alone
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["export", "--threads", "0", "--model", "nowhere.safetensors", "out.onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads 0: must be at least 1" in err


def test_memory_budget_reaches_the_translator_and_is_checked(tiny_generator_factory, tmp_path, capsys):
    model = tiny_generator_factory("resnet_6blocks", base_channels=4)
    args = argparse.Namespace(
        model=str(model), direction="AtoB", device="cpu", precision="fp32", arch=None, batch_size=1, tile=None, overlap=32, memory_budget=None
    )
    assert load_translator(args).memory_budget_mb == DEFAULT_MEMORY_BUDGET_MB
    args.memory_budget = 300
    assert load_translator(args).memory_budget_mb == 300
    image = tmp_path / "in.png"
    image.write_bytes(b"")  # never read: the flag is refused first
    assert main(["apply", "--model", str(model), "--memory-budget", "10", str(image), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--memory-budget 10: too small" in err
    assert not (tmp_path / "out.png").exists()


def _thp_mode() -> str | None:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8").read()
    except OSError:
        return None
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else None


def _anon_huge_kb(env: dict[str, str]) -> int:
    """AnonHugePages of a fresh interpreter that imports the CLI, then torch, and fills 64 MB."""
    import subprocess
    import sys

    code = (
        "import translate.cli, torch\n"
        "x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1)\n"
        "print([l for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')][0].split()[1])"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(
    _thp_mode() not in ("always", "madvise") or not os.path.exists("/proc/self/smaps_rollup"), reason="no transparent huge pages on this kernel"
)
def test_the_cli_gives_large_tensors_huge_pages_unless_the_user_says_no():
    assert _anon_huge_kb({}) >= 32 * 1024  # most of the 64 MB tensor sits in 2 MB pages
    if _thp_mode() == "madvise":  # "always" gives huge pages whatever the allocator asks
        assert _anon_huge_kb({"THP_MEM_ALLOC_ENABLE": "0"}) == 0


def test_prefer_huge_pages_keeps_a_value_the_user_set(monkeypatch):
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    runtime.prefer_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    runtime.prefer_huge_pages()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"

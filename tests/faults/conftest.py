"""Fixtures for the fault-injection tests, and the recorder behind ``docs/RELIABILITY.md``.

Every test records what it injected and what it checked through the ``reliability`` fixture.
A record counts as survived / handled only if its test passed. Normal runs write nothing; with
``TRANSLATE_WRITE_RELIABILITY=docs/RELIABILITY.md python -m pytest tests/faults`` the session
ends by writing the table to that path (relative to the current directory).
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.faults.launcher import Zygote

WRITE_ENV = "TRANSLATE_WRITE_RELIABILITY"

# tiny networks and images: a CPU step takes tens of milliseconds
TINY = [
    "--set", "net.generator=resnet_6blocks", "--set", "net.base_channels_g=4", "--set", "net.base_channels_d=4",
    "--load-size", "36", "--crop-size", "32", "--set", "train.sample_every=0", "--set", "train.log_every=1",
    "--device", "cpu",
]

TARGET = 6  # steps of the training runs that are compared with a never-stopped reference
SEED = 7


def train_args(data: Path, run: Path, steps: int = TARGET, *extra: str) -> list[str]:
    """``translate train`` arguments for a tiny run that checkpoints every step."""
    return ["train", "--data", str(data), "--out", str(run), "--steps", str(steps), "--save-every", "1",
            "--seed", str(SEED), *TINY, *extra]


def metrics_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def one_error_line(err: str) -> str:
    """The single ``error:`` line of a failed command (and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------- the record


@dataclass
class _Entry:
    test: str
    table: str  # "fault" | "input"
    what: str  # the fault injected or the input tried
    where: str  # the command or component it hit
    outcome: str  # what the toolkit did
    checkpoints_lost: int = 0
    count: int = 1  # faults or inputs this row stands for (e.g. ten SIGKILLs)


@dataclass
class _Session:
    entries: list[_Entry] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # nodeid -> passed | failed | xfailed | skipped
    xfail_reasons: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


SESSION = _Session()


class Recorder:
    """What one test injected and checked; see the module docstring."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def fault(self, what: str, where: str, outcome: str, *, checkpoints_lost: int = 0, count: int = 1) -> None:
        """A fault injected into a run (signal, kill, full disk, NaN …) and how the run came through."""
        SESSION.entries.append(_Entry(self.nodeid, "fault", what, where, outcome, checkpoints_lost, count))

    def bad_input(self, what: str, where: str, outcome: str, *, count: int = 1) -> None:
        """A bad or unusual input tried, and how it was handled."""
        SESSION.entries.append(_Entry(self.nodeid, "input", what, where, outcome, 0, count))


@pytest.fixture()
def reliability(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith("tests/faults/") and "/faults/" not in report.nodeid:
        return
    if hasattr(report, "wasxfail"):
        SESSION.outcomes[report.nodeid] = "xpassed" if report.passed else "xfailed"
        SESSION.xfail_reasons[report.nodeid] = report.wasxfail
    elif report.failed:
        SESSION.outcomes[report.nodeid] = "failed"
    elif report.when == "call" and report.passed:
        SESSION.outcomes.setdefault(report.nodeid, "passed")
    elif report.skipped:
        SESSION.outcomes[report.nodeid] = "skipped"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for zygote in _ZYGOTE:  # started at collection but never used (e.g. tests deselected)
        zygote.close()
    target = os.environ.get(WRITE_ENV)
    if target and SESSION.outcomes:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(render(SESSION), encoding="utf-8")


_TMP_PREFIX = re.compile(r"\S*/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+/")


def _cell(text: str, limit: int = 120) -> str:
    """One table cell: temporary paths made relative, cut at a word boundary, pipes escaped."""
    text = _TMP_PREFIX.sub("", text).replace("\n", " ")
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"
    return text.replace("|", "\\|")


def render(s: _Session) -> str:
    """The reliability table as Markdown."""
    passed = lambda e: s.outcomes.get(e.test) == "passed"  # noqa: E731
    faults = [e for e in s.entries if e.table == "fault"]
    inputs = [e for e in s.entries if e.table == "input"]
    counts = defaultdict(int)
    for outcome in s.outcomes.values():
        counts[outcome] += 1
    lost = sum(e.checkpoints_lost for e in faults)
    lines = [
        "# Reliability",
        "",
        "Generated by `TRANSLATE_WRITE_RELIABILITY=docs/RELIABILITY.md python -m pytest tests/faults`;",
        "do not edit by hand. Each row is a fault injected into a real run, or a bad input given to a",
        "real command, by the tests in `tests/faults/`; a row counts as survived / handled only if",
        "the test that made it passed (every assertion about exit code, message, files on disk).",
        "",
        "## Summary",
        "",
        "| | count |",
        "|---|---|",
        f"| faults injected | {sum(e.count for e in faults)} |",
        f"| faults survived | {sum(e.count for e in faults if passed(e))} |",
        f"| bad inputs tried | {sum(e.count for e in inputs)} |",
        f"| bad inputs handled | {sum(e.count for e in inputs if passed(e))} |",
        f"| checkpoints lost | {lost} |",
        f"| tests passed / failed / known bugs (xfail) | {counts['passed']} / {counts['failed'] + counts['xpassed']} / {counts['xfailed']} |",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}; tests/faults took {time.monotonic() - s.started:.0f} s.",
        "",
        "## What is guaranteed",
        "",
        "- **SIGINT / SIGTERM during training**: the step in progress finishes, a checkpoint of that step is",
        "  written, the process exits 130 / 143 and says `continue with: translate train --resume RUN`;",
        "  the resumed run ends with weights bit-identical to a run that was never stopped (CPU).",
        "- **SIGKILL at any moment** (including mid-checkpoint): a checkpoint directory appears under its",
        "  final name `step_…` only when complete; `.tmp-…` folders are never taken for checkpoints and are",
        "  removed by the next save; `--resume` continues exactly (bit-identical final weights).",
        "- **Full disk / unwritable run**: the save fails with one `error:` line (exit 2), the previous",
        "  checkpoint stays intact and loadable, and training does not go on without checkpoints.",
        "- **Non-finite losses**: the update is skipped and logged in `metrics.jsonl` with its step; after",
        "  10 consecutive ones training stops with a clear message. No checkpoint holds non-finite weights.",
        "- **`translate apply` killed**: an output exists under its final name only when complete; a",
        "  re-run skips finished outputs and redoes the rest. Unreadable inputs are reported one line",
        "  each (file, reason, fix), the others are translated, and the exit status is 1.",
        "- **Training data**: unreadable files are skipped with one warning each (file and reason); layout",
        "  errors (unmatched pairs, sizes, empty domain) stop training before it starts (exit 2).",
        "- **Untrusted model files**: weights are read from safetensors or `torch.load(weights_only=True)`;",
        "  a pickle that carries code is refused and never executed; metadata is JSON, validated against",
        "  the typed configs, and cannot name modules, imports or paths. Inputs are never modified.",
        "",
        "Where a guarantee does not hold yet, its row says *no (known bug)* and the bug, with the",
        "file to fix and the proposed fix, is listed at the end; those tests are `xfail(strict=True)`,",
        "so they fail the suite as soon as the bug is fixed, to be turned into ordinary tests.",
        "",
    ]
    for title, rows, verb in (("Faults injected", faults, "survived"), ("Bad inputs tried", inputs, "handled")):
        lines += [f"## {title}", "", f"| # | {'fault' if rows is faults else 'input'} | where | outcome | {verb} |", "|---|---|---|---|---|"]
        for i, e in enumerate(rows, 1):
            state = {"passed": "yes", "xfailed": "no (known bug)"}.get(s.outcomes.get(e.test, ""), "NO")
            lines.append(f"| {i} | {_cell(e.what)} | {_cell(e.where)} | {_cell(e.outcome)} | {state} |")
        lines.append("")
    lines += ["## Known bugs (tests marked xfail, strict)", ""]
    by_reason: dict[str, list[str]] = defaultdict(list)
    for nodeid, reason in sorted(s.xfail_reasons.items()):
        by_reason[reason].append(nodeid.split("::", 1)[-1])
    for reason, tests in by_reason.items():
        lines.append(f"- {_cell(reason, 10_000)}  ")
        lines.append(f"  tests: {', '.join(f'`{t}`' for t in tests)}")
    if not by_reason:
        lines.append("None.")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # The tiny networks gain nothing from a second thread, and on a loaded 2-core machine
    # OpenMP's spin-waiting makes two threads ten times slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_ZYGOTE: list[Zygote] = []


def _start_zygote(folder: Path) -> Zygote:
    if not _ZYGOTE:
        folder.mkdir(parents=True, exist_ok=True)
        _ZYGOTE.append(Zygote(folder))
    return _ZYGOTE[0]


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Start importing in the zygote now, so it is ready by the time a test needs it.
    if any("zygote" in getattr(item, "fixturenames", ()) for item in items):
        base = Path(config._tmp_path_factory.getbasetemp()) if hasattr(config, "_tmp_path_factory") else None
        if base is not None:
            _start_zygote(base / "zygote-logs")


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory):
    """A :class:`~tests.faults.launcher.Zygote` shared by the session (started at collection)."""
    z = _start_zygote(tmp_path_factory.getbasetemp() / "zygote-logs")
    yield z
    z.close()
    _ZYGOTE.clear()


@pytest.fixture(scope="session")
def tiny_unpaired(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from translate.data.samples import make_sample_dataset

    return make_sample_dataset(tmp_path_factory.mktemp("unpaired"), "unpaired", size=40, count=5)


@pytest.fixture(scope="session")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``resnet_6blocks`` (ngf 4) generator file."""
    from translate.config import NetConfig
    from translate.nets import build_generator
    from translate.formats import save_generator

    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "gen.safetensors"
    save_generator(path, build_generator(cfg), cfg)
    return path

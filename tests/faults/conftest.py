"""Fixtures for the fault-injection tests, and the recorder behind ``docs/RELIABILITY.md``.

Every test records what it injected and what it checked through the ``reliability`` fixture.
A record counts as survived / handled only if its test passed. Normal runs write nothing; with
``TRANSLATE_RELIABILITY_JSON=PATH`` the session ends by writing the records and the tests'
outcomes to PATH as JSON, from which ``python scripts/reliability.py`` (which sets it) writes
``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
import torch

from tests.faults.launcher import Zygote

RECORD_ENV = "TRANSLATE_RELIABILITY_JSON"

# tiny networks and images: a CPU step takes tens of milliseconds
TINY = [
    "--set",
    "net.generator=resnet_6blocks",
    "--set",
    "net.base_channels_g=4",
    "--set",
    "net.base_channels_d=4",
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--set",
    "train.sample_every=0",
    "--set",
    "train.log_every=1",
    "--device",
    "cpu",
]

TARGET = 6  # steps of the training runs that are compared with a never-stopped reference
SEED = 7


def train_args(data: Path, run: Path, steps: int = TARGET, *extra: str) -> list[str]:
    """``translate train`` arguments for a tiny run that checkpoints every step."""
    return ["train", "--data", str(data), "--out", str(run), "--steps", str(steps), "--save-every", "1", "--seed", str(SEED), *TINY, *extra]


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
    target = os.environ.get(RECORD_ENV)
    if target and SESSION.outcomes:  # only on request (scripts/reliability.py): a test run writes nothing
        record = {
            "entries": [asdict(e) for e in SESSION.entries],
            "outcomes": SESSION.outcomes,
            "xfail_reasons": SESSION.xfail_reasons,
            "seconds": time.monotonic() - SESSION.started,
        }
        Path(target).write_text(json.dumps(record, indent=1), encoding="utf-8")


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
    from translate.formats import save_generator
    from translate.nets import build_generator

    cfg = NetConfig(generator="resnet_6blocks", base_channels_g=4)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "gen.safetensors"
    save_generator(path, build_generator(cfg), cfg)
    return path

"""Start real ``translate`` processes in milliseconds, so fault tests can kill many of them.

``python -m translate`` spends seconds importing torch, albumentations and torch._dynamo (which
``torch.optim.Adam`` pulls in) before it does anything; ten SIGKILL trials would spend most of
their time importing. A *zygote* process imports all of that once, then ``os.fork()``s one child
per command. Each child is a real, separate OS process that runs ``translate.cli.main(argv)``
exactly as ``python -m translate`` does (same signal handlers, exit code, stdout/stderr in
files), so SIGINT, SIGTERM and SIGKILL hit it as they would hit the CLI. The zygote never runs a
tensor operation before forking (no thread pool to inherit).

Protocol (one JSON object per line on the zygote's stdin/stdout):
    {"spawn": [argv...], "stdout": path, "stderr": path, "cwd": path} → {"pid": N}
    {"wait": N, "timeout": seconds} → {"status": code or -signal or null, "maxrss_kb": K}
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- zygote side


def _child(request: dict) -> None:
    """In the forked child: redirect output, run the CLI, exit with its code (never returns)."""
    code = 1
    try:
        for fd, key in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.chdir(request["cwd"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from translate.cli import main

        code = main(list(request["spawn"]))
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - the traceback goes to the child's stderr file
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import torch

    import translate.cli  # noqa: F401
    import translate.commands.apply  # noqa: F401
    import translate.commands.train  # noqa: F401
    import translate.commands.video  # noqa: F401
    import translate.infer.folder  # noqa: F401
    import translate.infer.translator  # noqa: F401
    import translate.infer.video  # noqa: F401
    import translate.train.loop  # noqa: F401

    # Adam's constructor imports torch._dynamo (seconds); pay it here, before any fork.
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    out = sys.stdout
    try:
        out.write(json.dumps({"ready": os.getpid()}) + "\n")
        out.flush()
    except BrokenPipeError:  # the test session ended before it needed us
        return
    for line in sys.stdin:
        request = json.loads(line)
        if "spawn" in request:
            pid = os.fork()
            if pid == 0:
                _child(request)
            reply: dict = {"pid": pid}
        elif "wait" in request:
            reply = _wait(int(request["wait"]), float(request.get("timeout", 60)))
        else:
            reply = {"error": f"unknown request {request!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            return {"status": code, "maxrss_kb": usage.ru_maxrss}
        if time.monotonic() > deadline:
            return {"status": None}
        time.sleep(0.005)


# ---------------------------------------------------------------------------- test side


@dataclass
class Child:
    """A ``translate`` process started by the zygote."""

    pid: int
    stdout: Path
    stderr: Path
    started: float
    status: int | None = None
    maxrss_kb: int = 0

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def out(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        try:
            with open(f"/proc/{self.pid}/stat") as fh:
                return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


class Zygote:
    """Client of :func:`serve`: ``spawn(argv)`` starts ``translate <argv>`` in a fresh process."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.count = 0
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.faults.launcher import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            env=env,
            text=True,
            bufsize=1,
        )
        self._ready = False

    def _ask(self, request: dict) -> dict:
        if not self._ready:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the zygote process died while importing translate")
            self._ready = True
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote process died")
        return json.loads(line)

    def spawn(self, argv: list[str], cwd: Path | None = None) -> Child:
        self.count += 1
        stdout = self.logs / f"child{self.count}.out"
        stderr = self.logs / f"child{self.count}.err"
        reply = self._ask({"spawn": [str(a) for a in argv], "stdout": str(stdout), "stderr": str(stderr), "cwd": str(cwd or REPO)})
        return Child(reply["pid"], stdout, stderr, time.monotonic())

    def wait(self, child: Child, timeout: float = 120) -> int:
        reply = self._ask({"wait": child.pid, "timeout": timeout})
        if reply["status"] is None:
            child.signal(signal.SIGKILL)
            reply = self._ask({"wait": child.pid, "timeout": 10})
            raise TimeoutError(f"translate {child.pid} ran over {timeout} s; stderr:\n{child.err()[-2000:]}")
        child.status, child.maxrss_kb = reply["status"], reply.get("maxrss_kb", 0)
        return child.status

    def run(self, argv: list[str], timeout: float = 120) -> Child:
        child = self.spawn(argv)
        self.wait(child, timeout)
        return child

    def close(self) -> None:
        if self.proc.poll() is None and not self._ready:  # still importing: nothing to finish
            self.proc.kill()
            self.proc.wait()
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

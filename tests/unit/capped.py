"""Running hostile input under a memory cap (MACHINE-FACTS: one runaway process takes the
machine down): a worker process that runs many cases under ``RLIMIT_AS``, and a helper that
runs the real ``kdiag`` command under one. Both report CPU time, wall time and peak RSS."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CAP = 1 << 30
"""Address space of every process fed hostile input (virtual: more than the RSS it may use)."""


def _cap(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


@dataclass
class Measured:
    """What one case did: the reply's fields, and how long and how large it was."""

    reply: dict[str, Any]
    cpu: float
    wall: float
    rss_kb: int

    def __getitem__(self, key: str) -> Any:
        return self.reply[key]


class Worker:
    """``tests.unit.hostile_worker`` under a memory cap; :meth:`ask` runs one case in it."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = cap
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.unit.hostile_worker"], cwd=ROOT, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_cap(self.cap))
        return self.proc

    def ask(self, request: dict[str, Any], timeout: float = 60.0) -> Measured:
        """Run one case; a worker that dies (or hangs past ``timeout``) fails the case."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = _readline(proc, timeout)
        if not line:
            code = proc.wait(5)
            self.proc = None
            raise AssertionError(f"the worker died (exit {code}) on {str(request)[:300]}")
        reply = json.loads(line)
        return Measured(reply, reply.pop("_cpu"), reply.pop("_wall"), reply.pop("_rss_kb"))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        proc.wait()
        raise AssertionError(f"a case took more than {timeout} s")
    return proc.stdout.readline()


@dataclass
class Completed:
    """A finished ``kdiag`` process: exit code, output, CPU and wall time, peak RSS."""

    code: int
    stdout: str
    stderr: str
    cpu: float
    wall: float
    rss_kb: int


_SPAWN = """
import json, os, resource, sys
out, cap, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *argv])
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as handle:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, handle)
"""
"""Runs a command as the child of a fresh, small interpreter and writes its exit code and
resource use: the kernel counts a process's peak RSS from before its exec too, so a child
forked straight from the test process (hundreds of MB by the end of a suite) would report
the test's size, not its own."""


def run_kdiag(*args: str, cap: int = CAP, timeout: float = 60.0,
              env: dict[str, str] | None = None) -> Completed:
    """Run ``python -m kdiag ARGS`` under the memory cap; its CPU time and peak RSS from
    wait4 (through :data:`_SPAWN`)."""
    with tempfile.TemporaryDirectory() as folder:
        usage = Path(folder) / "usage.json"
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-c", _SPAWN, str(usage), str(cap), "-m",
                                   "kdiag", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout, env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kdiag {' '.join(args)[:200]} ran over {timeout} s") from None
        wall = time.monotonic() - started
        assert done.returncode == 0, done.stderr  # the helper's own, not kdiag's
        figures = json.loads(usage.read_text())
        return Completed(figures["code"], done.stdout, done.stderr, figures["cpu"], wall,
                         figures["maxrss"])

"""The manager's ``--exit-when-idle`` (what ends an expose pod whose client is gone), with the
real manager in a network namespace of its own and real nftables: it stays while a redirect
runs, however long, and exits (status 0, its rules gone with it) that long after the last one
ended — and that long after its start when none ever came."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdiag.session.client import ManagerClient
from kdiag.session.results import RedirectSpec

TOKEN = "idle-test-token"
IDLE = 1.5


def _manager(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    sock = tmp_path / "m.sock"
    env = {**os.environ, "KDIAG_TOKEN": TOKEN}
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
         "-m", "kdiag_manager", "--listen", f"unix:{sock}", "--exit-when-idle", str(IDLE)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())["kdiag_manager"]
    return proc, str(first["address"])


def test_no_redirect_ever_then_it_exits(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, _ = _manager(tmp_path)
    # Its idle time counts from its start (the line saying where it listens): Python's own
    # start before that, seconds on a busy machine, is not part of it.
    ready = time.monotonic()
    assert proc.wait(timeout=15) == 0
    ended = time.monotonic()
    assert ended - started >= IDLE, ended - started
    assert ended - ready < IDLE + 5, (ended - ready, ready - started)


def test_it_stays_while_a_redirect_runs_and_exits_after_it_ended(tmp_path: Path) -> None:
    proc, address = _manager(tmp_path)
    client = ManagerClient.connect(address, TOKEN)
    try:
        handle = client.redirect(RedirectSpec("incoming", (8080,), fail_open=False),
                                 ("127.0.0.1", 9))
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3 * IDLE)  # alive well past the idle time
        ended = time.monotonic()
        handle.close()
        assert proc.wait(timeout=15) == 0
        took = time.monotonic() - ended
        assert IDLE - 0.1 <= took < IDLE + 5, took
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()

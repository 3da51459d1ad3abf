"""``scripts/apt-get.sh`` (what ``cluster/deps.sh`` and ``make system-deps`` install with) waits
while another process holds an apt/dpkg lock, says who holds it, and gives up after
``KDIAG_APT_LOCK_TIMEOUT`` seconds with a message (issue 18: it failed at once). A real fcntl
lock held by another process, read from /proc/locks by the real script; the lock file is a
private one (``KDIAG_APT_LOCKS``) so the machine's package manager is never blocked, and
apt-get is only asked ``--version``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.lockf(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(float(sys.argv[2]))")

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get here")


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock-frontend"
    path.touch()
    return path


def _hold(lock: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def _apt_get(lock: Path, timeout: int) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "apt-get.sh"), "--version"],
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                               "KDIAG_APT_LOCKS": str(lock),
                               "KDIAG_APT_LOCK_TIMEOUT": str(timeout)},
                          capture_output=True, text=True, timeout=60, check=False)
    return proc, time.monotonic() - began


def test_gives_up_after_the_limit_naming_the_holder(
        lock: Path, holders: list[subprocess.Popen[str]]) -> None:
    holder = _hold(lock, 60)
    holders.append(holder)
    proc, took = _apt_get(lock, 2)
    assert proc.returncode == 100, proc.stderr
    lines = proc.stderr.splitlines()
    assert "waiting for another package manager to finish: it holds " \
        f"{lock} (pid {holder.pid}: {sys.executable} -c" in lines[0], lines
    assert "gave up after 2 s: another package manager still holds" in lines[-1], lines
    assert "(KDIAG_APT_LOCK_TIMEOUT=2)" in lines[-1], lines
    assert 2 <= took < 10
    assert proc.stdout == ""  # apt-get did not run


def test_runs_once_the_lock_is_free(lock: Path, holders: list[subprocess.Popen[str]]) -> None:
    holders.append(_hold(lock, 1.5))
    proc, took = _apt_get(lock, 30)
    assert proc.returncode == 0, proc.stderr
    assert "waiting for another package manager to finish" in proc.stderr
    assert proc.stdout.startswith("apt "), proc.stdout[:200]
    assert took >= 1


def test_a_free_lock_is_not_waited_for(lock: Path) -> None:
    proc, _ = _apt_get(lock, 30)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("apt ")

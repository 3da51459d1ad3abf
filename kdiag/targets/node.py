"""Node target: a process on this Linux host, debugged through a local manager.

The manager runs as a subprocess in the host's PID and mount namespaces but joins the target's
network namespace (so it listens and installs its rules there), and serves gRPC on a unix
socket in a private temporary folder (``$TMPDIR/kdiag-node-*``). It exits — removing its rules
and that folder — when this process closes the session, dies (stdin EOF), or sends SIGTERM.
The folder holds ``owners``: the PIDs (and start times) of this process and the manager; the
next node session removes folders whose owners are all gone (both were killed with ``-9``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kdiag.errors import ManagerError, TargetError
from kdiag.lifeline import Lifeline
from kdiag.ownedfolders import remove_stale, write_owners

from .base import Target, TargetSession

log = logging.getLogger(__name__)

START_TIMEOUT = 20.0
WORKDIR_PREFIX = "kdiag-node-"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class NodeSession(TargetSession):
    """A running local manager and a client connected to it."""

    def __init__(self, target: NodeTarget, proc: subprocess.Popen[bytes], workdir: str,
                 manager: Any, first: dict[str, Any], session: str) -> None:
        self.target = target
        self.proc = proc
        self.workdir = workdir
        self.manager = manager
        self.session = session
        self.address = first["address"]
        self.info = {"kind": "node", "pid": target.pid, "comm": _comm(target.pid),
                     "manager_pid": first.get("pid"), "session": session,
                     "address": self.address}
        self._closed = False
        self.leftover_rules: list[str] = []

    def summary(self) -> str:
        """``node process PID (comm), manager pid N``."""
        return (f"node process {self.info['pid']} ({self.info['comm']}), manager pid "
                f"{self.info['manager_pid']}")

    def _start_watching(self, lifeline: Lifeline) -> None:
        """Supervision hook: the target process and the manager (see nodewatch.py)."""
        from .nodewatch import watch_node

        watch_node(self.target.pid, str(self.info["comm"]), self.proc, lifeline)

    def close(self) -> None:
        """Stop the manager (stdin EOF, then SIGTERM, then SIGKILL) and make sure no tagged rule
        of this session is left in the target's network namespace."""
        if self._closed:
            return
        self._closed = True
        try:
            self.manager.close()
        finally:
            _stop(self.proc)
            self.leftover_rules = _cleanup(self.target.pid, self.session)
            if self.leftover_rules:
                log.warning("removed %d rule(s) the manager left behind",
                            len(self.leftover_rules))
            shutil.rmtree(self.workdir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the manager exits on stdin EOF
    try:
        proc.wait(3)
        return
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def remove_stale_workdirs(folder: str | None = None) -> list[str]:
    """Remove the node session folders in ``folder`` (default: the temp folder) that no live
    process owns any more — left when the CLI and its manager were both killed; return them."""
    return remove_stale(WORKDIR_PREFIX, folder)


def _manager_command(pid: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "kdiag_manager", "--target-pid", str(pid), "--join-netns",
            *extra]


def _cleanup(pid: int, session: str) -> list[str]:
    """Remove this session's rules (and stale ones) in the target's netns; return them."""
    if not os.path.exists(f"/proc/{pid}/ns/net"):
        return []  # the target (and its network namespace, unless shared) is gone
    try:
        out = subprocess.run(_manager_command(pid, ["--cleanup-only", "--session", session]),
                             capture_output=True, text=True, timeout=30, check=False)
        first = json.loads(out.stdout.splitlines()[0]) if out.stdout else {}
        return list(first.get("kdiag_manager", {}).get("removed", []))
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        log.warning("could not verify that no rules are left: %s", exc)
        return []


class NodeTarget(Target):
    """A process on this host, by PID. Needs root (namespaces, iptables)."""

    def __init__(self, pid: int, *, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.pid = pid
        self.extra_args = extra_args or []
        self.env = env or {}

    def describe(self) -> str:
        """E.g. ``node process 1234 (nginx)``."""
        return f"node process {self.pid} ({_comm(self.pid)})"

    def check(self) -> None:
        """Raise TargetError unless we are root and the PID exists."""
        if os.geteuid() != 0:
            raise TargetError(f"node target PID {self.pid}: kdiag must run as root "
                              "(it joins the process's namespaces and changes its iptables)")
        if self.pid <= 0 or not os.path.exists(f"/proc/{self.pid}/ns/net"):
            raise TargetError(f"node target: no process with PID {self.pid}")

    def open(self) -> NodeSession:
        """Start the manager in the target's network namespace and connect to it."""
        self.check()
        from kdiag.session.client import ManagerClient

        for stale in remove_stale_workdirs():
            log.info("removed %s, left by a node session whose processes are gone", stale)
        workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)  # mode 0700
        write_owners(workdir, [os.getpid()])
        sock = os.path.join(workdir, "manager.sock")
        token = secrets.token_urlsafe(32)
        session = "node-" + secrets.token_hex(5)
        env = {**os.environ, **self.env, "KDIAG_TOKEN": token}
        cmd = _manager_command(self.pid, ["--listen", f"unix:{sock}", "--exit-on-stdin-eof",
                                          "--session", session, "--remove-on-exit", workdir,
                                          *self.extra_args])
        log_path = os.path.join(workdir, "manager.log")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log_file, env=env, start_new_session=True)
        try:
            write_owners(workdir, [os.getpid(), proc.pid])
            first = _read_first_line(proc, log_path)
            manager = ManagerClient.connect(f"unix:{sock}", token)
            if first.get("lane"):
                manager.open_lane(str(first["lane"]))
        except (TargetError, ManagerError) as exc:
            _stop(proc)
            shutil.rmtree(workdir, ignore_errors=True)
            if isinstance(exc, TargetError):
                raise
            raise TargetError(f"node target PID {self.pid}: {exc}") from None
        return NodeSession(self, proc, workdir, manager, first, session)


def _read_first_line(proc: subprocess.Popen[bytes], log_path: str) -> dict[str, Any]:
    """The manager's machine-readable first line (TargetError with its cause otherwise)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    fd = proc.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            raise TargetError(f"the manager did not start within {START_TIMEOUT:g}s")
        data = os.read(fd, 4096)
        if not data:
            break
        buf += data
    line = buf.split(b"\n", 1)[0]
    try:
        first = json.loads(line)["kdiag_manager"]
    except (ValueError, KeyError, TypeError):
        try:
            tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-1:] or [""]
        except OSError:
            tail = [""]
        raise TargetError(f"the manager failed to start: {tail[0] or 'no output'}") from None
    if "error" in first:
        raise TargetError(f"the manager failed to start: {first['error']}")
    return dict(first)

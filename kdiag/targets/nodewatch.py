"""Watching a node target: the target process and the local manager, without polling.

Both are waited on through pidfds (Linux 5.3+), which become readable when the process exits:
the target (not our child) exiting is ``target process 1234 (app) exited``; the manager (our
child) exiting before the session is closed is ``manager gone (process 4321 killed by
SIGKILL)``. Closing the session stops the manager, which ends the watch; by then nobody
listens any more.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading

from kdiag.lifeline import Lifeline, exit_status


def watch_node(pid: int, comm: str, manager: subprocess.Popen[bytes],
               lifeline: Lifeline) -> None:
    """Fail ``lifeline`` when process ``pid`` or the ``manager`` process exits."""
    try:
        target_fd = os.pidfd_open(pid)
    except OSError:  # already gone
        lifeline.fail(f"target process {pid} ({comm}) is gone")
        return
    try:
        manager_fd = os.pidfd_open(manager.pid)
    except OSError:
        os.close(target_fd)
        lifeline.fail(f"manager gone (process {manager.pid} {exit_status(manager.poll())})")
        return
    threading.Thread(target=_wait, args=(pid, comm, target_fd, manager, manager_fd, lifeline),
                     daemon=True, name=f"nodewatch-{pid}").start()


def _wait(pid: int, comm: str, target_fd: int, manager: subprocess.Popen[bytes],
          manager_fd: int, lifeline: Lifeline) -> None:
    poller = select.poll()
    poller.register(target_fd, select.POLLIN)
    poller.register(manager_fd, select.POLLIN)
    try:
        while True:  # until the manager exits (the session's close stops it at the latest)
            ready = {fd for fd, _ in poller.poll()}
            if target_fd in ready:
                poller.unregister(target_fd)
                lifeline.fail(f"target process {pid} ({comm}) exited")
            if manager_fd in ready:
                code = manager.poll()
                lifeline.fail(f"manager gone (process {manager.pid} {exit_status(code)})")
                return
    finally:
        for fd in (target_fd, manager_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

"""Starting a command with a private view of the files (see :mod:`.mountns`), or plainly.

The helper gets its plan through a memfd (the command's environment may hold secrets: it never
touches a disk or a command line) and reports a failure before the exec on a pipe that the exec
closes; :func:`start` waits for that, so a command that could not be set up fails here, with
the helper's line, instead of as an exit code later.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELPER = Path(__file__).with_name("mountns.py")
SETUP_TIMEOUT = 30.0
"""Seconds the helper may take to make its mounts (it makes a few hundred at most)."""


class LaunchError(Exception):
    """The command could not be started (one line saying why)."""


@dataclass
class Launch:
    """A command to start: its argv, environment, folder, and binds ``(source, target)``
    shown read-only at ``target`` in its own mount namespace (none: started plainly)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    binds: list[tuple[str, str]] = field(default_factory=list)
    userns: bool = False
    """Make the mount namespace inside a user namespace (kdiag is not root)."""
    newroot: str = ""
    """An empty folder of ours the helper may mount a tmpfs on (when ``/`` needs a shadow)."""


def _helper_argv(plan_fd: int, err_fd: int) -> list[str]:
    # -I: none of the command's PYTHON* variables reach the helper; -S: no site (faster).
    return [sys.executable, "-I", "-S", str(HELPER), str(plan_fd), str(err_fd)]


def _plan_fd(launch: Launch, probe: bool) -> int:
    plan = {"argv": launch.argv, "env": launch.env, "binds": launch.binds,
            "userns": launch.userns, "uid": os.getuid(), "gid": os.getgid(),
            "newroot": launch.newroot, "probe": probe}
    fd = os.memfd_create("kdiag-launch-plan", os.MFD_CLOEXEC)
    os.write(fd, json.dumps(plan).encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _wait_for_exec(err_read: int, process: subprocess.Popen[bytes]) -> str:
    """The helper's error line ('' once the command was exec'ed)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + SETUP_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([err_read], [], [], left)
        if not ready:
            continue
        data = os.read(err_read, 4096)
        if not data:
            return b"".join(chunks).decode(errors="replace").strip()
        chunks.append(data)
    process.kill()
    return f"the command's mounts were not ready within {SETUP_TIMEOUT:g}s"


def start(launch: Launch, *, stdin: Any = None, stdout: Any = None, stderr: Any = None,
          new_session: bool = True, probe: bool = False) -> subprocess.Popen[bytes]:
    """Start the command (LaunchError when it cannot be). Without binds it is started
    directly; with them, through the helper, which becomes the command."""
    if not launch.binds and not probe:
        return _popen(launch.argv, launch.env, launch.cwd, stdin, stdout, stderr, new_session)
    plan_fd = _plan_fd(launch, probe)
    err_read, err_write = os.pipe()
    try:
        process = _popen(_helper_argv(plan_fd, err_write), {}, launch.cwd, stdin,
                         stdout, stderr, new_session, pass_fds=(plan_fd, err_write))
    finally:
        os.close(plan_fd)
        os.close(err_write)
    try:
        problem = _wait_for_exec(err_read, process)
    finally:
        os.close(err_read)
    if problem:
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        raise LaunchError(problem)
    return process


def _popen(argv: list[str], env: dict[str, str], cwd: str | None, stdin: Any, stdout: Any,
           stderr: Any, new_session: bool, pass_fds: tuple[int, ...] = ()
           ) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout,
                                stderr=stderr, start_new_session=new_session,
                                pass_fds=pass_fds)
    except FileNotFoundError:
        if cwd is not None and not os.path.isdir(cwd):
            raise LaunchError(f"cwd is not a directory: {cwd}") from None
        raise LaunchError(f"command not found: {argv[0]}") from None
    except NotADirectoryError:
        raise LaunchError(f"cwd is not a directory: {cwd}") from None
    except PermissionError as exc:
        raise LaunchError(f"cannot run {argv[0]}: {exc.strerror}") from None

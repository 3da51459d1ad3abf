"""Exec: run an argv or a script in the target's namespaces and root through ``enter``.

Scripts run with busybox ``ash``, held by fd by ``enter``, so they work in images with no shell
or tools at all (Debian's busybox-static runs its applets without them being on disk). An argv
runs the target's own binary when it exists, else the busybox applet of that name.
The child gets its own process group: a timeout or a cancelled call kills the whole group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .config import Config
from .execoutput import Output
from .wire.api.v1 import manager_pb2 as pb

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(ValueError):
    """Invalid exec request (INVALID_ARGUMENT / FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class Command:
    """What to start: argv and environment."""

    argv: list[str]
    env: dict[str, str]


def target_environ(pid: int) -> dict[str, str]:
    """The environment the target process started with (/proc/PID/environ)."""
    from .environ import read_environ

    try:
        found = read_environ(pid)
    except OSError:
        return {}
    return {name.decode(errors="replace"): value.decode(errors="replace")
            for name, value in found}


def build_command(start: pb.ExecStart, config: Config) -> Command:
    """The ``enter`` command line and environment for ``start``."""
    if bool(start.argv) == bool(start.script):
        raise ExecError("give exactly one of argv or script")
    env: dict[str, str] = {}
    if start.host:
        if not config.node_mode:
            raise ExecError("host exec is only available in node mode")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KDIAG_")}
        # enter without -t stays on the host; it is still used for -T and -w.
        argv = [config.enter_path, "-R", *(["-T"] if start.tty else []),
                *(["-w", start.workdir] if start.workdir else []), "--",
                *(start.argv or ["/bin/sh", "-c", start.script])]
    else:
        pid = config.target()
        if pid is None:
            raise ExecError("no target process (start the manager with --target-pid)")
        if start.inherit_env:
            env = target_environ(pid)
        enter = [config.enter_path, "-t", str(pid)]
        if start.tty:
            enter.append("-T")
        if start.workdir:
            enter += ["-w", start.workdir]
        if start.argv:
            argv = [*enter, "-f", config.busybox_path, "--", *start.argv]
        else:
            argv = [*enter, "-b", config.busybox_path, "--", "ash", "-c", start.script]
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", "/root" if os.getuid() == 0 else "/")
    if start.tty:
        env.setdefault("TERM", "xterm")
    env.update(start.env)
    return Command(argv, env)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    if rows and cols:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Proc:
    """A started command and the bookkeeping to stop it."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin_fd: int | None, tty_fd: int | None):
        self.popen = popen
        self.stdin_fd = stdin_fd
        self.tty_fd = tty_fd
        self.timed_out = False

    def killpg(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


def _feed(requests: Iterator[pb.ExecRequest], proc: _Proc) -> None:
    """Client → process: stdin, eof, resize, signals."""
    try:
        for req in requests:
            kind = req.WhichOneof("msg")
            if kind == "stdin" and proc.stdin_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(proc.stdin_fd, req.stdin)
            elif kind == "stdin_eof" and proc.stdin_fd is not None:
                if proc.tty_fd is not None:
                    os.write(proc.stdin_fd, b"\x04")  # ^D on a terminal
                else:
                    os.close(proc.stdin_fd)
                    proc.stdin_fd = None
            elif kind == "resize" and proc.tty_fd is not None:
                _set_winsize(proc.tty_fd, req.resize.rows, req.resize.cols)
            elif kind == "signal":
                proc.killpg(req.signal)
    except Exception:  # the client went away: the RPC callback kills the group
        pass
    finally:
        if proc.stdin_fd is not None and proc.tty_fd is None:
            with contextlib.suppress(OSError):
                os.close(proc.stdin_fd)
            proc.stdin_fd = None


def run(start: pb.ExecStart, requests: Iterator[pb.ExecRequest], config: Config,
        context: Any) -> Iterator[pb.ExecResponse]:
    """Start the command and stream its output; the last response is ``exit``."""
    command = build_command(start, config)
    out = Output()
    began = time.monotonic()
    if start.tty:
        master, slave = os.openpty()
        _set_winsize(slave, start.rows, start.cols)
        popen = subprocess.Popen(command.argv, stdin=slave, stdout=slave, stderr=slave,
                                 env=command.env, start_new_session=True)
        # No preexec_fn (Python code between fork and exec is unsafe with gRPC's threads):
        # `enter -T` makes the pty its controlling terminal.
        os.close(slave)
        proc = _Proc(popen, os.dup(master), master)
        out.add_reader(master, "stdout")
    else:
        popen = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=command.env, start_new_session=True)
        assert popen.stdin and popen.stdout and popen.stderr
        stdin_fd = os.dup(popen.stdin.fileno())
        popen.stdin.close()
        proc = _Proc(popen, stdin_fd, None)
        out.add_reader(os.dup(popen.stdout.fileno()), "stdout")
        out.add_reader(os.dup(popen.stderr.fileno()), "stderr")
        popen.stdout.close()
        popen.stderr.close()
    def on_rpc_end() -> None:  # cancelled or client gone: nothing may outlive the call
        out.abandon()
        if proc.popen.returncode is None:
            proc.killpg()

    context.add_callback(on_rpc_end)
    out.start()
    threading.Thread(target=_feed, args=(requests, proc), daemon=True).start()
    timer = None
    if start.timeout_seconds > 0:
        def expire() -> None:
            proc.timed_out = True
            proc.killpg(signal.SIGKILL)
        timer = threading.Timer(start.timeout_seconds, expire)
        timer.daemon = True
        timer.start()
    yield pb.ExecResponse(started_pid=popen.pid)
    for kind, chunk in out.stream(popen.poll):
        yield pb.ExecResponse(stdout=chunk) if kind == "stdout" else pb.ExecResponse(stderr=chunk)
    code = popen.wait()
    if timer is not None:
        timer.cancel()
    if proc.tty_fd is not None and proc.stdin_fd is not None:
        os.close(proc.stdin_fd)
    sig = -code if code < 0 else 0
    yield pb.ExecResponse(exit=pb.ExecExit(
        exit_code=128 + sig if sig else code, signal=sig, timed_out=proc.timed_out,
        duration_seconds=time.monotonic() - began))

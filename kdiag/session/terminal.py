"""``kdiag shell``: an interactive shell in the target on a pseudo-terminal, wired to ours."""

from __future__ import annotations

import os
import queue
import select
import signal as signal_mod
import termios
import threading
import tty
from collections.abc import Iterator

import grpc
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc

from .grpcerrors import convert


def shell_tty(stub: pb_grpc.ManagerStub, metadata: list[tuple[str, str]],
              argv: list[str] | None = None, *, stdin_fd: int = 0, stdout_fd: int = 1,
              env: dict[str, str] | None = None, host: bool = False) -> int:
    """An interactive shell (default busybox ``ash -l`` in the target) on a pseudo-terminal,
    wired to the local terminal (put in raw mode while it runs). Returns the exit code."""
    is_tty = os.isatty(stdin_fd)
    rows, cols = (os.get_terminal_size(stdout_fd) if os.isatty(stdout_fd) else (24, 80))[::-1]
    script = None if argv else "exec ash -l"
    start = pb.ExecStart(argv=argv or [], script=script or "", tty=True, rows=rows,
                         cols=cols, inherit_env=True, env=env or {}, host=host)
    if host and not argv:
        start.script = "exec ${SHELL:-/bin/sh} -l"
    inputs: queue.SimpleQueue[pb.ExecRequest | None] = queue.SimpleQueue()
    stop = threading.Event()

    def requests() -> Iterator[pb.ExecRequest]:
        yield pb.ExecRequest(start=start)
        while (item := inputs.get()) is not None:
            yield item

    def pump_stdin() -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([stdin_fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(stdin_fd, 4096)
            except (OSError, ValueError):  # the terminal went away
                return
            if not data:
                inputs.put(pb.ExecRequest(stdin_eof=True))
                return
            inputs.put(pb.ExecRequest(stdin=data))

    def on_winch(signum: int, frame: object) -> None:
        size = os.get_terminal_size(stdout_fd)
        inputs.put(pb.ExecRequest(resize=pb.WindowSize(rows=size.lines, cols=size.columns)))

    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    old_winch = None
    code = -1
    try:
        if is_tty:
            tty.setraw(stdin_fd)
            if threading.current_thread() is threading.main_thread():
                old_winch = signal_mod.signal(signal_mod.SIGWINCH, on_winch)
        threading.Thread(target=pump_stdin, daemon=True).start()
        for r in stub.Exec(requests(), metadata=metadata):
            kind = r.WhichOneof("msg")
            if kind in ("stdout", "stderr"):
                os.write(stdout_fd, getattr(r, kind))
            elif kind == "exit":
                code = r.exit.exit_code
    except grpc.RpcError as exc:
        raise convert(exc, "shell") from None
    finally:
        stop.set()
        inputs.put(None)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal_mod.signal(signal_mod.SIGWINCH, old_winch)
    return code

"""Connections from a network namespace: one attempt, waiting for an answer, many at once."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (for pool initializers)."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
    finally:
        os.close(fd)


def pool_in(namespace: str, workers: int) -> ThreadPoolExecutor:
    """A thread pool whose threads live in ``namespace``."""
    return ThreadPoolExecutor(workers, initializer=enter_netns, initargs=(namespace,))


@dataclass
class Progress:
    """How far one exchange got (for a report on one that hung)."""

    phase: str = "connect"
    port: int = 0  # the client's local port
    received: int = 0

    def __str__(self) -> str:
        return f"client port {self.port}, in {self.phase}, {self.received} bytes received"


def exchange(addr: tuple[str, int], payload: bytes, timeout: float,
             progress: Progress | None = None) -> bytes:
    """Connect, send ``payload``, half-close, read until EOF (OSError on failure)."""
    p = progress or Progress()
    with socket.create_connection(addr, timeout=timeout) as s:
        p.port, p.phase = s.getsockname()[1], "send"
        s.sendall(payload)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:  # reset already: the read below raises it
            if exc.errno != errno.ENOTCONN:
                raise
        p.phase = "receive"
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
            p.received += len(data)
        return b"".join(chunks)


def answer(addr: tuple[str, int], payload: bytes = b"x", timeout: float = 0.2) -> bytes | None:
    """The reply to one short exchange, or None when it failed (refused, reset, timed out)."""
    try:
        return exchange(addr, payload, timeout)
    except OSError:
        return None


def wait_for(addr: tuple[str, int], reply: bytes, since: float, deadline: float,
             payload: bytes = b"x") -> float | None:
    """Seconds from ``since`` until a fresh connection gets ``reply``; None if none did by
    ``deadline`` (monotonic times). Call from a thread in the client's namespace."""
    while time.monotonic() < deadline:
        if answer(addr, payload, timeout=min(0.1, max(deadline - time.monotonic(), 0.01))) \
                == reply:
            return time.monotonic() - since
        time.sleep(0.01)
    return None


@dataclass
class Outcome:
    """How one checked connection ended."""

    route: str  # "operator", "app", "broken" (an error), "black-holed" (no answer in time),
    # "corrupt" (wrong bytes)
    detail: str = ""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Framing:
    """How a checked payload travels to a target's app: the bytes sent for a payload, and
    whether a reply is the app's intact answer to them. The operator-side server always
    answers ``op:`` + every byte it read."""

    request: Callable[[bytes], bytes]
    app_answered: Callable[[bytes, bytes], bool]  # (reply, payload)


# The node lab's app answers ``app:`` + what it read.
RAW = Framing(lambda payload: payload,
              lambda reply, payload: _digest(reply) == _digest(b"app:" + payload))


def _echoed(reply: bytes, payload: bytes) -> bool:
    head, sep, _ = reply.partition(b"\r\n")
    body = reply[len(reply) - len(payload):] if payload else b""
    return bool(sep) and b" 200 " in head and _digest(body) == _digest(payload)


# The cluster's testapp echoes a POST /echo body after its own headers.
HTTP_ECHO = Framing(lambda payload: b"POST /echo HTTP/1.0\r\nContent-Length: %d\r\n\r\n"
                    % len(payload) + payload, _echoed)


def checked(addr: tuple[str, int], size: int, timeout: float = 30.0,
            framing: Framing = RAW) -> Outcome:
    """Send ``size`` random bytes (no CR: the node app stops reading at a blank line) in
    ``framing``, half-close, and check the answer by SHA-256: the operator's (``op:`` + the
    request) or the app's."""
    payload = os.urandom(size).replace(b"\r", b"R")
    request = framing.request(payload)
    progress = Progress()
    try:
        got = exchange(addr, request, timeout, progress)
    except TimeoutError:
        return Outcome("black-holed", f"{len(request)} bytes to send, nothing more for "
                       f"{timeout:g} s: {progress}")
    except OSError as exc:
        return Outcome("broken", f"{exc!r}: {progress}")
    if _digest(got) == _digest(b"op:" + request):
        return Outcome("operator")
    if framing.app_answered(got, payload):
        return Outcome("app")
    return Outcome("corrupt", f"{size} bytes sent, {len(got)} received: {got[:12]!r}...: "
                   f"{progress}")

"""Connections from a network namespace: one attempt, waiting for an answer, many at once."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import socket
import time
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


def exchange(addr: tuple[str, int], payload: bytes, timeout: float) -> bytes:
    """Connect, send ``payload``, half-close, read until EOF (OSError on failure)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:  # reset already: the read below raises it
            if exc.errno != errno.ENOTCONN:
                raise
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
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

    route: str  # "operator", "app", "broken" (an error), "corrupt" (wrong bytes)
    detail: str = ""


def checked(addr: tuple[str, int], size: int, timeout: float = 30.0) -> Outcome:
    """Send ``size`` random bytes (no CR: the app stops reading at a blank line), half-close,
    and check the answer by SHA-256: the operator's (``op:`` + payload) or the app's
    (``app:`` + payload)."""
    payload = os.urandom(size).replace(b"\r", b"R")
    try:
        got = exchange(addr, payload, timeout)
    except OSError as exc:
        return Outcome("broken", repr(exc))
    digest = hashlib.sha256(got).hexdigest()
    for route, prefix in (("operator", b"op:"), ("app", b"app:")):
        if digest == hashlib.sha256(prefix + payload).hexdigest():
            return Outcome(route)
    return Outcome("corrupt", f"{size} bytes sent, {len(got)} received: {got[:12]!r}...")

"""A mirror's copy of what one client sent, on its way to the operator: bounded, never blocking
whoever feeds it.

Feeding a copy only appends to a queue; a worker writes it into one end of a socket pair whose
other end is offered to the client like any redirected connection (a tunnel carries it to the
operator's server), and the operator's replies are read and discarded. The copy's own work
(offering it, writing it) starts ``COPY_DELAY`` after the first bytes and then takes what
gathered meanwhile in one write, so that it does not compete for the CPU with the app's answer,
which is usually on its way at that moment. When the copy falls behind (a slow or absent
operator side: more than ``COPY_LIMIT`` bytes waiting, or all copies together over
``TOTAL_LIMIT``), it is dropped and its carrier closes with the route ``copy-dropped`` and the
reason, so the operator learns it (never silently).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .wire.workers import Workers

# Bytes one copy may hold waiting for the operator side (beyond the socket buffers).
COPY_LIMIT = 4 * 1024 * 1024
# Bytes all copies together may hold: a bound on the manager's memory whatever the load.
TOTAL_LIMIT = 64 * 1024 * 1024

# How long a copy's bytes wait before they are offered or written (see above).
COPY_DELAY = 0.002
# How long the client may take to take a copy (nothing waits for it, and what it holds meanwhile
# is bounded: longer than a redirect's fail-open timeout, so that a busy laptop loses none).
COPY_PATIENCE = 30.0

# Copy writers and reply drainers (they may block on the operator side, never on the app).
WORKERS = Workers("copy", max_idle=32)


class _Budget:
    """Bytes all copies hold, bounded by ``TOTAL_LIMIT``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


BUDGET = _Budget(TOTAL_LIMIT)


class Copy:
    """What one peer sent, on its way to the operator: never blocks the feeder."""

    def __init__(self, limit: int = COPY_LIMIT, budget: _Budget = BUDGET) -> None:
        self._limit = limit
        self._budget = budget
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._ended = False
        self._sock: socket.socket | None = None
        self._users = 2  # the writer and the drainer: the last one closes the socket
        self._reported = False
        self.dropped = ""
        """Why the copy was dropped ("": it was not)."""
        self.on_drop: Callable[[str], Any] | None = None
        """Told at once when the copy is dropped (its connection may stay stuck behind a
        stalled operator side until the mirror ends: the drop is reported now)."""

    def feed(self, data: bytes) -> None:
        """Queue ``data`` for the operator, or drop the copy if it cannot keep up."""
        with self._cond:
            if self.dropped or self._ended or not data:
                return
            if self._queued + len(data) <= self._limit and self._budget.take(len(data)):
                self._chunks.append(data)
                self._queued += len(data)
                self._cond.notify()
                return
        self.drop(f"the operator side fell behind ({self._queued} bytes waiting)")

    def end(self) -> None:
        """The peer's connection is over: what is queued is the whole copy."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    def drop(self, reason: str) -> None:
        """Give the copy up (the first reason is kept) and tell ``on_drop``."""
        with self._cond:
            if self.dropped:
                return
            self.dropped = reason
            self._budget.give(self._queued)
            self._chunks.clear()
            self._queued = 0
            self._cond.notify()
            if self._sock is not None:  # wakes a writer blocked on the operator side
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        if self.on_drop is not None:
            self.on_drop(reason)

    def report_once(self) -> bool:
        """True the first time only: the copy's end is reported once (dropped, or closed)."""
        with self._cond:
            first, self._reported = not self._reported, True
            return first

    def start(self, sock: socket.socket, offer: Callable[[], None]) -> None:
        """Once the first bytes (or the end) came and ``COPY_DELAY`` passed: ``offer`` the
        copy's connection, write the copy into ``sock`` and discard what comes back (worker
        threads)."""
        with self._cond:
            self._sock = sock
        WORKERS.submit(self._write, sock, offer)

    def _write(self, sock: socket.socket, offer: Callable[[], None]) -> None:
        with self._cond:
            while not (self._chunks or self._ended or self.dropped):
                self._cond.wait()
        time.sleep(COPY_DELAY)
        offer()
        WORKERS.submit(self._discard, sock)
        try:
            while True:
                with self._cond:
                    while not (self._chunks or self._ended or self.dropped):
                        self._cond.wait()
                    if self.dropped:
                        return
                    if not self._chunks:
                        sock.shutdown(socket.SHUT_WR)  # the whole copy: pass the end on
                        return
                    chunks, self._chunks = list(self._chunks), collections.deque()
                    size, self._queued = self._queued, 0
                    self._budget.give(size)
                sock.sendall(b"".join(chunks))
                time.sleep(COPY_DELAY)  # (what comes meanwhile goes in the next write)
        except OSError as exc:
            self.drop(f"copy: {exc.strerror or exc}")
        finally:
            self._release(sock)

    def _discard(self, sock: socket.socket) -> None:
        """Read the operator's replies until they end. (The socket stays open for the writer:
        an operator side that stops answering early does not cut the copy short unseen.)"""
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            self._release(sock)

    def _release(self, sock: socket.socket) -> None:
        with self._cond:
            self._users -= 1
            last = self._users == 0
        if last:
            sock.close()

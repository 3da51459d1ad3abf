"""A mirror's copy of what one client sent, on its way to the operator: bounded, never blocking.

A copy is written into one end of a socket pair whose other end is offered to the client like
any redirected connection (a tunnel carries it to the operator's server); the operator's
replies are read and discarded. Nothing here blocks or has a thread of its own: feeding only
appends to a queue, and the mirror's reader thread (which saw the packets) calls :meth:`Copy.pump`
to write what is queued without blocking, and again when the socket can take more (its loop
polls every copy's socket: :class:`CopySockets`). The first write goes before the offer, so
that the copy's first bytes (often all of it, and its end) ride with the connection's
assignment. When the copy falls behind (a slow or absent operator side: more than
``COPY_LIMIT`` bytes waiting, or all copies together over ``TOTAL_LIMIT``), it is dropped and
its carrier closes with the route ``copy-dropped`` and the reason, so the operator learns it
(never silently).
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

# Bytes one copy may hold waiting for the operator side (beyond the socket buffers).
COPY_LIMIT = 4 * 1024 * 1024
# Bytes all copies together may hold: a bound on the manager's memory whatever the load.
TOTAL_LIMIT = 64 * 1024 * 1024
# How long the client may take to take a copy (nothing waits for it, and what it holds meanwhile
# is bounded: longer than a redirect's fail-open timeout, so that a busy laptop loses none).
COPY_PATIENCE = 30.0


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
    """What one peer sent, on its way to the operator (see the module's docstring).

    ``sock`` is the manager's end of the pair, ``carrier`` the end offered (by ``offer``) to
    the client. ``news`` is told (from any thread) when there is something to pump."""

    def __init__(self, sock: socket.socket, carrier: socket.socket, offer: Callable[[], None],
                 news: Callable[[Copy], None], limit: int = COPY_LIMIT,
                 budget: _Budget = BUDGET) -> None:
        self.sock = sock
        sock.setblocking(False)
        self._carrier = carrier
        self._offer = offer
        self._news = news
        self._limit = limit
        self._budget = budget
        self._lock = threading.Lock()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._ended = False
        self._offered = False
        self._passed_end = False
        self._reported = False
        self.wants_write = False
        """The socket took less than was queued: pump again once it is writable."""
        self.dropped = ""
        """Why the copy was dropped ("": it was not)."""
        self.on_drop: Callable[[str], Any] | None = None
        """Told at once when the copy is dropped (the drop is reported now)."""

    def feed(self, data: bytes) -> None:
        """Queue ``data`` for the operator, or drop the copy if it cannot keep up."""
        with self._lock:
            if self.dropped or self._ended or not data:
                return
            fits = self._queued + len(data) <= self._limit and self._budget.take(len(data))
            if fits:
                self._chunks.append(data)
                self._queued += len(data)
        if fits:
            self._news(self)
        else:
            self.drop(f"the operator side fell behind ({self._queued} bytes waiting)")

    def end(self) -> None:
        """The peer's connection is over: what is queued is the whole copy."""
        with self._lock:
            self._ended = True
        self._news(self)

    def drop(self, reason: str) -> None:
        """Give the copy up (the first reason is kept) and tell ``on_drop``."""
        with self._lock:
            if self.dropped:
                return
            self.dropped = reason
            self._budget.give(self._queued)
            self._chunks.clear()
            self._queued = 0
            self.wants_write = False
            offered = self._offered
            with contextlib.suppress(OSError):  # the operator's side sees the copy cut
                self.sock.shutdown(socket.SHUT_RDWR)
        if not offered:  # (nobody else will ever close the carrier)
            self._carrier.close()
        if self.on_drop is not None:
            self.on_drop(reason)

    def report_once(self) -> bool:
        """True the first time only: the copy's end is reported once (dropped, or closed)."""
        with self._lock:
            first, self._reported = not self._reported, True
            return first

    def pump(self) -> None:
        """Write what is queued, as far as the socket takes it now; pass the end on once all
        is written; offer the copy after its first write (or its end)."""
        with self._lock:
            if self.dropped or self._passed_end:
                return
            sent = 0
            error: OSError | None = None
            if self._chunks:
                data = b"".join(self._chunks)
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    error = exc
                self._chunks.clear()
                if sent < len(data):
                    self._chunks.append(data[sent:])
                self._queued -= sent
                self._budget.give(sent)
            self.wants_write = bool(self._chunks) and error is None
            finish = self._ended and not self._chunks and error is None
            if finish:
                self._passed_end = True
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)  # the whole copy: pass the end on
            offer = not self._offered and (sent > 0 or finish)
            self._offered = self._offered or offer
        if error is not None:
            self.drop(f"copy: {error.strerror or error}")
        elif offer:
            self._offer()

    @property
    def over(self) -> bool:
        """Written whole (with its end), or dropped."""
        return self._passed_end or bool(self.dropped)

    def discard(self) -> bool:
        """Read and forget the operator's replies; False once its side has ended."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return False
        except BlockingIOError:
            return True
        except OSError:
            return False


class CopySockets:
    """Every copy's socket in one poll (the mirror's reader thread's): replies discarded,
    writes resumed, sockets closed once the copy is over and the operator's side too. (An
    operator side that only stops answering does not cut the copy short.)"""

    _GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL

    def __init__(self, poller: select.poll) -> None:
        self._poller = poller
        self._copies: dict[int, Copy] = {}
        self._masks: dict[int, int] = {}
        self._replies_over: set[int] = set()

    def add(self, copy: Copy) -> None:
        """Watch ``copy``'s socket."""
        fd = copy.sock.fileno()
        if fd < 0 or fd in self._copies:  # (closed already, or watched)
            return
        self._copies[fd] = copy
        self._masks[fd] = select.POLLIN
        self._poller.register(fd, select.POLLIN)

    def pumped(self, copy: Copy) -> None:
        """After ``copy.pump()``: wait for room to write where the socket was full; close
        what is over."""
        fd = copy.sock.fileno()
        if self._copies.get(fd) is not copy:
            return
        if fd in self._replies_over and copy.over:
            self._close(fd, copy)
            return
        mask = (0 if fd in self._replies_over else select.POLLIN) | \
            (select.POLLOUT if copy.wants_write else 0)
        if mask != self._masks[fd]:
            self._masks[fd] = mask
            self._poller.modify(fd, mask)

    def event(self, fd: int, mask: int) -> bool:
        """Handle a poll event; False if ``fd`` is not a copy's."""
        copy = self._copies.get(fd)
        if copy is None:
            return False
        if mask & select.POLLOUT:
            copy.pump()
        if fd in self._replies_over and mask & self._GONE:
            copy.drop("the operator side closed the copy's connection before its end")
        elif mask & (select.POLLIN | self._GONE) and not copy.discard():
            self._replies_over.add(fd)
        self.pumped(copy)
        return True

    def close_all(self) -> None:
        """The mirror is over: close every copy's socket."""
        for fd, copy in list(self._copies.items()):
            self._close(fd, copy)

    def _close(self, fd: int, copy: Copy) -> None:
        del self._copies[fd]
        del self._masks[fd]
        self._replies_over.discard(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(fd)
        copy.sock.close()

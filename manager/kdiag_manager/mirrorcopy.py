"""A mirror's copy of what one client sent, on its way to the operator: bounded, never blocking.

Feeding a copy only appends to its queue (the mirror's reader thread feeds it, or a header
filter's parser); the reader thread then takes what is queued into the next message of the
mirror's one copy stream (:mod:`copystream`), and the CLI passes it on to the operator's
server. Nothing here blocks or has a thread of its own. When a copy falls behind (the stream
does not keep up: more than ``COPY_LIMIT`` bytes of it not yet sent, or all copies together
over ``TOTAL_LIMIT``), it is dropped; its drop travels on the stream like its bytes, so that
the CLI cuts what it passed on and counts it with the reason (never silently).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

# Bytes one copy may hold not yet sent to the CLI.
COPY_LIMIT = 4 * 1024 * 1024
# Bytes all copies together may hold (queued, or in messages not yet sent): a bound on the
# manager's memory whatever the load.
TOTAL_LIMIT = 64 * 1024 * 1024

Endpoint = tuple[str, int]


class Budget:
    """Bytes all copies hold, bounded by ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Count ``n`` more bytes held (False, nothing counted: over the limit)."""
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        """``n`` bytes are no longer held."""
        if n:
            with self._lock:
                self.used -= n


BUDGET = Budget(TOTAL_LIMIT)


class Copy:
    """What one peer sent, on its way to the operator (see the module's docstring).

    ``news`` is told (from any thread) when the copy has something for the stream."""

    def __init__(self, copy_id: int, original: Endpoint, peer: Endpoint,
                 news: Callable[[Copy], None], limit: int = COPY_LIMIT,
                 budget: Budget = BUDGET) -> None:
        self.id = copy_id
        self.original = original
        self.peer = peer
        self._news = news
        self._limit = limit
        self._budget = budget
        self._lock = threading.Lock()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0  # in _chunks
        self._unsent = 0  # in _chunks, or in messages not yet sent
        self._ended = False
        self._started = False  # its first piece was taken
        self._over = False  # its last piece (the end, or the drop) was taken
        self.dropped = ""
        """Why the copy was dropped ("": it was not)."""

    def feed(self, data: bytes) -> None:
        """Queue ``data`` for the operator, or drop the copy if it cannot keep up."""
        with self._lock:
            if self.dropped or self._ended or not data:
                return
            waiting = self._unsent
            fits = waiting + len(data) <= self._limit and self._budget.take(len(data))
            if fits:
                self._chunks.append(data)
                self._queued += len(data)
                self._unsent += len(data)
        if fits:
            self._news(self)
        else:
            self.drop(f"the copy stream to kdiag fell behind ({waiting} bytes waiting)")

    def end(self) -> None:
        """The peer's connection is over: what is queued is the whole copy."""
        with self._lock:
            if self.dropped or self._ended:
                return
            self._ended = True
        self._news(self)

    def drop(self, reason: str) -> None:
        """Give the copy up (the first reason is kept; nothing once its end was taken)."""
        with self._lock:
            if self.dropped or self._over:
                return
            self.dropped = reason
            self._budget.give(self._queued)
            self._unsent -= self._queued
            self._chunks.clear()
            self._queued = 0
        self._news(self)

    def take(self, into: Any, limit: int) -> tuple[int, bool]:
        """Add the copy's next piece (up to ``limit`` bytes) to ``into`` (a repeated
        ``CopyChunk`` field); the bytes it carries, and whether more is queued."""
        with self._lock:
            if self._over:
                return 0, False
            chunk = into.add(copy_id=self.id)
            if not self._started:
                self._started = True
                chunk.original_destination.host, chunk.original_destination.port = self.original
                chunk.peer.host, chunk.peer.port = self.peer
            if self.dropped:
                self._over = True
                chunk.dropped = self.dropped
                return 0, False
            data = self._next(limit)
            chunk.data = data
            if self._ended and not self._chunks:
                self._over = True
                chunk.end = True
            return len(data), bool(self._chunks)

    def _next(self, limit: int) -> bytes:
        """(Lock held.) Up to ``limit`` queued bytes, in order."""
        parts, n = [], 0
        while self._chunks and n < limit:
            part = self._chunks.popleft()
            if n + len(part) > limit:
                self._chunks.appendleft(part[limit - n:])
                part = part[:limit - n]
            parts.append(part)
            n += len(part)
        self._queued -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def sent(self, n: int) -> None:
        """``n`` bytes of the copy left with a message (its budget is given back by the
        stream)."""
        with self._lock:
            self._unsent -= n

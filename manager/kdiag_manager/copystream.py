"""A mirror's one copy stream: every copy's pieces, many to a message, on one Tunnel to the CLI.

The CLI opens the stream once per mirror (``TunnelOpen.copies``); the manager sends
``TunnelFrame.copies`` messages on it until the mirror ends, and the CLI opens a connection to
the operator's server per copy on its side. One stream instead of a tunnel per copy: a copy
costs a few protobuf fields in a message that carries many, not a stream (measured: a tunnel
per copy cost the manager ≈ 1.2 ms of CPU and the CLI ≈ 0.9 ms; now ≈ 0.02 and 0.18 ms: the
README's bench table).

The mirror's reader thread calls :meth:`CopyStream.pump` after each batch of packets: it takes
what the copies with news have queued into messages (up to ``MESSAGE_BYTES`` of data each) and
queues them for the stream's handler, which yields them to the transport one by one. Nothing
waits for the stream: bytes in messages not yet sent stay counted in the copies' budget (so a
slow stream makes copies drop, never the reader wait), and are given back as each message
leaves. Messages made before the CLI has opened the stream wait for it (the same bound).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .mirrorcopy import BUDGET, Budget, Copy, Endpoint
from .wire.api.v1 import manager_pb2 as pb

# Bytes of copies' data in one message (a copy larger than this spans messages).
MESSAGE_BYTES = 256 * 1024

# A message, and what it carries of each copy (given back to the budget once it is sent).
_Message = tuple[bytes, list[tuple[Copy, int]]]


class StreamTaken(Exception):
    """A second copy stream for the same mirror."""


class CopyStream:
    """The copies of one mirror, on their way to the CLI (see the module's docstring).
    ``on_news`` is told (from any thread) when a copy has something for :meth:`pump`."""

    def __init__(self, on_news: Callable[[], None], budget: Budget = BUDGET) -> None:
        self._on_news = on_news
        self._budget = budget
        self._news: dict[Copy, None] = {}  # (ordered: copies in the order their news came)
        self._news_lock = threading.Lock()
        self._outbox: collections.deque[_Message] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False  # no more messages: the stream ends once the outbox is sent
        self._attached = False
        self._gone = False  # the stream's call ended
        self.sent_messages = 0

    def new_copy(self, copy_id: int, original: Endpoint, peer: Endpoint) -> Copy:
        """A copy whose pieces go on this stream."""
        return Copy(copy_id, original, peer, self._has_news, budget=self._budget)

    def _has_news(self, copy: Copy) -> None:
        with self._news_lock:
            self._news[copy] = None
        self._on_news()

    def pump(self) -> None:
        """(The reader thread.) Put every piece the copies have queued into messages."""
        with self._news_lock:
            news, self._news = self._news, {}
        todo = collections.deque(news)
        while todo:
            frame = pb.TunnelFrame()
            into = frame.copies.chunks
            parts: list[tuple[Copy, int]] = []
            room = MESSAGE_BYTES
            while todo and room > 0:
                copy = todo.popleft()
                n, more = copy.take(into, room)
                room -= n
                if n:
                    parts.append((copy, n))
                if more:
                    todo.appendleft(copy)  # (room is 0: it goes first in the next message)
            if into:
                self._queue((frame.SerializeToString(), parts))

    def _queue(self, message: _Message) -> None:
        with self._cond:
            if self._gone:
                self._given(message)
                return
            self._outbox.append(message)
            self._cond.notify()

    def close(self) -> None:
        """No more copies: the stream ends once what is queued is sent (what is queued for a
        stream never opened is let go: the budget is the manager's, not one mirror's)."""
        with self._cond:
            self._closed = True
            unsent = () if self._attached else list(self._outbox)
            if not self._attached:
                self._outbox.clear()
            self._cond.notify()
        for message in unsent:
            self._given(message)

    def serve(self, add_callback: Callable[[Callable[[], None]], Any],
              on_gone: Callable[[], None]) -> Iterator[bytes]:
        """The stream's messages, for its Tunnel handler; StreamTaken if it has one already.
        ``on_gone`` is told when the call ends before the stream was closed (the CLI's side
        is gone)."""
        with self._cond:
            if self._attached:
                raise StreamTaken("this mirror's copy stream is open already")
            self._attached = True

        def gone() -> None:
            with self._cond:
                self._gone = True
                closed = self._closed
                dropped, self._outbox = self._outbox, collections.deque()
                self._cond.notify()
            for message in dropped:
                self._given(message)
            if not closed:
                on_gone()

        if add_callback(gone) is False:  # (the call is over already)
            gone()
        message: _Message | None = None
        try:
            while True:
                with self._cond:
                    while not self._outbox and not self._closed and not self._gone:
                        self._cond.wait()
                    if not self._outbox:
                        return
                    message = self._outbox.popleft()
                yield message[0]
                self.sent_messages += 1
                self._given(message)
                message = None
        finally:
            if message is not None:  # (the call broke as it was sent)
                self._given(message)

    def _given(self, message: _Message) -> None:
        """``message`` left (or never will): its bytes no longer count."""
        total = 0
        for copy, n in message[1]:
            copy.sent(n)
            total += n
        self._budget.give(total)

"""One lane stream at either end, and its flow control (what :mod:`.lane` multiplexes).

A stream holds the messages received for it (an inbox its user reads) and, for what it sends,
a window of unconsumed bytes the peer credits back: see ``CREDIT`` in :mod:`.lane`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any, Protocol

from . import frames
from .laneframes import ABORT, CREDIT, END, MSG, LaneError
from .lanepipes import Piped, PipePool, take_piped
from .pumps import Pipe

log = logging.getLogger(__name__)


class LaneLike(Protocol):
    """What a stream uses of its lane (``.lane.Lane``), and what the stream's users ask it."""

    peer_credit_step: int
    pipes: PipePool
    takes_fds: bool

    @property
    def can_splice(self) -> bool: ...
    @property
    def can_hand_off(self) -> bool: ...

    def count_busy(self, delta: int) -> None: ...
    def window(self) -> int: ...
    def send(self, kind: int, stream: int, payload: bytes | memoryview = b"") -> None: ...
    def send_fd(self, stream: int, fd: int) -> None: ...
    def send_from_pipe(self, stream: int, prefix: bytes, pipe: int, n: int) -> None: ...
    def open(self, stream: LaneStream, payload: bytes | memoryview) -> None: ...
    def forget(self, stream_id: int) -> None: ...

_COUNT = struct.Struct(">I")
_NONBLOCK = 2  # SPLICE_F_NONBLOCK
WINDOW = 8 << 20
"""The most unconsumed message bytes a sender may have in flight on one stream."""
MIN_WINDOW = 64 << 10
SEND_BUDGET = 8 << 20
"""Unconsumed bytes a sender keeps in flight over all its streams that have any: each of n such
streams gets ``SEND_BUDGET / n``, between MIN_WINDOW and WINDOW."""
CREDIT_STEP = 64 << 10
"""A receiver credits what it consumed once it is this much (at a message boundary)."""
LEGACY_CREDIT_STEP = WINDOW // 4
"""The credit step of a peer that does not announce one (kdiag before 2026-12)."""
CLIENT_CREDIT_STEP = LEGACY_CREDIT_STEP // 2
"""What the CLI's end credits at. Clients announce no step, so the manager keeps theirs, the
older one, in flight: crediting at half of it keeps a download moving with one CREDIT per MiB,
not one per message (≈ 0.5 MiB in bulk): CPU per 256 MiB 0.206 → 0.161 s (README, ⁴)."""

class _Window:
    """The sending side of one stream's flow control."""

    def __init__(self, lane: LaneLike) -> None:
        self._lane = lane
        self._in_flight = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, n: int) -> bool:
        """Wait until ``n`` more bytes may go (False: the stream is over)."""
        lane = self._lane
        with self._cond:
            while (not self._closed and self._in_flight >= lane.peer_credit_step
                   and self._in_flight + n > lane.window()):
                self._cond.wait()
            if not self._in_flight and n:
                lane.count_busy(1)
            self._in_flight += n
            return not self._closed

    def release(self, n: int) -> None:
        with self._cond:
            self._settle(max(self._in_flight - n, 0))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._settle(0)
            self._cond.notify_all()

    def _settle(self, in_flight: int) -> None:
        if self._in_flight and not in_flight:
            self._lane.count_busy(-1)
        self._in_flight = in_flight


_END = object()


class LaneStream:
    """One stream's state at either end: received messages, flow control both ways, and the
    callbacks to run once it is over.

    As in gRPC, the client's END half-closes (the handler's request iterator ends) while the
    manager's END ends the call (status OK): from then on neither side carries anything more.
    """

    def __init__(self, lane: LaneLike, stream_id: int, client: bool) -> None:
        self.lane = lane
        self.id = stream_id
        self._client = client
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._window = _Window(lane)
        self._consumed = 0
        self._lock = threading.Lock()
        self.error: LaneError | None = None  # why it ended, if abnormally
        self.over = False
        self._callbacks: list[Callable[[], None]] = []
        self._takes_piped = False  # its consumer writes Piped items to a socket itself

    # -- from the lane's reader ----------------------------------------------------------------

    def deliver(self, kind: int, payload: bytes | bytearray | Piped | socket.socket) -> None:
        """A frame for this stream arrived."""
        if isinstance(payload, (Piped, socket.socket)) or kind == MSG:
            self._inbox.put(payload)
        elif kind == END:
            self._inbox.put(_END)
            if self._client:
                self.terminate()
        elif kind == CREDIT and len(payload) == _COUNT.size:
            self._window.release(_COUNT.unpack(payload)[0])
        elif kind == ABORT:
            code, _, details = payload.decode(errors="replace").partition(" ")
            self.terminate(LaneError(code or "CANCELLED", details))

    def take_large(self, head: bytes, rest: int, sock: socket.socket) -> Piped | bytearray:
        """(The lane's reader.) Take a large message's ``rest`` off ``sock``: into a pipe when
        the consumer takes them (see :mod:`.lanepipes`), else into memory."""
        return take_piped(self.lane.pipes if self._takes_piped else None, head, rest, sock)

    # -- the stream's users ----------------------------------------------------------------------

    def accept_piped(self) -> None:
        """The consumer handles ``Piped`` items (writes them to its socket): large data
        messages may come that way from now on."""
        self._takes_piped = True

    def receive(self) -> bytes | bytearray | Piped | socket.socket | None:
        """The next message, or a socket handed over (None: the peer has sent END). Raises
        LaneError once aborted."""
        item = self._inbox.get()
        if item is _END:
            self._inbox.put(_END)  # later calls see the end too
            return None
        if isinstance(item, LaneError):
            self._inbox.put(item)
            raise item
        if isinstance(item, socket.socket):  # (no bytes: nothing to credit)
            return item
        self._consumed += item.message_size if isinstance(item, Piped) else len(item)
        step = CLIENT_CREDIT_STEP if self._client else CREDIT_STEP
        if self._consumed >= step and not self.over:
            with contextlib.suppress(LaneError):  # (the lane closed: the stream ends anyway)
                self.lane.send(CREDIT, self.id, _COUNT.pack(self._consumed))
            self._consumed = 0
        return item

    def max_message(self) -> int:
        """The largest message worth sending now (the stream's share of the sending budget):
        a pump reads at most this much at a time."""
        return self.lane.window()

    def send_spliced(self, pipe: Pipe, fd: int, limit: int) -> int:
        """Move up to ``limit`` bytes from ``fd`` through ``pipe`` to the peer as one data
        message (an encoded ``TunnelFrame.data``), without reading them into Python; the count
        (0 at EOF: nothing sent). OSError: reading ``fd`` failed; LaneError once over."""
        n = os.splice(fd, pipe.w, limit)
        if not n:
            return 0
        with contextlib.suppress(OSError):  # what else is there already: fewer, larger messages
            while n < limit and (more := os.splice(fd, pipe.w, limit - n, flags=_NONBLOCK)):
                n += more
        prefix = frames.data_prefix(n)
        if not self._window.acquire(len(prefix) + n) or self.over:
            raise self.error or LaneError("CANCELLED", "the stream is over")
        self.lane.send_from_pipe(self.id, prefix, pipe.r, n)
        return n

    def send_fd(self, sock: socket.socket) -> None:
        """(Client.) Hand ``sock`` over (an ``FD`` frame); the stream must be open already.
        Raises LaneError once over."""
        if self.over or not self.id:
            raise self.error or LaneError("CANCELLED", "the stream is over")
        self.lane.send_fd(self.id, sock.fileno())

    def send_message(self, payload: bytes | memoryview) -> None:
        """Send one message (waits for flow-control credit; a client's first one opens the
        stream). Raises LaneError once over."""
        if not self._window.acquire(len(payload)) or self.over:
            raise self.error or LaneError("CANCELLED", "the stream is over")
        if self.id == 0:
            self.lane.open(self, payload)
        else:
            self.lane.send(MSG, self.id, payload)

    def end(self) -> None:
        """No more messages from this side (from the manager: the call is over)."""
        if self.over:
            return
        if self.id:
            self.lane.send(END, self.id)
        if not self._client or not self.id:
            self.terminate()

    def abort(self, code: str, details: str) -> None:
        """End the stream both ways and tell the peer (no-op once over)."""
        if self.over:
            return
        if self.id:
            with contextlib.suppress(LaneError):
                self.lane.send(ABORT, self.id, f"{code} {details}".encode())
        self.terminate(LaneError(code, details))

    def add_callback(self, fn: Callable[[], None]) -> bool:
        """Run ``fn`` once the stream is over (False, not run: it is over already)."""
        with self._lock:
            if not self.over:
                self._callbacks.append(fn)
                return True
        return False

    def terminate(self, error: LaneError | None = None) -> None:
        """The stream is over (idempotent): wake its users, run the callbacks."""
        with self._lock:
            if self.over:
                return
            self.over = True
            self.error = error
            callbacks, self._callbacks = self._callbacks, []
        if error is not None:
            self._inbox.put(error)
        self._window.close()
        self.lane.forget(self.id)
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("lane stream %d: callback failed", self.id)


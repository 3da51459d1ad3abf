"""The lane: Tunnel streams on a plain byte stream of their own, without gRPC.

A redirected connection's setup is one round trip between the manager and the CLI (the
assignment with the peer's first bytes out, the operator side's answer back). Over gRPC each
message crosses both ends' gRPC machinery: HTTP/2, the core's completion queues and three to
five thread wake-ups per end. Measured on the local cluster: 1.55 ms per new connection, of
which the Kubernetes path itself (API server, kubelet, runtime) is 0.3 ms. The lane carries the
same Tunnel frames with one thread wake-up per message and end, next to the gRPC channel (in a
pod: the second port of the session's one port-forward). gRPC keeps everything else, and
Tunnel calls when there is no lane.

Wire format (:mod:`.laneframes`): frames of a 9-byte header (kind, stream id, payload length;
big-endian) and a payload.

- ``HELLO`` (stream 0): the client's first frame carries the session token; the manager answers
  with one (accepted) or closes the lane. The answer's payload lists the manager's features,
  ``name=value`` separated by spaces (older managers answer with an empty one): ``credit=N``
  says it credits every N consumed bytes (see ``CREDIT``). Before the HELLO, the manager reads
  nothing else: a first frame of another kind, a HELLO over :data:`MAX_HELLO` bytes or one not
  complete within :data:`HELLO_DEADLINE` seconds of the connection closes it
  (``kdiag_manager.lanegate``).
- ``MSG``: one message of a stream (a Tunnel frame, byte for byte what gRPC would carry). The
  client's first ``MSG`` on a new stream id opens the stream.
- ``END``: the sender has no more messages (a half-close; from the manager: the call is over,
  status OK).
- ``ABORT``: the stream is over, both ways; the payload is ``CODE details`` (a gRPC status code
  name).
- ``CREDIT``: the payload (4 bytes) counts message bytes the receiver has consumed; it is sent
  at a message boundary once :data:`CREDIT_STEP` bytes were consumed (the CLI's end:
  :data:`CLIENT_CREDIT_STEP`; older ends: a quarter of :data:`WINDOW`). Flow control is per
  stream and direction, so one slow connection never stalls the others: a sender keeps at most a
  window of bytes unconsumed (or one message, however large). The window is :data:`WINDOW` while
  few streams send; with more, they share :data:`SEND_BUDGET` (down to :data:`MIN_WINDOW` each),
  which bounds what the receiver holds under many connections at once. A sender always has at
  least the peer's credit step in flight before it waits (less would never be credited): a peer
  that did not announce its step gets the older one.

This module is both ends' common part (:class:`Lane`, :class:`LaneStream`; the framing is
:mod:`.laneframes`); the manager's listener is ``kdiag_manager.laneserver``, the CLI's end
``kdiag.session.lane``.
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
from typing import Any

from . import frames
from .laneframes import (  # (the wire format; re-exported: both ends import it from here)
    ABORT,
    CREDIT,
    END,
    HEADER,
    HELLO,
    MAX_PAYLOAD,
    MSG,
    FrameParser,
    LaneError,
    frame,
    frames_from,
    read_rest,
    sockaddr,
    socket_sender,
)
from .lanepipes import LaneFd, Piped, PipePool, take_piped
from .pumps import Pipe

__all__ = ["ABORT", "CREDIT", "END", "HEADER", "HELLO", "MAX_PAYLOAD", "MSG", "FrameParser",
           "Lane", "LaneError", "LaneStream", "frame", "sockaddr", "socket_sender"]

log = logging.getLogger(__name__)

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
FEATURES = f"credit={CREDIT_STEP}".encode()
"""What the manager's HELLO answer announces."""
HELLO_DEADLINE = 5.0
"""Seconds from the accept within which the manager must have a connection's whole HELLO."""
MAX_HELLO = 4096
"""The largest HELLO the manager reads (the token is tens of bytes)."""


def features(payload: bytes) -> dict[str, str]:
    """The ``name=value`` pairs of a HELLO answer (unknown or malformed words are ignored)."""
    pairs = (word.partition("=") for word in payload.decode(errors="replace").split())
    return {name: value for name, sep, value in pairs if sep}


class _Window:
    """The sending side of one stream's flow control."""

    def __init__(self, lane: Lane) -> None:
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

    def __init__(self, lane: Lane, stream_id: int, client: bool) -> None:
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

    def deliver(self, kind: int, payload: bytes | bytearray | Piped) -> None:
        """A frame for this stream arrived."""
        if isinstance(payload, Piped) or kind == MSG:
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

    def receive(self) -> bytes | bytearray | Piped | None:
        """The next message (None: the peer has sent END). Raises LaneError once aborted."""
        item = self._inbox.get()
        if item is _END:
            self._inbox.put(_END)  # later calls see the end too
            return None
        if isinstance(item, LaneError):
            self._inbox.put(item)
            raise item
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


class Lane:
    """One lane connection: frames out through ``send_raw`` (thread-safe), frames in through
    :meth:`feed` (from one reader thread), dispatched to the streams.

    On the manager's side ``on_new_stream`` makes a stream of a ``MSG`` with a stream id
    higher than any seen so far (frames for an id seen before belong to a stream that is over,
    and are dropped).
    """

    def __init__(self, send_raw: Callable[[list[bytes | memoryview]], None],
                 on_new_stream: Callable[[Lane, int], LaneStream] | None = None,
                 sock: socket.socket | None = None) -> None:
        self._send_raw = send_raw
        # The socket send_raw writes to, when there is one (for send_from_pipe).
        self._splice_to = LaneFd(sock) if sock is not None else None
        self.pipes = PipePool()  # for large data messages received (see .lanepipes)
        self._send_lock = threading.Lock()
        self._on_new_stream = on_new_stream
        self._parser = FrameParser()
        self._streams: dict[int, LaneStream] = {}
        self._max_id = 0
        self._lock = threading.Lock()
        self.closed = False
        self.on_hello: Callable[[bytes], None] | None = None
        self.peer_credit_step = LEGACY_CREDIT_STEP
        self._busy = 0  # streams with bytes in flight (sending)
        self._busy_lock = threading.Lock()

    def count_busy(self, delta: int) -> None:
        """A stream started (1) or stopped (-1) having unconsumed bytes in flight."""
        with self._busy_lock:
            self._busy += delta

    def window(self) -> int:
        """Each sending stream's window now (see SEND_BUDGET)."""
        return max(MIN_WINDOW, min(WINDOW, SEND_BUDGET // max(self._busy, 1)))

    def hello_answered(self, payload: bytes) -> None:
        """(Client.) The manager's HELLO answer: take its features."""
        step = features(payload).get("credit", "")
        if step.isdigit() and int(step) > 0:
            self.peer_credit_step = int(step)

    def send(self, kind: int, stream: int, payload: bytes | memoryview = b"") -> None:
        """Write one frame (LaneError if the lane is closed or writing fails)."""
        if self.closed:
            raise LaneError("UNAVAILABLE", "the lane is closed")
        pieces = frame(kind, stream, payload)
        try:
            with self._send_lock:
                self._send_raw(pieces)
        except OSError as exc:
            raise self._write_failed(exc) from None

    @property
    def can_splice(self) -> bool:
        """Can messages go from a pipe straight to the lane's socket (``send_from_pipe``)?"""
        return self._splice_to is not None

    def send_from_pipe(self, stream: int, prefix: bytes, pipe: int, n: int) -> None:
        """Write a ``MSG`` frame whose payload is ``prefix`` and the ``n`` bytes in ``pipe``
        (spliced to the lane's socket). LaneError if the lane is closed or writing fails."""
        if self.closed or self._splice_to is None:
            raise LaneError("UNAVAILABLE", "the lane is closed")
        try:
            with self._splice_to.use() as fd, self._send_lock:
                self._send_raw([HEADER.pack(MSG, stream, len(prefix) + n) + prefix])
                while n:
                    n -= os.splice(pipe, fd, n)
        except OSError as exc:
            raise self._write_failed(exc) from None

    def add(self, stream: LaneStream) -> None:
        """Route frames for ``stream.id`` to ``stream``."""
        with self._lock:
            if not self.closed:
                self._streams[stream.id] = stream
                self._max_id = max(self._max_id, stream.id)
                return
        stream.terminate(LaneError("UNAVAILABLE", "the lane is closed"))

    def open(self, stream: LaneStream, payload: bytes | memoryview) -> None:
        """(Client.) Give ``stream`` the next id and send its first message: ids go out in
        increasing order, as the manager expects."""
        try:
            with self._send_lock:
                with self._lock:
                    if self.closed:
                        raise LaneError("UNAVAILABLE", "the lane is closed")
                    stream.id = self._max_id = self._max_id + 1
                    self._streams[stream.id] = stream
                self._send_raw(frame(MSG, stream.id, payload))
        except OSError as exc:
            raise self._write_failed(exc) from None

    def _write_failed(self, exc: OSError) -> LaneError:
        """Writing failed: the lane is over (every stream ends); the error to raise."""
        reason = f"lane write failed: {exc}"
        self.close(reason)
        return LaneError("UNAVAILABLE", reason)

    def forget(self, stream_id: int) -> None:
        """A stream is over: frames for it are dropped from now on."""
        with self._lock:
            self._streams.pop(stream_id, None)

    def feed(self, data: bytes | memoryview) -> None:
        """Bytes from the peer (the reader thread of this lane). LaneError: a protocol error
        (the lane must close)."""
        for kind, stream_id, payload in self._parser.feed(data):
            self._dispatch(kind, stream_id, payload)

    def read_from(self, sock: socket.socket) -> None:
        """Read frames from ``sock`` until EOF (the reader thread of this lane; the transport
        must then be only this socket). LaneError: a protocol error (the lane must close).

        Small frames are cut from a buffer that reads many at once; a large payload is read
        straight into a buffer of its own (one copy, where :meth:`feed` makes three)."""
        for kind, stream_id, head, rest in frames_from(sock):
            payload: bytes | bytearray | Piped = head
            if rest:
                with self._lock:
                    stream = self._streams.get(stream_id)
                if stream is not None and kind == MSG:
                    payload = stream.take_large(bytes(head), rest, sock)
                else:
                    payload = read_rest(sock, head, rest)
            self._dispatch(kind, stream_id, payload)

    def _dispatch(self, kind: int, stream_id: int, payload: bytes | bytearray | Piped) -> None:
        if stream_id == 0:
            if kind == HELLO and self.on_hello is not None and not isinstance(payload, Piped):
                self.on_hello(bytes(payload))
            return
        with self._lock:
            stream = self._streams.get(stream_id)
            new = stream is None and stream_id > self._max_id
        if new and kind == MSG and self._on_new_stream is not None:
            stream = self._on_new_stream(self, stream_id)
        if stream is not None:
            stream.deliver(kind, payload)

    def close(self, reason: str = "the lane closed") -> None:
        """End every stream (UNAVAILABLE); idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            streams = list(self._streams.values())
            self._streams.clear()
        if self._splice_to is not None:
            self._splice_to.close()
        self.pipes.close()
        for stream in streams:
            stream.terminate(LaneError("UNAVAILABLE", reason))



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
  says it credits every N consumed bytes (see ``CREDIT``); ``fds=1`` (a lane on a unix socket)
  that it takes ``FD`` frames. Before the HELLO, the manager reads
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
- ``FD`` (client → manager, no payload): the client hands a socket over on the stream, attached
  to the frame (``SCM_RIGHTS``; see :mod:`.lanefds`): the stream's next message is that socket.

This module is both ends' common part (:class:`Lane`, :class:`LaneStream`; the framing is
:mod:`.laneframes`); the manager's listener is ``kdiag_manager.laneserver``, the CLI's end
``kdiag.session.lane``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from .lanefds import FdReader, send_fd, socket_from
from .laneframes import (  # (the wire format; re-exported: both ends import it from here)
    ABORT,
    CREDIT,
    END,
    FD,
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
from .lanepipes import LaneFd, Piped, PipePool
from .lanestream import (  # (flow control; re-exported)
    CLIENT_CREDIT_STEP,
    CREDIT_STEP,
    LEGACY_CREDIT_STEP,
    MIN_WINDOW,
    SEND_BUDGET,
    WINDOW,
    LaneStream,
)

__all__ = ["ABORT", "CLIENT_CREDIT_STEP", "CREDIT", "CREDIT_STEP", "END", "FD", "HEADER", "HELLO",
           "LEGACY_CREDIT_STEP", "MAX_PAYLOAD", "MIN_WINDOW", "MSG", "SEND_BUDGET", "WINDOW",
           "FrameParser", "Lane", "LaneError", "LaneStream", "frame", "sockaddr", "socket_sender"]

log = logging.getLogger(__name__)

FEATURES = f"credit={CREDIT_STEP}".encode()
"""What the manager's HELLO answer announces (and ``fds=1`` on a unix socket: ``features_for``)."""
HELLO_DEADLINE = 5.0
"""Seconds from the accept within which the manager must have a connection's whole HELLO."""
MAX_HELLO = 4096
"""The largest HELLO the manager reads (the token is tens of bytes)."""


def features_for(lane: Lane) -> bytes:
    """The manager's HELLO answer on ``lane``: FEATURES, and ``fds=1`` if it takes FD frames."""
    return FEATURES + (b" fds=1" if lane.takes_fds else b"")


def features(payload: bytes) -> dict[str, str]:
    """The ``name=value`` pairs of a HELLO answer (unknown or malformed words are ignored)."""
    pairs = (word.partition("=") for word in payload.decode(errors="replace").split())
    return {name: value for name, sep, value in pairs if sep}


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
        # The socket FD frames go out on (a unix one), while the lane is open.
        self._fd_sock = sock if sock is not None and sock.family == socket.AF_UNIX else None
        self.peer_takes_fds = False  # (client) the manager announced ``fds=1``
        # (Manager) FD frames may come: the lane is on a unix socket (``features_for``).
        self.takes_fds = self._fd_sock is not None
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
        announced = features(payload)
        step = announced.get("credit", "")
        if step.isdigit() and int(step) > 0:
            self.peer_credit_step = int(step)
        self.peer_takes_fds = announced.get("fds") == "1"

    @property
    def can_hand_off(self) -> bool:
        """(Client.) Can sockets be handed to the manager on this lane (``send_fd``)?"""
        return self._fd_sock is not None and self.peer_takes_fds and not self.closed

    def send_fd(self, stream: int, fd: int) -> None:
        """Write an ``FD`` frame for ``stream`` with ``fd`` attached (LaneError if the lane is
        closed, cannot carry descriptors, or writing fails)."""
        if self.closed or self._fd_sock is None:
            raise LaneError("UNAVAILABLE", "the lane is closed")
        try:
            with self._send_lock:
                send_fd(self._fd_sock, HEADER.pack(FD, stream, 0), fd)
        except OSError as exc:
            raise self._write_failed(exc) from None

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

    def read_from(self, sock: socket.socket, take_fds: bool = False) -> None:
        """Read frames from ``sock`` until EOF (the reader thread of this lane; the transport
        must then be only this socket). LaneError: a protocol error (the lane must close).
        With ``take_fds`` (the manager, on a unix socket), ``FD`` frames hand sockets over.

        Small frames are cut from a buffer that reads many at once; a large payload is read
        straight into a buffer of its own (one copy, where :meth:`feed` makes three)."""
        fds = FdReader(sock) if take_fds else None
        try:
            for kind, stream_id, head, rest in frames_from(sock, fds.recv_into if fds else None):
                payload: bytes | bytearray | Piped | socket.socket = head
                if kind == FD:
                    if fds is None or rest or head:
                        raise LaneError("INVALID_ARGUMENT", "an FD frame where none may come")
                    handed = socket_from(fds.take())
                    if handed is None:
                        raise LaneError("INVALID_ARGUMENT", "an FD frame without a socket")
                    payload = handed
                elif rest:
                    with self._lock:
                        stream = self._streams.get(stream_id)
                    if stream is not None and kind == MSG:
                        payload = stream.take_large(bytes(head), rest, sock)
                    else:
                        payload = read_rest(sock, head, rest)
                self._dispatch(kind, stream_id, payload)
        finally:
            if fds is not None:
                fds.close()

    def _dispatch(self, kind: int, stream_id: int,
                  payload: bytes | bytearray | Piped | socket.socket) -> None:
        if isinstance(payload, socket.socket):
            with self._lock:
                stream = self._streams.get(stream_id)
            if stream is None:  # (over: the socket is nobody's)
                payload.close()
            else:
                stream.deliver(kind, payload)
            return
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
        self._fd_sock = None
        self.pipes.close()
        for stream in streams:
            stream.terminate(LaneError("UNAVAILABLE", reason))



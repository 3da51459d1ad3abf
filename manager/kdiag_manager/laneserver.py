"""The manager's end of the lane: accepting lane connections and serving their streams.

The wire format, and what both ends share, is :mod:`kdiag_manager.wire.lane`; each stream is
served by the same Tunnel handler as a gRPC call, through :class:`ServerContext`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .lanegate import MAX_PENDING, LaneGate
from .wire.channel import widen_send_buffer
from .wire.lane import (
    HELLO,
    HELLO_DEADLINE,
    Lane,
    LaneError,
    LaneStream,
    features_for,
    sockaddr,
    socket_sender,
)
from .wire.lanepipes import Piped
from .wire.pumps import Splice

log = logging.getLogger(__name__)

BACKLOG = 128
Handler = Callable[[Iterator[Any], Any], Iterator[bytes | memoryview]]
"""A stream handler as gRPC calls it: (request iterator, context) → response messages."""


class _Abort(Exception):
    pass


class ServerContext:
    """What a Tunnel handler uses of a gRPC ServicerContext, for a lane stream; and what the
    lane offers beyond it: each message the handler yields is written before the next is
    asked for (a pump may reuse its buffer), and :meth:`max_message` sizes them."""

    writes_each_message = True

    def __init__(self, stream: LaneStream) -> None:
        self._stream = stream

    def max_message(self) -> int:
        """The stream's share of the lane's sending budget (see ``wire.lane``)."""
        return self._stream.max_message()

    def accept_piped(self) -> None:
        """The handler writes ``Piped`` requests to its socket (see ``wire.lanepipes``)."""
        self._stream.accept_piped()

    def takes_fds(self) -> bool:
        """Can the client hand sockets over on this stream (``TunnelOpen.handoff``)?"""
        return self._stream.lane.takes_fds

    def splicer(self) -> Splice | None:
        """How a pump splices its socket's bytes to the lane (None: it cannot here)."""
        return self._stream.send_spliced if self._stream.lane.can_splice else None

    def add_callback(self, fn: Callable[[], None]) -> bool:
        return self._stream.add_callback(fn)

    def is_active(self) -> bool:
        return not self._stream.over

    def abort(self, code: Any, details: str) -> None:
        self._stream.abort(getattr(code, "name", str(code)), details)
        raise _Abort(details)


class LaneServer:
    """Accepts lane connections; each, once its HELLO carries the token (checked by the
    :class:`~.lanegate.LaneGate`, on one thread for all that wait), serves streams with
    ``handler`` on worker threads."""

    def __init__(self, listener: socket.socket, check_token: Callable[[str], bool],
                 handler: Handler, decode: Callable[[bytes | bytearray], Any],
                 submit: Callable[..., None], *, hello_deadline: float = HELLO_DEADLINE,
                 max_pending: int = MAX_PENDING) -> None:
        self._listener = listener
        self._handler = handler
        self._decode = decode
        self._submit = submit
        self._lanes: dict[Lane, socket.socket] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.gate = LaneGate(listener, lambda token: check_token(token.decode(errors="replace")),
                             self._admit, deadline=hello_deadline, max_pending=max_pending)

    def start(self) -> None:
        """Accept (and check HELLOs) on the gate's thread."""
        self.gate.start()

    def _admit(self, sock: socket.socket) -> None:
        """A connection that authenticated: serve it on a thread of its own."""
        threading.Thread(target=self._serve, args=(sock,), daemon=True, name="lane-read").start()

    def _serve(self, sock: socket.socket) -> None:
        """Answer the HELLO, then read the lane's streams until it closes."""
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:  # (over TCP the kernel grows the buffers by itself)
            widen_send_buffer(sock)

        def new_stream(lane: Lane, stream_id: int) -> LaneStream:
            stream = LaneStream(lane, stream_id, client=False)
            lane.add(stream)
            self._submit(self._run, stream)
            return stream

        lane = Lane(socket_sender(sock), new_stream, sock=sock)
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._lanes[lane] = sock
        try:
            lane.send(HELLO, 0, features_for(lane))
            lane.read_from(sock, take_fds=lane.takes_fds)
        except (OSError, LaneError) as exc:
            log.debug("lane: %s", exc)
        finally:
            with self._lock:
                self._lanes.pop(lane, None)
            lane.close("the client's lane closed")
            sock.close()

    def _run(self, stream: LaneStream) -> None:
        """Call the handler with the stream's messages; send what it yields, then END."""
        context = ServerContext(stream)

        def requests() -> Iterator[Any]:
            while True:
                payload = stream.receive()
                if payload is None:
                    return
                if isinstance(payload, (Piped, socket.socket)):
                    yield payload
                else:
                    yield self._decode(payload)

        try:
            for message in self._handler(requests(), context):
                stream.send_message(message)
            stream.end()
        except _Abort:
            pass
        except LaneError as exc:
            stream.abort(exc.code_name, exc.details_text)
        except Exception as exc:
            log.exception("lane stream %d failed", stream.id)
            stream.abort("UNKNOWN", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop accepting; close every lane (their streams end)."""
        with self._lock:
            self._closed = True
            lanes = list(self._lanes.items())
        self.gate.close()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for lane, sock in lanes:
            lane.close("the manager is stopping")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the client sees the lane end


def listen(address: str) -> tuple[socket.socket, str]:
    """A lane listener on ``address`` (see :func:`sockaddr`) and its real address."""
    family, where = sockaddr(address)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if isinstance(where, str):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        sock.bind(where)
        os.chmod(where, 0o600)
        sock.listen(BACKLOG)
        return sock, address
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    sock.listen(BACKLOG)
    return sock, f"{where[0]}:{sock.getsockname()[1]}"

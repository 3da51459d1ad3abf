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

from .wire.lane import (
    HELLO,
    HELLO_TIMEOUT,
    Lane,
    LaneError,
    LaneStream,
    read_into,
    sockaddr,
    socket_sender,
)

log = logging.getLogger(__name__)

Handler = Callable[[Iterator[Any], Any], Iterator[bytes]]
"""A stream handler as gRPC calls it: (request iterator, context) → response messages."""


class _Abort(Exception):
    pass


class ServerContext:
    """What a Tunnel handler uses of a gRPC ServicerContext, for a lane stream."""

    def __init__(self, stream: LaneStream) -> None:
        self._stream = stream

    def add_callback(self, fn: Callable[[], None]) -> bool:
        return self._stream.add_callback(fn)

    def is_active(self) -> bool:
        return not self._stream.over

    def abort(self, code: Any, details: str) -> None:
        self._stream.abort(getattr(code, "name", str(code)), details)
        raise _Abort(details)


class LaneServer:
    """Accepts lane connections; each, once its HELLO carries the token, serves streams with
    ``handler`` on worker threads."""

    def __init__(self, listener: socket.socket, check_token: Callable[[str], bool],
                 handler: Handler, decode: Callable[[bytes], Any],
                 submit: Callable[..., None]) -> None:
        self._listener = listener
        self._check_token = check_token
        self._handler = handler
        self._decode = decode
        self._submit = submit
        self._lanes: dict[Lane, socket.socket] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Accept in a thread of its own."""
        threading.Thread(target=self._accept_loop, daemon=True, name="lane-accept").start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="lane-read").start()

    def _serve(self, sock: socket.socket) -> None:
        """Read one lane until it closes: HELLO with the token first, then streams."""
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        accepted = threading.Event()

        def new_stream(lane: Lane, stream_id: int) -> LaneStream:
            if not accepted.is_set():
                raise LaneError("UNAUTHENTICATED", "the lane must start with HELLO")
            stream = LaneStream(lane, stream_id, client=False)
            lane.add(stream)
            self._submit(self._run, stream)
            return stream

        lane = Lane(socket_sender(sock), new_stream)

        def on_hello(token: bytes) -> None:
            if accepted.is_set():
                return
            if not self._check_token(token.decode(errors="replace")):
                raise LaneError("UNAUTHENTICATED", "missing or invalid kdiag session token")
            accepted.set()
            sock.settimeout(None)
            lane.send(HELLO, 0)

        lane.on_hello = on_hello
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._lanes[lane] = sock
        sock.settimeout(HELLO_TIMEOUT)
        try:
            read_into(sock, lane.feed)
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
        sock.listen(16)
        return sock, address
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(where)
    sock.listen(16)
    return sock, f"{where[0]}:{sock.getsockname()[1]}"

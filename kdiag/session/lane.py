"""The CLI's end of the lane (see :mod:`kdiag_manager.wire.lane`): Tunnel calls without gRPC.

:meth:`LaneClient.method` stands in for the gRPC Tunnel method (``method(requests)`` returns a
call to iterate for the manager's frames and to ``cancel()``), so pooled and claimed tunnels run
the same code either way. The lane rides on a transport that feeds it bytes: a socket of its
own (node mode, :func:`connect_socket`) or the second port of the session's port-forward
(``kdiag.kube.portforward``), which attaches a new lane each time it connects.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from kdiag_manager.wire import frames
from kdiag_manager.wire.channel import widen_send_buffer
from kdiag_manager.wire.lane import (
    HELLO,
    Lane,
    LaneError,
    LaneStream,
    sockaddr,
    socket_sender,
)
from kdiag_manager.wire.lanefds import HandOff
from kdiag_manager.wire.lanepipes import Piped
from kdiag_manager.wire.pumps import Splice
from kdiag_manager.wire.workers import Workers

# Each call's request iterator runs on one of these (as gRPC runs it on a thread of its own).
_SENDERS = Workers("lane-send")
HELLO_WAIT = 2.0


class LaneRpcError(grpc.RpcError):
    """A lane call that ended abnormally, shaped like gRPC's (``code()``, ``details()``)."""

    def __init__(self, error: LaneError) -> None:
        super().__init__(str(error))
        self._code = getattr(grpc.StatusCode, error.code_name, grpc.StatusCode.UNKNOWN)
        self._details = error.details_text

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class LaneCall:
    """One Tunnel call on the lane: iterate it for the manager's decoded frames. Each request
    message is written before the next is asked for (a pump may reuse its buffer), and
    :meth:`max_message` sizes them."""

    writes_each_message = True

    def __init__(self, stream: LaneStream, requests: Iterator[bytes | memoryview | HandOff]
                 ) -> None:
        self._stream = stream
        _SENDERS.submit(self._send, requests)

    def max_message(self) -> int:
        """The stream's share of the lane's sending budget (see ``wire.lane``)."""
        return self._stream.max_message()

    def splicer(self) -> Splice | None:
        """How a pump splices its socket's bytes to the lane (None: not on this transport)."""
        return self._stream.send_spliced if self._stream.lane.can_splice else None

    def can_hand_off(self) -> bool:
        """May a request be a :class:`HandOff` (a unix lane to a manager that takes them)?"""
        return self._stream.lane.can_hand_off

    def _send(self, requests: Iterator[bytes | memoryview | HandOff]) -> None:
        try:
            for message in requests:
                if isinstance(message, HandOff):
                    self._stream.send_fd(message.sock)
                else:
                    self._stream.send_message(message)
            self._stream.end()
        except LaneError as exc:  # the call is over (or never began: no lane)
            self._stream.terminate(exc)
        except Exception as exc:  # the request iterator failed: the call is cancelled
            self._stream.abort("CANCELLED", f"request iterator failed: {exc}")

    def __iter__(self) -> LaneCall:
        return self

    def __next__(self) -> frames.Frame | Piped:
        try:
            payload = self._stream.receive()
        except LaneError as exc:
            raise LaneRpcError(exc) from None
        if payload is None:
            raise StopIteration
        if isinstance(payload, socket.socket):  # (only the manager's reader takes sockets)
            payload.close()
            raise LaneRpcError(LaneError("INTERNAL", "a socket handed to the client"))
        return payload if isinstance(payload, Piped) else frames.decode(payload)

    def accept_piped(self) -> None:
        """The caller writes ``Piped`` frames to its socket (see ``wire.lanepipes``)."""
        self._stream.accept_piped()

    def cancel(self) -> None:
        """End the call (the manager's handler sees it end, as with gRPC)."""
        self._stream.abort("CANCELLED", "cancelled by the client")


class LaneClient:
    """The session's lane: the current connection (replaced when the transport reconnects)
    and the Tunnel method on it."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._lane: Lane | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def attach(self, send_raw: Callable[[list[bytes | memoryview]], None],
               sock: socket.socket | None = None) -> Lane:
        """A new lane connection over ``send_raw`` (writing to ``sock``, when it is a socket of
        its own): say HELLO; feed it what the transport receives and close it when the
        transport ends."""
        lane = Lane(send_raw, sock=sock)

        def on_hello(payload: bytes) -> None:
            lane.hello_answered(payload)
            with self._lock:
                if self._lane is lane:
                    self._ready.set()

        lane.on_hello = on_hello
        with self._lock:
            if self._lane is not None:
                self._lane.close("replaced by a new lane")
            self._lane = lane
            self._ready.clear()
        lane.send(HELLO, 0, self._token)
        return lane

    def wait_ready(self, timeout: float = HELLO_WAIT) -> bool:
        """Wait until the manager has accepted the lane."""
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        """Is there a lane the manager has accepted, still open?"""
        lane = self._lane
        return self._ready.is_set() and lane is not None and not lane.closed

    def method(self, requests: Iterator[bytes | memoryview | HandOff],
               metadata: Any = None) -> LaneCall:
        """A Tunnel call, as ``kdiag.session.tunnel.tunnel_method``'s (``metadata`` is not
        needed: the lane's HELLO carried the token)."""
        lane = self._lane
        if lane is None:
            lane = Lane(lambda pieces: None)
            lane.close("no lane")
        return LaneCall(LaneStream(lane, 0, client=True), requests)

    def close(self) -> None:
        """Close the current lane (its calls end)."""
        with self._lock:
            lane, self._lane = self._lane, None
            self._ready.clear()
        if lane is not None:
            lane.close("the session is closing")


def connect_socket(address: str, token: str, timeout: float = 5.0) -> tuple[LaneClient,
                                                                               socket.socket]:
    """A lane on a socket of its own to ``address`` (``unix:/path`` or ``host:port``), read by
    a thread; OSError if it cannot connect."""
    family, target = sockaddr(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:  # (over TCP the kernel grows the buffers by itself)
        widen_send_buffer(sock)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    client = LaneClient(token)
    lane = client.attach(socket_sender(sock), sock)
    threading.Thread(target=_read, args=(sock, lane), daemon=True, name="lane-read").start()
    return client, sock


def _read(sock: socket.socket, lane: Lane) -> None:
    try:
        lane.read_from(sock)
    except (OSError, LaneError):
        pass
    finally:
        lane.close("the manager's lane closed")
        with contextlib.suppress(OSError):
            sock.close()

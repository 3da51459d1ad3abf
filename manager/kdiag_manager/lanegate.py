"""The lane's gate: connections wait here, on one thread, until their HELLO carries the token.

Before a peer has authenticated it gets nothing but the chance to send one small HELLO frame:

- the first frame must be ``HELLO`` on stream 0 of at most :data:`~.wire.lane.MAX_HELLO` bytes
  (its header is judged as soon as its 9 bytes are in; nothing past the frame is read);
- the whole HELLO must arrive within :data:`~.wire.lane.HELLO_DEADLINE` seconds of the
  accept, however the peer trickles it (one deadline, not one per read);
- at most ``max_pending`` connections wait at once; a new one beyond that pushes out the one
  that has waited longest (a peer that authenticates at once, as kdiag does, never waits long);
- no thread per waiting connection: one selector thread accepts and reads every HELLO.

Whatever breaks a rule is closed at once: with a plain close when it sent something wrong (a
client with a wrong token reads the end of the lane), with a reset when it ran out of time or
was pushed out. A connection whose token is right is handed to ``admit`` (blocking again), to
be served by the lane machinery.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .wire.lane import HEADER, HELLO, HELLO_DEADLINE, MAX_HELLO
from .wire.sockets import abort

log = logging.getLogger(__name__)

MAX_PENDING = 64
"""Connections that may wait for their HELLO at once."""


@dataclass
class _Waiting:
    deadline: float
    received: bytearray = field(default_factory=bytearray)


class LaneGate:
    """Accepts on ``listener`` and admits the connections whose HELLO carries the token."""

    def __init__(self, listener: socket.socket, check_token: Callable[[bytes], bool],
                 admit: Callable[[socket.socket], None], *, deadline: float = HELLO_DEADLINE,
                 max_pending: int = MAX_PENDING) -> None:
        self._listener = listener
        self._check_token = check_token
        self._admit = admit
        self._deadline = deadline
        self._max_pending = max_pending
        self._waiting: OrderedDict[socket.socket, _Waiting] = OrderedDict()  # oldest first
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = threading.Event()
        self.refused = 0
        """Connections closed before they authenticated (a figure for tests)."""

    @property
    def waiting(self) -> int:
        """Connections waiting for their HELLO now."""
        return len(self._waiting)

    def start(self) -> None:
        """Accept and read HELLOs on a thread of its own."""
        self._listener.setblocking(False)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        threading.Thread(target=self._loop, daemon=True, name="lane-gate").start()

    def close(self) -> None:
        """Stop accepting; close every waiting connection."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        try:
            while not self._closed.is_set():
                first = next(iter(self._waiting.values()), None)
                timeout = None if first is None else max(0.0, first.deadline - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is not self._wake_r:
                        self._read(key.fileobj)  # type: ignore[arg-type]
                self._expire()
        finally:
            for sock in list(self._waiting):
                self._drop(sock, "the manager is stopping", reset=True)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self) -> None:
        # A few at a time, each read at once: a client that sends its HELLO right after
        # connecting (kdiag does) is through before a flood of others can push it out.
        for _ in range(max(1, self._max_pending // 4)):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the listener closed
                self._closed.set()
                return
            sock.setblocking(False)
            while len(self._waiting) >= self._max_pending:
                self._drop(next(iter(self._waiting)), "pushed out by a newer connection",
                           reset=True)
            self._waiting[sock] = _Waiting(time.monotonic() + self._deadline)
            self._selector.register(sock, selectors.EVENT_READ)
            self._read(sock)

    def _read(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is None:
            return
        got = waiting.received
        need = HEADER.size + MAX_HELLO
        if len(got) >= HEADER.size:
            need = HEADER.size + HEADER.unpack_from(got)[2]
        try:
            data = sock.recv(need - len(got))  # never past the HELLO frame
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock, "closed before its HELLO")
            return
        got += data
        if len(got) < HEADER.size:
            return
        kind, stream, length = HEADER.unpack_from(got)
        if kind != HELLO or stream != 0 or length > MAX_HELLO:
            self._drop(sock, f"a frame of kind {kind} and {length} bytes before its HELLO")
            return
        if len(got) < HEADER.size + length:
            return
        token = bytes(got[HEADER.size:])
        if not self._check_token(token):
            self._drop(sock, "a wrong token")
            return
        self._forget(sock)
        sock.setblocking(True)
        try:
            self._admit(sock)
        except Exception:
            log.exception("lane: admitting a connection failed")
            abort(sock)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._waiting:
            sock, waiting = next(iter(self._waiting.items()))
            if waiting.deadline > now:
                return
            self._drop(sock, f"no HELLO within {self._deadline:g} s", reset=True)

    def _forget(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)

    def _drop(self, sock: socket.socket, why: str, *, reset: bool = False) -> None:
        log.debug("lane: refused a connection: %s", why)
        self._forget(sock)
        self.refused += 1
        if reset:
            abort(sock)
        else:
            sock.close()

"""A redirected connection relayed by the manager itself, to the socket the CLI handed over.

In node mode the CLI hands its operator-side socket to the manager over the lane
(``TunnelOpen.handoff``, ``wire.lanefds``); the manager then joins the two sockets here with
splice(2), both ways, and the connection's bytes never leave the kernel nor reach the CLI.
Measured on the redirect benchmark (256 MiB, 2 cores): the relay through the lane and the CLI
spent ≈ 0.37 s of CPU per transfer over four processes; this path leaves the sender, the sink
and one relay thread: throughput ratio medians 0.39-0.43 → 0.55-0.59 of direct (README, ⁵).
The CLI offers it unless ``KDIAG_HANDOFF=0`` (``kdiag.session.pooledtunnel``): see there.
The same relay carries the connections that stay local (:mod:`.splice`).

Half-closes pass on (EOF → ``shutdown(SHUT_WR)``), but never a reset's: once the error of a
reset has been read by one direction, the other reads 0 from the same socket, like an EOF
(:func:`~.wire.sockets.was_reset` tells them apart). An error in either direction resets both
sockets, so the other direction and both peers see it at once.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .wire.pumps import Pipe
from .wire.sockets import nodelay, reset, reset_on_close, was_reset


@dataclass
class Relayed:
    """What a relay carried, and why it ended if not cleanly (EOF both ways)."""

    to_operator: int = 0
    from_operator: int = 0
    error: str = ""


class _Relay:
    """Both directions' counts, and the first error (the cause; the other direction's error
    follows from the reset it sent)."""

    def __init__(self, peer: socket.socket, operator: socket.socket) -> None:
        self.socks = (peer, operator)
        self.counts = [0, 0]  # peer → operator, operator → peer
        # (Per socket.) The other direction ended it cleanly: its connection may be closed
        # now without a reset (both FINs acknowledged), so a read of 0 is an end.
        self.ended = [False, False]
        self.error = ""
        self._lock = threading.Lock()

    def fail(self, cause: str, exc: OSError) -> None:
        """One direction failed: record why (if first) and reset both connections."""
        with self._lock:
            self.error = self.error or f"{cause}: {exc.strerror or exc}"
        for sock in self.socks:
            reset(sock)


def _splice(relay: _Relay, way: int, cause: str, done: threading.Event | None = None) -> None:
    """One direction (0: peer → operator) until EOF (then half-close its destination) or an
    error (then reset both)."""
    src, dst = relay.socks if way == 0 else relay.socks[::-1]
    pipe: Pipe | None = None
    try:
        pipe = Pipe()
        while n := os.splice(src.fileno(), pipe.w, pipe.capacity):
            while n:  # (the pipe is drained before the next read: it never holds more)
                moved = os.splice(pipe.r, dst.fileno(), n)
                n -= moved
                relay.counts[way] += moved
        if not relay.ended[way] and was_reset(src):  # (its error went to the other way)
            raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
        relay.ended[1 - way] = True  # (first: the peer may acknowledge before shutdown returns)
        dst.shutdown(socket.SHUT_WR)
    except OSError as exc:
        relay.fail(cause, exc)
    finally:
        if pipe is not None:
            pipe.close()
        if done is not None:
            done.set()


def relay(peer: socket.socket, operator: socket.socket, first: bytes,
          submit: Callable[..., Any]) -> Relayed:
    """Write ``first`` (the peer's bytes the CLI never wrote) to ``operator``, then splice
    ``peer`` ⇄ ``operator`` until both directions are over; ``submit(fn, *args)`` runs the
    operator → peer direction on another thread. Blocks; leaves both sockets open (their owner
    closes them)."""
    nodelay(peer)  # (relayed bytes were delayed by their sender already, if at all)
    reset_on_close(operator)  # (the peer's is: see redirect; their owner closes them cleanly)
    state = _Relay(peer, operator)
    try:
        for sock in (peer, operator):  # (splice on a non-blocking socket fails with EAGAIN;
            sock.setblocking(True)     # the flag is the open file's: the client's shares it)
    except OSError as exc:  # (closed: the call ended meanwhile)
        state.fail("connection reset", exc)
        return Relayed(error=state.error)
    back = threading.Event()
    submit(_splice, state, 1, "operator side", back)
    try:
        operator.sendall(first)
        state.counts[0] += len(first)
    except OSError as exc:
        state.fail("operator side", exc)
    else:
        _splice(state, 0, "connection reset")
    back.wait()
    return Relayed(state.counts[0], state.counts[1], state.error)

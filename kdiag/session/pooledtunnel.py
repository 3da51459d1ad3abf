"""A pooled tunnel: a Tunnel stream opened in advance, carrying one redirected connection after
another (see :class:`PooledTunnel`; one connection's pumps are :mod:`.tunnel`).

On a lane over a unix socket (node mode) it hands each connection's operator-side socket to the
manager instead of pumping it (``TunnelOpen.handoff``): the manager relays the connection in
the kernel, and reports its counts when it is over.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from kdiag_manager.wire import frames
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.lanefds import HandOff
from kdiag_manager.wire.lanepipes import Piped
from kdiag_manager.wire.pumps import MIN_CHUNK
from kdiag_manager.wire.sockets import abort, close_cleanly, readable

from .tunnel import TunnelStats, pump_responses, pump_socket, start_call

# A pooled tunnel's early data up to this size is written before ``connected`` is sent.
EARLY_BEFORE_ANSWER = 16 * 1024
# How long ``connected`` waits for the operator side's first reply to travel with it. Nothing
# waits on ``connected`` itself (the manager keeps the peer's bytes flowing meanwhile), while
# a reply sent separately costs a second message: with a request/response protocol the reply
# is there within a fraction of this.
FIRST_REPLY_WAIT = 0.002
HANDOFF_ENV = "KDIAG_HANDOFF"
"""``0``: never hand connections to the manager (the CLI pumps them, as in a pod). On by
default where the lane allows it (node mode). It was opt-in for a few hours: ``make chaos``'s "200
connections, CLI killed half-way" failed with it; the causes were in the manager and hit both
paths (conntrack entries forgotten by client port, a reset read as a clean end, a connection
taken but not yet counted at exit: manager/README.md, "The anchor"); since, 120 rounds of it
passed with the handoff (README, ⁵)."""


def handoff_enabled() -> bool:
    """Is the handoff on (:data:`HANDOFF_ENV` is not ``0``)?"""
    return os.environ.get(HANDOFF_ENV) != "0"


def _await_handoff_end(call: Any, stats: TunnelStats) -> bool:
    """A connection handed over to the manager: wait for its end, take its counts; whether it
    ended cleanly (the stream can carry another)."""
    try:
        for frame in call:
            kind = None if isinstance(frame, (memoryview, Piped)) else frame.WhichOneof("msg")
            if kind == "handoff_ended":
                ended = frame.handoff_ended
                stats.to_operator, stats.from_operator = ended.to_operator, ended.from_operator
                stats.reset, stats.error = bool(ended.error), ended.error
                return not ended.error
            stats.reset = True
            if kind == "reset":  # (e.g. the peer reset before the manager could relay it)
                stats.error = frame.reset
            else:
                stats.error = f"the manager sent {kind or 'data'} for a connection it relays"
                call.cancel()
            return False
        stats.reset, stats.error = True, frames.TUNNEL_ENDED_FIRST
    except grpc.RpcError as exc:
        stats.reset = True
        stats.error = f"{exc.code().name}: {exc.details()}"
    return False


class _Carried:
    """One connection on a pooled tunnel. Each direction finishes it once; the last one closes
    the socket and reports (from whichever thread that is)."""

    def __init__(self, assigned: pb.NewConnection, sock: socket.socket,
                 on_done: Callable[[], None]) -> None:
        self.assigned = assigned
        self.sock = sock
        self.stats = TunnelStats(assigned.connection_id)
        self.early = b""  # bytes from the manager still to write (large early data)
        self.write_failed = False  # writing the early bytes failed: the stream is over
        self.handed_off = False  # the manager relays it (reported in ``handoff_ended``)
        self._on_done: Callable[[], None] | None = on_done
        self._left = 2
        self._cut = False
        self._lock = threading.Lock()

    def finish(self, both: bool = False) -> None:
        """One direction is over (``both``: the stream is over, so is the other one: the
        connection is cut, and the close resets it, see ``reset_on_close``)."""
        with self._lock:
            self._cut = self._cut or both
            self._left = 0 if both else self._left - 1
            on_done = self._on_done if self._left <= 0 else None
            if on_done is not None:
                self._on_done = None
        if on_done is not None:
            with contextlib.suppress(OSError):
                if self._cut or self.stats.reset:
                    self.sock.close()
                else:
                    close_cleanly(self.sock)
            on_done()


@dataclass
class _Refused:
    """Connecting the operator side failed: the manager fails the connection open."""

    assigned: pb.NewConnection
    stats: TunnelStats


@dataclass
class _Hooks:
    connect: Callable[[pb.NewConnection], socket.socket]
    on_assigned: Callable[[pb.NewConnection], None]
    on_finished: Finished


# What :meth:`PooledTunnel.run` reports when a connection is over: the assignment, what it
# carried, and the operator-side socket (None: connecting it failed, the connection was refused).
Finished = Callable[[pb.NewConnection, TunnelStats, socket.socket | None], None]


def _first_reply(sock: socket.socket, wait: float) -> bytes:
    """What the operator side answers within ``wait`` seconds (b"": nothing yet, or EOF)."""
    try:
        return sock.recv(MIN_CHUNK, socket.MSG_DONTWAIT) if readable([sock], wait) else b""
    except BlockingIOError:
        return b""


class PooledTunnel:
    """A Tunnel opened in advance, parked at the manager until it is handed a connection.

    It serves connections one after another until the stream ends: for each, it connects the
    operator side with ``connect`` (refusing the connection if that fails, so the manager fails
    it open), calls ``on_assigned`` (before the manager hears ``connected``: a connection is
    counted before its client can have an answer), pumps bytes, and calls ``on_finished`` once both directions
    are over. The manager reuses the stream for another connection after a clean one while
    fewer than ``keep_idle`` tunnels are idle. :meth:`cancel` ends it.

    Threads: gRPC's request thread (:meth:`_requests`) carries a new connection's whole
    critical path: it reads the assignment, connects the operator side, writes the early
    bytes, and answers ``connected`` with the operator side's first reply when that comes at
    once — one gRPC message back, no thread hand-off in between; it reports the assignment
    while the operator side works on the early bytes. Then it pumps operator side → manager,
    while the thread in :meth:`run` (handed the connection off the critical path) pumps
    manager → operator side. The next assignment is read once
    both directions of the previous connection are over.
    """

    def __init__(self, method: Any, metadata: list[tuple[str, str]], redirect_id: int,
                 keep_idle: int = 0, raw: bool = False) -> None:
        # To the request side: the hooks from run() first, then True after each clean
        # connection (read the next assignment), or None (stop).
        self._to_requests: queue.SimpleQueue[_Hooks | bool | None] = queue.SimpleQueue()
        # To run(): each connection to pump and report, a refusal to report, or None (stop).
        self._to_responses: queue.SimpleQueue[_Carried | _Refused | None] = queue.SimpleQueue()
        self.connection_id = 0  # the connection carried now (or last)
        self.over = False  # run() has returned: the stream carries nothing more
        # Set by the request thread when an assignment arrives, before anything answers it:
        # the redirect's idle set learns of the assignment later (in run()'s thread, which a
        # busy machine may not schedule before the operator side's first reply is through),
        # so closing the redirect asks the tunnel itself whether it is still idle.
        self._carrying = False
        self._cancelled = False
        self._state_lock = threading.Lock()
        self._raw = raw  # the manager accepts raw data frames
        self._handoff = handoff_enabled()  # (offered in TunnelOpen; used only if offered)
        # (ChannelClosed if the session's channel is closed already)
        self._call = start_call(method, self._requests(redirect_id, keep_idle), metadata)

    def _requests(self, redirect_id: int, keep_idle: int
                  ) -> Iterator[bytes | memoryview | HandOff]:
        yield frames.control(pb.TunnelFrame(open=pb.TunnelOpen(
            redirect_id=redirect_id, keep_idle=keep_idle, raw_data=True, early_data=True,
            handoff=self._handoff)))
        hooks = self._to_requests.get()
        if not isinstance(hooks, _Hooks):
            return
        try:
            while True:
                with self._state_lock:
                    self._carrying = False
                assigned = self._next_assignment()
                if assigned is None:
                    return
                carried = yield from self._answer(assigned, hooks)
                if carried is None:
                    return
                try:
                    if not carried.stats.reset and not carried.handed_off:
                        yield from pump_socket(carried.sock, carried.stats, self._raw,
                                                self._call)
                finally:
                    carried.finish()
                if carried.stats.reset or not self._to_requests.get():
                    return  # the manager ends the stream after a reset
        finally:
            self._to_responses.put(None)

    def _next_assignment(self) -> pb.NewConnection | None:
        try:
            first = next(self._call)
        except (StopIteration, grpc.RpcError):
            return None
        if not isinstance(first, pb.TunnelFrame) or first.WhichOneof("msg") != "assigned":
            self._call.cancel()
            return None
        with self._state_lock:
            if self._cancelled:  # (unanswered: the manager fails the connection open)
                return None
            self._carrying = True
        self.connection_id = first.assigned.connection_id
        return first.assigned

    def _answer(self, assigned: pb.NewConnection, hooks: _Hooks
                ) -> Generator[bytes | memoryview | HandOff, None, _Carried | None]:
        """Connect the operator side, write the early bytes, answer (or hand the socket to
        the manager, which writes them); hand the connection to run(). None: the stream
        carries nothing more."""
        try:
            sock = hooks.connect(assigned)  # first: it is on the connection's critical path
        except OSError as exc:
            hooks.on_assigned(assigned)
            stats = TunnelStats(assigned.connection_id, reset=True,
                                error=f"operator side: {exc}")
            self._to_responses.put(_Refused(assigned, stats))
            yield frames.reset(stats.error)
            return None
        early = bytes(assigned.data)
        carried = _Carried(assigned, sock, lambda: hooks.on_finished(assigned, carried.stats,
                                                                     sock))
        can_hand_off = getattr(self._call, "can_hand_off", None)
        if self._handoff and can_hand_off is not None and can_hand_off():
            hooks.on_assigned(assigned)
            carried.handed_off = True
            self._to_responses.put(carried)
            yield HandOff(sock)  # (the socket stays open here: close() can still shut it)
            return carried
        # Large early data is written by run()'s thread after ``connected``: writing it here
        # could stall on an operator side that does not read, holding ``connected`` back until
        # the manager fails the connection open. Small early data fits any socket buffer.
        if len(early) > EARLY_BEFORE_ANSWER:
            hooks.on_assigned(assigned)
            carried.early = early
            self._to_responses.put(carried)
            yield frames.CONNECTED
            return carried
        try:
            sock.sendall(early)
        except OSError as exc:
            hooks.on_assigned(assigned)
            carried.stats.reset = True
            carried.stats.error = f"operator side: {exc.strerror or exc}"
            carried.write_failed = True
            self._call.cancel()
            abort(sock)
            self._to_responses.put(carried)
            return None
        carried.stats.to_operator += len(early)
        hooks.on_assigned(assigned)  # while the operator side reads the early bytes
        self._to_responses.put(carried)
        try:
            first = _first_reply(sock, FIRST_REPLY_WAIT)
        except OSError as exc:
            carried.stats.reset = True
            yield frames.CONNECTED
            yield frames.reset(f"operator side: {exc.strerror or exc}")
            return carried
        carried.stats.from_operator += len(first)
        yield frames.connected(first)
        return carried

    def cancel_if_idle(self) -> bool:
        """End the tunnel unless it carries a connection (that one ends by itself); whether
        it ended. A connection assigned from now on is left unanswered: the manager fails it
        open."""
        with self._state_lock:
            if self._carrying:
                return False
            self._cancelled = True
        self._call.cancel()
        self._to_requests.put(None)
        return True

    def run(self, on_assigned: Callable[[pb.NewConnection], None],
            connect: Callable[[pb.NewConnection], socket.socket],
            on_finished: Finished) -> None:
        """Serve connections until the tunnel ends (redirect over, cancelled, not reused)."""
        self._to_requests.put(_Hooks(connect, on_assigned, on_finished))
        try:
            while True:
                job = self._to_responses.get()
                if job is None:
                    return
                if isinstance(job, _Refused):
                    with contextlib.suppress(grpc.RpcError):
                        for _ in self._call:  # the manager ends the stream once it failed open
                            pass
                    on_finished(job.assigned, job.stats, None)
                    return
                if job.write_failed:  # the stream is over
                    job.finish(both=True)
                    return
                if job.handed_off:
                    if not _await_handoff_end(self._call, job.stats):
                        # Never a clean close (e.g. the manager died mid-relay): the operator
                        # side would take a cut request for a whole one.
                        abort(job.sock)
                        job.finish(both=True)
                        return
                elif not pump_responses(self._call, job.sock, job.stats, job.early,
                                       until_eof=True):
                    job.finish(both=True)  # the stream is over: so is the connection
                    return
                job.finish()
                self._to_requests.put(True)
        finally:
            self.over = True
            self._to_requests.put(None)

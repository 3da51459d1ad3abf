"""The client's end of one redirected connection: a local socket ⇄ a Tunnel stream.

The manager accepted a connection in the target's namespace; here it is joined to a socket
connected to the operator-side host:port. Half-close (eof frames) and resets propagate both ways.
Frames use the raw codec of :mod:`kdiag_manager.wire.frames`; a pooled tunnel carries one connection
after another (see :class:`PooledTunnel`).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from kdiag_manager.wire import frames
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.lanepipes import Piped
from kdiag_manager.wire.pumps import MIN_CHUNK, socket_frames
from kdiag_manager.wire.sockets import abort, readable

# A pooled tunnel's early data up to this size is written before ``connected`` is sent.
EARLY_BEFORE_ANSWER = 16 * 1024
# How long ``connected`` waits for the operator side's first reply to travel with it. Nothing
# waits on ``connected`` itself (the manager keeps the peer's bytes flowing meanwhile), while
# a reply sent separately costs a second message: with a request/response protocol the reply
# is there within a fraction of this.
FIRST_REPLY_WAIT = 0.002


@dataclass
class TunnelStats:
    """What one tunnel carried."""

    connection_id: int
    to_operator: int = 0
    from_operator: int = 0
    reset: bool = False
    error: str = ""


# glibc mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Every bulk message the CLI receives is a fresh buffer of up to 2 MiB (gRPC's, then Python's).
# With glibc's defaults these are mmapped, or trimmed off the heap top when freed, so each one
# pays page faults and page clearing again (perf: ~15% of the CLI's cycles in exc_page_fault /
# clear_page / munmap). Serving them from the heap and keeping up to 16 MiB free there cut the
# CLI's CPU on the redirect benchmark from ≈ 1.0 to ≈ 0.75 s/GB. (Setting only one of the two
# is worse than neither: it switches off glibc's own adaptation. The manager is left alone: it
# gained < 0.07 s/GB while keeping up to 25 MB more resident after a transfer, in a pod.)
_MMAP_THRESHOLD = 4 << 20  # above the largest message (2 MiB + a frame header)
_TRIM_THRESHOLD = 16 << 20


def _tune_malloc() -> None:
    """Keep message-sized buffers on the heap (process-wide; a no-op without glibc)."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl has no mallopt)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


class ChannelClosed(grpc.RpcError):
    """A Tunnel call asked for after the session closed its channel (the session is ending:
    e.g. the pod was deleted while a connection came in). Shaped like gRPC's errors."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the channel to the manager is closed"


def start_call(method: Any, requests: Iterator[bytes | memoryview],
               metadata: list[tuple[str, str]]) -> Any:
    """``method(requests)``, or :class:`ChannelClosed` if the channel is closed already."""
    try:
        return method(requests, metadata=metadata)
    except ValueError:  # grpc: "Cannot invoke RPC: Channel closed!"
        raise ChannelClosed() from None


def tunnel_method(channel: grpc.Channel) -> Any:
    """The Tunnel method with the raw frame codec (see :mod:`kdiag_manager.wire.frames`)."""
    _tune_malloc()
    return channel.stream_stream(frames.TUNNEL_METHOD, request_serializer=None,
                                 response_deserializer=frames.decode,
                                 _registered_method=True)


def _pump_socket(sock: socket.socket, stats: TunnelStats, raw: bool, call: Any
                 ) -> Iterator[bytes | memoryview]:
    """Operator side → manager: data... (raw frames if the manager accepts them), then eof or
    reset. Adaptive reads (``ChunkReader``), sized by the lane and into one reused buffer when
    ``call`` is a lane call."""
    def count(n: int) -> None:
        stats.from_operator += n

    yield from socket_frames(sock, call, raw, stats, count, "operator side")


class _CallRef:
    """The call a request generator belongs to, once the method has returned it."""

    def __init__(self) -> None:
        self._call: Any = None
        self._set = threading.Event()

    def set(self, call: Any) -> None:
        self._call = call
        self._set.set()

    def get(self) -> Any:
        self._set.wait()
        return self._call


def _outgoing(conn_id: int, sock: socket.socket, stats: TunnelStats, raw: bool,
              call: _CallRef) -> Iterator[bytes | memoryview]:
    yield frames.control(pb.TunnelFrame(open=pb.TunnelOpen(connection_id=conn_id,
                                                           raw_data=True)))
    yield from _pump_socket(sock, stats, raw, call.get())


def _pump_responses(call: Any, sock: socket.socket, stats: TunnelStats, early: bytes = b"",
                    until_eof: bool = False) -> bool:
    """Manager → operator side (``early`` bytes first), until the stream ends; closes ``sock``.

    With ``until_eof``, stop after the manager's eof instead, leaving ``sock`` open (our other
    direction may still be running) and the stream unread: return True then.
    """
    keep_open = False
    try:
        if early:
            sock.sendall(early)
            stats.to_operator += len(early)
        accept_piped = getattr(call, "accept_piped", None)
        if accept_piped is not None:  # (the lane: large data may come spliced)
            accept_piped()
        for frame in call:
            if isinstance(frame, memoryview):  # data
                sock.sendall(frame)
                stats.to_operator += len(frame)
                continue
            if isinstance(frame, Piped):  # data, in the lane stream's pipe
                stats.to_operator += frame.write_to(sock)
                continue
            kind = frame.WhichOneof("msg")
            if kind == "data":  # not in the fast path's encoding
                sock.sendall(frame.data)
                stats.to_operator += len(frame.data)
            elif kind == "eof":
                sock.shutdown(socket.SHUT_WR)
                if until_eof:
                    keep_open = True
                    return True
            elif kind == "reset":
                stats.reset = True
                stats.error = frame.reset
                abort(sock)
                break
    except grpc.RpcError as exc:
        stats.reset = True
        stats.error = f"{exc.code().name}: {exc.details()}"
        abort(sock)
    except OSError as exc:  # the operator side went away while we were writing to it
        stats.reset = True
        stats.error = f"operator side: {exc.strerror or exc}"
        call.cancel()
        abort(sock)
    finally:
        if not keep_open:
            with contextlib.suppress(OSError):
                sock.close()
    return False


def run_tunnel(method: Any, metadata: list[tuple[str, str]], conn_id: int,
               sock: socket.socket, raw: bool = False) -> TunnelStats:
    """Carry connection ``conn_id`` between the manager and ``sock`` until both sides finish.

    ``method`` is :func:`tunnel_method`'s; ``raw``: the manager accepts raw data frames.
    Blocks; closes ``sock``. gRPC consumes the request generator in its own thread.
    """
    stats = TunnelStats(conn_id)
    ref = _CallRef()
    try:
        call = start_call(method, _outgoing(conn_id, sock, stats, raw, ref), metadata)
    except ChannelClosed as exc:
        stats.reset = True
        stats.error = exc.details()
        abort(sock)
        sock.close()
        return stats
    ref.set(call)
    _pump_responses(call, sock, stats)
    return stats


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
        self._on_done: Callable[[], None] | None = on_done
        self._left = 2
        self._lock = threading.Lock()

    def finish(self, both: bool = False) -> None:
        """One direction is over (``both``: the stream is over, so is the other one)."""
        with self._lock:
            self._left = 0 if both else self._left - 1
            on_done = self._on_done if self._left <= 0 else None
            if on_done is not None:
                self._on_done = None
        if on_done is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
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
        # (ChannelClosed if the session's channel is closed already)
        self._call = start_call(method, self._requests(redirect_id, keep_idle), metadata)

    def _requests(self, redirect_id: int, keep_idle: int) -> Iterator[bytes | memoryview]:
        yield frames.control(pb.TunnelFrame(open=pb.TunnelOpen(
            redirect_id=redirect_id, keep_idle=keep_idle, raw_data=True, early_data=True)))
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
                    if not carried.stats.reset:
                        yield from _pump_socket(carried.sock, carried.stats, self._raw,
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
                ) -> Generator[bytes | memoryview, None, _Carried | None]:
        """Connect the operator side, write the early bytes, answer; hand the connection to
        run(). None: the stream carries nothing more."""
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
                if not _pump_responses(self._call, job.sock, job.stats, job.early,
                                       until_eof=True):
                    job.finish(both=True)  # the stream is over: so is the connection
                    return
                job.finish()
                self._to_requests.put(True)
        finally:
            self.over = True
            self._to_requests.put(None)

"""The manager's end of a Tunnel stream: one redirected connection's bytes, both directions.

socket → stream runs in the RPC's own thread (the response generator); stream → socket in a
worker thread. ``eof`` frames carry half-closes, ``reset`` frames carry aborts, both ways. When
the stream dies (client gone), the connection is reset.

A pooled tunnel gets its connection before the client has connected its side. Until the client
says ``connected``, every byte sent is also kept (bounded) so that, if the client refuses or
is too slow, the connection can still fail open to its original destination with nothing lost;
if the tunnel ends first (its lane gone), another tunnel takes it (``redirect.reoffer``).
A pooled tunnel whose connection ended cleanly (eof both ways) is parked again for the next
connection while its redirect has fewer idle tunnels than the client asked to keep
(``TunnelOpen.keep_idle``): a new stream per connection costs more CPU than the connection's
own messages (measured: ≈ 0.3 ms in the manager and ≈ 0.55 ms in the CLI per call).

On a lane over a unix socket (node mode) a pooled tunnel's client may answer the assignment by
handing over its operator-side socket (``TunnelOpen.handoff``): the manager then relays the
connection itself (:mod:`.handoff`) and reports its end in ``handoff_ended``. Such a tunnel
sends nothing of the connection before the answer but the assignment (so nothing is in flight
to the CLI when it hands over).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

from .connections import Connection
from .handoff import relay
from .memory import LOAD
from .redirect import WORKERS, RedirectSession
from .tunnelpool import TunnelWaiter
from .wire import frames
from .wire.api.v1 import manager_pb2 as pb
from .wire.frames import TUNNEL_ENDED_FIRST
from .wire.lanepipes import Piped
from .wire.pumps import MIN_CHUNK, socket_frames
from .wire.sockets import close_cleanly, readable, reset

log = logging.getLogger(__name__)

Requests = Iterator[frames.Frame | Piped | socket.socket]
"""A Tunnel call's requests as the handler gets them (a socket: handed over on the lane)."""

# Reads: see wire.pumps.ChunkReader (64 KiB doubling up to 2 MiB while they come back full;
# measured on the redirect benchmark, CPU per GB manager / CLI: 1 MiB 0.70 / 0.85 s, 2 MiB
# 0.62 / 0.73 s, 4 MiB no better than 2; reads fill up: 1.9 MB per message on average at 2 MiB).
# How long a pooled tunnel waits for a peer that has not written yet (when peers of this
# redirect speak first): about the time it takes the peer's first write to arrive.
FIRST_BYTES_WAIT = 0.001
# Bytes a pooled tunnel may send before the client confirms; then reading pauses.
REPLAY_LIMIT = 256 * 1024


class _Rpc:
    """One Tunnel call: a single end-of-call callback, whatever the stream carries meanwhile
    (gRPC keeps every callback registered until the call ends)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._on_end: Callable[[], None] | None = None
        self.ended = not context.add_callback(self._end)

    def _end(self) -> None:
        with self._lock:
            self.ended = True
            on_end = self._on_end
        if on_end is not None:
            on_end()

    def on_end(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the call ends (now, if it has ended), instead of the previous one."""
        with self._lock:
            self._on_end = fn
            ended = self.ended
        if ended:
            fn()


class _State:
    def __init__(self, pooled: bool) -> None:
        self.done_in = threading.Event()  # stream → socket direction finished
        self.eof_in = False  # ...by the client's eof (not a reset or an error)
        self.done_out = False  # socket → stream direction finished
        self.reset = False
        self.sent_to_peer = 0
        self.error = ""
        # Pooled tunnels only: confirmation by the client, or its refusal.
        self.pooled = pooled
        self.settled = threading.Event()
        self.refused = ""
        self.lost = False  # ...a refusal by the tunnel's end, not the client: another may take it
        # A socket pair, not a raw eventfd: writing to a closed Python socket raises instead of
        # hitting whatever file reused the descriptor number.
        self.wake_r: socket.socket | None = None
        self.wake_w: socket.socket | None = None
        if pooled:
            self.wake_r, self.wake_w = socket.socketpair()
        self._lock = threading.Lock()
        # The connection went to its original destination: the tunnel must not touch it.
        self.failed_over = False
        # A handoff tunnel (see the module): the client may hand its operator side over.
        self.hold = False
        self.operator: socket.socket | None = None  # ...and did

    def settle(self, refused: str = "", operator: socket.socket | None = None,
               lost: bool = False) -> bool:
        """Record the client's answer (the first one wins: whether this was it), with the
        operator-side socket it handed over, if any; wake the reader if it is a refusal (the
        connection must fail open now). An acceptance wakes nobody: the reader sees it at its
        next read, and a thread woken now would only compete for the GIL with the one writing
        the client's first reply (measured ≈ 0.1 ms of the setup latency)."""
        with self._lock:
            if self.settled.is_set():
                return False
            self.refused = refused
            self.lost = lost
            self.operator = operator
            self.settled.set()
            if refused and self.wake_w is not None:
                with contextlib.suppress(OSError):
                    self.wake_w.send(b"x")
            return True


def _handed_over(sock: socket.socket, st: _State) -> None:
    """(Stream → socket.) The client handed its operator side over: the answer, if it may."""
    if st.hold and st.settle(operator=sock):
        return
    sock.close()  # (too late, the connection failed open: the client hears a reset)
    if not st.hold:
        raise EOFError("a socket handed over on a tunnel that did not offer it")


def _inbound(conn: Connection, requests: Requests,
             st: _State) -> None:
    """Stream → socket: (connected or a refusal), data, then eof (shutdown) or reset (RST)."""
    sock = conn.sock
    try:
        for frame in requests:
            if isinstance(frame, socket.socket):  # the answer: the relay is the manager's now
                _handed_over(frame, st)
                return
            if st.failed_over:
                return  # the connection is no longer ours
            if isinstance(frame, memoryview):  # data
                sock.sendall(frame)
                st.sent_to_peer += len(frame)
                continue
            if isinstance(frame, Piped):  # data, in the lane stream's pipe
                st.sent_to_peer += frame.write_to(sock)
                continue
            kind = frame.WhichOneof("msg")
            if kind == "data":  # not in the fast path's encoding
                sock.sendall(frame.data)
                st.sent_to_peer += len(frame.data)
            elif kind in ("connected", "connected_data"):
                st.settle()
                if st.refused:
                    return  # too late: the connection already failed open
                if kind == "connected_data":
                    sock.sendall(frame.connected_data)
                    st.sent_to_peer += len(frame.connected_data)
            elif kind == "eof":
                sock.shutdown(socket.SHUT_WR)
                st.eof_in = True
                return  # the next frame, if any, is the next connection's (pooled reuse)
            elif kind == "reset":
                if st.pooled and not st.settled.is_set():
                    st.settle(frame.reset or "refused by the client")
                    return  # the connection fails open: leave the socket alone
                st.reset = True
                st.error = frame.reset or "reset by the client side"
                conn.reset()
                return
        # The client ended its request stream without eof (its side vanished): an abort, also
        # when the peer has finished sending; closing cleanly would pass a cut answer for a
        # complete one.
        if not st.reset:
            raise EOFError("tunnel closed by the client")
    except Exception as exc:  # grpc.RpcError (client gone) or OSError (peer gone)
        if st.failed_over:
            return
        lost = not isinstance(exc, OSError)  # (the tunnel failed, not the peer)
        if st.pooled and (st.settle(f"tunnel failed: {exc}", lost=lost) or st.refused):
            return  # (never taken: the connection goes on, see _serve)
        st.reset = True
        st.error = st.error or str(exc) or type(exc).__name__
        conn.reset()
    finally:
        st.done_in.set()


def _await_answer(st: _State, deadline: float) -> None:
    """Wait for the client's answer until ``deadline``; past it, the answer is a refusal."""
    if not st.settled.wait(max(deadline - time.monotonic(), 0)):
        st.settle("the client did not connect its side in time")


def _relay_handed_over(conn: Connection, st: _State, first: bytes) -> int:
    """Relay ``conn`` to the operator side the client handed over (``first``: the peer's
    bytes sent with the assignment); the bytes that came from the peer after ``first``."""
    assert st.operator is not None
    relayed = relay(conn.sock, st.operator, first, WORKERS.submit)
    st.sent_to_peer = relayed.from_operator
    if relayed.error:
        st.reset = True
        st.error = st.error or relayed.error
    else:
        st.eof_in = True
    return max(relayed.to_operator - len(first), 0)


def _handoff_ended(st: _State, to_operator: int) -> bytes:
    return frames.control(pb.TunnelFrame(handoff_ended=pb.HandoffEnded(
        to_operator=to_operator, from_operator=st.sent_to_peer,
        error=st.error if st.reset else "")))


def _wait_readable(sock: socket.socket, st: _State, deadline: float) -> bool:
    """Before confirmation: wait for data or the client's answer. True: read the socket."""
    while not st.settled.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            st.settle("the client did not connect its side in time")
            return False
        assert st.wake_r is not None
        if sock in readable([sock, st.wake_r], left):
            return True
    return not st.refused


def _bulk(sock: socket.socket, st: _State, raw: bool, context: Any
          ) -> Generator[bytes | memoryview, None, int]:
    """Socket → stream until EOF or an error; returns the byte count. On the lane (its context
    sizes messages and writes each before asking for the next) reads go into one buffer, and
    a bulk transfer is spliced (see ``wire.pumps``). (A read-ahead thread was measured not to
    help: the gRPC send path is the bottleneck.)"""
    received = 0

    def count(n: int) -> None:
        nonlocal received
        received += n

    yield from socket_frames(sock, context, raw, st, count, "connection reset")
    return received


def _ready_bytes(sock: socket.socket) -> tuple[bytes, OSError | None]:
    """What the peer has sent so far, without waiting (and the error, if reading failed)."""
    try:
        return sock.recv(MIN_CHUNK, socket.MSG_DONTWAIT), None
    except BlockingIOError:
        return b"", None
    except OSError as exc:
        return b"", exc


def _first_bytes(conn: Connection) -> tuple[bytes, OSError | None]:
    """The peer's first bytes for the assignment: what is there, or what arrives within
    FIRST_BYTES_WAIT when the redirect's peers speak first (see ``FirstBytesHint``). A tunnel
    thread accepts as soon as the connection is established, often before the peer has written
    (measured: 17 of 60 probe connections in a pod); without them the assignment goes alone and
    the bytes follow in a message of their own, one more trip before the operator can answer."""
    early, error = _ready_bytes(conn.sock)
    hint = conn.session.first_bytes
    if early or error is not None or not hint.worth_waiting():
        return early, error
    if readable([conn.sock], FIRST_BYTES_WAIT):
        early, error = _ready_bytes(conn.sock)
    hint.record(bool(early) or error is not None)
    return early, error


def _assignment(conn: Connection, early: bytes) -> bytes:
    c = pb.NewConnection(
        connection_id=conn.id,
        original_destination=pb.Endpoint(host=conn.original[0], port=conn.original[1]),
        peer=pb.Endpoint(host=conn.peer[0], port=conn.peer[1]), data=early)
    return frames.control(pb.TunnelFrame(assigned=c))


def serve_claimed(conn: Connection, requests: Requests, context: Any,
                  opened: pb.TunnelOpen) -> Iterator[bytes | memoryview]:
    """A Tunnel opened for ``conn`` (announced on the Redirect stream): pump it, then end."""
    with LOAD.pump():
        yield from _serve(conn, requests, _Rpc(context), opened, pooled=False)


def serve_pooled(session: RedirectSession, requests: Requests, context: Any,
                 opened: pb.TunnelOpen) -> Iterator[bytes | memoryview]:
    """A pooled Tunnel: wait for a connection, pump it; park again while reusable."""
    rpc = _Rpc(context)
    waiter = TunnelWaiter()
    try:
        while True:
            rpc.on_end(waiter.cancel)
            conn = session.wait_for_connection(waiter)
            if conn is None:
                return  # the redirect is over, or the call ended
            if rpc.ended:  # ...just as the connection came: another tunnel takes it
                session.reoffer(conn)
                return
            with LOAD.pump():
                clean = yield from _serve(conn, requests, rpc, opened, pooled=True)
            if not clean or rpc.ended or session.idle_tunnels() >= opened.keep_idle:
                return
    finally:
        waiter.close()


def _serve(conn: Connection, requests: Requests, rpc: _Rpc,
           opened: pb.TunnelOpen, pooled: bool) -> Generator[bytes | memoryview, None, bool]:
    """Pump ``conn`` over a Tunnel stream; yields the encoded frames to send to the client
    (what ``opened`` says it accepts: raw data frames, early data in ``assigned``).

    Returns whether the connection ended cleanly (eof both ways; the stream can carry another).
    """
    context = rpc.context
    raw = opened.raw_data
    st = _State(pooled)
    received = len(conn.initial)
    replay = bytearray(conn.initial) if pooled else bytearray()
    deadline = time.monotonic() + conn.claim_timeout()

    def on_rpc_end() -> None:
        # The stream ended (finished, cancelled, or the client vanished): never leave a
        # half-dead connection behind (one the client never took goes on: see the finally).
        if pooled and (st.settle("tunnel ended", lost=True) or st.refused):
            return
        if not (st.done_in.is_set() and st.done_out) and not st.failed_over:
            st.reset = True
            st.error = st.error or TUNNEL_ENDED_FIRST  # (else the report has a reset, no cause)
            if st.operator is not None:  # (handed over: the manager's to end)
                reset(st.operator)
            conn.reset()

    rpc.on_end(on_rpc_end)
    sock = conn.sock
    failed_open = False
    completed = False  # False in the finally below: the stream broke under us (GeneratorExit)
    early_error: OSError | None = None
    try:
        if pooled and opened.early_data:
            # Bytes the peer already sent travel with the assignment (clients usually speak
            # first): one gRPC message less on a new connection's critical path (measured
            # ≈ 0.3-0.5 ms of the setup latency, ≈ 0.1 ms of CPU on each side).
            early, early_error = _first_bytes(conn)
            replay += early
            received += len(early)
            yield _assignment(conn, bytes(replay))
        else:
            if pooled:
                yield _assignment(conn, b"")
            if conn.initial:
                yield frames.data(conn.initial, raw)
        # Only now: the client cannot answer before it has the assignment, and starting the
        # reader first would cost the assignment a thread switch.
        accept_piped = getattr(context, "accept_piped", None)
        if accept_piped is not None:  # (the lane: large data may come spliced)
            accept_piped()
        takes_fds = getattr(context, "takes_fds", None)
        st.hold = (pooled and opened.handoff and opened.early_data and takes_fds is not None
                   and takes_fds())
        WORKERS.submit(_inbound, conn, requests, st)
        chunk = MIN_CHUNK
        ended = False
        if early_error is not None:
            st.reset = ended = True
            yield frames.reset(f"connection reset: {early_error.strerror or early_error}")
        elif st.hold:  # nothing more goes to the client before it answers (see the module)
            _await_answer(st, deadline)
        # Phase 1 (pooled, until the client answers): read on demand, keep a replay copy.
        while pooled and not ended and not st.settled.is_set():
            if len(replay) >= REPLAY_LIMIT:  # pause reading until the client answers
                _await_answer(st, deadline)
                break
            if not _wait_readable(sock, st, deadline):
                break
            try:
                data = sock.recv(chunk)
            except OSError as exc:
                st.reset = ended = True
                yield frames.reset(f"connection reset: {exc.strerror or exc}")
                break
            replay += data
            if not data:
                ended = True
                yield frames.EOF
                break
            received += len(data)
            yield frames.data(data, raw)
        if pooled and st.refused:
            failed_open = True
            if context.is_active():
                yield frames.reset(st.refused)
        elif st.operator is not None:
            first, replay = bytes(replay), bytearray()
            more = _relay_handed_over(conn, st, first)
            received += more
            if context.is_active():
                yield _handoff_ended(st, len(first) + more)
        elif not ended:
            replay = bytearray()
            # Phase 2: bulk, no replay copy.
            received += yield from _bulk(sock, st, raw, context)
        st.done_out = True
        if pooled and not failed_open and not st.reset:
            # The peer finished before the client answered: its answer still decides.
            _await_answer(st, deadline)
            failed_open = bool(st.refused)
        if not failed_open:
            st.done_in.wait()
        completed = True
    finally:
        st.done_out = True
        if pooled and not completed:  # (the stream broke: the client may never have taken it)
            st.settle("tunnel ended", lost=True)
        failed_open = failed_open or bool(pooled and st.refused)
        if st.wake_r is not None and st.wake_w is not None:
            st.wake_r.close()
            st.wake_w.close()
        if st.operator is not None:  # (handed over; reset unless the relay ended cleanly)
            if st.reset or not completed:
                reset(st.operator)
                st.operator.close()
            else:
                close_cleanly(st.operator)
        if failed_open:
            st.failed_over = True
            conn.initial = bytes(replay)  # (what the client never confirmed goes with it)
            WORKERS.submit(conn.session.reoffer if st.lost else conn.session.fail_over, conn,
                           st.refused)
        else:
            if completed:
                close_cleanly(sock)
            else:  # never a clean close: the peer would take a cut answer for a whole one
                st.reset = True
                st.error = st.error or TUNNEL_ENDED_FIRST
                conn.reset()
            conn.session.closed(conn, "operator", received, st.sent_to_peer,
                                st.error if st.reset else "")
    return not failed_open and not st.reset and st.eof_in

"""The manager's end of a Tunnel stream: one redirected connection's bytes, both directions.

socket → stream runs in the RPC's own thread (the response generator); stream → socket in a
worker thread. ``eof`` frames carry half-closes, ``reset`` frames carry aborts, both ways. When
the stream dies (client gone), the connection is reset.

A pooled tunnel gets its connection before the client has connected its side. Until the client
says ``connected``, every byte sent is also kept (bounded) so that, if the client refuses or
is too slow, the connection can still fail open to its original destination with nothing lost.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

from . import splice
from .api.v1 import manager_pb2 as pb
from .redirect import WORKERS, Connection

log = logging.getLogger(__name__)

# Reads start at 64 KiB and double while they come back full, up to 1 MiB: a bulk transfer
# then moves in few large messages (the per-message cost of a gRPC stream dominates), while an
# interactive connection keeps small reads and small buffers.
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
# Bytes a pooled tunnel may send before the client confirms; then reading pauses.
REPLAY_LIMIT = 256 * 1024


class _State:
    def __init__(self, pooled: bool) -> None:
        self.done_in = threading.Event()  # stream → socket direction finished
        self.done_out = False  # socket → stream direction finished
        self.reset = False
        self.sent_to_peer = 0
        self.error = ""
        # Pooled tunnels only: confirmation by the client, or its refusal.
        self.pooled = pooled
        self.settled = threading.Event()
        self.refused = ""
        # A socket pair, not a raw eventfd: writing to a closed Python socket raises instead of
        # hitting whatever file reused the descriptor number.
        self.wake_r: socket.socket | None = None
        self.wake_w: socket.socket | None = None
        if pooled:
            self.wake_r, self.wake_w = socket.socketpair()
        self._lock = threading.Lock()
        # The connection went to its original destination: the tunnel must not touch it.
        self.failed_over = False

    def settle(self, refused: str = "") -> None:
        """Record the client's answer (the first one wins) and wake the reader."""
        with self._lock:
            if self.settled.is_set():
                return
            self.refused = refused
            self.settled.set()
            if self.wake_w is not None:
                with contextlib.suppress(OSError):
                    self.wake_w.send(b"x")


def _inbound(conn: Connection, frames: Iterator[pb.TunnelFrame], st: _State) -> None:
    """Stream → socket: (connected or a refusal), data, then eof (shutdown) or reset (RST)."""
    sock = conn.sock
    try:
        for frame in frames:
            if st.failed_over:
                return  # the connection is no longer ours
            kind = frame.WhichOneof("msg")
            if kind == "data":
                sock.sendall(frame.data)
                st.sent_to_peer += len(frame.data)
            elif kind == "connected":
                st.settle()
                if st.refused:
                    return  # too late: the connection already failed open
            elif kind == "eof":
                sock.shutdown(socket.SHUT_WR)
                return
            elif kind == "reset":
                if st.pooled and not st.settled.is_set():
                    st.settle(frame.reset or "refused by the client")
                    return  # the connection fails open: leave the socket alone
                st.reset = True
                st.error = frame.reset or "reset by the client side"
                splice.abort(sock)
                return
        # The client ended its request stream without eof: treat as an abort.
        if not st.done_out:
            raise EOFError("tunnel closed by the client")
    except Exception as exc:  # grpc.RpcError (client gone) or OSError (peer gone)
        if st.failed_over:
            return
        if st.pooled and not st.settled.is_set():
            st.settle(f"tunnel failed: {exc}")
            return
        st.reset = True
        st.error = st.error or str(exc) or type(exc).__name__
        splice.abort(sock)
    finally:
        st.done_in.set()


def _wait_readable(sock: socket.socket, st: _State, deadline: float) -> bool:
    """Before confirmation: wait for data or the client's answer. True: read the socket."""
    while not st.settled.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            st.settle("the client did not connect its side in time")
            return False
        assert st.wake_r is not None
        readable, _, _ = select.select([sock, st.wake_r], [], [], left)
        if sock in readable:
            return True
    return not st.refused


def _bulk(sock: socket.socket, st: _State) -> Generator[pb.TunnelFrame, None, int]:
    """Socket → stream until EOF or an error; returns the byte count.

    (A read-ahead thread was measured not to help: the gRPC send path is the bottleneck.)
    """
    received = 0
    chunk = MIN_CHUNK
    while True:
        try:
            data = sock.recv(chunk)
        except OSError as exc:
            if not st.reset:
                st.reset = True
                yield pb.TunnelFrame(reset=f"connection reset: {exc.strerror or exc}")
            return received
        if not data:
            if not st.reset:
                yield pb.TunnelFrame(eof=True)
            return received
        received += len(data)
        if len(data) == chunk and chunk < MAX_CHUNK:
            chunk *= 2
        yield pb.TunnelFrame(data=data)


def serve(conn: Connection, frames: Iterator[pb.TunnelFrame], context: Any,
          pooled: bool = False) -> Iterator[pb.TunnelFrame]:
    """Pump ``conn`` over a Tunnel stream; yields the frames to send to the client."""
    st = _State(pooled)
    received = len(conn.initial)
    replay = bytearray(conn.initial) if pooled else bytearray()
    deadline = time.monotonic() + conn.session.options.fail_open_timeout

    def on_rpc_end() -> None:
        # The stream ended (finished, cancelled, or the client vanished): never leave a
        # half-dead connection behind (a pooled one not yet confirmed fails open instead).
        if pooled and not st.settled.is_set():
            st.settle("tunnel ended")
        elif not (st.done_in.is_set() and st.done_out) and not st.failed_over:
            st.reset = True
            splice.abort(conn.sock)

    context.add_callback(on_rpc_end)
    WORKERS.submit(_inbound, conn, frames, st)
    sock = conn.sock
    failed_open = False
    try:
        if pooled:
            c = pb.NewConnection(
                connection_id=conn.id,
                original_destination=pb.Endpoint(host=conn.original[0], port=conn.original[1]),
                peer=pb.Endpoint(host=conn.peer[0], port=conn.peer[1]))
            yield pb.TunnelFrame(assigned=c)
        if conn.initial:
            yield pb.TunnelFrame(data=conn.initial)
        chunk = MIN_CHUNK
        ended = False
        # Phase 1 (pooled, until the client answers): read on demand, keep a replay copy.
        while pooled and not st.settled.is_set():
            if len(replay) >= REPLAY_LIMIT:  # pause reading until the client answers
                st.settled.wait(max(deadline - time.monotonic(), 0))
                if not st.settled.is_set():
                    st.settle("the client did not connect its side in time")
                break
            if not _wait_readable(sock, st, deadline):
                break
            try:
                data = sock.recv(chunk)
            except OSError as exc:
                st.reset = ended = True
                yield pb.TunnelFrame(reset=f"connection reset: {exc.strerror or exc}")
                break
            replay += data
            if not data:
                ended = True
                yield pb.TunnelFrame(eof=True)
                break
            received += len(data)
            yield pb.TunnelFrame(data=data)
        if pooled and st.refused:
            failed_open = True
            if context.is_active():
                yield pb.TunnelFrame(reset=st.refused)
        elif not ended:
            replay = bytearray()
            # Phase 2: a read-ahead thread keeps the socket drained while gRPC sends.
            received += yield from _bulk(sock, st)
        st.done_out = True
        if pooled and not failed_open and not st.reset:
            # The peer finished before the client answered: its answer still decides.
            if not st.settled.wait(max(deadline - time.monotonic(), 0)):
                st.settle("the client did not connect its side in time")
            failed_open = bool(st.refused)
        if not failed_open:
            st.done_in.wait()
    finally:
        st.done_out = True
        if st.wake_r is not None and st.wake_w is not None:
            st.wake_r.close()
            st.wake_w.close()
        if failed_open:
            st.failed_over = True
            # Hand the connection, with what the client never confirmed, to the fallback.
            conn.initial = bytes(replay)
            WORKERS.submit(conn.session.fail_over, conn, st.refused)
        else:
            sock.close()
            conn.session.closed(conn, "operator", received, st.sent_to_peer,
                                st.error if st.reset else "")

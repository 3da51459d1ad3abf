"""The client's end of one redirected connection: a local socket ⇄ a Tunnel stream.

The manager accepted a connection in the target's namespace; here it is joined to a socket
connected to the operator-side host:port. Half-close (eof frames) and resets propagate both ways.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from kdiag_manager.api.v1 import manager_pb2 as pb

# Adaptive reads, as on the manager's side: 64 KiB doubling up to 1 MiB while reads fill up.
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024


@dataclass
class TunnelStats:
    """What one tunnel carried."""

    connection_id: int
    to_operator: int = 0
    from_operator: int = 0
    reset: bool = False
    error: str = ""


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a RST, waking a thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


def _pump_socket(sock: socket.socket, stats: TunnelStats) -> Iterator[pb.TunnelFrame]:
    """Operator side → manager: data..., then eof or reset."""
    chunk = MIN_CHUNK
    while True:
        try:
            data = sock.recv(chunk)
        except OSError as exc:
            if not stats.reset:
                stats.reset = True
                yield pb.TunnelFrame(reset=f"operator side: {exc.strerror or exc}")
            return
        if not data:
            if not stats.reset:
                yield pb.TunnelFrame(eof=True)
            return
        stats.from_operator += len(data)
        if len(data) == chunk and chunk < MAX_CHUNK:
            chunk *= 2
        yield pb.TunnelFrame(data=data)


def _outgoing(conn_id: int, sock: socket.socket, stats: TunnelStats) -> Iterator[pb.TunnelFrame]:
    yield pb.TunnelFrame(open=pb.TunnelOpen(connection_id=conn_id))
    yield from _pump_socket(sock, stats)


def _pump_responses(call: Any, sock: socket.socket, stats: TunnelStats) -> None:
    """Manager → operator side, until the stream ends; closes ``sock``."""
    try:
        for frame in call:
            kind = frame.WhichOneof("msg")
            if kind == "data":
                sock.sendall(frame.data)
                stats.to_operator += len(frame.data)
            elif kind == "eof":
                sock.shutdown(socket.SHUT_WR)
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
        with contextlib.suppress(OSError):
            sock.close()


def run_tunnel(stub: Any, metadata: list[tuple[str, str]], conn_id: int,
               sock: socket.socket) -> TunnelStats:
    """Carry connection ``conn_id`` between the manager and ``sock`` until both sides finish.

    Blocks; closes ``sock``. gRPC consumes the request generator in its own thread.
    """
    stats = TunnelStats(conn_id)
    call = stub.Tunnel(_outgoing(conn_id, sock, stats), metadata=metadata)
    _pump_responses(call, sock, stats)
    return stats


class PooledTunnel:
    """A Tunnel opened in advance, parked at the manager until it is handed a connection.

    :meth:`run` blocks: it waits for the assignment, connects the operator side with
    ``connect`` (refusing the connection if that fails, so the manager fails it open), calls
    ``on_assigned``, then pumps bytes until both sides finish. :meth:`cancel` ends an idle
    tunnel.
    """

    def __init__(self, stub: Any, metadata: list[tuple[str, str]], redirect_id: int) -> None:
        self._answer: queue.SimpleQueue[tuple[socket.socket | None, str]] = queue.SimpleQueue()
        self.stats = TunnelStats(0)
        self._call = stub.Tunnel(self._requests(redirect_id), metadata=metadata)

    def _requests(self, redirect_id: int) -> Iterator[pb.TunnelFrame]:
        yield pb.TunnelFrame(open=pb.TunnelOpen(redirect_id=redirect_id))
        sock, reason = self._answer.get()
        if sock is None:
            if reason:
                yield pb.TunnelFrame(reset=reason)
            return
        yield pb.TunnelFrame(connected=True)
        yield from _pump_socket(sock, self.stats)

    def cancel(self) -> None:
        """End the tunnel (idle or not)."""
        self._call.cancel()
        self._answer.put((None, ""))

    def run(self, on_assigned: Callable[[pb.NewConnection], None],
            connect: Callable[[pb.NewConnection], socket.socket]) -> TunnelStats | None:
        """Serve one connection; None if the tunnel ended idle (redirect over, cancelled)."""
        try:
            first = next(self._call)
        except (StopIteration, grpc.RpcError):
            self._answer.put((None, ""))
            return None
        if first.WhichOneof("msg") != "assigned":
            self.cancel()
            return None
        assigned = first.assigned
        self.stats.connection_id = assigned.connection_id
        try:
            sock = connect(assigned)  # first: it is on the connection's critical path
        except OSError as exc:
            self.stats.reset = True
            self.stats.error = f"operator side: {exc}"
            self._answer.put((None, self.stats.error))
            on_assigned(assigned)
            with contextlib.suppress(grpc.RpcError):
                for _ in self._call:  # the manager ends the stream once it failed open
                    pass
            return self.stats
        self._answer.put((sock, ""))
        on_assigned(assigned)
        _pump_responses(self._call, sock, self.stats)
        return self.stats

"""The manager's end of a Tunnel stream, in-process with a stand-in for the gRPC call: a claimed
tunnel pumps both directions and reports the connection closed on the operator's route; a
pooled tunnel sends the assignment at once (also when the peer has not written: servers speak
first) and then the client's answer decides; the end of the call resets a connection still
open."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kdiag_manager import tunnel
from kdiag_manager.connections import Connection
from kdiag_manager.wire import frames
from kdiag_manager.wire.api.v1 import manager_pb2 as pb

from tests.manager.test_redirect_accepted import _start
from tests.manager.test_reoffer import _accepted_pair, _events, _session, echo  # noqa: F401


class Call:
    """The gRPC call's context: end-of-call callbacks, and whether it is still active."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_callback(self, fn: Any) -> bool:
        self.callbacks.append(fn)
        return True

    def is_active(self) -> bool:
        return True


def _requests(frames_in: queue.Queue[Any]) -> Iterator[Any]:
    while (frame := frames_in.get(timeout=10)) is not None:
        yield frame


def _decoded(out: list[bytes]) -> list[Any]:
    found: list[Any] = []
    for raw in out:
        frame = frames.decode(bytes(raw))
        found.append(bytes(frame) if isinstance(frame, memoryview) else frame)
    return found


def _until(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _drain(generator: Iterator[Any], out: list[bytes]) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.extend(generator), daemon=True)
    thread.start()
    return thread


def test_a_claimed_tunnel_pumps_both_ways_and_reports_the_bytes() -> None:
    session = _session(fail_open=True)
    peer, accepted = _accepted_pair()
    conn = Connection(11, accepted, ("10.0.0.1", 80), peer.getsockname(), session)
    frames_in: queue.Queue[Any] = queue.Queue()
    out: list[bytes] = []
    pump = _drain(tunnel.serve_claimed(conn, _requests(frames_in), Call(),
                                       pb.TunnelOpen(connection_id=11, raw_data=True)), out)
    with peer:
        peer.sendall(b"ping")
        peer.shutdown(socket.SHUT_WR)
        frames_in.put(memoryview(b"pong!"))
        frames_in.put(pb.TunnelFrame(eof=True))
        peer.settimeout(5)
        got = b""
        while chunk := peer.recv(100):
            got += chunk
    pump.join(5)
    assert not pump.is_alive() and got == b"pong!"
    decoded = _decoded(out)
    assert decoded[0] == b"ping" and decoded[-1].eof
    closed = _events(session, "closed")[-1].closed
    assert (closed.connection_id, closed.route, closed.bytes_from_peer, closed.bytes_to_peer,
            closed.error) == (11, "operator", 4, 5, "")


def test_the_end_of_the_call_resets_a_connection_still_open() -> None:
    session = _session(fail_open=True)
    peer, accepted = _accepted_pair()
    conn = Connection(12, accepted, ("10.0.0.1", 80), peer.getsockname(), session)
    frames_in: queue.Queue[Any] = queue.Queue()
    call = Call()
    out: list[bytes] = []
    pump = _drain(tunnel.serve_claimed(conn, _requests(frames_in), call,
                                       pb.TunnelOpen(connection_id=12)), out)
    with peer:
        peer.sendall(b"hello")
        peer.settimeout(5)
        _until(lambda: bool(out))
        assert _decoded(out)[0] == b"hello"
        for callback in call.callbacks:  # the client vanished
            callback()
        with pytest.raises(ConnectionResetError):
            while peer.recv(100):
                pass
    frames_in.put(None)
    pump.join(5)
    closed = _events(session, "closed")[-1].closed
    assert closed.route == "operator"
    assert closed.error == "the tunnel ended before the connection did"  # a reset, said so


@pytest.mark.parametrize("early_data", [True, False])
def test_a_pooled_tunnel_assigns_a_silent_peer_at_once_then_carries_it(
        monkeypatch: pytest.MonkeyPatch, early_data: bool) -> None:
    session = _start(monkeypatch, ("10.0.0.9", 5432))
    frames_in: queue.Queue[Any] = queue.Queue()
    out: list[bytes] = []
    opened = pb.TunnelOpen(redirect_id=session.id, raw_data=True, early_data=early_data)
    pump = _drain(tunnel.serve_pooled(session, _requests(frames_in), Call(), opened), out)
    try:
        _until(lambda: session.idle_tunnels() == 1)  # parked: it accepts the next connection
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            _until(lambda: bool(out))
            assigned = _decoded(out)[0].assigned  # the peer has sent nothing yet
            assert (assigned.original_destination.host, assigned.original_destination.port,
                    assigned.data) == ("10.0.0.9", 5432, b"")
            frames_in.put(pb.TunnelFrame(connected_data=b"220 ready\r\n"))
            assert peer.recv(100) == b"220 ready\r\n"
            peer.sendall(b"QUIT\r\n")
            peer.shutdown(socket.SHUT_WR)
            frames_in.put(pb.TunnelFrame(eof=True))
            assert peer.recv(100) == b""
        frames_in.put(None)
        pump.join(5)
        assert not pump.is_alive()
        assert b"QUIT\r\n" in _decoded(out)
        closed = _events(session, "closed")[-1].closed
        assert (closed.connection_id, closed.route, closed.error) == \
            (assigned.connection_id, "operator", "")
    finally:
        session.stop()


def test_a_pooled_connection_the_client_resets_before_answering_fails_open_saying_so(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    """The client could not connect its side (a reset without a reason, before ``connected``):
    the connection goes to its original destination, and its end says why."""
    session = _start(monkeypatch, echo)
    frames_in: queue.Queue[Any] = queue.Queue()
    out: list[bytes] = []
    opened = pb.TunnelOpen(redirect_id=session.id, raw_data=True)
    pump = _drain(tunnel.serve_pooled(session, _requests(frames_in), Call(), opened), out)
    try:
        _until(lambda: session.idle_tunnels() == 1)
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            _until(lambda: bool(out))
            assert _decoded(out)[0].assigned.connection_id > 0
            frames_in.put(pb.TunnelFrame(reset=""))
            peer.sendall(b"to the app")
            peer.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := peer.recv(100):
                got += chunk
        assert got == b"echo:to the app"
        closed = _events(session, "closed")[-1].closed
        assert (closed.route, closed.error) == ("original", "refused by the client")
    finally:
        frames_in.put(None)
        pump.join(5)
        session.stop()


def test_a_pooled_tunnel_whose_stream_breaks_before_the_answer_offers_the_connection_again(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    """The stream breaks under the tunnel (its lane went) after the assignment, before the
    client answered: the connection is offered again (announced, as no other tunnel is idle),
    with the bytes the peer had sent, and nobody claiming it in time it fails open. Before,
    it was reset, whatever fail-open said (seen in CI: a lane closing as connections came)."""
    session = _start(monkeypatch, echo)
    opened = pb.TunnelOpen(redirect_id=session.id, raw_data=True, early_data=True)
    pump = tunnel.serve_pooled(session, _requests(queue.Queue()), Call(), opened)
    try:
        first: list[Any] = []
        taking = threading.Thread(target=lambda: first.append(next(pump)), daemon=True)
        taking.start()
        _until(lambda: session.idle_tunnels() == 1)
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            peer.sendall(b"early ")
            taking.join(5)
            assigned = frames.decode(bytes(first[0])).assigned
            pump.close()  # (what gRPC does to a response generator whose call broke)
            announced = _events(session, "connection")[-1].connection
            assert announced.connection_id == assigned.connection_id
            peer.sendall(b"hi")
            peer.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := peer.recv(100):
                got += chunk
        assert got == b"echo:" + assigned.data + b"hi"
        closed = _events(session, "closed")[-1].closed
        assert (closed.connection_id, closed.route) == (assigned.connection_id, "original")
    finally:
        session.stop()

"""``RedirectSession.reoffer``: a connection handed to a pooled tunnel whose call ended at that
moment is routed afresh — to another idle tunnel if one is parked, else announced for a tunnel
to claim and, if none does in time, failed open to its original destination (real sockets)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kdiag_manager import redirect
from kdiag_manager.connections import Connection, ConnectionRegistry
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectspec import RedirectOptions
from kdiag_manager.tunnelpool import TunnelPool, TunnelWaiter
from kdiag_manager.wire.api.v1 import manager_pb2 as pb


def serving(handle: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A local server calling ``handle`` on each connection, one at a time, until the test
    ends (for a fixture to yield from): its address."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                handle(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """The connection's original destination: answers ``echo:`` + what it read until EOF."""

    def answer(conn: socket.socket) -> None:
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        conn.sendall(b"echo:" + data)

    yield from serving(answer)


def _accepted_pair() -> tuple[socket.socket, socket.socket]:
    """(the peer's end, the accepted end the manager holds) of a real TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    return peer, accepted


def _session(fail_open: bool) -> redirect.RedirectSession:
    options = RedirectOptions(incoming=True, ports=(8080,), session="unit", fail_open=fail_open,
                              fail_open_timeout=0.3)
    return redirect.RedirectSession(options, Iptables(), ConnectionRegistry())


def _events(session: redirect.RedirectSession, until: str, timeout: float = 5
            ) -> list[pb.RedirectEvent]:
    seen: list[pb.RedirectEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = session.events.get(timeout=0.1)
        except Exception:
            continue
        seen.append(event)
        if event is not None and event.WhichOneof("msg") == until:
            return seen
    raise AssertionError(f"no {until} event: {seen}")


def test_with_no_idle_tunnel_it_is_announced_then_fails_open_to_its_destination(
        echo: tuple[str, int]) -> None:
    session = _session(fail_open=True)
    peer, accepted = _accepted_pair()
    conn = Connection(7, accepted, echo, peer.getsockname(), session)
    conn.state = "tunnel"  # it was handed to a tunnel whose call then ended
    session.reoffer(conn)
    announced = _events(session, "connection")[0].connection
    assert announced.connection_id == 7
    assert (announced.original_destination.host, announced.original_destination.port) == echo
    with peer:  # nobody claims it in 0.3 s: the original destination gets it
        peer.sendall(b"hi")
        peer.shutdown(socket.SHUT_WR)
        peer.settimeout(5)
        assert peer.recv(100) == b"echo:hi"
    closed = _events(session, "closed")[-1].closed
    assert closed.connection_id == 7 and closed.route == "original"


def test_without_fail_open_an_unclaimed_one_is_reset() -> None:
    session = _session(fail_open=False)
    peer, accepted = _accepted_pair()
    conn = Connection(8, accepted, ("127.0.0.1", 9), peer.getsockname(), session)
    session.reoffer(conn)
    closed = _events(session, "closed")[-1].closed
    assert closed.route == "dropped" and "did not take the connection" in closed.error
    peer.settimeout(5)
    with peer, pytest.raises(ConnectionResetError):
        peer.recv(100)


def test_an_idle_tunnel_takes_it_at_once_without_an_announcement() -> None:
    session = _session(fail_open=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        pool = session._pool = TunnelPool(listener, direct=False)
        waiter = TunnelWaiter()
        got: list[Connection | None] = []
        parked = threading.Thread(target=lambda: got.append(session.wait_for_connection(waiter)),
                                  daemon=True)
        parked.start()
        peer, accepted = _accepted_pair()
        try:
            deadline = time.monotonic() + 5
            while session.idle_tunnels() == 0:
                assert time.monotonic() < deadline, "the tunnel did not park"
                time.sleep(0.01)
            conn = Connection(9, accepted, ("127.0.0.1", 9), peer.getsockname(), session)
            session.reoffer(conn)
            parked.join(5)
            assert got == [conn] and conn.state == "tunnel"
            assert session.events.empty()  # handed over: nothing announced, nothing failed open
        finally:
            pool.close()  # releases a waiter still parked (when the test fails)
            peer.close()
            accepted.close()


def test_it_fails_over_at_once_after_enough_offers(echo: tuple[str, int]) -> None:
    """A tunnel that ends each time its connection comes (a client that keeps dying) cannot keep
    a connection going round: after ``REOFFERS`` offers it goes to its original destination at
    once, with the tunnel's reason, and what the ended tunnel had read goes first."""
    session = _session(fail_open=True)
    peer, accepted = _accepted_pair()
    conn = Connection(10, accepted, echo, peer.getsockname(), session)
    conn.reoffers = redirect.REOFFERS
    conn.initial = b"early "
    session.reoffer(conn, "tunnel ended")
    with peer:
        peer.sendall(b"hi")
        peer.shutdown(socket.SHUT_WR)
        peer.settimeout(5)
        assert peer.recv(100) == b"echo:early hi"
    events = _events(session, "closed")
    assert [e.WhichOneof("msg") for e in events] == ["closed"]  # never announced
    assert events[0].closed.route == "original" and events[0].closed.error == "tunnel ended"


def test_each_offer_counts() -> None:
    session = _session(fail_open=False)
    peer, accepted = _accepted_pair()
    conn = Connection(11, accepted, ("127.0.0.1", 9), peer.getsockname(), session)
    session.reoffer(conn)
    assert conn.reoffers == 1
    _events(session, "closed")  # (announced, unclaimed in 0.3 s: dropped)
    peer.close()


def test_a_dropped_connection_has_conntrack_forget_it_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The reset and the report of its end (``closed``) both ask conntrack to forget the
    connection: one netlink round trip is enough."""
    from kdiag_manager import conntrack

    asked: list[list[conntrack.Flow]] = []
    monkeypatch.setattr(conntrack, "forget_reset", asked.append)
    session = _session(fail_open=False)
    peer, accepted = _accepted_pair()
    conn = Connection(12, accepted, ("127.0.0.1", 9), peer.getsockname(), session)
    session.fail_over(conn, "refused by the client")
    assert _events(session, "closed")[-1].closed.route == "dropped"
    assert asked == [[(conn.peer, conn.original)]]
    peer.close()

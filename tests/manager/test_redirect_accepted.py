"""What a redirect does with the connections it accepts, in-process: the rules and the kernel's
record of each connection's original destination are stood in for (a client connects to the
listener itself). Unclaimed, a connection is announced, then fails open to its original
destination; with a header filter, one that is not HTTP goes there at once, and an HTTP
request without the header reaches the app."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from kdiag_manager import redirect, redirectrules, sysutil
from kdiag_manager.connections import ConnectionRegistry
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectrules import NFTABLES, RuleSet
from kdiag_manager.redirectspec import RedirectOptions

from tests.manager.test_reoffer import _events, echo, serving  # noqa: F401  (the fixture)


class Rules(RuleSet):
    def _remove(self) -> None:
        pass


@pytest.fixture
def app() -> Iterator[tuple[str, int]]:
    """An HTTP app: reads one request's head, answers ``ok`` and closes."""

    def answer(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
            head += chunk
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                     b"\r\nok")

    yield from serving(answer)


def _start(monkeypatch: pytest.MonkeyPatch, original: tuple[str, int],
           header: tuple[str, str] | None = None) -> redirect.RedirectSession:
    monkeypatch.setattr(redirect, "_closing", False)
    monkeypatch.setattr(redirectrules, "install", lambda *a: Rules(NFTABLES, ["rule"]))
    monkeypatch.setattr(sysutil, "original_destination", lambda sock: original)
    options = RedirectOptions(incoming=True, ports=(8080,), session="unit", fail_open=True,
                              fail_open_timeout=0.3, header=header)
    session = redirect.RedirectSession(options, Iptables(), ConnectionRegistry())
    session.start()
    return session


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := client.recv(4096):
            got += chunk
        return got


def test_an_unclaimed_connection_is_announced_then_fails_open(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    session = _start(monkeypatch, echo)
    try:
        assert _exchange(session.listen_port, b"hi") == b"echo:hi"
        events = _events(session, "closed")
        announced = next(e.connection for e in events if e.WhichOneof("msg") == "connection")
        closed = events[-1].closed
        assert (announced.original_destination.host,
                announced.original_destination.port) == echo
        assert (closed.connection_id, closed.route) == (announced.connection_id, "original")
        assert "did not take the connection in 0.3s" in closed.error
    finally:
        session.stop()


def test_with_a_header_filter_what_is_not_http_goes_to_its_destination_at_once(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    session = _start(monkeypatch, echo, header=("x-debug", "1"))
    try:
        assert _exchange(session.listen_port, b"hello, not http\n") == b"echo:hello, not http\n"
        events = _events(session, "closed")
        assert [e.WhichOneof("msg") for e in events] == ["closed"]  # never announced
        assert (events[0].closed.route, events[0].closed.error) == ("original", "")
    finally:
        session.stop()


def test_with_a_header_filter_a_request_without_the_header_reaches_the_app(
        monkeypatch: pytest.MonkeyPatch, app: tuple[str, int]) -> None:
    session = _start(monkeypatch, app, header=("x-debug", "1"))
    try:
        answer = _exchange(session.listen_port, b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nok")
        events = _events(session, "closed")
        assert [e.WhichOneof("msg") for e in events] == ["closed"]  # never offered the operator
        closed = events[0].closed
        assert closed.route == "original" and closed.bytes_to_peer == len(answer)
    finally:
        session.stop()


def test_a_closed_connection_leaves_nothing_in_its_session(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    """A redirect runs for hours: what it keeps per connection goes with the connection."""
    session = _start(monkeypatch, echo)
    try:
        for n in range(3):
            assert _exchange(session.listen_port, b"%d" % n) == b"echo:%d" % n
            _events(session, "closed")
        assert session._mine == set()
    finally:
        session.stop()


def test_connections_still_queued_when_it_stops_fail_open(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    """Connections the kernel queued that nobody accepted yet when the redirect stops reach
    their original destination, each whole (closing the listener would reset them)."""
    monkeypatch.setattr(redirect.RedirectSession, "_accept_loop", lambda self: None)
    session = _start(monkeypatch, echo)
    clients = []
    try:
        for n in range(2):
            client = socket.create_connection(("127.0.0.1", session.listen_port), timeout=5)
            client.sendall(b"queued %d" % n)
            client.shutdown(socket.SHUT_WR)
            clients.append(client)
    finally:
        session.stop()
    answers = []
    for client in clients:
        with client:
            got = b""
            while chunk := client.recv(4096):
                got += chunk
            answers.append(got)
    assert answers == [b"echo:queued 0", b"echo:queued 1"]  # (no event: the stream is over)


def test_a_connection_taken_but_not_yet_handled_is_reset_when_the_manager_exits(
        monkeypatch: pytest.MonkeyPatch, echo: tuple[str, int]) -> None:  # noqa: F811
    """The manager's exit resets every connection taken off the listener, also one whose
    thread has not made a Connection of it yet (here held there): counted later, it would be
    closed by the process's end once nothing translates its reset any more (make chaos: a
    client waiting for ever)."""
    import threading

    held, release = threading.Event(), threading.Event()
    new_connection = redirect.RedirectSession._new_connection

    def slow(self: redirect.RedirectSession, sock: socket.socket, peer: tuple[str, int]) -> Any:
        held.set()
        if release.wait(10):
            return None  # (reset meanwhile: nothing more to do with it)
        return new_connection(self, sock, peer)

    monkeypatch.setattr(redirect.RedirectSession, "_new_connection", slow)
    session = _start(monkeypatch, echo)
    try:
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as client:
            client.sendall(b"request")
            client.shutdown(socket.SHUT_WR)
            assert held.wait(5)
            session.abort_connections(last=True)
            with pytest.raises(ConnectionResetError):
                client.recv(100)
    finally:
        release.set()
        session.stop()

"""A pooled tunnel whose client hands its operator-side socket over (node mode's lane,
``TunnelOpen.handoff``): the manager relays the connection itself, real TCP sockets both sides.

- before the answer only the assignment goes to the client (with the peer's first bytes);
- after the handoff the manager writes those first bytes, then relays both ways with
  half-closes, and reports the counts in ``handoff_ended`` and in its ``closed`` event;
- the end of the call (the CLI killed, the lane closed) resets both sockets at once;
- a reset on either side reaches the other, and the end says why;
- a plain ``connected`` answer still works; a socket handed over where none was offered, or too
  late, is closed and never relayed.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kdiag_manager import tunnel
from kdiag_manager.redirect import RedirectSession
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.sockets import abort

from tests.manager.test_redirect_accepted import _start
from tests.manager.test_reoffer import _events, echo  # noqa: F401
from tests.manager.test_tunnel_serve import Call, _decoded, _drain, _requests, _until

_TCP_CLOSE = 7  # (tcp_info's first byte: the connection's state)


class FdCall(Call):
    """The call's context on a unix lane: the client may hand sockets over."""

    def takes_fds(self) -> bool:
        return True


class _Operator:
    """The operator side: a listener; the CLI's connected socket (what it hands over) and the
    accepted end the test plays the operator with."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._made: list[socket.socket] = []

    def connect(self) -> tuple[socket.socket, socket.socket]:
        handed = socket.create_connection(self._listener.getsockname(), timeout=5)
        served, _ = self._listener.accept()
        served.settimeout(5)
        self._made += [handed, served]
        return handed, served

    def close(self) -> None:
        for sock in self._made:
            sock.close()
        self._listener.close()


@pytest.fixture
def operator() -> Iterator[_Operator]:
    side = _Operator()
    yield side
    side.close()


def _read_all(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def _reset_seen(sock: socket.socket) -> bool:
    """Has ``sock``'s connection been reset (TCP state CLOSE), without writing to it (that
    would wake the relay)?"""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE


@contextlib.contextmanager
def _pooled(monkeypatch: pytest.MonkeyPatch, original: tuple[str, int], call: Call
            ) -> Iterator[tuple[RedirectSession, queue.Queue[Any], list[bytes]]]:
    """A redirect session with one handoff tunnel parked (kept after a clean connection): the
    session, the client's frames to put (None ends them), the frames sent to the client."""
    session = _start(monkeypatch, original)
    frames_in: queue.Queue[Any] = queue.Queue()
    out: list[bytes] = []
    opened = pb.TunnelOpen(redirect_id=session.id, raw_data=True, early_data=True,
                           handoff=True, keep_idle=1)
    pump = _drain(tunnel.serve_pooled(session, _requests(frames_in), call, opened), out)
    try:
        _until(lambda: session.idle_tunnels() == 1)
        yield session, frames_in, out
    finally:
        frames_in.put(None)
        session.stop()  # (ends a tunnel parked again)
        pump.join(5)
    assert not pump.is_alive()


def test_a_handed_over_connection_is_relayed_by_the_manager_both_ways(
        monkeypatch: pytest.MonkeyPatch, operator: _Operator) -> None:
    with _pooled(monkeypatch, ("10.0.0.9", 80), FdCall()) as (session, frames_in, out):
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
            _until(lambda: bool(out))
            assigned = _decoded(out)[0].assigned
            peer.sendall(b"x" * (3 << 20))  # before the answer: held, not sent to the client
            handed, served = operator.connect()
            frames_in.put(handed.dup())  # (the manager gets a descriptor of its own)
            served.sendall(b"y" * (2 << 20))
            served.shutdown(socket.SHUT_WR)
            peer.shutdown(socket.SHUT_WR)
            got_operator = _read_all(served)
            got_peer = _read_all(peer)
        assert assigned.data == b"GET / HTTP/1.1\r\n\r\n"  # (written by the manager)
        assert got_operator == assigned.data + b"x" * (3 << 20)
        assert got_peer == b"y" * (2 << 20)
        _until(lambda: len(out) == 2)
        sent = _decoded(out)
        assert [f.WhichOneof("msg") for f in sent] == ["assigned", "handoff_ended"]
        ended = sent[1].handoff_ended
        assert (ended.to_operator, ended.from_operator, ended.error) == \
            (18 + (3 << 20), 2 << 20, "")
        closed = _events(session, "closed")[-1].closed
        assert (closed.connection_id, closed.route, closed.bytes_from_peer,
                closed.bytes_to_peer, closed.error) == \
            (assigned.connection_id, "operator", 18 + (3 << 20), 2 << 20, "")
        _until(lambda: session.idle_tunnels() == 1)  # clean: parked again for the next one
        served.close()
        handed.close()


def test_the_end_of_the_call_resets_both_sides_of_a_relayed_connection(
        monkeypatch: pytest.MonkeyPatch, operator: _Operator) -> None:
    """The CLI was killed (its lane closed): no kdiag process is left to help, and neither
    side may wait forever for the other."""
    call = FdCall()
    handed, served = operator.connect()
    with _pooled(monkeypatch, ("10.0.0.9", 80), call) as (session, frames_in, out):
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            peer.settimeout(5)
            peer.sendall(b"hello")
            peer.shutdown(socket.SHUT_WR)  # (the peer waits for the answer: only one way left)
            _until(lambda: bool(out))
            frames_in.put(handed.dup())  # (the manager gets a descriptor of its own)
            assert _read_all(served) == b"hello"  # relayed, and the half-close
            handed.close()  # (the CLI's copy: gone with the CLI)
            for callback in call.callbacks:
                callback()
            with pytest.raises(ConnectionResetError):
                _read_all(peer)
            _until(lambda: _reset_seen(served))  # the operator side was reset too
        closed = _events(session, "closed")[-1].closed
        assert closed.error == tunnel.TUNNEL_ENDED_FIRST


@pytest.mark.parametrize("who", ["peer", "operator"])
def test_a_reset_on_one_side_of_a_relayed_connection_resets_the_other(
        monkeypatch: pytest.MonkeyPatch, operator: _Operator, who: str) -> None:
    handed, served = operator.connect()
    with _pooled(monkeypatch, ("10.0.0.9", 80), FdCall()) as (session, frames_in, out):
        peer = socket.create_connection(("127.0.0.1", session.listen_port), timeout=5)
        peer.sendall(b"hello")
        _until(lambda: bool(out))
        frames_in.put(handed.dup())  # (the manager gets a descriptor of its own)
        assert served.recv(100) == b"hello"
        resetting, other = (peer, served) if who == "peer" else (served, peer)
        abort(resetting)
        with pytest.raises(ConnectionResetError):
            _read_all(other)
        _until(lambda: len(out) == 2)
        ended = _decoded(out)[1].handoff_ended
        assert ended.error, "a reset reported as a clean end"
        closed = _events(session, "closed")[-1].closed
        assert closed.error == ended.error
        other.close()


def test_a_plain_answer_on_a_handoff_tunnel_is_carried_by_the_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The client could not hand over (e.g. its lane was replaced): ``connected`` still works,
    and the bytes the manager held come through the stream."""
    with _pooled(monkeypatch, ("10.0.0.9", 80), FdCall()) as (session, frames_in, out):
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            peer.sendall(b"first")
            _until(lambda: bool(out))
            peer.sendall(b"second")
            frames_in.put(pb.TunnelFrame(connected=True))
            peer.shutdown(socket.SHUT_WR)
            frames_in.put(pb.TunnelFrame(eof=True))
            peer.settimeout(5)
            assert _read_all(peer) == b""
        _until(lambda: any(not isinstance(f, bytes) and f.eof for f in _decoded(out)))
        pump_frames = _decoded(out)
        data = b"".join(f for f in pump_frames[1:] if isinstance(f, bytes))
        assert pump_frames[0].assigned.data + data == b"firstsecond"


@pytest.mark.parametrize("case", ["not offered", "too late"])
def test_a_socket_handed_over_where_it_may_not_be_is_closed_not_relayed(
        monkeypatch: pytest.MonkeyPatch, operator: _Operator,
        echo: tuple[str, int], case: str) -> None:  # noqa: F811
    # "not offered": a stream without handoff (the manager cannot take it as an answer); "too
    # late": the client's time to answer is over. Either way the connection fails open to its
    # original destination (the echo server).
    handed, served = operator.connect()
    with _pooled(monkeypatch, echo, FdCall() if case == "too late" else Call()) as (session, frames_in, out):
        with socket.create_connection(("127.0.0.1", session.listen_port), timeout=5) as peer:
            peer.settimeout(5)
            peer.sendall(b"hi")
            _until(lambda: bool(out))
            if case == "too late":
                time.sleep(1.0)  # past the client's time to answer (fail_open_timeout 0.3 s)
            frames_in.put(handed.dup())  # (the manager gets a descriptor of its own)
            handed.close()  # (the client's copy)
            assert served.recv(100) == b"", "a socket handed over out of turn got bytes"
            peer.shutdown(socket.SHUT_WR)
            try:
                answer = _read_all(peer)
            except ConnectionResetError:
                answer = b"<reset>"
        assert answer == b"echo:hi"  # failed open: the app served it

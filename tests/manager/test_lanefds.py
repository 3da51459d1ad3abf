"""Sockets handed over the lane (``FD`` frames, ``wire.lanefds``), on a real LaneServer on a
unix socket and the CLI's lane: each socket reaches its stream in order, between large
messages; a TCP lane offers nothing of it; a peer that attaches descriptors where none may
come loses its lane, and no descriptor is left open in the manager."""

from __future__ import annotations

import array
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kdiag_manager import laneserver
from kdiag_manager.wire import lane as L
from kdiag_manager.wire.lanefds import MAX_WAITING, HandOff
from kdiag_manager.wire.workers import Workers

from kdiag.session.lane import connect_socket

TOKEN = "s3cret"
_WORKERS = Workers("test-lanefds")
BIG = 1 << 20  # (a large message: read apart from the frame buffer)


def _takes_sockets(requests: Iterator[Any], context: Any) -> Iterator[bytes]:
    """Answers each message with its length; writes ``#i`` into the i-th item if a socket."""
    for i, item in enumerate(requests):
        if isinstance(item, socket.socket):
            with item:
                item.sendall(f"#{i}".encode())
            yield b"took"
        else:
            yield b"len:%d" % len(item)


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[str]:
    listener, address = laneserver.listen(f"unix:{tmp_path}/lane.sock")
    server = laneserver.LaneServer(listener, lambda t: t == TOKEN, _takes_sockets,
                                   lambda payload: payload, _WORKERS.submit)
    server.start()
    yield address
    server.close()


def _connected_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname(), timeout=5)
    served, _ = listener.accept()
    served.settimeout(5)
    return client, served


def test_sockets_handed_over_reach_their_stream_in_order_between_large_messages(
        unix_server: str) -> None:
    client, lane_sock = connect_socket(unix_server, TOKEN)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a, a_served = _connected_pair(listener)
        b, b_served = _connected_pair(listener)
        try:
            assert client.wait_ready()
            call = client.method(iter([b"x" * BIG, HandOff(a), b"y" * BIG, HandOff(b),
                                       b"small"]))
            assert call.can_hand_off()
            answers = [bytes(m) for m in call]
            assert answers == [b"len:%d" % BIG, b"took", b"len:%d" % BIG, b"took", b"len:5"]
            # Each socket is the one handed over with its frame: the handler wrote its index.
            assert a_served.recv(10) == b"#1" and b_served.recv(10) == b"#3"
        finally:
            for s in (a, a_served, b, b_served):
                s.close()
            client.close()
            lane_sock.close()


def test_a_tcp_lane_offers_no_handoff() -> None:
    listener, address = laneserver.listen("127.0.0.1:0")
    server = laneserver.LaneServer(listener, lambda t: t == TOKEN, _takes_sockets,
                                   lambda payload: payload, _WORKERS.submit)
    server.start()
    client, lane_sock = connect_socket(address, TOKEN)
    try:
        assert client.wait_ready()
        call = client.method(iter([b"hi"]))
        assert [bytes(m) for m in call] == [b"len:2"]
        assert not call.can_hand_off()
    finally:
        client.close()
        lane_sock.close()
        server.close()


def _raw_lane(address: str) -> socket.socket:
    """A lane connection that has said HELLO (the manager announced ``fds=1``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(address[len("unix:"):])
    sock.sendall(b"".join(L.frame(L.HELLO, 0, TOKEN.encode())))
    kind, _, length = L.HEADER.unpack(sock.recv(L.HEADER.size, socket.MSG_WAITALL))
    answer = sock.recv(length, socket.MSG_WAITALL)
    assert kind == L.HELLO and b"fds=1" in answer.split()
    return sock


def _send_with_fd(sock: socket.socket, data: bytes, fd: int) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def _closed_by_the_manager(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def _read_end_open_elsewhere(w: int) -> bool:
    """Does anyone still hold a read end of the pipe whose write end is ``w`` (ours closed)?
    Writing to a pipe with no reader left fails (EPIPE)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.write(w, b"x")
        except BrokenPipeError:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("case", ["on ordinary messages", "a pipe", "no descriptor"])
def test_descriptors_where_none_may_come_close_the_lane_and_none_stays_open(
        unix_server: str, case: str) -> None:
    sock = _raw_lane(unix_server)
    r, w = os.pipe()
    try:
        opening = b"".join(L.frame(L.MSG, 1, b"open"))
        if case == "on ordinary messages":  # each message carries a descriptor: never claimed
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (closed)
                for _ in range(MAX_WAITING + 2):
                    _send_with_fd(sock, opening, r)
        elif case == "a pipe":  # an FD frame, but not a socket
            sock.sendall(opening)
            _send_with_fd(sock, L.HEADER.pack(L.FD, 1, 0), r)
        else:  # an FD frame alone
            sock.sendall(opening + L.HEADER.pack(L.FD, 1, 0))
        assert _closed_by_the_manager(sock)
        os.close(r)
        assert not _read_end_open_elsewhere(w)  # every copy the manager received was closed
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.close(r)
        os.close(w)

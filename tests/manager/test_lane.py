"""The lane protocol, both ends over a real socket: framing, token, streams, flow control."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from kdiag_manager import laneserver
from kdiag_manager.wire import lane as L
from kdiag_manager.wire.workers import Workers

from kdiag.session.lane import LaneRpcError, connect_socket

TOKEN = "s3cret"
_WORKERS = Workers("test-lane")


def _identity(payload: bytes) -> bytes:
    return payload


class _Server:
    """A LaneServer on loopback with ``handler``; clients connect with connect_socket."""

    def __init__(self, handler: laneserver.Handler) -> None:
        listener, self.address = laneserver.listen("127.0.0.1:0")
        self.lane = laneserver.LaneServer(listener, lambda t: t == TOKEN, handler, _identity,
                                 _WORKERS.submit)
        self.lane.start()

    def client(self, token: str = TOKEN) -> Any:
        client, sock = connect_socket(self.address, token)
        self._sock = sock
        return client

    def close(self) -> None:
        self.lane.close()


@pytest.fixture
def echo_server() -> Iterator[_Server]:
    def echo(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for message in requests:
            yield b"echo:" + message
        yield b"done"

    server = _Server(echo)
    yield server
    server.close()


def _texts(call: Any) -> list[bytes]:
    return [bytes(m) for m in call]


def test_frame_parser_reassembles_frames_cut_anywhere() -> None:
    wire = b"".join(b"".join(L.frame(L.MSG, n, bytes([n]) * n * 1000)) for n in range(1, 6))
    for step in (1, 7, 4096, len(wire)):
        parser = L.FrameParser()
        got = [f for i in range(0, len(wire), step) for f in parser.feed(wire[i:i + step])]
        assert [(k, s, len(p)) for k, s, p in got] == [(L.MSG, n, n * 1000) for n in range(1, 6)]
        assert all(p == bytes([s]) * len(p) for _, s, p in got)


def test_socket_reader_takes_frames_of_every_size_intact() -> None:
    """``frames_from`` (the lanes' reader): small frames cut from a buffer that starts at 16 KiB
    and grows while reads fill it, large ones read apart; sizes around each boundary."""
    from kdiag_manager.wire.laneframes import FIRST_READ_SIZE, SMALL, frames_from, read_rest

    sizes = [1, FIRST_READ_SIZE - 9, FIRST_READ_SIZE, FIRST_READ_SIZE + 1, 3, SMALL, SMALL + 1,
             5, 200_000, SMALL, 2]
    payloads = [bytes([i]) * n for i, n in enumerate(sizes)]
    a, b = socket.socketpair()
    try:
        def write() -> None:
            for i, payload in enumerate(payloads):
                a.sendall(b"".join(L.frame(L.MSG, i, payload)))
            a.shutdown(socket.SHUT_WR)

        threading.Thread(target=write, daemon=True).start()
        got = []
        for kind, stream, head, rest in frames_from(b):
            got.append((kind, stream, bytes(read_rest(b, head, rest)) if rest else head))
    finally:
        a.close()
        b.close()
    assert [(k, s, len(p)) for k, s, p in got] == [(L.MSG, i, n) for i, n in enumerate(sizes)]
    assert [p for _, _, p in got] == payloads


def test_frame_parser_refuses_oversized_frames() -> None:
    with pytest.raises(L.LaneError):
        list(L.FrameParser().feed(L.HEADER.pack(L.MSG, 1, L.MAX_PAYLOAD + 1)))


def test_calls_carry_messages_both_ways_in_order(echo_server: _Server) -> None:
    client = echo_server.client()
    assert client.wait_ready()
    big = bytes(range(256)) * 4096  # 1 MiB: a payload written apart from its header
    assert _texts(client.method(iter([b"a", big, b"c"]))) == [
        b"echo:a", b"echo:" + big, b"echo:c", b"done"]


def test_concurrent_calls_each_get_their_own_answers(echo_server: _Server) -> None:
    client = echo_server.client()
    assert client.wait_ready()
    results: dict[int, list[bytes]] = {}

    def one(n: int) -> None:
        results[n] = _texts(client.method(iter([str(n).encode()] * 3)))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(results[n] == [f"echo:{n}".encode()] * 3 + [b"done"] for n in range(50))


def test_a_wrong_token_gets_no_lane(echo_server: _Server) -> None:
    client = echo_server.client(token="wrong")
    assert not client.wait_ready(1.0)
    assert not client.ready
    with pytest.raises(grpc.RpcError) as err:
        list(client.method(iter([b"x"])))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_streams_before_hello_close_the_lane(echo_server: _Server) -> None:
    host, port = echo_server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"".join(L.frame(L.MSG, 1, b"hi")))
        sock.settimeout(5)
        assert sock.recv(100) == b""  # closed, nothing served


def test_handler_abort_reaches_the_caller_with_its_code() -> None:
    def refuse(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        next(requests)
        context.abort(grpc.StatusCode.NOT_FOUND, "redirect 7 is not running")
        yield b"never"

    server = _Server(refuse)
    try:
        client = server.client()
        assert client.wait_ready()
        with pytest.raises(LaneRpcError) as err:
            list(client.method(iter([b"open"])))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert err.value.details() == "redirect 7 is not running"
    finally:
        server.close()


def test_cancel_ends_the_handler_and_runs_its_callbacks() -> None:
    ended = threading.Event()
    started = threading.Event()

    def wait_forever(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        context.add_callback(ended.set)
        next(requests)
        started.set()
        yield b"hello"
        for _ in requests:  # until the client cancels
            pass
        yield b"after"

    server = _Server(wait_forever)
    try:
        client = server.client()
        assert client.wait_ready()
        stop = threading.Event()

        def requests() -> Iterator[bytes]:
            yield b"open"
            stop.wait(10)  # no half-close: only the cancel ends the call

        call = client.method(requests())
        assert bytes(next(call)) == b"hello"
        assert started.wait(5)
        call.cancel()
        assert ended.wait(5)
        with pytest.raises(LaneRpcError) as err:
            next(call)
        assert err.value.code() == grpc.StatusCode.CANCELLED
        stop.set()
    finally:
        server.close()


def test_closing_the_server_ends_open_calls_as_unavailable() -> None:
    gate = threading.Event()

    def slow(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        next(requests)
        gate.wait(10)
        yield b"late"

    server = _Server(slow)
    client = server.client()
    assert client.wait_ready()
    call = client.method(iter([b"open"]))
    time.sleep(0.1)
    server.close()
    with pytest.raises(LaneRpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    gate.set()
    assert not client.ready


def test_flow_control_holds_a_sender_until_the_receiver_reads() -> None:
    """A handler that does not read lets at most WINDOW bytes (or one message) pile up;
    reading releases the rest."""
    release = threading.Event()
    got: list[int] = []

    def lazy(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        release.wait(10)
        got.extend(len(m) for m in requests)
        yield struct.pack(">I", sum(got))

    server = _Server(lazy)
    try:
        client = server.client()
        assert client.wait_ready()
        chunk = 1 << 20
        sent: list[int] = []

        def requests() -> Iterator[bytes]:
            for _ in range(3 * L.WINDOW // chunk):
                sent.append(chunk)
                yield b"x" * chunk

        call = client.method(requests())
        time.sleep(0.5)
        # The window plus the message waiting for credit (the generator has made it).
        assert sum(sent) <= L.WINDOW + 2 * chunk
        release.set()
        (answer,) = [bytes(m) for m in call]
        assert struct.unpack(">I", answer)[0] == 3 * L.WINDOW
    finally:
        server.close()


def _download(server: _Server, total: int) -> int:
    """Bytes a client call got from ``server`` (its handler sends ``total`` bytes)."""
    client = server.client()
    assert client.wait_ready()
    call = client.method(iter([b"go"]))
    got = 0
    for message in call:
        got += len(message)
    return got


def _sender(size: int, total: int) -> laneserver.Handler:
    def send(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        next(requests)
        for _ in range(total // size):
            yield b"d" * size
    return send


def test_the_cli_credits_a_download_once_per_client_step(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A download in 64 KiB messages: the manager gets one CREDIT per CLIENT_CREDIT_STEP
    consumed, not one per message (each one is a frame to write and a wake-up to take)."""
    credits: list[int] = []
    deliver = L.LaneStream.deliver

    def counting(self: L.LaneStream, kind: int, payload: Any) -> None:
        if kind == L.CREDIT and not self._client:  # (the manager's end received it)
            credits.append(struct.unpack(">I", bytes(payload))[0])
        deliver(self, kind, payload)

    monkeypatch.setattr(L.LaneStream, "deliver", counting)
    total = 32 << 20
    server = _Server(_sender(64 << 10, total))
    try:
        assert _download(server, total) == total
    finally:
        server.close()
    assert L.CREDIT_STEP < L.CLIENT_CREDIT_STEP <= L.LEGACY_CREDIT_STEP
    assert credits and all(c >= L.CLIENT_CREDIT_STEP for c in credits)
    assert len(credits) <= total // L.CLIENT_CREDIT_STEP


def test_a_download_never_stalls_when_many_streams_share_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the budget shared out to the smallest window, the manager still keeps the client's
    step in flight: the CLI's credits (at its own, larger, step) keep coming."""
    monkeypatch.setattr(L, "SEND_BUDGET", 0)  # every window at MIN_WINDOW
    total = 16 << 20
    server = _Server(_sender(32 << 10, total))
    done: list[int] = []
    try:
        worker = threading.Thread(target=lambda: done.append(_download(server, total)),
                                  daemon=True)
        worker.start()
        worker.join(30)
        assert done == [total], "the download stalled waiting for credit"
    finally:
        server.close()

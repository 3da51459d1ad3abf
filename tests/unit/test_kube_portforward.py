"""kdiag's port-forward pump with a fake WebSocket: the v4 channel framing (a port-number
frame first on each channel, data on 0, errors on 1), both directions, and the ends."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

from kdiag.kube.portforward import PodStream

BINARY, CLOSE = 0x2, 0x8


class FakeFrame:
    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeSock:
    def __init__(self, ws: FakeWebSocket) -> None:
        self.sent: list[bytes] = []
        self.ws = ws
        self.shut = False

    def sendall(self, data: bytes) -> None:
        if self.shut:
            raise BrokenPipeError("shut down")
        self.sent.append(bytes(data))

    def shutdown(self, how: int) -> None:
        """As a real socket's: a reader blocked on it wakes with an error."""
        self.shut = True
        self.ws.incoming.put((-1, b""))


class FakeWebSocket:
    """Frames from the 'API server' come from a queue; frames sent are kept, unmasked."""

    def __init__(self) -> None:
        self.incoming: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.sock: FakeSock | None = FakeSock(self)
        self.sent_before_close: list[bytes] = []
        self.closed = False
        self.reading = 0
        self.closed_while_reading = False

    def recv_data_frame(self, control: bool) -> tuple[int, Any]:
        self.reading += 1
        try:
            opcode, data = self.incoming.get(timeout=5)
            if opcode == -1 or self.sock is None or self.sock.shut:
                raise ConnectionError("the connection was shut down")
            return opcode, FakeFrame(data)
        finally:
            self.reading -= 1

    def close(self, timeout: float = 0) -> None:
        self.closed = True

    def shutdown(self) -> None:
        """Closes the socket (its descriptor could then be reused): never while a pump reads."""
        self.closed_while_reading |= self.reading > 0
        self.closed = True
        if self.sock is not None:
            self.sent_before_close = self.sock.sent
        self.sock = None

    def payloads(self) -> bytes:
        """What was sent, as the server would unmask it (masking key after the header)."""
        from websocket import ABNF

        out = b""
        for raw in self.sock.sent if self.sock is not None else self.sent_before_close:
            length = raw[1] & 0x7F
            offset = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            mask, payload = raw[offset:offset + 4], raw[offset + 4:]
            out += ABNF.mask(mask, payload)
        return out


def _run(ws: FakeWebSocket) -> tuple[socket.socket, threading.Thread, PodStream]:
    local, remote = socket.socketpair()
    stream = PodStream(ws, 8080)
    thread = threading.Thread(target=stream.run, args=(remote,), daemon=True)
    thread.start()
    return local, thread, stream


def test_data_both_ways_then_close() -> None:
    ws = FakeWebSocket()
    port = (8080).to_bytes(2, "little")
    local, thread, stream = _run(ws)
    ws.incoming.put((BINARY, b"\x00" + port))  # the port-number frames, once per channel
    ws.incoming.put((BINARY, b"\x01" + port))
    ws.incoming.put((BINARY, b"\x00hello "))
    ws.incoming.put((BINARY, b"\x00world"))
    local.sendall(b"request")
    for _ in range(500):  # the request is on its way before the server closes
        if ws.sock is not None and ws.sock.sent:
            break
        threading.Event().wait(0.01)
    ws.incoming.put((CLOSE, b""))
    thread.join(5)
    received = b""
    while chunk := local.recv(100):
        received += chunk
    assert received == b"hello world"
    assert ws.payloads() == b"\x00request"
    assert stream.stats.from_pod == 11 and stream.stats.to_pod == 7
    assert ws.closed and stream.stats.error == ""
    assert not ws.closed_while_reading


def test_closing_from_another_thread_wakes_the_pumps_and_closes_last() -> None:
    """close() while the reader waits on the WebSocket (the local side still open): the
    connection is shut down at once, which wakes the reader; the socket is closed only after
    the reader is out — closed under it, its descriptor could go to another connection."""
    ws = FakeWebSocket()
    local, thread, stream = _run(ws)
    ws.incoming.put((BINARY, b"\x00\x90\x1f"))
    for _ in range(500):
        if ws.reading:
            break
        threading.Event().wait(0.01)
    assert ws.reading and not ws.closed
    stream.close()
    assert ws.sock is None or ws.sock.shut  # shut down at once
    thread.join(5)
    assert not thread.is_alive()
    assert ws.closed and not ws.closed_while_reading
    assert local.recv(10) == b""
    stream.close()  # idempotent


def test_a_stream_closed_before_it_runs_closes_its_socket_at_once() -> None:
    ws = FakeWebSocket()
    PodStream(ws, 8080).close()
    assert ws.closed


def test_error_channel_ends_the_stream_with_the_kubelets_message() -> None:
    ws = FakeWebSocket()
    port = (8080).to_bytes(2, "little")
    local, thread, stream = _run(ws)
    ws.incoming.put((BINARY, b"\x00" + port))
    ws.incoming.put((BINARY, b"\x01" + port))
    ws.incoming.put((BINARY, b"\x01error forwarding port 8080: connection refused"))
    thread.join(5)
    assert not thread.is_alive()
    assert local.recv(10) == b""
    assert "connection refused" in stream.stats.error


def test_a_port_forward_that_cannot_be_opened_again_is_lost_after_retries(monkeypatch) -> None:
    """Each connection's port-forward is retried (the API server restarting); when every
    attempt fails, the forward is lost with the last error, once."""
    from kdiag.kube import portforward

    monkeypatch.setattr(portforward, "RETRY_PAUSES", (0.01, 0.01, 0.01))
    attempts: list[int] = []

    def open_stream() -> PodStream:
        attempts.append(1)
        raise OSError(f"connection refused ({len(attempts)})")

    listener_sock = socket.socket()
    listener_sock.bind(("127.0.0.1", 0))
    listener_sock.listen(4)
    errors: list[str] = []
    listener = portforward._Listener(open_stream, listener_sock, "pod shop/api-0:8080",
                                     on_error=errors.append)
    listener.start("test-forward")
    with socket.create_connection(listener_sock.getsockname()) as conn:
        loss = listener.lifeline.wait(5)
        assert conn.recv(1) == b""  # the connection is closed, not left hanging
    listener.close()
    assert loss is not None and loss.environmental
    assert loss.cause == ("port-forward to pod shop/api-0:8080 lost after 3 retries: "
                          "connection refused (4)")
    assert len(attempts) == 4 and errors == ["connection refused (4)"]


def test_a_retried_port_forward_that_opens_again_is_not_lost(monkeypatch) -> None:
    from kdiag.kube import portforward

    monkeypatch.setattr(portforward, "RETRY_PAUSES", (0.01, 0.01, 0.01))
    attempts: list[int] = []
    ws = FakeWebSocket()

    def open_stream() -> PodStream:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("connection reset")
        return PodStream(ws, 8080)

    listener_sock = socket.socket()
    listener_sock.bind(("127.0.0.1", 0))
    listener_sock.listen(4)
    listener = portforward._Listener(open_stream, listener_sock, "pod shop/api-0:8080")
    listener.start("test-forward")
    ws.incoming.put((BINARY, b"\x00\x90\x1f"))  # the port-number frame
    ws.incoming.put((BINARY, b"\x00hello"))
    with socket.create_connection(listener_sock.getsockname()) as conn:
        assert conn.recv(5) == b"hello"
    listener.close()
    assert len(attempts) == 3 and listener.lifeline.loss is None

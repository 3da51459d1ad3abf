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
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))


class FakeWebSocket:
    """Frames from the 'API server' come from a queue; frames sent are kept, unmasked."""

    def __init__(self) -> None:
        self.incoming: queue.SimpleQueue[tuple[int, bytes]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.sock = FakeSock()
        self.closed = False

    def recv_data_frame(self, control: bool) -> tuple[int, Any]:
        opcode, data = self.incoming.get(timeout=5)
        return opcode, FakeFrame(data)

    def close(self, timeout: float = 0) -> None:
        self.closed = True

    def shutdown(self) -> None:
        self.closed = True

    def payloads(self) -> bytes:
        """What was sent, as the server would unmask it (masking key after the header)."""
        from websocket import ABNF

        out = b""
        for raw in self.sock.sent:
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
        if ws.sock.sent:
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

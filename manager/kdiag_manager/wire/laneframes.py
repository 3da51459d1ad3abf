"""The lane's wire format: frames, cut from a byte stream or read from a socket, and written.

A frame is a 9-byte header (kind, stream id, payload length; big-endian) and a payload; what
the kinds mean, and the streams and flow control on top, is :mod:`kdiag_manager.wire.lane`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator

HELLO, MSG, END, ABORT, CREDIT, FD = range(6)
HEADER = struct.Struct(">BII")
SMALL = 64 * 1024
"""Payloads up to this size go out in one write with their header, and are cut from a shared
read buffer on the way in; larger ones are written and read apart."""
READ_SIZE = 256 * 1024
FIRST_READ_SIZE = 16 * 1024
"""A reader's buffer starts this small and doubles while reads fill it, up to READ_SIZE: an
idle lane holds 16 KiB, not 256 (a new bytearray is written through: all of it is resident)."""
HEAD = 16
"""What a reader has of a large payload before it decides how to take the rest (a data
frame's prefix is at most 11 bytes)."""
MAX_PAYLOAD = 64 << 20


class LaneError(Exception):
    """A stream ended abnormally: ``code`` is a gRPC status code name."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code_name = code
        self.details_text = details


def frame(kind: int, stream: int, payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    """The pieces to write for one frame: one buffer for a small payload, header + payload
    otherwise (no copy of a large one)."""
    header = HEADER.pack(kind, stream, len(payload))
    if len(payload) <= SMALL:
        return [header + bytes(payload)]
    return [header, payload]


class FrameParser:
    """Cuts a byte stream into frames, whatever sizes it arrives in. Each payload is copied
    once out of what was fed; an incomplete frame is kept (copied) until the rest comes."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._need = 0  # bytes the kept partial frame needs before it can be parsed

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int, bytes]]:
        """Add ``data``; yield every frame completed by it as (kind, stream, payload)."""
        if self._partial:
            self._partial += data
            if len(self._partial) < self._need:
                return
            data, self._partial = self._partial, bytearray()
        view = memoryview(data)
        start = 0
        try:
            while len(view) - start >= HEADER.size:
                kind, stream, length = HEADER.unpack_from(view, start)
                if length > MAX_PAYLOAD:
                    raise LaneError("INTERNAL", f"lane frame of {length} bytes")
                end = start + HEADER.size + length
                if len(view) < end:
                    break
                payload = view[start + HEADER.size:end].tobytes()
                start = end
                yield kind, stream, payload
        finally:
            self._keep(view[start:])
            view.release()

    def _keep(self, rest: memoryview) -> None:
        if not len(rest):
            return
        self._partial = bytearray(rest)
        self._need = HEADER.size
        if len(rest) >= HEADER.size:
            self._need += HEADER.unpack_from(rest)[2]


def frames_from(sock: socket.socket, recv_into: Callable[[memoryview], int] | None = None
                ) -> Iterator[tuple[int, int, bytes | bytearray, int]]:
    """The frames ``sock`` receives until EOF, as (kind, stream, payload, rest). Small payloads
    are cut from a shared read buffer (``rest`` 0). A large one not yet all read comes with
    ``rest`` > 0: ``payload`` is what arrived of it (at least :data:`HEAD` bytes), and the
    caller takes the other ``rest`` bytes off ``sock`` (:func:`read_rest`, or a splice) before
    asking for the next frame. After a large payload the next read is small (a bulk stream's
    next frame would otherwise be read deep into its payload). ``recv_into`` reads the frames
    (``sock.recv_into`` unless given: e.g. a reader that takes descriptors, ``.lanefds``)."""
    recv = recv_into or sock.recv_into
    buf = bytearray(FIRST_READ_SIZE)
    view = memoryview(buf)
    start = end = 0
    read_size = READ_SIZE
    while True:
        while end - start >= HEADER.size:
            kind, stream, length = HEADER.unpack_from(buf, start)
            if length > MAX_PAYLOAD:
                raise LaneError("INTERNAL", f"lane frame of {length} bytes")
            body = start + HEADER.size
            if end - body >= length:
                start = body + length
                yield kind, stream, bytes(view[body:start]), 0
                continue
            if length <= SMALL or end - body < HEAD:
                break  # the rest is on its way: read more into the buffer
            head = bytes(view[body:end])
            start = end = 0
            read_size = HEADER.size + HEAD
            yield kind, stream, head, length - len(head)
        if start:  # keep the partial frame at the front
            buf[:end - start] = view[start:end]
            end -= start
            start = 0
        if end == len(buf):  # full (never at READ_SIZE: a small frame fits whole)
            bigger = bytearray(min(2 * len(buf), READ_SIZE))
            bigger[:end] = view[:end]
            view.release()
            buf, view = bigger, memoryview(bigger)
        n = recv(view[end:end + read_size])
        if not n:
            return
        end += n
        read_size = READ_SIZE


def read_rest(sock: socket.socket, head: bytes | bytearray, rest: int) -> bytearray:
    """A large payload: ``head`` and the ``rest`` bytes that follow it on ``sock``, read
    straight into the payload's own buffer."""
    payload = bytearray(len(head) + rest)
    payload[:len(head)] = head
    _fill(sock, memoryview(payload)[len(head):])
    return payload


def _fill(sock: socket.socket, view: memoryview) -> None:
    """Read exactly ``len(view)`` bytes into ``view`` (LaneError at EOF before that)."""
    while len(view):
        n = sock.recv_into(view)
        if not n:
            raise LaneError("UNAVAILABLE", "the lane closed in a frame")
        view = view[n:]


def socket_sender(sock: socket.socket) -> Callable[[list[bytes | memoryview]], None]:
    """``send_raw`` for a lane on a connected socket: a frame's pieces in one system call
    (``sendmsg`` gathers them; a partial write is completed)."""
    def send(pieces: list[bytes | memoryview]) -> None:
        if len(pieces) == 1:
            sock.sendall(pieces[0])
            return
        sent = sock.sendmsg(pieces)
        for piece in pieces:
            if sent >= len(piece):
                sent -= len(piece)
                continue
            sock.sendall(memoryview(piece)[sent:])
            sent = 0
    return send


def sockaddr(address: str) -> tuple[int, str | tuple[str, int]]:
    """The socket family and address of a lane address, ``unix:/path`` or ``host:port`` (an
    IPv4 host), as both ends spell it."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[len("unix:"):]
    host, _, port = address.rpartition(":")
    return socket.AF_INET, (host, int(port))

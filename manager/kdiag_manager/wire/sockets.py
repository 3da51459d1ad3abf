"""Socket helpers both ends of a tunnel use: closing with a reset, waiting until readable,
writing without Nagle's delay."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from collections.abc import Callable, Sequence


def abort(sock: socket.socket) -> None:
    """Close ``sock`` with a RST (SO_LINGER 0), waking any thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


def readable(socks: Sequence[socket.socket], timeout: float | None) -> list[socket.socket]:
    """Those of ``socks`` that can be read (data, EOF or an error) within ``timeout`` seconds
    (None: no limit). poll(2), since select(2) refuses descriptors above 1023 (a busy
    redirect has more)."""
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        poller.register(sock.fileno(), select.POLLIN)  # POLLHUP/POLLERR come unasked
        by_fd[sock.fileno()] = sock
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return [by_fd[fd] for fd, _ in poller.poll(ms)]


def nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a TCP socket (others are left alone).

    For sockets a relay writes to: what it relays was already delayed, if at all, by its
    sender; holding back a second small write until the peer acknowledges the first would cost
    a delayed ACK (40 ms) per exchange on a keep-alive connection.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


MIN_CHUNK = 64 * 1024
MAX_CHUNK = 2 * 1024 * 1024


class ChunkReader:
    """Reads one socket for a tunnel's pump in adaptive chunks.

    Reads start at 64 KiB and double while they come back full, up to 2 MiB: a bulk transfer
    then moves in few large messages (the per-message cost dominates), while an interactive
    connection keeps small reads. ``max_message`` (the lane's share of its sending budget per
    busy stream) caps them, so many connections at once keep little each. With ``reuse`` (the
    transport has written a message before it asks for the next: the lane) every read goes
    into one buffer kept for the connection, and the message is a view of it: no allocation,
    no page faults per message.
    """

    def __init__(self, sock: socket.socket, max_message: Callable[[], int] | None = None,
                 reuse: bool = False) -> None:
        self.sock = sock
        self._max_message = max_message
        self._reuse = reuse
        self._chunk = MIN_CHUNK
        self._buf: bytearray | None = None

    def read(self) -> bytes | memoryview:
        """The next bytes (empty at EOF; OSError if reading fails). A view is valid until
        the next call."""
        limit = self._chunk
        if self._max_message is not None:
            limit = max(MIN_CHUNK, min(limit, self._max_message()))
        if self._reuse:
            buf = self._buf
            if buf is None or len(buf) < limit or len(buf) > 2 * limit:
                buf = self._buf = bytearray(limit)
            n = self.sock.recv_into(buf, limit)
            data: bytes | memoryview = memoryview(buf)[:n]
        else:
            data = self.sock.recv(limit)
            n = len(data)
        if n == limit and self._chunk < MAX_CHUNK:
            self._chunk *= 2
        return data

"""Socket helpers both ends of a tunnel use: closing with a reset, waiting until readable,
writing without Nagle's delay."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from collections.abc import Sequence


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


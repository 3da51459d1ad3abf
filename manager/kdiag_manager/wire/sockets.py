"""Socket helpers both ends of a tunnel use: closing with a reset, waiting until readable,
writing without Nagle's delay."""

from __future__ import annotations

import contextlib
import ctypes
import select
import socket
import struct
from collections.abc import Sequence

_libc = ctypes.CDLL(None, use_errno=True)  # (the process's own C library)
_UNSPEC = struct.pack("H14x", socket.AF_UNSPEC)  # a sockaddr of family AF_UNSPEC
_LINGER_RESET = struct.pack("ii", 1, 0)  # close → RST
_LINGER_OFF = struct.pack("ii", 0, 0)  # close → FIN after what is queued (the default)


def abort(sock: socket.socket) -> None:
    """Reset ``sock`` now (RST) and close it, waking any thread blocked on it.

    Closing alone is not enough: while another thread is inside a call on the socket (a write
    waiting for a slow reader to make room, a splice), the kernel keeps it open and sends the
    reset only when that call returns, maybe seconds later, when the connection's conntrack
    entry (its translation) may be gone: the reset then never reaches the peer, which waits
    for an answer forever (seen: in-flight connections hung 30 s after the CLI was killed).
    connect(AF_UNSPEC) disconnects a TCP socket at once, whoever else holds it: the reset goes
    out now and every blocked call returns with an error."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _libc.connect(sock.fileno(), _UNSPEC, len(_UNSPEC))  # (a failure: close resets)
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


def reset_on_close(sock: socket.socket) -> None:
    """From now on, a close of ``sock`` that its owner does not choose (:func:`close_cleanly`)
    resets the connection: above all the process's death (kill -9), when the kernel closes
    its sockets. Without it the peer would get a clean end (FIN) in the middle of an answer or
    request, and take a cut one for a whole one."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def close_cleanly(sock: socket.socket) -> None:
    """Close ``sock``, its connection over cleanly: what is queued goes out, then a FIN (also
    after :func:`reset_on_close`)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
    sock.close()


def reset(sock: socket.socket) -> None:
    """Reset ``sock``'s connection (RST) without closing the object: its owner closes it, so
    no descriptor number is freed while another thread's call may still use it."""
    with contextlib.suppress(OSError):
        abort(sock.dup())  # (disconnects the connection itself, whoever else holds it)


_TCP_CLOSE = 7  # (tcp_states.h)


def was_reset(sock: socket.socket) -> bool:
    """Is ``sock``'s TCP connection over by a reset (received, or :func:`abort`'s)? A read
    returns the reset's error once; later reads return 0, like a clean end (a peer's FIN
    leaves the connection in CLOSE_WAIT, TIME_WAIT or the like, never CLOSE). A relay that
    reads 0 asks this before it passes a clean end on."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE
    except OSError:  # (closed meanwhile: the call ended, which resets)
        return True


def nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a TCP socket (others are left alone).

    For sockets a relay writes to: what it relays was already delayed, if at all, by its
    sender; holding back a second small write until the peer acknowledges the first would cost
    a delayed ACK (40 ms) per exchange on a keep-alive connection.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


"""Sockets handed over the lane: the CLI gives the manager its operator-side socket.

In node mode the CLI and the manager share a kernel, and the lane is a unix socket: instead of
relaying a redirected connection's bytes through the lane and the CLI (two more socket hops,
two more processes' threads per message), the CLI can pass the socket it connected to the
operator side to the manager (``SCM_RIGHTS``), and the manager splices the connection into it
(``kdiag_manager.handoff``; the Tunnel side of it is ``TunnelOpen.handoff``).

On the wire an ``FD`` frame (no payload) is sent alone in one ``sendmsg`` with exactly one
descriptor attached. A unix stream read that reaches a message with descriptors returns them
with it and stops after it; a read without room for them (``recv``, ``splice``) closes them.
So the manager's reader reads frame headers with ``recvmsg`` (:class:`FdReader`) and keeps the
descriptors in arrival order: the n-th ``FD`` frame parsed takes the n-th descriptor received
(it cannot be parsed before its own read returned the descriptor). Payload bytes are read with
plain reads, which never reach an ``FD`` frame's message: it starts at a frame boundary.
"""

from __future__ import annotations

import array
import collections
import os
import socket
from dataclasses import dataclass

from .laneframes import LaneError

MAX_WAITING = 8
"""Descriptors a reader keeps received but not yet claimed by an ``FD`` frame; more means a
peer attaching descriptors to other messages: the lane closes."""
_ANCILLARY = socket.CMSG_SPACE(MAX_WAITING * array.array("i").itemsize)


@dataclass
class HandOff:
    """(Client.) A request item: hand ``sock`` over on the call's stream (an ``FD`` frame)
    instead of sending a message."""

    sock: socket.socket


def send_fd(sock: socket.socket, header: bytes, fd: int) -> None:
    """Send ``header`` (a whole frame) with ``fd`` attached, in one message."""
    fds = array.array("i", [fd])
    if sock.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]) \
            != len(header):  # (a unix stream sends a message this small whole, or fails)
        raise OSError("a short write of a lane FD frame")


class FdReader:
    """Reads a unix lane socket with room for descriptors; keeps those that arrive."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fds: collections.deque[int] = collections.deque()

    def recv_into(self, view: memoryview) -> int:
        """Like ``sock.recv_into(view)``; descriptors that come with the bytes are kept
        (close-on-exec: the manager runs commands). LaneError: too many unclaimed."""
        n, ancdata, _flags, _addr = self._sock.recvmsg_into([view], _ANCILLARY,
                                                            socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
                self._fds.extend(fds)
        if len(self._fds) > MAX_WAITING:
            raise LaneError("INVALID_ARGUMENT", "descriptors without FD frames on the lane")
        return n

    def take(self) -> int:
        """The descriptor of the ``FD`` frame just parsed (LaneError: none came with it)."""
        if not self._fds:
            raise LaneError("INVALID_ARGUMENT", "an FD frame without a descriptor")
        return self._fds.popleft()

    def close(self) -> None:
        """Close the descriptors no frame claimed."""
        while self._fds:
            os.close(self._fds.popleft())


def socket_from(fd: int) -> socket.socket | None:
    """A socket object owning ``fd`` (None, ``fd`` closed: it is not a stream socket)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None
    if sock.type != socket.SOCK_STREAM:
        sock.close()
        return None
    return sock

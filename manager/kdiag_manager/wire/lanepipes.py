"""Large data messages taken off the lane into a pipe, and out to their socket by splice(2).

The lane's reader thread serves every stream, so it must never wait on one stream's consumer.
A large data message for a stream whose consumer writes to a socket (a tunnel's pump:
``LaneStream.accept_piped``) is spliced from the lane's socket into a pipe of its own — taken
from the lane's :class:`PipePool`, never fuller than the pipe can take without waiting — and
the consumer splices it on from the pipe to its socket, then gives the pipe back: the bytes do
not pass through Python at either end (a :class:`Piped` item in the stream's inbox stands for
them). With no pipe free, a message larger than a pipe, a consumer that takes only bytes, or
any other message, the bytes are read into memory as before. Measured in node mode (the
redirect benchmark's CLI): the copies in and out of Python and zeroing each payload's buffer
were a third of the CLI's CPU.

The other way, a pump's pipe is spliced into the lane's socket through a :class:`LaneFd`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

from . import frames
from .laneframes import LaneError, read_rest
from .pumps import Pipe
from .sockets import readable

SPLICE_F_NONBLOCK = 2
MAX_PIPES = 16
"""Pipes a lane keeps (in use or free): the messages of a few bulk streams in flight."""


class PipePool:
    """A lane's pipes for received messages: taken by its reader, given back (empty) by the
    consumer that wrote one out. A pipe is closed only by whoever holds it, so no descriptor
    is closed while a splice might use it."""

    def __init__(self, limit: int = MAX_PIPES) -> None:
        self._lock = threading.Lock()
        self._free: list[Pipe] = []
        self._count = 0
        self._limit = limit
        self._closed = False

    def take(self) -> Pipe | None:
        """An empty pipe (None: all in use, closed, or none can be made)."""
        with self._lock:
            if self._closed:
                return None
            if self._free:
                return self._free.pop()
            if self._count >= self._limit:
                return None
            self._count += 1
        try:
            return Pipe()
        except OSError:  # no descriptors left: into memory
            with self._lock:
                self._count -= 1
            return None

    def give_back(self, pipe: Pipe, empty: bool) -> None:
        """Return ``pipe`` (one that may hold bytes, or once the pool is closed, is closed)."""
        with self._lock:
            keep = empty and not self._closed
            if keep:
                self._free.append(pipe)
            else:
                self._count -= 1
        if not keep:
            pipe.close()

    def close(self) -> None:
        """Close the free pipes; those in use are closed when given back."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
            self._count -= len(free)
        for pipe in free:
            pipe.close()


class LaneFd:
    """A descriptor of the lane's own for its socket (a dup) that messages are spliced into.
    It is closed once the lane is closed and no splice uses it, never while one might (the
    number could be reused by then)."""

    def __init__(self, sock: socket.socket) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = os.dup(sock.fileno())
        self._users = 0
        self._closed = False

    @contextlib.contextmanager
    def use(self) -> Iterator[int]:
        """The descriptor, kept open meanwhile (LaneError once the lane is closed)."""
        with self._lock:
            if self._closed or self._fd is None:
                raise LaneError("UNAVAILABLE", "the lane is closed")
            self._users += 1
            fd = self._fd
        try:
            yield fd
        finally:
            with self._lock:
                self._users -= 1
            self._release()

    def close(self) -> None:
        """The lane closed: close the descriptor once no splice uses it."""
        with self._lock:
            self._closed = True
        self._release()

    def _release(self) -> None:
        with self._lock:
            if not self._closed or self._users or self._fd is None:
                return
            fd, self._fd = self._fd, None
        os.close(fd)


class Piped:
    """A data message (an inbox item) whose bytes are ``head``, then ``n`` bytes in ``pipe``,
    then ``tail``; ``message_size``: its size on the lane (flow control)."""

    def __init__(self, head: bytes, n: int, tail: bytes, pipe: Pipe, pool: PipePool,
                 message_size: int) -> None:
        self.head, self.n, self.tail = head, n, tail
        self._pipe: Pipe | None = pipe
        self._pool = pool
        self.message_size = message_size

    def __len__(self) -> int:
        return len(self.head) + self.n + len(self.tail)

    def write_to(self, sock: socket.socket) -> int:
        """Write the data to ``sock`` (blocking; once); its size. OSError: writing failed."""
        pipe, self._pipe = self._pipe, None
        if pipe is None:
            raise OSError("a piped message written twice")
        empty = False
        try:
            if self.head:  # (coalesced with what follows: one segment, not a tiny one first)
                sock.sendall(self.head, socket.MSG_MORE)
            left = self.n
            while left:
                left -= os.splice(pipe.r, sock.fileno(), left)
            empty = True
            if self.tail:
                sock.sendall(self.tail)
        finally:
            self._pool.give_back(pipe, empty)
        return len(self)

    def __del__(self) -> None:  # never written out (the stream was abandoned)
        if self._pipe is not None:
            self._pool.give_back(self._pipe, empty=False)


def take_piped(pool: PipePool | None, head: bytes, rest: int, sock: socket.socket
               ) -> Piped | bytearray:
    """(Reader.) The rest of a large message whose first bytes are ``head``: into a pipe when
    it is a data message and one is free (a ``Piped``), else read into memory."""
    size = len(head) + rest
    offset = frames.data_offset(head, size)
    pipe = pool.take() if pool is not None and offset >= 0 else None
    if pool is None or pipe is None:
        return read_rest(sock, head, rest)
    if rest > pipe.capacity:
        pool.give_back(pipe, empty=True)
        return read_rest(sock, head, rest)
    moved, tail, waited = 0, b"", False
    try:
        while moved < rest:
            try:
                # Non-blocking on both sides (it cannot be on one only): EAGAIN is either no
                # data yet (wait for it) or, right after data came, a full pipe (a pipe holds
                # pages, and small segments fill its slots before its bytes).
                n = os.splice(sock.fileno(), pipe.w, rest - moved, flags=SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if waited:  # the pipe is full: the rest into memory
                    tail = bytes(read_rest(sock, b"", rest - moved))
                    break
                readable([sock], None)
                waited = True
                continue
            if not n:
                raise LaneError("UNAVAILABLE", "the lane closed in a frame")
            moved += n
            waited = False
    except BaseException:
        pool.give_back(pipe, empty=False)
        raise
    return Piped(head[offset:], moved, tail, pipe, pool, size)


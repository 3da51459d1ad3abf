"""Buffered reads and gathered writes of HTTP/1.x messages on a socket (the header router's I/O).

:class:`Reader` takes message heads, counted bodies, chunked bodies and lines off a socket;
:class:`Writer` gathers what goes to one socket so that a message leaves in one write.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol

from .httphead import MAX_HEAD, head_end

MAX_LINE = 8 * 1024
CHUNK = 64 * 1024
# A rest of the buffer up to this size is copied when its front is taken (else: a bytearray).
SMALL_REST = 4 * 1024
# Gathered output is written once it reaches this size, and whenever the router is about to wait.
FLUSH_AT = 64 * 1024


class HttpError(Exception):
    """The peer's bytes are not (or stop being) the HTTP/1.x we can frame."""


class Recv(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...


class Writer:
    """Output to one socket, gathered until :meth:`flush` (or ``FLUSH_AT`` bytes). A writer
    with output queued is in ``pending`` (once at least: flushing an empty one does nothing)."""

    __slots__ = ("_pieces", "_size", "pending", "sock")

    def __init__(self, sock: socket.socket, pending: list[Writer]) -> None:
        self.sock = sock
        self._pieces: list[bytes] = []
        self._size = 0
        self.pending = pending

    def write(self, data: bytes) -> None:
        """Queue ``data``; write what is queued once it is large."""
        if not self._pieces:
            self.pending.append(self)
        self._pieces.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write everything queued, in one write."""
        if not self._pieces:
            return
        pieces, self._pieces, self._size = self._pieces, [], 0
        self.sock.sendall(pieces[0] if len(pieces) == 1 else b"".join(pieces))


class Reader:
    """Buffered reads from a socket (or anything with ``recv``). ``before_wait`` runs before
    every read (which may block): the router writes out what it gathered.

    The buffer is what one read returned (bytes) while that is all there is, so that a message
    read whole is passed on without a copy; a bytearray once reads pile up or a long rest is
    left (taking from its front is cheap).
    """

    __slots__ = ("before_wait", "buf", "sock")

    def __init__(self, sock: Recv, initial: bytes = b"",
                 before_wait: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.buf: bytes | bytearray = initial
        self.before_wait = before_wait

    def fill(self) -> bool:
        """Read more into the buffer; False at EOF."""
        if self.before_wait is not None:
            self.before_wait()
        data = self.sock.recv(CHUNK)
        if not data:
            return False
        buf = self.buf
        if not buf:
            self.buf = data
        elif type(buf) is bytearray:
            buf += data
        else:
            self.buf = bytearray(buf)
            self.buf += data
        return True

    def head(self, limit: int = MAX_HEAD) -> bytes | None:
        """The next message head (through the blank line); None at EOF before any byte."""
        while True:
            if buf := self.buf:
                end = head_end(buf)
                if 0 <= end <= limit + 4:
                    return self.take(end)
                if len(buf) > limit:
                    raise HttpError("message head too large")
            if not self.fill():
                if self.buf:
                    raise HttpError("connection closed in a message head")
                return None

    def line(self) -> bytes:
        """One line, with its line end."""
        while (i := self.buf.find(b"\n")) < 0:
            if len(self.buf) > MAX_LINE:
                raise HttpError("line too long")
            if not self.fill():
                raise HttpError("connection closed in a chunked body")
        return self.take(i + 1)

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes of the buffer (at most what it holds)."""
        buf = self.buf
        if isinstance(buf, bytearray):
            data = bytes(buf[:n])
            del buf[:n]
            return data
        if n >= len(buf):
            self.buf = b""
            return buf
        if len(buf) - n <= SMALL_REST:
            self.buf = buf[n:]
            return buf[:n]
        self.buf = bytearray(buf)
        return self.take(n)

    def copy(self, n: int, out: Callable[[bytes], None]) -> None:
        """Pass exactly ``n`` bytes to ``out``."""
        while n > 0:
            if not self.buf and not self.fill():
                raise HttpError("connection closed in a body")
            data = self.take(min(n, len(self.buf)))
            out(data)
            n -= len(data)

    def copy_to_eof(self, out: Callable[[bytes], None]) -> None:
        """Pass everything until EOF to ``out``."""
        while True:
            if self.buf:
                out(self.take(len(self.buf)))
            if not self.fill():
                return

    def copy_chunked(self, out: Callable[[bytes], None]) -> None:
        """Pass one chunked body (chunks, last chunk, trailers) to ``out``."""
        while True:
            line = self.line()
            out(line)
            size = chunk_size(line)
            if size == 0:
                break
            self.copy(size, out)
            crlf = self.line()
            if crlf.strip():
                raise HttpError("chunk not followed by a line end")
            out(crlf)
        while True:  # trailer section
            line = self.line()
            out(line)
            if not line.strip():
                return


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (extensions ignored)."""
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise HttpError(f"bad chunk size {line[:40]!r}")
    return int(text, 16)

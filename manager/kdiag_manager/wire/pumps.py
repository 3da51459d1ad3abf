"""Reading a tunnel's socket for its pump: adaptive chunks, one reused buffer, or splice(2).

Both ends pump a connection's socket into Tunnel messages the same way (:class:`ChunkReader`):

- Reads start at 64 KiB and double while they come back full, up to 2 MiB: a bulk transfer
  moves in few large messages (the per-message cost dominates), an interactive connection
  keeps small reads. The transport's ``max_message`` (the lane's share of its sending budget
  per busy stream) caps them, so many connections at once keep little each.
- With ``reuse`` (the transport writes a message before it asks for the next: the lane) every
  read goes into one buffer kept for the connection: no allocation, no page faults per
  message.
- With ``splice`` (a lane on a socket of its own), once a transfer is bulk (reads of
  :data:`SPLICE_FROM` came back full), the bytes no longer pass through Python at all: they
  are spliced from the socket into a pipe and from the pipe into the lane's socket, behind a
  frame header (``LaneStream.send_spliced``). Measured relaying loopback TCP into a unix
  socket, CPU per GB: recv + sendall 0.33-0.41 s, into a reused buffer 0.34 s, spliced 0.12-0.15 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from . import frames

MIN_CHUNK = 64 * 1024
MAX_CHUNK = 2 * 1024 * 1024
SPLICE_FROM = 256 * 1024
"""A transfer is bulk (worth a pipe) once a read of this size came back full."""
PIPE_SIZE = 4 << 20
"""What a pipe is asked to hold (else 1 MiB, the unprivileged maximum; else what it has)."""
F_SETPIPE_SZ = 1031


class Pipe:
    """A pipe for splicing (close-on-exec), as large as the kernel allows up to PIPE_SIZE."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        self.capacity = 64 * 1024
        for size in (PIPE_SIZE, 1 << 20):  # (larger than pipe-max-size needs CAP_SYS_RESOURCE)
            try:
                self.capacity = fcntl.fcntl(self.w, F_SETPIPE_SZ, size)
                break
            except OSError:  # EPERM: past the limit, or the user's pipe budget
                continue

    def close(self) -> None:
        """Close both ends."""
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


Splice = Callable[[Pipe, int, int], int]
"""Move up to ``limit`` bytes from descriptor ``fd`` through ``pipe`` to the transport as one
message: ``splice(pipe, fd, limit)`` → the count (0 at EOF; OSError reading ``fd``)."""


class ChunkReader:
    """Reads one socket for a tunnel's pump (see the module's docstring). :meth:`close` when
    done (the pipe, if any)."""

    def __init__(self, sock: socket.socket, max_message: Callable[[], int] | None = None,
                 reuse: bool = False, splice: Splice | None = None) -> None:
        self.sock = sock
        self._max_message = max_message
        self._reuse = reuse
        self._splice = splice
        self._pipe: Pipe | None = None
        self._chunk = MIN_CHUNK
        self._buf: bytearray | None = None

    def read(self) -> bytes | memoryview | int:
        """The next bytes (empty at EOF; OSError if reading fails; a view is valid until the
        next call) — or, once spliced, how many went to the transport (0 at EOF)."""
        limit = self._chunk
        if self._max_message is not None:
            limit = max(MIN_CHUNK, min(limit, self._max_message()))
        if self._splice is not None and self._chunk > SPLICE_FROM:
            return self._spliced(limit)
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

    def _spliced(self, limit: int) -> int:
        assert self._splice is not None
        if self._pipe is None:
            self._buf = None  # (no longer needed)
            self._pipe = Pipe()
        try:
            return self._splice(self._pipe, self.sock.fileno(), min(limit, self._pipe.capacity))
        except BaseException:
            self.close()  # it may hold bytes that never left: never reuse it
            raise

    def close(self) -> None:
        """Release the pipe (the socket is the caller's)."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


class PumpState(Protocol):
    """A tunnel's state both pumps share: has a reset been sent (or received)?"""

    reset: bool


def socket_frames(sock: socket.socket, transport: Any, raw: bool, state: PumpState,
                  count: Callable[[int], None], reset_cause: str
                  ) -> Iterator[bytes | memoryview]:
    """``sock`` → encoded Tunnel frames: data... (raw if the peer accepts them), then eof, or
    reset (``reset_cause``: the error) when reading fails; nothing more once ``state.reset``.
    ``count`` gets each read's size. ``transport`` (the call or its context) may size messages
    (``max_message``), write each before asking for the next (``writes_each_message``) and
    splice (``splicer``): see :class:`ChunkReader`."""
    splicer = getattr(transport, "splicer", None)
    reader = ChunkReader(sock, getattr(transport, "max_message", None),
                         reuse=getattr(transport, "writes_each_message", False),
                         splice=splicer() if splicer is not None else None)
    try:
        while True:
            try:
                data = reader.read()
            except OSError as exc:
                if not state.reset:
                    state.reset = True
                    yield frames.reset(f"{reset_cause}: {exc.strerror or exc}")
                return
            n = data if isinstance(data, int) else len(data)
            if not n:
                break
            count(n)
            if not isinstance(data, int):  # (else spliced straight to the lane)
                yield frames.data(data, raw)
    finally:
        reader.close()
    if not state.reset:
        yield frames.EOF

"""A mirror's copies on the CLI's side: the one copy stream from the manager, and a connection
to the operator's server per copy.

The manager sends the pieces of every copy on one Tunnel stream (``TunnelOpen.copies``; see
``kdiag_manager.copystream``), many to a message. A thread reads the stream and hands each
message to the delivery thread, which owns every operator-side socket (non-blocking, in one
selector): it connects one per copy, writes its pieces in order, passes its end on (shutdown
for writing) and reads and discards the replies until the operator's side ends them (or
``LINGER`` passes). It never waits on one socket, so a slow operator connection holds up no
other copy, and nothing here can slow the app (whose traffic never passes through kdiag).
A copy whose bytes back up beyond ``COPY_LIMIT`` (all copies: ``TOTAL_LIMIT``) is dropped.

Each copy is reported once, as a ``closed`` event: route ``mirror`` once it was written whole
with its end, or ``copy-dropped`` with the reason (the operator's side refused, cut or fell
behind; the manager dropped it; the mirror ended first).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from kdiag_manager.wire import frames
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.background import lower_this_thread
from kdiag_manager.wire.sockets import abort

from .results import RedirectEventInfo
from .tunnel import start_call

# Bytes one copy may hold waiting for the operator's side, and all copies together.
COPY_LIMIT = 4 * 1024 * 1024
TOTAL_LIMIT = 64 * 1024 * 1024
# Copies with a connection to the operator's side open at once (each holds a socket).
MAX_OPEN = 4096
# How long a delivered copy's connection stays open for the operator's replies to be read and
# discarded (replies to a closed socket would meet a reset), and how many may wait so.
LINGER = 5.0
MAX_LINGERING = 512

Endpoint = tuple[str, int]


@dataclass(eq=False)
class _Out:
    """One copy on its way to the operator's side."""

    id: int
    original: Endpoint
    peer: Endpoint
    sock: socket.socket
    where: str
    deadline: float  # connecting: the connect timeout; delivered: the end of the linger
    connecting: bool = True
    pending: collections.deque[bytes] = field(default_factory=collections.deque)
    waiting: int = 0
    written: int = 0
    replies: int = 0
    ended: bool = False  # the manager sent its end: what came is the whole copy
    delivered: bool = False  # written whole, end passed on (reported)
    replies_over: bool = False
    mask: int = 0


_END = object()


class CopyReceiver:
    """The copy stream of mirror ``redirect_id`` and the copies' delivery (see the module's
    docstring). ``target_for`` maps a copy's original destination to the operator's side;
    ``emit`` gets each copy's ``closed`` event; ``on_end`` is told once the stream has ended
    (with its error, "" when the manager ended it)."""

    def __init__(self, method: Any, metadata: list[tuple[str, str]], redirect_id: int,
                 target_for: Callable[[Endpoint], Endpoint],
                 emit: Callable[[RedirectEventInfo], None], connect_timeout: float,
                 on_end: Callable[[str], None]) -> None:
        self._target_for = target_for
        self._emit = emit
        self._connect_timeout = connect_timeout
        self._on_end = on_end
        self._stop = threading.Event()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._outs: dict[int, _Out] = {}
        self._lingering: collections.OrderedDict[int, _Out] = collections.OrderedDict()
        self._connecting: collections.OrderedDict[int, _Out] = collections.OrderedDict()
        self._gone: set[int] = set()  # dropped here while the manager still sends pieces
        self._total = 0
        self._stream_over = False
        self._abandon = ""
        self._addresses: dict[Endpoint, tuple[int, Any]] = {}
        self.done = threading.Event()
        """Set once every copy is reported (the stream over) and the sockets are closed."""
        self.error = ""
        self._call = start_call(method, self._requests(redirect_id), metadata)
        threading.Thread(target=self._read, daemon=True, name="mirror-copies").start()
        threading.Thread(target=self._deliver, daemon=True, name="mirror-deliver").start()

    # -- the stream ----------------------------------------------------------------------------

    def _requests(self, redirect_id: int) -> Iterator[bytes]:
        yield frames.control(pb.TunnelFrame(open=pb.TunnelOpen(redirect_id=redirect_id,
                                                               copies=True)))
        self._stop.wait()  # (nothing more to say: the manager ends the stream)

    def _read(self) -> None:
        lower_this_thread()  # (copies are best effort: what runs beside them comes first)
        try:
            for frame in self._call:
                if isinstance(frame, pb.TunnelFrame) and frame.WhichOneof("msg") == "copies":
                    self._inbox.put(frame.copies)
                    self._wake()
        except grpc.RpcError as exc:
            self.error = f"{exc.code().name}: {exc.details()}"
        finally:
            self._inbox.put(_END)
            self._wake()
            self._on_end(self.error)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"x")

    def finish(self, timeout: float) -> None:
        """(The mirror is over.) Wait up to ``timeout`` for the copies under way to be
        delivered; then drop what is left, close the stream and every socket."""
        if not self.done.wait(timeout):
            self._abandon = "the mirror ended before the copy was delivered"
            self._wake()
            self.done.wait(5.0)
        self._stop.set()
        self._call.cancel()

    # -- delivery ------------------------------------------------------------------------------

    def _deliver(self) -> None:
        lower_this_thread()
        try:
            while not self._abandon:
                timeout = self._next_deadline()
                for key, mask in self._sel.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                    else:
                        self._event(key.data, mask)
                self._take_inbox()
                self._expire(time.monotonic())
                if self._stream_over and all(out.delivered for out in self._outs.values()):
                    return
        finally:
            reason = self._abandon or "the copy stream ended before the copy did"
            for out in list(self._outs.values()):
                if out.delivered:
                    self._close(out)
                else:
                    self._drop(out, reason)
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            self.done.set()

    def _take_inbox(self) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is _END:
                self._stream_over = True
                for out in list(self._outs.values()):
                    if not out.ended:
                        self._drop(out, "the copy stream ended before the copy did")
            else:
                for chunk in item.chunks:
                    self._piece(chunk)

    def _piece(self, chunk: pb.CopyChunk) -> None:
        last = chunk.end or bool(chunk.dropped)
        out = self._outs.get(chunk.copy_id)
        if out is None:
            if chunk.copy_id in self._gone:  # dropped here: its pieces are ignored
                if last:
                    self._gone.discard(chunk.copy_id)
                return
            original = (chunk.original_destination.host, chunk.original_destination.port)
            peer = (chunk.peer.host, chunk.peer.port)
            if chunk.dropped:  # (the manager dropped it before it sent anything)
                self._report(chunk.copy_id, original, peer, "copy-dropped", 0, chunk.dropped)
                return
            out = self._open(chunk.copy_id, original, peer)
            if out is None:
                if not last:
                    self._gone.add(chunk.copy_id)
                return
        if chunk.dropped:
            self._drop(out, chunk.dropped, more=False)
            return
        if chunk.data:
            data = chunk.data
            out.pending.append(data)
            out.waiting += len(data)
            self._total += len(data)
            if out.waiting > COPY_LIMIT or self._total > TOTAL_LIMIT:
                self._drop(out, f"the operator side fell behind ({out.waiting} bytes "
                                "waiting)", more=not last)
                return
        if chunk.end:
            out.ended = True
        self._flush(out)

    def _open(self, copy_id: int, original: Endpoint, peer: Endpoint) -> _Out | None:
        """A non-blocking connection to the operator's side for a new copy (None: it failed,
        the copy is reported dropped)."""
        where = "(no mapping)"
        try:
            if len(self._outs) >= MAX_OPEN:
                raise OSError(f"more than {MAX_OPEN} copies open at once")
            host, port = self._target_for(original)
            where = f"{host}:{port}"
            family, address = self._address(host, port)
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except KeyError:
            self._report(copy_id, original, peer, "copy-dropped", 0,
                         f"no operator-side address for port {original[1]}")
            return None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._report(copy_id, original, peer, "copy-dropped", 0,
                         f"operator side {where}: {reason}")
            return None
        out = _Out(copy_id, original, peer, sock, where,
                   time.monotonic() + self._connect_timeout)
        self._outs[copy_id] = out
        err = sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            self._connecting[copy_id] = out  # (deadlines in the order of the dict)
        elif err:
            self._drop(out, f"operator side {where}: {os.strerror(err)}", more=False)
            return None
        else:
            out.connecting = False
        return out

    def _address(self, host: str, port: int) -> tuple[int, Any]:
        """The socket family and address of the operator's side (resolved once)."""
        known = self._addresses.get((host, port))
        if known is None:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            known = self._addresses[(host, port)] = (info[0], info[4])
        return known

    def _event(self, out: _Out, mask: int) -> None:
        if self._outs.get(out.id) is not out:
            return
        if out.connecting and mask & selectors.EVENT_WRITE:
            err = out.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(out, f"operator side {out.where}: {os.strerror(err)}")
                return
            self._connected(out)
        if mask & selectors.EVENT_READ and not self._discard(out):
            return
        self._flush(out)

    def _discard(self, out: _Out) -> bool:
        """Read and forget the operator's replies; False if the copy is over (cut)."""
        try:
            while data := out.sock.recv(65536):
                out.replies += len(data)
        except BlockingIOError:
            return True
        except OSError as exc:
            if out.delivered:
                self._close(out)
            else:
                self._drop(out, f"operator side {out.where}: {exc.strerror or exc}")
            return False
        out.replies_over = True  # (a half-close: the copy goes on)
        if out.delivered:
            self._close(out)
            return False
        return True

    def _flush(self, out: _Out) -> None:
        """Write what is pending, as far as the socket takes it; pass the end on after it.
        A connection still connecting is written to as well: to a local server it is
        connected by then (a write that cannot go yet waits for it to be writable), and an
        error is the connection's own (e.g. refused)."""
        if out.delivered:
            return
        if out.connecting and not out.pending:
            self._watch(out)  # (for the connection's end: writable)
            return
        try:
            while out.pending:
                data = out.pending[0]
                sent = out.sock.send(data)
                if out.connecting:
                    self._connected(out)
                out.written += sent
                out.waiting -= sent
                self._total -= sent
                if sent < len(data):
                    out.pending[0] = data[sent:]
                    break
                out.pending.popleft()
            if out.ended and not out.pending:
                out.sock.shutdown(socket.SHUT_WR)
                self._delivered(out)
                return
        except BlockingIOError:
            pass
        except OSError as exc:
            self._drop(out, f"operator side {out.where}: {exc.strerror or exc}")
            return
        self._watch(out)

    def _connected(self, out: _Out) -> None:
        out.connecting = False
        self._connecting.pop(out.id, None)

    def _delivered(self, out: _Out) -> None:
        out.delivered = True
        self._report(out.id, out.original, out.peer, "mirror", out.written, "", out.replies)
        if out.replies_over:
            self._close(out)
            return
        out.deadline = time.monotonic() + LINGER
        self._lingering[out.id] = out
        while len(self._lingering) > MAX_LINGERING:
            self._close(next(iter(self._lingering.values())))
        self._watch(out)

    def _watch(self, out: _Out) -> None:
        mask = (0 if out.replies_over else selectors.EVENT_READ) | \
            (selectors.EVENT_WRITE if out.connecting or out.pending else 0)
        if mask == out.mask:
            return
        if not out.mask:
            self._sel.register(out.sock, mask, out)
        elif mask:
            self._sel.modify(out.sock, mask, out)
        else:
            self._sel.unregister(out.sock)
        out.mask = mask

    def _next_deadline(self) -> float | None:
        if self._stream_over or self._abandon:
            return 0.2
        deadlines = [next(iter(waiting.values())).deadline
                     for waiting in (self._lingering, self._connecting) if waiting]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _expire(self, now: float) -> None:
        while self._connecting:
            out = next(iter(self._connecting.values()))
            if out.deadline > now:
                break
            self._drop(out, f"operator side {out.where}: connecting timed out")
        while self._lingering:
            out = next(iter(self._lingering.values()))
            if out.deadline > now:
                return
            self._close(out)

    def _drop(self, out: _Out, reason: str, more: bool = True) -> None:
        """Give ``out`` up (its connection is reset: the operator's side sees it cut) and
        report it; ``more``: the manager still sends its pieces (they are ignored)."""
        if not out.delivered:
            self._report(out.id, out.original, out.peer, "copy-dropped", out.written, reason,
                         out.replies)
            if more and not out.ended:
                self._gone.add(out.id)
        # A cut copy's connection is reset, never ended cleanly: it is not taken for a whole one.
        self._close(out, reset=not out.delivered)

    def _close(self, out: _Out, reset: bool = False) -> None:
        if self._outs.pop(out.id, None) is None:
            return
        self._lingering.pop(out.id, None)
        self._connecting.pop(out.id, None)
        self._total -= out.waiting
        if out.mask:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(out.sock)
        if reset:
            abort(out.sock)
        else:
            out.sock.close()

    def _report(self, copy_id: int, original: Endpoint, peer: Endpoint, route: str,
                written: int, error: str, replies: int = 0) -> None:
        self._emit(RedirectEventInfo("closed", copy_id, original, peer, route, written, replies,
                                     error))

"""Per-request routing of an HTTP/1.x connection by a request header (header-filtered intercept).

:func:`route` serves one accepted client connection: it reads one request at a time, sends it to
the operator (matching requests) or to the app (the others), reads exactly one response from
that upstream, writes it to the client, and repeats. Upstreams are opened lazily, kept for the
client connection's life, and reopened when they closed (the app may close after every
response). Headers are passed on unchanged. An upstream's ``Connection: close`` closes that
upstream; the client connection, told the same, is closed too, unless the client's next request
arrives within ``CLOSE_GRACE`` (a client that keeps using the connection keeps getting each
request routed; one that waits for the close gets it). Responses without framing (read until
the upstream closes) end the client connection too. After
``101 Switching Protocols`` or a successful ``CONNECT`` the two sockets are spliced.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import httpfilter, splice
from .wire.sockets import abort, nodelay, readable

MAX_LINE = 8 * 1024
CHUNK = 64 * 1024
# Gathered output is written once it reaches this size, and whenever the router is about to wait.
FLUSH_AT = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After forwarding an upstream's ``Connection: close``, how long a next request may take to
# arrive before the client connection is closed as announced.
CLOSE_GRACE = 0.2


class HttpError(Exception):
    """The peer's bytes are not (or stop being) the HTTP/1.x we can frame."""


class Recv(Protocol):
    def recv(self, bufsize: int, /) -> bytes: ...


class Writer:
    """Output to one socket, gathered until :meth:`flush` (or ``FLUSH_AT`` bytes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._pieces: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        """Queue ``data``; write what is queued once it is large."""
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
    every read (which may block): the router writes out what it gathered."""

    def __init__(self, sock: Recv, initial: bytes = b"",
                 before_wait: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.buf = bytearray(initial)
        self.before_wait = before_wait

    def fill(self) -> bool:
        """Read more into the buffer; False at EOF."""
        if self.before_wait is not None:
            self.before_wait()
        data = self.sock.recv(CHUNK)
        self.buf += data
        return bool(data)

    def head(self, limit: int = httpfilter.MAX_HEAD) -> bytes | None:
        """The next message head (through the blank line); None at EOF before any byte."""
        while True:
            end = httpfilter.head_end(self.buf)
            if 0 <= end <= limit + 4:
                return self.take(end)
            if len(self.buf) > limit:
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
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

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


@dataclass(frozen=True)
class ResponseHead:
    """The status line and headers of one HTTP/1.x response."""

    version: str
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", httpfilter.index_headers(self.headers))

    def header(self, name: str) -> list[str]:
        """All values of header ``name`` (case-insensitive)."""
        return self._index.get(name.lower(), [])


def parse_response_head(buf: bytes) -> ResponseHead | None:
    """Parse a complete response head; None when it is not an HTTP/1.x response head."""
    end = httpfilter.head_end(buf)
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 \
            or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    headers = httpfilter.parse_headers(lines[1:])
    if headers is None:
        return None
    return ResponseHead(parts[0], int(parts[1]), headers)


def _tokens(values: list[str]) -> list[str]:
    if not values:
        return []
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


# Body framings: a byte count, "chunked", "eof" (until the sender closes), "tunnel" (splice).
Framing = int | str


def _length(values: list[str]) -> int:
    lengths = {v.strip() for v in ",".join(values).split(",")}
    if len(lengths) != 1:
        raise HttpError("conflicting Content-Length")
    text = lengths.pop()
    if not (text.isascii() and text.isdigit()):
        raise HttpError(f"bad Content-Length {text[:20]!r}")
    return int(text)


def request_framing(head: httpfilter.RequestHead) -> Framing:
    """How the body of request ``head`` is delimited (0: no body)."""
    te = _tokens(head.header("Transfer-Encoding"))
    if te:
        if te[-1] != "chunked":
            raise HttpError("request body without a length")
        return "chunked"
    cl = head.header("Content-Length")
    return _length(cl) if cl else 0


def response_framing(head: ResponseHead, method: str) -> Framing:
    """How the body of response ``head`` to a ``method`` request is delimited."""
    if head.status == 101 or (method == "CONNECT" and 200 <= head.status < 300):
        return "tunnel"
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return 0
    te = _tokens(head.header("Transfer-Encoding"))
    if te:
        return "chunked" if te[-1] == "chunked" else "eof"
    cl = head.header("Content-Length")
    return _length(cl) if cl else "eof"


def keeps_alive(version: str, connection: list[str]) -> bool:
    """Does a message with this version and these Connection headers keep the connection?"""
    tokens = _tokens(connection)
    if "close" in tokens:
        return False
    return version != "HTTP/1.0" or "keep-alive" in tokens


def copy_body(reader: Reader, framing: Framing, out: Callable[[bytes], None]) -> None:
    """Pass the body ``framing`` delimits from ``reader`` to ``out``."""
    if framing == 0:
        return
    if framing == "chunked":
        reader.copy_chunked(out)
    elif framing == "eof":
        reader.copy_to_eof(out)
    elif isinstance(framing, int):
        reader.copy(framing, out)


class _Upstream:
    def __init__(self, sock: socket.socket, before_wait: Callable[[], None]) -> None:
        nodelay(sock)
        self.sock = sock
        self._poll = select.poll()  # (one for the upstream's life: checked per request)
        self._poll.register(sock.fileno(), select.POLLIN)
        self.reader = Reader(sock, before_wait=before_wait)
        self.out = Writer(sock)
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> None:
        self.out.write(data)
        self.sent += len(data)

    def stale(self) -> bool:
        """Has the upstream closed (or sent something unasked) while idle?"""
        return bool(self.reader.buf) or bool(self._poll.poll(0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()


@dataclass
class Stats:
    """Bytes the router moved to and from the app (the operator's travel in their tunnels)."""

    app_requests: int = 0
    from_peer: int = 0
    to_peer: int = 0
    error: str = ""


def route(client: socket.socket, initial: bytes, to_operator: Callable[[httpfilter.RequestHead],
          bool], connect: Callable[[str], socket.socket]) -> Stats:
    """Serve ``client`` (whose first bytes, a request head, are ``initial``) until it ends.

    ``connect("app" | "operator")`` opens an upstream (raises OSError). Closes every socket.
    """
    stats = Stats()
    ups: dict[str, _Upstream] = {}
    nodelay(client)
    out = Writer(client)

    def flush() -> None:
        out.flush()
        for up in ups.values():
            up.out.flush()

    reader = Reader(client, initial, before_wait=flush)

    def upstream(name: str) -> _Upstream:
        up = ups.get(name)
        if up is not None and up.stale():
            up.close()
            up = None
        if up is None:
            up = ups[name] = _Upstream(connect(name), flush)
        return up

    def drop(name: str) -> None:
        up = ups.pop(name, None)
        if up is not None:
            account(name, up)
            with contextlib.suppress(OSError):
                up.out.flush()
            up.close()

    def account(name: str, up: _Upstream) -> None:
        if name == "app":
            stats.from_peer += up.sent
            stats.to_peer += up.received
            up.sent = up.received = 0

    clean = False
    try:
        while True:
            raw = reader.head()
            if raw is None:
                clean = True
                break
            head = httpfilter.parse_head(raw)
            if head is None:
                raise HttpError("not an HTTP/1.x request")
            name = "operator" if to_operator(head) else "app"
            if name == "app":
                stats.app_requests += 1
            framing = request_framing(head)
            up = upstream(name)
            send = up.send
            send(raw)
            if "100-continue" in _tokens(head.header("Expect")):
                out.write(CONTINUE)
            copy_body(reader, framing, send)
            while True:
                rraw = up.reader.head()
                if rraw is None:
                    raise HttpError(f"{name} closed without a response")
                resp = parse_response_head(rraw)
                if resp is None:
                    raise HttpError(f"{name} sent something other than an HTTP/1.x response")
                up.received += len(rraw)
                out.write(rraw)
                if resp.status >= 200 or resp.status == 101:
                    break
            rframing = response_framing(resp, head.method)
            if rframing == "tunnel":
                if up.reader.buf:
                    out.write(up.reader.take(len(up.reader.buf)))
                flush()
                ups.pop(name)
                account(name, up)
                result = splice.splice(client, up.sock, reader.take(len(reader.buf)))
                if name == "app":
                    stats.from_peer += result.a_to_b
                    stats.to_peer += result.b_to_a
                clean = True  # splice closed the client (other upstreams close cleanly)
                break

            def down(data: bytes, up: _Upstream = up) -> None:
                up.received += len(data)
                out.write(data)

            copy_body(up.reader, rframing, down)
            out.flush()  # the whole response: one write (a small one, one segment)
            if rframing == "eof":
                drop(name)
                clean = True
                break
            if not keeps_alive(head.version, head.header("Connection")):
                clean = True
                break
            if not keeps_alive(resp.version, resp.header("Connection")):
                drop(name)
                # The client was told the connection closes: close it, unless its next
                # request is already on its way (a client that reuses the connection anyway).
                if not reader.buf and not readable([client], CLOSE_GRACE):  # (all flushed)
                    clean = True
                    break
    except (HttpError, OSError) as exc:
        stats.error = str(exc) or type(exc).__name__
    finally:
        if clean:
            try:
                flush()
            except OSError as exc:
                clean = False
                stats.error = stats.error or str(exc) or type(exc).__name__
        for name in list(ups):
            if clean:
                drop(name)
            else:
                up = ups.pop(name)
                account(name, up)
                abort(up.sock)
        if clean:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
            client.close()
        else:
            abort(client)
    return stats

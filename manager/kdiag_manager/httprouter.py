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
import re
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass

from . import splice
from .httphead import (
    RequestHead,
    ResponseHead,
    header_key,
    parse_head,
    parse_response_head,
)
from .httpio import HttpError, Reader, Writer
from .wire.sockets import abort, close_cleanly, nodelay, readable

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After forwarding an upstream's ``Connection: close``, how long a next request may take to
# arrive before the client connection is closed as announced.
CLOSE_GRACE = 0.2


def _tokens(values: list[str]) -> list[str]:
    if not values:
        return []
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


# Body framings: a byte count, "chunked", "eof" (until the sender closes), "tunnel" (splice).
Framing = int | str


def _length(values: list[str]) -> int:
    if len(values) == 1 and values[0].isascii() and values[0].isdigit():
        return int(values[0])  # (the usual case, without the general path's sets and splits)
    lengths = {v.strip() for v in ",".join(values).split(",")}
    if len(lengths) != 1:
        raise HttpError("conflicting Content-Length")
    text = lengths.pop()
    if not (text.isascii() and text.isdigit()):
        raise HttpError(f"bad Content-Length {text[:20]!r}")
    return int(text)


# Lookup keys of the headers the router reads (``Head.values``).
_TRANSFER_ENCODING = header_key("Transfer-Encoding")
_CONTENT_LENGTH = header_key("Content-Length")
_CONNECTION = header_key("Connection")
_EXPECT = header_key("Expect")
# Any of the request headers that change how the router handles a request.
_REQUEST_FIELDS = re.compile(b"|".join(re.escape(k) for k in (
    _TRANSFER_ENCODING, _CONTENT_LENGTH, _CONNECTION, _EXPECT)))


def request_framing(head: RequestHead) -> Framing:
    """How the body of request ``head`` is delimited (0: no body)."""
    te = head.values(_TRANSFER_ENCODING)
    if te and (te := _tokens(te)):
        if te[-1] != "chunked":
            raise HttpError("request body without a length")
        return "chunked"
    cl = head.values(_CONTENT_LENGTH)
    return _length(cl) if cl else 0


def response_framing(head: ResponseHead, method: str) -> Framing:
    """How the body of response ``head`` to a ``method`` request is delimited."""
    if head.status == 101 or (method == "CONNECT" and 200 <= head.status < 300):
        return "tunnel"
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        return 0
    te = head.values(_TRANSFER_ENCODING)
    if te and (te := _tokens(te)):
        return "chunked" if te[-1] == "chunked" else "eof"
    cl = head.values(_CONTENT_LENGTH)
    return _length(cl) if cl else "eof"


def keeps_alive(version: str, connection: list[str]) -> bool:
    """Does a message with this version and these Connection headers keep the connection?"""
    if not connection:
        return version != "HTTP/1.0"
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
    __slots__ = ("_poll", "out", "reader", "received", "sent", "sock")

    def __init__(self, sock: socket.socket, before_wait: Callable[[], None],
                 pending: list[Writer]) -> None:
        nodelay(sock)
        self.sock = sock
        self._poll = select.poll()  # (one for the upstream's life: checked per request)
        self._poll.register(sock.fileno(), select.POLLIN)
        self.reader = Reader(sock, before_wait=before_wait)
        self.out = Writer(sock, pending)
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
        close_cleanly(self.sock)


def _response_head(up: _Upstream, name: str) -> ResponseHead:
    """The head of the next response from upstream ``name`` (counted as received)."""
    raw = up.reader.head()
    if raw is None:
        raise HttpError(f"{name} closed without a response")
    resp = parse_response_head(raw)
    if resp is None:
        raise HttpError(f"{name} sent something other than an HTTP/1.x response")
    up.received += len(raw)
    return resp


def _response_body(up: _Upstream, framing: Framing, out: Writer) -> None:
    """Pass the body of ``up``'s response on to ``out``."""

    def down(data: bytes) -> None:
        up.received += len(data)
        out.write(data)

    copy_body(up.reader, framing, down)


@dataclass
class Stats:
    """Bytes the router moved to and from the app (the operator's travel in their tunnels)."""

    app_requests: int = 0
    from_peer: int = 0
    to_peer: int = 0
    error: str = ""


def route(client: socket.socket, initial: bytes, to_operator: Callable[[RequestHead], bool],
          connect: Callable[[str], socket.socket]) -> Stats:
    """Serve ``client`` (whose first bytes, a request head, are ``initial``) until it ends.

    ``connect("app" | "operator")`` opens an upstream (raises OSError). Closes every socket.

    This runs once per request of a kept-alive connection, where the client waits for each
    answer: the usual request (no body, or one already read) and response (its body read with
    its head) take the short way, with no closures, one header lookup per header needed and
    one write each way.
    """
    stats = Stats()
    ups: dict[str, _Upstream] = {}
    nodelay(client)
    pending: list[Writer] = []  # writers with output queued
    out = Writer(client, pending)

    def flush() -> None:
        while pending:
            pending.pop(0).flush()

    reader = Reader(client, initial, before_wait=flush)

    def reopen(name: str) -> _Upstream:
        """A new upstream (the one open, if any, closed while idle)."""
        drop(name)
        up = ups[name] = _Upstream(connect(name), flush, pending)
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
            head = parse_head(raw)
            if head is None:
                raise HttpError("not an HTTP/1.x request")
            if to_operator(head):
                name = "operator"
            else:
                name = "app"
                stats.app_requests += 1
            if head.may_have(_REQUEST_FIELDS):
                framing = request_framing(head)
                expect = "100-continue" in _tokens(head.values(_EXPECT))
                keep = keeps_alive(head.version, head.values(_CONNECTION))
            else:  # (the usual request: no body, kept alive)
                framing, expect, keep = 0, False, head.version != "HTTP/1.0"
            up = ups.get(name)
            if up is None or up.stale():
                up = reopen(name)
            if framing or expect:
                send = up.send
                send(raw)
                if expect:
                    out.write(CONTINUE)
                copy_body(reader, framing, send)
            else:  # the whole request is its head (the upstream has nothing queued): one write
                up.sock.sendall(raw)
                up.sent += len(raw)
            resp = _response_head(up, name)
            while resp.status < 200 and resp.status != 101:  # (1xx: passed on, more to come)
                out.write(resp.raw)
                resp = _response_head(up, name)
            rframing = response_framing(resp, head.method)
            if type(rframing) is int and rframing <= len(up.reader.buf):  # all here: one write
                out.write(resp.raw + up.reader.take(rframing) if rframing else resp.raw)
                up.received += rframing
            elif rframing == "tunnel":
                out.write(resp.raw)
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
            else:
                out.write(resp.raw)
                _response_body(up, rframing, out)
            out.flush()  # the whole response: one write (a small one, one segment)
            if rframing == "eof":
                drop(name)
                clean = True
                break
            if not keep:
                clean = True
                break
            if not keeps_alive(resp.version, resp.values(_CONNECTION)):
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
            close_cleanly(client)
        else:
            abort(client)
    return stats

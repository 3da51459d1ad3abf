"""HTTP/1.x framing for per-request routing (header-filtered intercepts)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kdiag_manager.httpfilter import matcher
from kdiag_manager.httphead import RequestHead, ResponseHead, parse_head, parse_response_head
from kdiag_manager.httpio import HttpError, Reader, chunk_size
from kdiag_manager.httprouter import (
    Stats,
    keeps_alive,
    request_framing,
    response_framing,
    route,
)


class Pieces:
    """A fake socket returning ``data`` a few bytes at a time."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    def recv(self, bufsize: int, /) -> bytes:
        out, self.data = self.data[:min(bufsize, self.step)], self.data[min(bufsize, self.step):]
        return out


def _req(text: bytes) -> RequestHead:
    head = parse_head(text)
    assert head is not None
    return head


def test_reader_heads_and_bodies() -> None:
    r = Reader(Pieces(b"GET / HTTP/1.1\r\nA: b\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n"
                      b"\r\nhelloXY"), b"")
    assert r.head() == b"GET / HTTP/1.1\r\nA: b\r\n\r\n"
    head = r.head()
    assert head is not None and request_framing(_req(head)) == 5
    out: list[bytes] = []
    r.copy(5, out.append)
    assert b"".join(out) == b"hello"
    assert r.take(2) == b"XY"
    assert r.head() is None  # clean EOF


def test_bare_lf_head_followed_by_crlf_body() -> None:
    r = Reader(Pieces(b"POST / HTTP/1.1\nContent-Length: 6\n\nab\r\n\r\nGET / HTTP/1.1\n\n", 1000))
    head = r.head()
    assert head == b"POST / HTTP/1.1\nContent-Length: 6\n\n"
    r.copy(6, lambda _: None)
    assert r.head() == b"GET / HTTP/1.1\n\n"


def test_reader_errors() -> None:
    with pytest.raises(HttpError):
        Reader(Pieces(b"GET / HTTP/1.1\r\nA: b")).head()
    with pytest.raises(HttpError):
        Reader(Pieces(b"x" * 200, 50)).head(limit=100)
    with pytest.raises(HttpError):
        Reader(Pieces(b"abc")).copy(5, lambda _: None)


def test_chunked_passes_through_exactly() -> None:
    body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n"
    r = Reader(Pieces(body + b"NEXT"))
    out: list[bytes] = []
    r.copy_chunked(out.append)
    assert b"".join(out) == body
    rest: list[bytes] = []
    r.copy(4, rest.append)
    assert b"".join(rest) == b"NEXT"
    with pytest.raises(HttpError):
        Reader(Pieces(b"zz\r\n")).copy_chunked(lambda _: None)
    with pytest.raises(HttpError):
        Reader(Pieces(b"2\r\nabcd\r\n0\r\n\r\n")).copy_chunked(lambda _: None)
    assert chunk_size(b"1A\r\n") == 26
    assert chunk_size(b"0\n") == 0


def test_request_framing() -> None:
    assert request_framing(_req(b"GET / HTTP/1.1\r\n\r\n")) == 0
    assert request_framing(_req(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n")) == 12
    assert request_framing(_req(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n"
                                b"Content-Length: 3\r\n\r\n")) == "chunked"
    with pytest.raises(HttpError):
        request_framing(_req(b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n"))
    with pytest.raises(HttpError):
        request_framing(_req(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"))
    with pytest.raises(HttpError):
        request_framing(_req(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"))


def test_response_parsing_and_framing() -> None:
    def fields(h: ResponseHead | None) -> tuple[str, int, list[tuple[str, str]]] | None:
        return None if h is None else (h.version, h.status, h.headers)

    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
    assert head is not None and fields(head) == ("HTTP/1.1", 200, [("Content-Length", "3")])
    assert response_framing(head, "GET") == 3
    assert response_framing(head, "HEAD") == 0
    assert fields(parse_response_head(b"HTTP/1.1 204\r\n\r\n")) == ("HTTP/1.1", 204, [])
    assert parse_response_head(b"SSH-2.0-x\r\n\r\n") is None
    assert parse_response_head(b"HTTP/1.1 2000 OK\r\n\r\n") is None

    def framing(text: bytes, method: str = "GET") -> int | str:
        h = parse_response_head(text)
        assert h is not None
        return response_framing(h, method)

    assert framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == "chunked"
    assert framing(b"HTTP/1.0 200 OK\r\n\r\n") == "eof"
    assert framing(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n") == 0
    assert framing(b"HTTP/1.1 100 Continue\r\n\r\n") == 0
    assert framing(b"HTTP/1.1 101 Switching Protocols\r\n\r\n") == "tunnel"
    assert framing(b"HTTP/1.1 200 OK\r\n\r\n", "CONNECT") == "tunnel"


def test_keeps_alive() -> None:
    assert keeps_alive("HTTP/1.1", [])
    assert not keeps_alive("HTTP/1.1", ["Close"])
    assert not keeps_alive("HTTP/1.0", [])
    assert keeps_alive("HTTP/1.0", ["Keep-Alive"])


def _server(answer: bytes, keep: bool) -> tuple[socket.socket, threading.Thread]:
    """One end of a socket pair answering each request head with ``answer``."""
    mine, theirs = socket.socketpair()

    def serve() -> None:
        r = Reader(theirs)
        while (raw := r.head()) is not None:
            framing = request_framing(_req(raw))
            if framing == "chunked":
                r.copy_chunked(lambda _: None)
            else:
                assert isinstance(framing, int)
                r.copy(framing, lambda _: None)
            theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                len(answer), b"" if keep else b"Connection: close\r\n", answer))
            if not keep:
                break
        theirs.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return mine, t


def test_route_per_request_over_socket_pairs() -> None:
    client, router_end = socket.socketpair()
    client.settimeout(10)  # (a router that loses a message fails the test, not hangs it)
    opened: list[str] = []

    def connect(name: str) -> socket.socket:
        opened.append(name)
        return _server(name.encode(), keep=name == "operator")[0]

    requests = [
        b"GET /1 HTTP/1.1\r\nX-S: a\r\n\r\n",
        b"GET /2 HTTP/1.1\r\n\r\n",
        b"POST /3 HTTP/1.1\r\nX-S: a\r\nContent-Length: 4\r\n\r\nbody",
        b"POST /4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /5 HTTP/1.1\r\nX-S: b\r\nConnection: close\r\n\r\n",
    ]
    result: list[Stats] = []
    t = threading.Thread(target=lambda: result.append(route(
        router_end, requests[0], lambda h: "a" in h.header("x-s"), connect)), daemon=True)
    t.start()
    reader = Reader(client)
    got = []
    for i, req in enumerate(requests):
        if i:
            client.sendall(req)
        head = reader.head()
        assert head is not None
        resp = parse_response_head(head)
        assert resp is not None
        n = response_framing(resp, "GET")
        assert isinstance(n, int)
        body: list[bytes] = []
        reader.copy(n, body.append)
        got.append(b"".join(body))
    t.join(5)
    assert got == [b"operator", b"app", b"operator", b"app", b"app"]
    assert opened == ["operator", "app", "app", "app"]  # the app closes after each response
    assert reader.head() is None  # the router closed the client connection
    assert result[0].app_requests == 3 and not result[0].error


def test_route_continue_and_close_delimited_response() -> None:
    client, router_end = socket.socketpair()
    client.settimeout(10)  # (a router that loses a message fails the test, not hangs it)
    app, app_end = socket.socketpair()

    def serve() -> None:
        r = Reader(app_end)
        head = r.head()
        assert head is not None and b"Expect" in head
        app_end.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        r.copy(4, lambda _: None)
        app_end.sendall(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        app_end.close()

    threading.Thread(target=serve, daemon=True).start()
    first = b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    t = threading.Thread(target=route, args=(router_end, first, lambda h: False,
                                             lambda name: app), daemon=True)
    t.start()
    reader = Reader(client)
    assert reader.head() == b"HTTP/1.1 100 Continue\r\n\r\n"  # the router's own
    client.sendall(b"body")
    assert reader.head() == b"HTTP/1.1 100 Continue\r\n\r\n"  # the app's, passed on
    assert reader.head() == b"HTTP/1.0 200 OK\r\n\r\n"
    rest: list[bytes] = []
    reader.copy_to_eof(rest.append)
    assert b"".join(rest) == b"until the end"
    t.join(5)
    assert not t.is_alive()


class SplitApp:
    """An upstream (one end of a socket pair) recording each request as it arrived (head and
    body) and answering each with the next of ``answers``, each one written in the given pieces
    a moment apart (so that the router reads it in several reads)."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.requests: list[bytes] = []
        self.sock, theirs = socket.socketpair()
        threading.Thread(target=self._serve, args=(theirs, answers), daemon=True).start()

    def _serve(self, sock: socket.socket, answers: list[list[bytes]]) -> None:
        r = Reader(sock)
        with sock:
            for pieces in answers:
                raw = r.head()
                if raw is None:
                    return
                body: list[bytes] = []
                framing = request_framing(_req(raw))
                if framing == "chunked":
                    r.copy_chunked(body.append)
                else:
                    assert isinstance(framing, int)
                    r.copy(framing, body.append)
                self.requests.append(raw + b"".join(body))
                for piece in pieces:
                    sock.sendall(piece)
                    time.sleep(0.02)


def _responses(reader: Reader, n: int) -> list[bytes]:
    """The bodies of the next ``n`` responses (framed by Content-Length or chunked: as sent)."""
    bodies = []
    for _ in range(n):
        head = reader.head()
        assert head is not None, "connection closed"
        resp = parse_response_head(head)
        assert resp is not None
        body: list[bytes] = []
        framing = response_framing(resp, "GET")
        if framing == "chunked":
            reader.copy_chunked(body.append)
        else:
            assert isinstance(framing, int)
            reader.copy(framing, body.append)
        bodies.append(b"".join(body))
    return bodies


def test_route_pipelined_split_and_any_case() -> None:
    """Requests pipelined in one write, a head split over several writes, header names in any
    case, responses split anywhere (head, body, chunks): each reaches the right upstream whole
    and each answer the client in order."""
    client, router_end = socket.socketpair()
    client.settimeout(10)  # (a router that loses a message fails the test, not hangs it)
    app = SplitApp([
        [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\napp1"],
        [b"HTTP/1.1 200 OK\r\nCont", b"ent-Length: 4\r\n\r", b"\napp", b"2"],
        [b"HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n2\r\nap\r\n",
         b"2\r\np3\r\n0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"app4"],
    ])
    operator = SplitApp([[b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\n\r\nop1"],
                         [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nop2"]])
    upstreams = {"app": app.sock, "operator": operator.sock}
    pipelined = [b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"POST /2 HTTP/1.1\r\nx-KDIAG-session: alice\r\ncontent-length: 3\r\n\r\nabc",
                 b"POST /3 HTTP/1.1\r\nContent-LENGTH: 2\r\n\r\nde",
                 b"GET /4 HTTP/1.1\r\nX-Kdiag-Session: bob\r\n\r\n"]
    first, rest = pipelined[0][:7], b"".join(pipelined)[7:]
    result: list[Stats] = []
    t = threading.Thread(target=lambda: result.append(route(
        router_end, first, matcher("X-Kdiag-Session", "alice"), upstreams.pop)), daemon=True)
    t.start()
    client.sendall(rest)
    reader = Reader(client)
    # (a chunked body passes as it came: chunks, last chunk, trailers)
    assert _responses(reader, 4) == [b"app1", b"op1", b"app2",
                                     b"2\r\nap\r\n2\r\np3\r\n0\r\n\r\n"]
    split = [b"PO", b"ST /5 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Kdiag-", b"Session:",
             b" alice\r", b"\n\r\n1\r\n", b"x\r\n0\r\n\r\n"]
    for piece in split:
        client.sendall(piece)
        time.sleep(0.02)
    assert _responses(reader, 1) == [b"op2"]
    client.sendall(b"GET /6 HTTP/1.1\r\n\r\n")
    assert _responses(reader, 1) == [b"app4"]
    client.shutdown(socket.SHUT_WR)
    assert reader.head() is None
    t.join(5)
    assert app.requests == [pipelined[0], pipelined[2], pipelined[3], b"GET /6 HTTP/1.1\r\n\r\n"]
    assert operator.requests == [pipelined[1], b"".join(split)]
    assert result[0].app_requests == 4 and not result[0].error


def test_route_http10_closes_unless_kept_alive() -> None:
    """An HTTP/1.0 request asks for the connection to close after its answer, unless it says
    ``Connection: keep-alive``; an HTTP/1.1 one keeps it unless it says ``close``."""
    for first, then_open in [(b"GET / HTTP/1.0\r\n\r\n", False),
                             (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
                             (b"GET / HTTP/1.1\r\n\r\n", True),
                             (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False)]:
        client, router_end = socket.socketpair()
        client.settimeout(10)
        app = SplitApp([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]] * 2)
        t = threading.Thread(target=route, args=(router_end, first, lambda h: False,
                                                 lambda name, sock=app.sock: sock), daemon=True)
        t.start()
        reader = Reader(client)
        assert _responses(reader, 1) == [b"ok"]
        if then_open:
            client.sendall(b"GET /again HTTP/1.1\r\n\r\n")
            assert _responses(reader, 1) == [b"ok"], first
            client.shutdown(socket.SHUT_WR)
        assert reader.head() is None, first  # closed by the router
        t.join(5)
        assert not t.is_alive()


@given(st.binary(max_size=200))
def test_parsers_only_raise_http_errors(data: bytes) -> None:
    head = parse_response_head(b"HTTP/1.1 " + data + b"\r\n\r\n")
    for text in (data, b"HTTP/1.1 200 OK\r\nContent-Length:" + data + b"\r\n\r\n"):
        resp = parse_response_head(text)
        for h in (head, resp):
            if h is not None:
                with contextlib.suppress(HttpError):
                    response_framing(h, "GET")
    with contextlib.suppress(HttpError):
        chunk_size(data)
    req = parse_head(b"POST / HTTP/1.1\r\nContent-Length: " + data + b"\r\n\r\n")
    if req is not None:
        with contextlib.suppress(HttpError):
            request_framing(req)

"""Header-filtered intercept, per request: one keep-alive connection, requests routed each on
their own (the operator's by the header, the others to the app)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kdiag_manager.httprouter import Reader, parse_response_head, response_framing

from kdiag.session.results import RedirectSpec

from .conftest import Lab, in_netns


@contextlib.contextmanager
def keepalive_server(seen: list[tuple[int, str, bytes]]) -> Iterator[tuple[str, int]]:
    """An HTTP/1.1 keep-alive server answering ``operator``; records (client port, path, body)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    body += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline().strip():
                    pass
                return body
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _answer(self) -> None:
            seen.append((self.client_address[1], self.path, self._body()))
            self.send_response(200)
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"operator")

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _exchange(sock: socket.socket, reader: Reader, request: bytes) -> bytes:
    """Send one request on the open connection; the body of its response."""
    sock.sendall(request)
    head = reader.head()
    assert head is not None, "connection closed"
    resp = parse_response_head(head)
    assert resp is not None and resp.status == 200
    n = response_framing(resp, request.split(b" ", 1)[0].decode())
    assert isinstance(n, int)
    body: list[bytes] = []
    reader.copy(n, body.append)
    return b"".join(body)


@pytest.mark.parametrize("pool_size", [0, 4], ids=["event-path", "pooled"])
def test_keepalive_requests_routed_one_by_one(app: Lab, node_session, pool_size) -> None:
    seen: list[tuple[int, str, bytes]] = []
    events = []
    with keepalive_server(seen) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], header=("X-Kdiag-Session", "alice")), operator,
            on_event=events.append, pool_size=pool_size)
        try:
            with in_netns(app.client_ns), \
                    socket.create_connection((app.app_ip, 8080), timeout=10) as s:
                reader = Reader(s)
                alice = "X-Kdiag-Session: alice\r\n"
                host = f"Host: {app.app_ip}\r\n"
                requests = [
                    (f"GET /1 HTTP/1.1\r\n{host}{alice}\r\n", b"operator"),
                    (f"GET /2 HTTP/1.1\r\n{host}\r\n", b"app"),
                    (f"POST /3 HTTP/1.1\r\n{host}{alice}Content-Length: 5\r\n\r\nhello",
                     b"operator"),
                    (f"POST /4 HTTP/1.1\r\n{host}Content-Length: 3\r\n\r\nabc", b"app"),
                    (f"POST /5 HTTP/1.1\r\n{host}x-kdiag-session: alice\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n",
                     b"operator"),
                    (f"POST /6 HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"
                     "2\r\nxy\r\n0\r\n\r\n", b"app"),
                    (f"GET /7 HTTP/1.1\r\n{host}X-Kdiag-Session: bob\r\n\r\n", b"app"),
                    (f"GET /8 HTTP/1.1\r\n{host}{alice}\r\n", b"operator"),
                ]
                got = [_exchange(s, reader, req.encode()) for req, _ in requests]
                assert got == [want for _, want in requests]
                # The connection is still open: one more after all that.
                assert _exchange(s, reader, f"GET /9 HTTP/1.1\r\n{host}{alice}"
                                 "Connection: close\r\n\r\n".encode()) == b"operator"
                assert reader.head() is None  # closed, as asked
        finally:
            handle.close()
    assert [(path, body) for _, path, body in seen] == [
        ("/1", b""), ("/3", b"hello"), ("/5", b"abcdefg"), ("/8", b""), ("/9", b"")]
    # All the operator's requests travelled in one tunnel, kept alive like the client's.
    assert len({port for port, _, _ in seen}) == 1
    assert sum(e.kind == "connection" for e in events) == 1


def test_refused_operator_fails_open_per_request(app: Lab, node_session) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    refused = s.getsockname()[1]
    s.close()
    handle = node_session.manager.redirect(
        RedirectSpec("incoming", [8080], header=("X-Kdiag-Session", "alice"), fail_open=True),
        ("127.0.0.1", refused))
    try:
        with in_netns(app.client_ns), \
                socket.create_connection((app.app_ip, 8080), timeout=10) as sock:
            reader = Reader(sock)
            for i in range(3):
                req = f"GET /{i} HTTP/1.1\r\nX-Kdiag-Session: alice\r\n\r\n" if i % 2 == 0 \
                    else f"GET /{i} HTTP/1.1\r\n\r\n"
                assert _exchange(sock, reader, req.encode()) == b"app"
    finally:
        handle.close()


def test_refused_operator_without_fail_open_resets(app: Lab, node_session) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    refused = s.getsockname()[1]
    s.close()
    handle = node_session.manager.redirect(
        RedirectSpec("incoming", [8080], header=("X-Kdiag-Session", "alice"), fail_open=False),
        ("127.0.0.1", refused))
    try:
        with in_netns(app.client_ns), \
                socket.create_connection((app.app_ip, 8080), timeout=10) as sock:
            reader = Reader(sock)
            assert _exchange(sock, reader, b"GET / HTTP/1.1\r\n\r\n") == b"app"
            sock.sendall(b"GET / HTTP/1.1\r\nX-Kdiag-Session: alice\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                while sock.recv(100):
                    pass
    finally:
        handle.close()

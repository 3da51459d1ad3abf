"""Header-filtered intercept, per request: one keep-alive connection, requests routed each on
their own (the operator's by the header, the others to the app)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kdiag_manager.httphead import parse_response_head
from kdiag_manager.httpio import Reader
from kdiag_manager.httprouter import response_framing

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


# -- keep-alive without stalls: each message in one segment, TCP_NODELAY on relayed sockets ----

TCP_INFO_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in struct tcp_info (Linux >= 4.6)
KEEPALIVE_APP_PORT = 8090
PIDFD_GETFD = 438  # the syscall's number (the same on every architecture)


def data_segments_in(sock: socket.socket) -> int:
    """How many segments carrying data ``sock`` has received (TCP_INFO)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int.from_bytes(info[TCP_INFO_DATA_SEGS_IN:TCP_INFO_DATA_SEGS_IN + 4], "little")


@contextlib.contextmanager
def one_write_app(app: Lab, segments: list[int]) -> Iterator[None]:
    """A keep-alive HTTP/1.1 app in ``app``'s namespace on KEEPALIVE_APP_PORT: each response
    in one write; after each request, appends the data segments its connection has received."""
    with in_netns(app.app_ns):
        srv = socket.create_server(("0.0.0.0", KEEPALIVE_APP_PORT))

    def serve(conn: socket.socket) -> None:
        reader = Reader(conn)
        with conn:
            while reader.head() is not None:
                segments.append(data_segments_in(conn))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\napp")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        srv.close()


def tcp_sockets_of(pid: int) -> list[socket.socket]:
    """Copies (pidfd_getfd) of process ``pid``'s connected TCP sockets."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] != "0A":  # not a listener
                    inodes.add(fields[9])
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    socks = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    copy = libc.syscall(PIDFD_GETFD, pidfd, int(fd), 0)
                    if copy < 0:
                        raise OSError(ctypes.get_errno(), "pidfd_getfd")
                    socks.append(socket.socket(fileno=copy))
    finally:
        os.close(pidfd)
    return socks


def test_keepalive_to_the_app_without_stalls(app: Lab, node_session) -> None:
    """Requests without the header, to the app over one keep-alive connection: each small
    response reaches the client in one segment and each request the app in one, and every TCP
    socket the manager relays on has TCP_NODELAY. (A response written in two writes on a socket
    with Nagle on waits for the client's delayed ACK: 40 ms per request.) Not timed."""
    segments: list[int] = []
    requests = 20
    with one_write_app(app, segments):
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [KEEPALIVE_APP_PORT], header=("X-Kdiag-Session", "alice")),
            ("127.0.0.1", 9))  # (no request goes to the operator)
        try:
            with in_netns(app.client_ns), \
                    socket.create_connection((app.app_ip, KEEPALIVE_APP_PORT), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader = Reader(s)
                for i in range(requests):
                    body = _exchange(s, reader, f"GET /{i} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
                    assert body == b"app"
                assert data_segments_in(s) == requests  # one segment per response
                relayed = tcp_sockets_of(int(node_session.info["manager_pid"]))
                try:
                    assert len(relayed) >= 2  # the client's connection, the one to the app
                    assert [x.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                            for x in relayed] == [1] * len(relayed)
                finally:
                    for x in relayed:
                        x.close()
        finally:
            handle.close()
    assert segments == list(range(1, requests + 1))  # one segment per request, one connection

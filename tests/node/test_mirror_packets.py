"""Mirror end to end, what taking the copy from the packets means: real namespaces, the real
manager and its packet socket. IPv6 and loopback (a sidecar) are copied once each; a reset ends
a copy with what came; bytes missing for good, or packets the kernel could not queue for the
manager, drop the copy with the reason (never a wrong copy, never silently); an operator side
that takes its time gets every copy whole while the app has long answered."""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time

from tests.node.test_mirror import (
    APP_ANSWER,
    _Copies,
    _mirror,
    _request,
    _Routes,
    _send_all,
)
from tests.node.test_probe_exclusion import _app6

from .conftest import ENTER, Lab, exchange, in_netns, recv_all, tcp_server


def test_ipv6_and_loopback_connections_are_copied_once_each(app: Lab, node_session) -> None:
    """A client over IPv6, and sidecars in the app's namespace over 127.0.0.1 and ::1 (every
    packet on loopback passes the tap twice, leaving and arriving): one whole copy each."""
    copies, routes = _Copies(), _Routes()
    calls = [(app.client_ns, app.app_ip6, b"GET /v6 HTTP/1.1\r\nHost: a\r\n\r\n"),
             (app.app_ns, "127.0.0.1", b"GET /lo4 HTTP/1.1\r\nHost: a\r\n\r\n"),
             (app.app_ns, "::1", b"GET /lo6 HTTP/1.1\r\nHost: a\r\n\r\n")]
    with _app6(app), tcp_server(copies.handler) as operator, \
            _mirror(node_session, operator, routes, port=8081):
        for ns, host, request in calls:
            with in_netns(ns):
                assert exchange((host, 8081), request).endswith(b"app")
        got = copies.wait_for(3)
        counts = routes.wait_for(6)
    assert sorted(got) == sorted(request for _, _, request in calls), got
    assert counts == {"original": 3, "mirror": 3}, routes.errors


def test_a_reset_ends_the_copy_with_what_came_in_order(app: Lab, node_session) -> None:
    """A client that resets its connection: the app's connection closes with the reset, and
    the copy holds what the client had sent."""
    copies, routes = _Copies(), _Routes()
    with tcp_server(copies.handler) as operator, _mirror(node_session, operator, routes):
        with in_netns(app.client_ns), socket.create_connection((app.app_ip, 8080)) as s:
            s.settimeout(30)
            s.sendall(b"partial request")  # (no request's end: the app waits for more)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        got = copies.wait_for(1)
        counts = routes.wait_for(2)
    assert got == [b"partial request"]
    assert counts == {"original": 1, "mirror": 1}, routes.errors
    assert routes.app_errors == ["original: connection reset"]


def _segment(src: str, dst: str, sport: int, seq: int, flags: int, data: bytes = b"") -> bytes:
    """An IPv4 TCP segment to port 8080 whose TCP checksum is wrong on purpose: the app's
    kernel drops it (no answer, no reset), the packet socket, which sees it first, does not."""
    tcp = struct.pack("!HHIIBBHHH", sport, 8080, seq, 0, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(data)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + tcp + data


def test_bytes_missing_for_good_drop_the_copy_with_the_reason(app: Lab, node_session) -> None:
    """A stream with a hole that never fills (crafted segments: "hello", 5 bytes missing,
    then more than the out-of-order bound): the copy is dropped with where and why — not
    passed on without the hole's bytes."""
    copies, routes = _Copies(), _Routes()
    sport, isn = 40000 + secrets.randbelow(20000), 1_000_000
    with tcp_server(copies.handler) as operator, _mirror(node_session, operator, routes):
        with in_netns(app.client_ns):
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with raw:
            def send(seq: int, flags: int, data: bytes = b"") -> None:
                raw.sendto(_segment(app.client_ip, app.app_ip, sport, seq, flags, data),
                           (app.app_ip, 0))

            send(isn, 0x02)  # SYN
            send(isn + 1, 0x18, b"hello")
            for i in range(800):  # 1.1 MB beyond the hole
                send(isn + 11 + i * 1400, 0x18, b"x" * 1400)
        counts = routes.wait_for(1, timeout=30, route="copy-dropped")
    assert counts.get("copy-dropped") == 1, counts
    # The operator may have had the copy's start ("hello", pumped before the hole was known:
    # a dropped copy ends early there), never a byte from beyond the hole.
    assert all(b"hello".startswith(c) for c in copies.got), copies.got
    assert routes.errors and "bytes missing from the copy: a hole at sequence" in \
        routes.errors[0], routes.errors


def test_packets_the_kernel_could_not_queue_are_reported_as_dropped_copies(app: Lab) -> None:
    """The manager's packet socket with a tiny receive buffer (``$KDIAG_MIRROR_RCVBUF``) and
    a bulk transfer: the kernel drops packets for the socket; the copy under way is dropped
    with that reason, and the loss is reported — the app's exchange is whole."""
    from kdiag.targets.node import NodeTarget

    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER),
                                           "KDIAG_MIRROR_RCVBUF": "4096"}).open()
    copies, routes = _Copies(), _Routes()
    big = bytes(range(256)) * 16384  # 4 MiB: the app answers its first 1 MiB
    try:
        with tcp_server(copies.handler) as operator, _mirror(session, operator, routes):
            with in_netns(app.client_ns):
                got = _duplex(app, big)
            counts = routes.wait_for(2, timeout=30, route="copy-dropped")
    finally:
        session.close()
    assert got == b"app:" + big[:(1 << 20) - 1]
    assert counts.get("copy-dropped", 0) >= 2, (counts, routes.errors)
    assert all("the kernel dropped" in e for e in routes.errors), routes.errors
    assert copies.got == [] or all(len(c) < len(big) for c in copies.got)


def _duplex(app: Lab, payload: bytes) -> bytes:
    from tests.node.test_mirror import _duplex_exchange

    return _duplex_exchange((app.app_ip, 8080), payload)


def test_a_late_operator_gets_every_copy_whole_after_the_app_answered(app: Lab,
                                                                      node_session) -> None:
    """The operator's server reads nothing until every request was answered by the app: the
    answers do not wait for it (they are all in before it reads anything), and then it gets
    each copy whole."""
    release = threading.Event()
    copies = _Copies()

    def late(conn: socket.socket) -> None:
        release.wait(60)
        copies.handler(conn)

    routes = _Routes()
    requests = [_request(i) for i in range(50)]
    with tcp_server(late) as operator, _mirror(node_session, operator, routes):
        answers = _send_all(app, requests)
        read_before = len(copies.got)
        release.set()
        got = copies.wait_for(len(requests))
        counts = routes.wait_for(2 * len(requests))
    assert answers == [APP_ANSWER] * len(requests)
    assert read_before == 0
    assert sorted(got) == sorted(requests)
    assert counts == {"original": 50, "mirror": 50}, routes.errors


def test_the_header_filter_copies_whole_requests_with_their_bodies(app: Lab,
                                                                   node_session) -> None:
    """Requests with bodies (Content-Length, chunked) on one connection: the matching ones
    are copied whole, bodies included; the others not at all."""
    copies, routes = _Copies(), _Routes()
    matching = [b"POST /a HTTP/1.1\r\nHost: a\r\nX-Mirror: yes\r\nContent-Length: 5\r\n\r\nhello",
                b"POST /c HTTP/1.1\r\nHost: a\r\nX-Mirror: yes\r\nTransfer-Encoding: chunked"
                b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]
    other = b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nnope"
    with tcp_server(copies.handler) as operator, \
            _mirror(node_session, operator, routes, header=("X-Mirror", "yes")):
        with in_netns(app.client_ns), socket.create_connection((app.app_ip, 8080)) as s:
            s.sendall(matching[0] + other + matching[1])
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == APP_ANSWER
        got = copies.wait_for(1)
        counts = routes.wait_for(2)
    assert got == [matching[0] + matching[1]]
    assert counts == {"original": 1, "mirror": 1}, routes.errors


def test_the_filter_lets_through_only_the_segments_a_copy_needs(app: Lab) -> None:
    """The kernel-side filter, on loopback in the app's namespace: of one exchange, only the
    client's SYN, data and FIN and the app's SYN-ACK and FIN reach the socket, each once
    (loopback shows every packet leaving and arriving); pure ACKs and the app's data do not."""
    from kdiag_manager.packettap import PacketTap, parse

    with in_netns(app.app_ns):
        tap = PacketTap((18081,))
        server = socket.create_server(("127.0.0.1", 18081))
    try:
        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                recv_all(conn)
                conn.sendall(b"answer" * 1000)

        threading.Thread(target=serve, daemon=True).start()
        with in_netns(app.app_ns), socket.create_connection(("127.0.0.1", 18081)) as c:
            c.sendall(b"question")
            c.shutdown(socket.SHUT_WR)
            assert len(recv_all(c)) == 6000
        seen = []
        deadline = time.monotonic() + 5
        while len(seen) < 5 and time.monotonic() < deadline:
            packet = tap.read()
            if packet is None:
                time.sleep(0.01)
                continue
            seg = parse(packet)
            assert seg is not None
            side = "client" if seg.dst[1] == 18081 else "app"
            # (the app's FIN may ride on its last data: only its flags are compared)
            seen.append((side, seg.flags & 0x07, seg.data if side == "client" else b""))
        time.sleep(0.2)
        assert tap.read() is None  # nothing more: no ACK, no answer data, no duplicate
        assert seen == [("client", 0x02, b""), ("app", 0x02, b""), ("client", 0, b"question"),
                        ("client", 0x01, b""), ("app", 0x01, b"")], seen
        assert tap.drops() == 0
    finally:
        tap.close()
        server.close()


def test_a_keep_alive_connection_open_before_the_mirror_is_joined_at_a_request(
        app: Lab, node_session) -> None:
    """A client's keep-alive connection opened before the mirror started (its SYN unseen): it
    is joined at the next request, and the copy holds the requests sent since."""
    with in_netns(app.app_ns):
        server = socket.create_server(("0.0.0.0", 8082))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            buf = b""
            while data := conn.recv(65536):
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    copies, routes = _Copies(), _Routes()
    requests = [b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(3)]
    try:
        with in_netns(app.client_ns):
            client = socket.create_connection((app.app_ip, 8082), timeout=30)
        with client:
            client.sendall(requests[0])
            assert client.recv(100).endswith(b"ok")
            with tcp_server(copies.handler) as operator, \
                    _mirror(node_session, operator, routes, port=8082):
                for request in requests[1:]:
                    client.sendall(request)
                    assert client.recv(100).endswith(b"ok")
                client.shutdown(socket.SHUT_WR)
                assert client.recv(100) == b""
                got = copies.wait_for(1)
                counts = routes.wait_for(2)
    finally:
        server.close()
    assert got == [requests[1] + requests[2]]
    assert counts == {"original": 1, "mirror": 1}, routes.errors

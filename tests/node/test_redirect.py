"""Redirect end to end: real namespaces, iptables, the manager and the client's tunnels."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kdiag.session.results import RedirectSpec
from tests.chaos.netprobe import Progress
from tests.chaos.netprobe import exchange as netprobe_exchange

from .conftest import (
    Lab,
    checksum_roundtrip,
    echo_after_eof,
    exchange,
    http_get,
    http_reply,
    in_netns,
    ipv6_rule_lines,
    pool_in,
    recv_all,
    reply_with,
    tcp_server,
)

N_CONNECTIONS = 200


@pytest.fixture(params=["lane", "grpc"])
def node_session(node_session, request):
    """Every redirect test twice: tunnels on the manager's lane (the default), and on gRPC
    Tunnel calls (what a session without a lane uses)."""
    manager = node_session.manager
    if request.param == "grpc":
        manager.lane = None
    else:
        assert manager.lane is not None and manager.lane.ready
        assert manager.tunnel() == manager.lane.method
    return node_session
MAX_SIZE = 256 * 1024


def _refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _many(lab: Lab, ns: str, addr: tuple[str, int], events: list | None = None) -> None:
    """N_CONNECTIONS checksum round trips at once, of random sizes; a failure names each failed
    connection's client port, how far it got, and the redirect's ``events`` (its ``on_event``
    list, if given) for that port or that ended with an error."""
    rnd = random.Random(1234)
    sizes = [rnd.choice([0, 1, rnd.randrange(1, 4096), rnd.randrange(1, MAX_SIZE)])
             for _ in range(N_CONNECTIONS)]
    with pool_in(ns, N_CONNECTIONS) as pool:
        failures = [f for f in pool.map(lambda n: _traced_roundtrip(addr, n), sizes) if f]
    if failures:
        ports = {port for port, _ in failures}
        said = [e for e in events or [] if (e.peer and e.peer[1] in ports)
                or (e.kind == "closed" and e.error)]
        pytest.fail(f"{len(failures)} of {N_CONNECTIONS} connections failed: "
                    f"{[why for _, why in failures[:3]]}; events: {said[:6]}")


def _traced_roundtrip(addr: tuple[str, int], size: int) -> tuple[int, str] | None:
    """One checksum round trip (send, half-close, read the echo to EOF); None when the echo
    matched, else (client port, what happened and where)."""
    payload, progress = os.urandom(size), Progress()
    try:
        got = netprobe_exchange(addr, payload, 30.0, progress)
    except OSError as exc:
        return progress.port, f"{exc!r}: {progress} ({size} sent)"
    if got != payload:
        return progress.port, f"echo differs: {progress} ({size} sent)"
    return None


# Bulk transfers: large enough that both ends' pumps splice (reads of 256 KiB came back full)
# and the receivers take messages into pipes; several at once, so that a lane runs out of pipes.
BULK_SIZES = [40 << 20, 12 << 20, 12 << 20, 5 << 20, 5 << 20, 3 << 20]


def test_bulk_transfers_arrive_intact_both_ways(app: Lab, node_session) -> None:
    """Several large transfers at once through an incoming redirect, echoed back: every byte
    arrives, in order, each way (on the lane the bytes are spliced, never read into Python)."""
    with tcp_server(echo_after_eof) as operator:
        handle = node_session.manager.redirect(RedirectSpec("incoming", [8080], fail_open=False),
                                               operator)
        try:
            with pool_in(app.client_ns, len(BULK_SIZES)) as pool:
                results = list(pool.map(lambda n: checksum_roundtrip((app.app_ip, 8080), n),
                                        BULK_SIZES))
        finally:
            handle.close()
    assert [sent == got for sent, got in results] == [True] * len(BULK_SIZES)


@pytest.mark.parametrize("pool_size", [0, 4], ids=["event-path", "pooled"])
def test_incoming_200_concurrent_with_half_close(app: Lab, node_session, pool_size) -> None:
    events = []
    with tcp_server(echo_after_eof) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator, on_event=events.append,
            pool_size=pool_size)
        try:
            assert any("kdiag:" in r for r in handle.rules)
            assert len(app.tagged_rules()) == 6  # 3 IPv4, 3 IPv6
            _many(app, app.client_ns, (app.app_ip, 8080), events)
            assert handle.connections == N_CONNECTIONS
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and \
                    sum(e.kind == "closed" for e in events) < N_CONNECTIONS:
                time.sleep(0.05)
            kinds = [e.kind for e in events]
            assert kinds.count("connection") == N_CONNECTIONS
            closed = [e for e in events if e.kind == "closed"]
            assert len(closed) == N_CONNECTIONS and {e.route for e in closed} == {"operator"}
            assert not any(e.error for e in closed)
        finally:
            handle.close()
    assert app.tagged_rules() == []
    # With the rules gone, connections reach the app again.
    with in_netns(app.client_ns):
        assert exchange((app.app_ip, 8080), b"hi") == b"app:hi"


def test_outgoing_200_concurrent(app: Lab, node_session) -> None:
    events: list = []
    with tcp_server(echo_after_eof) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("outgoing", [9000], destination=app.client_ip, fail_open=False),
            operator, on_event=events.append)
        try:
            # The target's own connections (from its namespace) to client_ip:9000, where
            # nothing listens: they can only succeed through the redirect.
            _many(app, app.app_ns, (app.client_ip, 9000), events)
        finally:
            handle.close()
    assert app.tagged_rules() == []


@pytest.mark.parametrize("pool_size", [0, 4], ids=["event-path", "pooled"])
def test_incoming_fail_open_when_operator_refuses(app: Lab, node_session, pool_size) -> None:
    handle = node_session.manager.redirect(
        RedirectSpec("incoming", [8080], fail_open=True), ("127.0.0.1", _refused_port()),
        pool_size=pool_size)
    try:
        with in_netns(app.client_ns):
            assert exchange((app.app_ip, 8080), b"hello") == b"app:hello"
    finally:
        handle.close()


@pytest.mark.parametrize("pool_size", [0, 4], ids=["event-path", "pooled"])
def test_incoming_fail_open_when_operator_is_too_slow(app: Lab, node_session, pool_size) -> None:
    def slow(original: tuple[str, int]) -> tuple[str, int]:
        time.sleep(1.5)  # longer than the fail-open timeout
        return ("127.0.0.1", _refused_port())

    handle = node_session.manager.redirect(
        RedirectSpec("incoming", [8080], fail_open=True, fail_open_timeout=0.3), slow,
        pool_size=pool_size)
    try:
        with in_netns(app.client_ns):
            t0 = time.monotonic()
            assert exchange((app.app_ip, 8080), b"slow") == b"app:slow"
            assert time.monotonic() - t0 < 1.4
    finally:
        handle.close()


def test_incoming_without_fail_open_resets(app: Lab, node_session) -> None:
    handle = node_session.manager.redirect(
        RedirectSpec("incoming", [8080], fail_open=False), ("127.0.0.1", _refused_port()))
    try:
        with in_netns(app.client_ns), pytest.raises(ConnectionResetError):
            exchange((app.app_ip, 8080), b"hello", timeout=10)
    finally:
        handle.close()


def test_outgoing_fail_open_reaches_original_destination(app: Lab, node_session) -> None:
    # A real server at client_ip:9000 in the client namespace; the operator side refuses, so
    # the manager's own (marked) connection must reach it without being redirected again.
    with tcp_server(reply_with(b"real:"), host=app.client_ip, netns=app.client_ns) as real:
        handle = node_session.manager.redirect(
            RedirectSpec("outgoing", [real[1]], fail_open=True), ("127.0.0.1", _refused_port()))
        try:
            with in_netns(app.app_ns):
                assert exchange(real, b"x") == b"real:x"
        finally:
            handle.close()


def test_header_filter_routes_matching_requests_only(app: Lab, node_session) -> None:
    with tcp_server(http_reply(b"operator")) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], header=("X-Kdiag-Session", "alice")), operator)
        try:
            with in_netns(app.client_ns):
                addr = (app.app_ip, 8080)
                assert http_get(addr, {"X-Kdiag-Session": "alice"}) == b"operator"
                assert http_get(addr, {"x-kdiag-session": "alice"}) == b"operator"
                assert http_get(addr) == b"app"
                assert http_get(addr, {"X-Kdiag-Session": "bob"}) == b"app"
                # Not HTTP at all: goes to the app untouched.
                assert exchange(addr, b"\x00binary") == b"app:\x00binary"
        finally:
            handle.close()


def test_reset_propagates_from_operator_side(app: Lab, node_session) -> None:
    import struct

    def rst(conn: socket.socket) -> None:
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with tcp_server(rst) as operator:
        handle = node_session.manager.redirect(RedirectSpec("incoming", [8080]), operator)
        try:
            with in_netns(app.client_ns), socket.create_connection((app.app_ip, 8080), 10) as s:
                s.sendall(b"boom")
                with pytest.raises(ConnectionResetError):
                    while s.recv(100):
                        pass
        finally:
            handle.close()


def test_a_client_port_reused_at_once_after_a_reset_keeps_its_answers(app: Lab,
                                                                      node_session) -> None:
    """The operator side resets a connection; the client connects again at once from the same
    port (the redirect still runs), and that connection's answer comes a while later. The
    manager has conntrack forget the reset connection's entry, but the new connection may have
    taken that entry over (a SYN moves a reset entry back to SYN_SENT): forgetting it then cut
    the new connection off from its answers, sent from the listener's port untranslated (seen
    in make chaos: the client waited for ever)."""
    import struct

    from kdiag_manager.conntrack import RESET_DELAY

    first_done = threading.Event()

    def operator_side(conn: socket.socket) -> None:
        request = recv_all(conn)
        if not first_done.is_set():
            first_done.set()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        time.sleep(3 * RESET_DELAY)  # (past the old entry's forgetting)
        conn.sendall(b"op:" + request)

    def connect_from(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.settimeout(3 * RESET_DELAY + 5)
        sock.connect((app.app_ip, 8080))
        return sock

    with tcp_server(operator_side) as operator:
        handle = node_session.manager.redirect(RedirectSpec("incoming", [8080]), operator)
        try:
            with in_netns(app.client_ns):
                with connect_from(0) as first:
                    port = first.getsockname()[1]
                    first.sendall(b"a")
                    first.shutdown(socket.SHUT_WR)
                    with pytest.raises(ConnectionResetError):
                        first.recv(10)
                with connect_from(port) as second:
                    second.sendall(b"b")
                    second.shutdown(socket.SHUT_WR)
                    assert recv_all(second) == b"op:b"
        finally:
            handle.close()


class _OperatorEnd:
    """An operator-side handler that reads until its connection ends and records how: ``eof``,
    ``reset`` or the error."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.got_data = threading.Event()
        self.done = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            conn.recv(100)
            self.got_data.set()
            while conn.recv(100):
                pass
            self.seen.append("eof")
        except ConnectionResetError:
            self.seen.append("reset")
        except OSError as exc:
            self.seen.append(repr(exc))
        finally:
            self.done.set()


def test_reset_propagates_from_target_side(app: Lab, node_session) -> None:
    import struct

    end = _OperatorEnd()
    with tcp_server(end) as operator:
        handle = node_session.manager.redirect(RedirectSpec("incoming", [8080]), operator)
        try:
            with in_netns(app.client_ns):
                s = socket.create_connection((app.app_ip, 8080), 10)
            s.sendall(b"data")
            assert end.got_data.wait(10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
            assert end.done.wait(10)
            assert end.seen == ["reset"]
        finally:
            handle.close()


def test_pooled_tunnels_report_every_connection_and_settle_counters(app: Lab,
                                                                     node_session) -> None:
    """Reused pooled streams still end each connection with a tunnel-closed event, and the
    active count returns to zero (sequential, then concurrent, then one reset)."""
    events = []
    with tcp_server(echo_after_eof) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator, on_event=events.append,
            pool_size=4)
        try:
            with in_netns(app.client_ns):
                for i in range(40):
                    assert exchange((app.app_ip, 8080), b"n%d" % i) == b"n%d" % i
            _many(app, app.client_ns, (app.app_ip, 8080), events)
            total = 40 + N_CONNECTIONS
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (
                    sum(e.kind == "tunnel-closed" for e in events) < total or handle.active):
                time.sleep(0.05)
            assert sum(e.kind == "connection" for e in events) == total
            assert sum(e.kind == "tunnel-closed" for e in events) == total
            assert handle.active == 0
            assert handle.connections == total
        finally:
            handle.close()
    assert app.tagged_rules() == []


@pytest.mark.parametrize("pool_size", [0, 4], ids=["event-path", "pooled"])
def test_a_connection_is_reported_before_its_client_has_an_answer(app: Lab, node_session,
                                                                  pool_size) -> None:
    """The "connection" event (what a redirect step's ``stats.to_operator`` counts) is out
    before the client can read the operator side's answer, even from a slow reporter: a step
    right after a call sees the call counted (the demo's assertion once read 0 under load)."""
    reported: list[float] = []

    def on_event(info: Any) -> None:
        if info.kind == "connection":
            time.sleep(0.3)  # a slow reporter (a busy console)
            reported.append(time.monotonic())

    def speak_first(conn: socket.socket) -> None:
        conn.sendall(b"hello")

    with tcp_server(speak_first) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator, on_event=on_event,
            pool_size=pool_size)
        try:
            with in_netns(app.client_ns):
                for n in range(3):
                    with socket.create_connection((app.app_ip, 8080), timeout=30) as sock:
                        got = sock.recv(5)
                        answered = time.monotonic()
                    assert got == b"hello"
                    assert len(reported) == n + 1 and reported[-1] <= answered, (
                        n, reported, answered)
        finally:
            handle.close()


def test_pooled_operator_side_speaking_first_and_resetting_at_once(app: Lab,
                                                                   node_session) -> None:
    """A pooled tunnel answers ``connected`` with the operator side's first bytes when they
    come at once (a greeting, no early data from the peer), and carries a reset that comes
    before any byte."""
    import struct

    def greet(conn: socket.socket) -> None:
        conn.sendall(b"220 hello\r\n")
        conn.sendall(b"echo:" + conn.recv(100))
        conn.close()

    def refuse(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with tcp_server(greet) as greeter, tcp_server(refuse) as resetter:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080, 8081], fail_open=False),
            {8080: greeter, 8081: resetter}, pool_size=2)
        try:
            with in_netns(app.client_ns):
                for _ in range(5):  # the same tunnels, reused
                    with socket.create_connection((app.app_ip, 8080), 10) as s:
                        assert s.recv(100) == b"220 hello\r\n"
                        s.sendall(b"hi")
                        assert s.recv(100) == b"echo:hi"
                # (The reset may come before connect() has returned: also a reset.)
                with pytest.raises(ConnectionResetError), \
                        socket.create_connection((app.app_ip, 8081), 10) as s:
                    while s.recv(100):
                        pass
        finally:
            handle.close()


def test_ipv6_connections_both_ways(app: Lab, node_session) -> None:
    """One dual-stack listener and IPv6 rules (an ip6 table) beside the IPv4 ones: IPv6
    connections are redirected too, with their original destination and peer reported as
    IPv6."""
    ipv6_both_ways(app, node_session, [])


def ipv6_both_ways(app: Lab, node_session, expected_warnings: list[str]) -> None:
    """IPv4 and IPv6, incoming and outgoing (``expected_warnings``: each redirect's)."""
    events: list = []
    with tcp_server(reply_with(b"operator:")) as operator:
        incoming = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator, on_event=events.append)
        outgoing = node_session.manager.redirect(
            RedirectSpec("outgoing", [9000], destination=app.client_ip6, fail_open=False),
            operator, on_event=events.append)
        try:
            assert incoming.warnings == outgoing.warnings == expected_warnings
            assert len(ipv6_rule_lines(incoming.rules)) == 3
            assert len(incoming.rules) == 6
            assert ipv6_rule_lines(outgoing.rules) == outgoing.rules  # an IPv6 destination only
            assert len(app.tagged_rules()) == 8
            with in_netns(app.client_ns):
                assert exchange((app.app_ip6, 8080), b"in6") == b"operator:in6"
                assert exchange((app.app_ip, 8080), b"in4") == b"operator:in4"
            with in_netns(app.app_ns):
                assert exchange((app.client_ip6, 9000), b"out6") == b"operator:out6"
        finally:
            incoming.close()
            outgoing.close()
    seen = {(e.original, e.peer[0]) for e in events if e.kind == "connection"}
    assert ((app.app_ip6, 8080), app.client_ip6) in seen
    assert ((app.app_ip, 8080), app.client_ip) in seen  # IPv4 as such, not ::ffff:-mapped
    assert ((app.client_ip6, 9000), app.app_ip6) in seen
    assert app.tagged_rules() == []


@pytest.mark.parametrize("paused", [False, True], ids=["", "manager-paused"])
def test_connections_still_carried_after_the_lane_closes(app: Lab, node_session,
                                                         paused: bool) -> None:
    """The lane going away (its connection lost) ends the tunnels parked on it; new ones
    open as gRPC Tunnel calls and the redirect goes on. manager-paused: the manager (stopped
    as on a busy machine) hears of the lane's end only after connections were handed to the
    tunnels parked on it; each goes to another tunnel, not reset nor to its original
    destination (before: reset, whatever fail-open said; seen in CI)."""
    manager = node_session.manager
    if manager.lane is None:
        pytest.skip("runs with the lane only")
    events: list = []
    with tcp_server(echo_after_eof) as operator:
        # After the lane, each of the many connections at once waits for a Tunnel call of its
        # own: on a busy machine that can take longer than the default 3 s before a connection
        # is dropped (fail_open=False). What is checked here is that they are carried at all.
        handle = manager.redirect(RedirectSpec("incoming", [8080], fail_open=paused,
                                               fail_open_timeout=30), operator,
                                  on_event=events.append)
        try:
            with in_netns(app.client_ns):
                sent, received = checksum_roundtrip((app.app_ip, 8080), 1000)
                assert sent == received  # carried by the lane, byte for byte
            with _paused(node_session.info["manager_pid"] if paused else None) as resume:
                manager._lane_socket.shutdown(socket.SHUT_RDWR)
                deadline = time.monotonic() + 5
                while manager.lane.ready and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert not manager.lane.ready and manager.tunnel() == manager._tunnel
                while not handle._idle_tunnels and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert handle._idle_tunnels  # the pool refilled, on gRPC
                resume(after=0.5)  # (the connections wait in the listener's backlog meanwhile)
                _many(app, app.client_ns, (app.app_ip, 8080), events)
            assert handle.running
        finally:
            handle.close()
    assert not [e for e in events if e.kind == "closed" and e.route != "operator"]


@contextlib.contextmanager
def _paused(pid: int | None) -> Iterator[Callable[..., None]]:
    """SIGSTOP ``pid`` (None: nothing) until the block calls ``resume(after=seconds)`` (then it
    resumes that much later, in the background) or ends."""
    timers: list[threading.Timer] = []

    def resume(after: float) -> None:
        if pid is not None:
            timers.append(threading.Timer(after, os.kill, (pid, signal.SIGCONT)))
            timers[-1].start()

    if pid is not None:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield resume
    finally:
        for timer in timers:
            timer.join()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)


def test_iptables_fallback_redirects_the_same_and_says_so(app: Lab, iptables_session) -> None:
    """Where the kernel has no owned nftables tables the manager falls back to iptables: the
    same connections are redirected, the rules are reported in iptables-save syntax, and the
    ready event warns that fail-open after a manager crash then needs the next manager."""
    from kdiag_manager.redirectrules import FALLBACK_WARNING, MECHANISM_ENV

    warning = FALLBACK_WARNING.format(reason=f"${MECHANISM_ENV}=iptables")
    ipv6_both_ways(app, iptables_session, [warning])
    with tcp_server(echo_after_eof) as operator:
        events: list = []
        handle = iptables_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator, on_event=events.append)
        try:
            assert all(r.startswith("-A ") for r in handle.rules)
            rules = app.tagged_rules()
            assert len(rules) == 6 and not any(r.startswith("nft: ") for r in rules)
            _many(app, app.client_ns, (app.app_ip, 8080), events)
        finally:
            handle.close()
    assert app.tagged_rules() == []


@pytest.mark.parametrize("slow_report", [False, True], ids=["", "report-late"])
def test_a_carried_connection_outlives_its_redirect(app: Lab, node_session, slow_report: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping a redirect removes its rules, not the address translation of a connection it
    already carries (the manager's anchor table keeps NAT and conntrack on): the connection
    goes on both ways until it ends. Also when the CLI's thread that reports the assignment
    (and takes the tunnel out of the idle set) runs late, as on a busy machine: the tunnel
    is answered by then and closing the redirect must not cancel it as idle."""
    if slow_report:
        from kdiag.session import pooledtunnel as tunnels

        real_run = tunnels.PooledTunnel.run

        def run_reporting_late(self: tunnels.PooledTunnel, on_assigned: Any, connect: Any,
                               on_finished: Any) -> None:
            def late(assigned: Any) -> None:
                time.sleep(1.5)
                on_assigned(assigned)
            real_run(self, late, connect, on_finished)

        monkeypatch.setattr(tunnels.PooledTunnel, "run", run_reporting_late)

    def echo_lines(conn: socket.socket) -> None:
        with conn.makefile("rb") as lines:
            for line in lines:
                conn.sendall(b"op:" + line)

    with tcp_server(echo_lines) as operator:
        handle = node_session.manager.redirect(
            RedirectSpec("incoming", [8080], fail_open=False), operator)
        try:
            with in_netns(app.client_ns):
                client = socket.create_connection((app.app_ip, 8080), timeout=10)
            with client, client.makefile("rb") as answers:
                client.sendall(b"one\n")
                assert answers.readline() == b"op:one\n"
                handle.close(abort_connections=False)
                assert app.tagged_rules() == []
                with in_netns(app.client_ns):  # new connections reach the app
                    assert exchange((app.app_ip, 8080), b"new") == b"app:new"
                client.sendall(b"two\n")
                assert answers.readline() == b"op:two\n"
        finally:
            handle.close()


def _lane_only(node_session: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The session's manager, with the handoff on (as by default)."""
    from kdiag.session.pooledtunnel import HANDOFF_ENV

    manager = node_session.manager
    if manager.lane is None:
        pytest.skip("runs with the lane only")
    monkeypatch.setenv(HANDOFF_ENV, "1")
    return manager


def test_on_the_lane_the_manager_relays_each_connection_itself(
        app: Lab, node_session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node mode: the CLI hands each pooled connection's operator side to the manager, and
    carries none of its bytes; its end is still reported with the counts."""
    from kdiag.session import pooledtunnel

    manager = _lane_only(node_session, monkeypatch)

    def no_pumping(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the CLI pumped a connection the manager should relay")

    monkeypatch.setattr(pooledtunnel, "pump_socket", no_pumping)
    monkeypatch.setattr(pooledtunnel, "pump_responses", no_pumping)
    events: list[Any] = []
    size = 5 << 20
    with tcp_server(echo_after_eof) as operator:
        handle = manager.redirect(RedirectSpec("incoming", [8080], fail_open=False), operator,
                                  on_event=events.append, pool_size=4)
        try:
            with in_netns(app.client_ns):
                sent, received = checksum_roundtrip((app.app_ip, 8080), size)
            assert sent == received
            deadline = time.monotonic() + 10
            while not any(e.kind == "tunnel-closed" for e in events):
                assert time.monotonic() < deadline, events
                time.sleep(0.02)
        finally:
            handle.close()
    closed = next(e for e in events if e.kind == "tunnel-closed")
    assert (closed.bytes_in, closed.bytes_out, closed.error) == \
        (size, size, "")


@pytest.mark.parametrize("fault", ["lane lost", "manager killed", "manager killed, CLI pumping"])
def test_a_relayed_connection_is_reset_when_its_relay_is_lost(
        app: Lab, node_session, fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane lost mid-connection (as when the CLI is killed): the manager resets the peer
    and the operator side. The manager killed: the CLI resets the operator side, and the
    kernel's close of the dead manager's socket resets the peer (also where the CLI pumps the
    connection itself). Never a clean end of a cut request or answer."""
    import os
    import signal

    manager = _lane_only(node_session, monkeypatch)
    if fault == "manager killed, CLI pumping":
        monkeypatch.setenv("KDIAG_HANDOFF", "0")
    end = _OperatorEnd()
    with tcp_server(end) as operator:
        handle = manager.redirect(RedirectSpec("incoming", [8080]), operator)
        try:
            with in_netns(app.client_ns):
                s = socket.create_connection((app.app_ip, 8080), 10)
            with s:
                s.sendall(b"a request, cut")
                assert end.got_data.wait(10)
                if fault == "lane lost":
                    manager._lane_socket.shutdown(socket.SHUT_RDWR)
                    with pytest.raises(ConnectionResetError):
                        while s.recv(100):
                            pass
                else:
                    os.kill(node_session.info["manager_pid"], signal.SIGKILL)
                    s.settimeout(5)
                    with pytest.raises(ConnectionResetError):
                        while s.recv(100):
                            pass
            assert end.done.wait(10)
            assert end.seen == ["reset"]
        finally:
            handle.close()

"""Mirror end to end: real namespaces, the real manager; the app serves every connection
straight (no rule, no proxy on its path: the copies come from a packet socket), the operator's
server gets copies, and nothing on the operator's side can slow or break the app's answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kdiag.session.results import RedirectEventInfo, RedirectSpec

from .conftest import ENTER, Lab, exchange, in_netns, pool_in, recv_all, tcp_server

N_REQUESTS = 1000
APP_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
              b"Connection: close\r\n\r\napp")


def _request(i: int, extra: str = "") -> bytes:
    return f"GET /r/{i} HTTP/1.1\r\nHost: app\r\nX-Req: {i}\r\n{extra}\r\n".encode()


class _Copies:
    """An operator-side server keeping what each connection sent (replies: "ignored")."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.lock = threading.Lock()

    def handler(self, conn: socket.socket) -> None:
        data = recv_all(conn)
        with self.lock:
            self.got.append(data)
        conn.sendall(b"HTTP/1.1 500 operator reply: must be discarded\r\n\r\n")

    def wait_for(self, n: int, timeout: float = 60.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return list(self.got)
            time.sleep(0.05)
        with self.lock:
            return list(self.got)


class _Routes:
    """Counts the mirror's closed events by route (and keeps the copies' errors)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.app_errors: list[str] = []
        """Errors of connections the app served (a reset, the app unreachable)."""
        self.originals: dict[int, tuple[int, int]] = {}
        """Bytes each way (to the app, from it) of the connections the app served, by id."""
        self.lock = threading.Lock()

    def __call__(self, info: RedirectEventInfo) -> None:
        if info.kind != "closed":
            return
        with self.lock:
            self.counts[info.route] = self.counts.get(info.route, 0) + 1
            if info.route == "copy-dropped":
                self.errors.append(info.error)
            elif info.error:
                self.app_errors.append(f"{info.route}: {info.error}")
            if info.route == "original":
                self.originals[info.connection_id] = (info.bytes_in, info.bytes_out)

    def not_whole(self, answer_size: int) -> list[tuple[int, tuple[int, int]]]:
        """The app's connections that did not carry a whole answer back."""
        with self.lock:
            return [(k, v) for k, v in self.originals.items() if v[1] != answer_size]

    def wait_for(self, total: int, timeout: float = 60.0, route: str = "") -> dict[str, int]:
        """The counts once ``total`` connections closed (on ``route``, if given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and total > (
                self.counts.get(route, 0) if route else sum(self.counts.values())):
            time.sleep(0.05)
        with self.lock:
            return dict(self.counts)


@contextmanager
def _mirror(session, to: tuple[str, int], routes: Callable[[RedirectEventInfo], None],
            header: tuple[str, str] | None = None, port: int = 8080) -> Iterator[object]:
    handle = session.manager.redirect(RedirectSpec("incoming", [port], header=header,
                                                   mirror=True), to, on_event=routes)
    try:
        yield handle
    finally:
        handle.close(abort_connections=False)


def _send_all(lab: Lab, requests: list[bytes], empty: list[int] | None = None) -> list[bytes]:
    """Each request on a connection of its own, 16 at once: the answers (``empty`` gets the
    client port of each connection that was answered with nothing, for a failure's message)."""
    def one(request: bytes) -> bytes:
        with socket.create_connection((lab.app_ip, 8080), timeout=30) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            answer = recv_all(s)
            if not answer and empty is not None:
                empty.append(s.getsockname()[1])
            return answer

    with pool_in(lab.client_ns, 16) as pool:
        return list(pool.map(one, requests))


def test_every_request_is_answered_by_the_app_and_copied(app: Lab, node_session) -> None:
    """1000 requests: every answer is the app's, byte for byte; the operator's server gets a
    copy of each request, whole, and its replies reach nobody."""
    copies = _Copies()
    routes = _Routes()
    requests = [_request(i) for i in range(N_REQUESTS)]
    with tcp_server(copies.handler) as operator, _mirror(node_session, operator, routes) as h:
        assert h.rules == []
        empty: list[int] = []
        answers = _send_all(app, requests, empty)
        got = copies.wait_for(N_REQUESTS)
        counts = routes.wait_for(2 * N_REQUESTS)
    wrong = [(i, a) for i, a in enumerate(answers) if a != APP_ANSWER]
    assert not wrong, (f"{len(wrong)} answers not the app's: {wrong[:3]}; "
                       f"{routes.app_errors[:3]}; {routes.errors[:3]}; {counts}; "
                       f"empty answers' client ports: {empty}; app connections not whole "
                       f"(id: to app, from app): {routes.not_whole(len(APP_ANSWER))}")
    missing = sorted(set(requests) - set(got))
    extra = sorted(set(got) - set(requests))
    assert sorted(got) == sorted(requests), (len(got), missing[:3], extra[:3], counts,
                                             routes.errors[:3])
    assert counts == {"original": N_REQUESTS, "mirror": N_REQUESTS}, routes.errors[:3]
    assert app.tagged_rules() == []


def _rules_touching(app: Lab, port: int) -> list[str]:
    """Every line of the namespace's whole nftables ruleset and iptables/ip6tables rules that
    names kdiag or ``port`` (whatever made them)."""
    from demo.lab import sh

    enter = ["ip", "netns", "exec", app.app_ns]
    listings = [sh(*enter, "nft", "list", "ruleset")]
    listings += [sh(*enter, tool, check=False) for tool in ("iptables-save", "ip6tables-save")]
    return [line for listing in listings for line in listing.splitlines()
            if "kdiag" in line or str(port) in line]


def test_the_apps_path_has_no_kdiag_rule_while_a_mirror_runs(app: Lab, node_session) -> None:
    """While a mirror copies, neither nftables nor iptables holds anything of kdiag's or about
    the mirrored port: the client reaches the app exactly as without kdiag."""
    copies = _Copies()
    routes = _Routes()
    with tcp_server(copies.handler) as operator, _mirror(node_session, operator, routes):
        answers = _send_all(app, [_request(i) for i in range(10)])
        assert copies.wait_for(10) and len(copies.got) == 10
        assert _rules_touching(app, 8080) == []
    assert answers == [APP_ANSWER] * 10


def test_a_mirror_on_an_iptables_manager_installs_nothing_either(app: Lab,
                                                                 iptables_session) -> None:
    """Where redirects fall back to iptables, a mirror needs no rules either: it works the
    same, and nothing of it is in iptables while it runs."""
    copies = _Copies()
    routes = _Routes()
    requests = [_request(i) for i in range(100)]
    with tcp_server(copies.handler) as operator, \
            _mirror(iptables_session, operator, routes) as handle:
        assert handle.rules == [] and _rules_touching(app, 8080) == []
        answers = _send_all(app, requests)
        got = copies.wait_for(len(requests))
        counts = routes.wait_for(2 * len(requests))
    assert answers == [APP_ANSWER] * len(requests)
    assert sorted(got) == sorted(requests)
    assert counts == {"original": len(requests), "mirror": len(requests)}
    assert app.tagged_rules() == []


def test_operator_server_stopped_changes_no_answer(app: Lab, node_session) -> None:
    """No operator server: the app's answers are byte-identical to those without a mirror,
    none fails, and every copy is reported dropped (never silently)."""
    requests = [_request(i) for i in range(200)]
    baseline = _send_all(app, requests)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    refused = s.getsockname()  # bound, not listening: connections are refused
    routes = _Routes()
    try:
        with _mirror(node_session, refused, routes):
            answers = _send_all(app, requests)
            counts = routes.wait_for(2 * len(requests))
    finally:
        s.close()
    assert answers == baseline and baseline[0] == APP_ANSWER
    assert counts == {"original": len(requests), "copy-dropped": len(requests)}
    assert all("refused" in e for e in routes.errors), routes.errors[:3]


def test_header_filter_copies_only_matching_requests(app: Lab, node_session) -> None:
    """With a header filter every request reaches the app; only the matching ones are copied."""
    copies = _Copies()
    routes = _Routes()
    requests = [_request(i, "X-Mirror: yes\r\n" if i % 2 else "") for i in range(40)]
    with tcp_server(copies.handler) as operator, \
            _mirror(node_session, operator, routes, header=("X-Mirror", "yes")):
        answers = _send_all(app, requests)
        got = copies.wait_for(20)
        counts = routes.wait_for(60)
    assert answers == [APP_ANSWER] * 40
    assert sorted(got) == sorted(requests[1::2])
    assert counts == {"original": 40, "mirror": 20}


def _duplex_exchange(addr: tuple[str, int], payload: bytes, timeout: float = 30.0) -> bytes:
    """As ``exchange``, but reading while it sends: the app answers (1 MiB) before it has read
    everything, and a client that only reads after sending would block the app's answer, and
    so the app's reading (without kdiag too)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        answer: list[bytes] = []
        reader = threading.Thread(target=lambda: answer.append(recv_all(s)))
        reader.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reader.join(timeout)
        return answer[0] if answer else b""


def test_a_stalled_operator_never_delays_the_app(app: Lab, node_session) -> None:
    """An operator server that takes the copies' connections but never reads them: copies
    back up, and are dropped beyond their bound (reported as such); the app's answers do not
    wait. Bound: each exchange ends long before the operator would ever read (it never does);
    5 s, the time an exchange waiting on the operator would at least hang, is far above a busy
    machine's scheduling noise for a local exchange (latency figures: the bench)."""
    stall = threading.Event()

    def never_reads(conn: socket.socket) -> None:
        stall.wait(120)

    routes = _Routes()
    big = b"x" * (64 << 20)  # beyond the copy's bound and every buffer on the way
    try:
        with tcp_server(never_reads) as operator, _mirror(node_session, operator, routes):
            with in_netns(app.client_ns):
                t0 = time.monotonic()
                got = _duplex_exchange((app.app_ip, 8080), big, timeout=30)
                big_took = time.monotonic() - t0
            small: list[float] = []
            for i in range(20):
                with in_netns(app.client_ns):
                    t0 = time.monotonic()
                    assert exchange((app.app_ip, 8080), _request(i), timeout=30) == APP_ANSWER
                    small.append(time.monotonic() - t0)
            counts = routes.wait_for(1, timeout=30, route="copy-dropped")
    finally:
        stall.set()
    assert got == b"app:" + big[:(1 << 20) - 1]  # the app answers what it read (its buffer)
    assert big_took < 5.0 and max(small) < 5.0, (big_took, small)
    assert counts.get("copy-dropped", 0) >= 1
    assert any("fell behind" in e for e in routes.errors), routes.errors


def test_an_operator_that_half_closes_still_gets_the_whole_copy(app: Lab, node_session) -> None:
    """The operator's server ends its side at once (shutdown for writing) and goes on reading:
    the copy goes on too — what the client sends later still reaches it, and the copy counts
    as whole."""
    got: list[bytes] = []
    first = threading.Event()

    def half_close(conn: socket.socket) -> None:
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
            first.set()
        got.append(data)

    routes = _Routes()
    with tcp_server(half_close) as operator, _mirror(node_session, operator, routes):
        with in_netns(app.client_ns), socket.create_connection((app.app_ip, 8080)) as s:
            s.sendall(b"first ")
            assert first.wait(30)  # the operator has the start of the copy (and ended its side)
            time.sleep(0.2)  # its end travels back to the manager
            s.sendall(b"second")
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"app:first second"
        counts = routes.wait_for(2)
    assert got == [b"first second"], got
    assert counts == {"original": 1, "mirror": 1}, routes.errors


def _start_cli_helper(app: Lab) -> tuple[subprocess.Popen[str], int]:
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.node.cli_helper", str(app.app_pid), "8080", str(ENTER),
         "auto", "1", "mirror"], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2],
        text=True)
    assert helper.stdout is not None
    line = helper.stdout.readline()
    assert line.startswith("READY"), line
    return helper, int(line.split()[1])


def _wait_no_rules(app: Lab, within: float) -> None:
    deadline = time.monotonic() + within
    while app.tagged_rules() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.tagged_rules() == []


@pytest.mark.parametrize("victim", ["cli", "manager"])
def test_kill_9_leaves_no_rules_and_the_app_serves(app: Lab, victim: str) -> None:
    """kill -9 of the CLI (its manager then exits) or of the manager: a mirror had no rules to
    leave (before or after) and connections reach the app directly."""
    helper, manager_pid = _start_cli_helper(app)
    try:
        assert _rules_touching(app, 8080) == []
        with in_netns(app.client_ns):  # mirrored: the app answers (copy to a refusing port)
            assert exchange((app.app_ip, 8080), b"a", timeout=10) == b"app:a"
        os.kill(helper.pid if victim == "cli" else manager_pid, 9)
        _wait_no_rules(app, 1.0)
        with in_netns(app.client_ns):
            for i in range(20):
                assert exchange((app.app_ip, 8080), b"%d" % i, timeout=10) == b"app:%d" % i
    finally:
        helper.kill()
        helper.wait()


def test_mirror_spec_needs_incoming(node_session) -> None:
    """An outgoing mirror is refused with a clear message (nothing installed)."""
    from kdiag.errors import ManagerError

    with pytest.raises(ManagerError, match="mirror applies to incoming"):
        node_session.manager.redirect(RedirectSpec("outgoing", [8080], mirror=True),
                                      ("127.0.0.1", 1))


def test_mirror_step_counts_copies_and_drops(app: Lab, tmp_path: Path) -> None:
    """The runbook step: requests reach the app, the operator's server gets copies (its access
    log in the run step's output), and the stats say how many were mirrored and dropped."""
    from tests.node.test_redirect_stats import wget
    from tests.node.test_steps import free_port, kdiag_run

    local, nobody = free_port(), free_port()
    code, output, steps = kdiag_run(f"""
        target: {{node: {{pid: {app.app_pid}}}}}
        steps:
          - name: operator server
            run: {{argv: [python3, -m, http.server, "{local}", --bind, 127.0.0.1,
                         --directory, {tmp_path}]}}
            background: true
          - name: up
            http: {{url: "http://127.0.0.1:{local}/"}}
            retries: 30
            delay: 100ms
            until: result.status == 200
          - name: copy
            mirror: {{ports: ["8080:{local}"]}}
            background: true
            register: m
          - {{name: call 1, {wget(app, "copied-1")}, register: c1, assert: ["c1.stdout == 'app'"]}}
          - {{name: call 2, {wget(app, "copied-2")}, register: c2, assert: ["c2.stdout == 'app'"]}}
          - name: copied
            wait: {{until: "m.stats.mirrored >= 2 and m.stats.connections >= 2", timeout: 10s,
                    interval: 100ms}}
          - {{name: stop it, stop: copy}}
          - name: copy to nowhere
            mirror: {{ports: ["8080:{nobody}"]}}
            background: true
            register: n
          - {{name: call 3, {wget(app, "")}, register: c3, assert: ["c3.stdout == 'app'"]}}
          - name: dropped
            wait: {{until: "n.stats.dropped >= 1", timeout: 10s, interval: 100ms}}
          - name: counted
            assert: ["n.stats.mirrored == 0", "n.stats.connections == 1"]
    """, tmp_path)
    assert code == 0, output
    assert "GET /copied-1" in output and "GET /copied-2" in output  # the operator's access log
    assert "stopped: 2 connections served by the app; 2 copies to the operator" in output
    assert "copy of connection" in output and "dropped" in output and "refused" in output
    assert steps["copy"]["progress"][-1]["counts"]["mirrored"] == 2  # (over time)
    assert app.tagged_rules() == []


def test_adhoc_mirror_copies_until_ctrl_c(app: Lab) -> None:
    """``kdiag mirror --pid P 8080:PORT``: the app answers, copies reach the local server;
    Ctrl-C: exit 130, rules removed, the summary line says what was copied."""
    import signal

    from tests.node.test_adhoc_commands import ROOT, _env

    copies = _Copies()
    with tcp_server(copies.handler) as (_, port):
        process = subprocess.Popen([sys.executable, "-m", "kdiag", "mirror", "--pid",
                                    str(app.app_pid), f"8080:{port}"], cwd=ROOT, env=_env(),
                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines == [f"mirroring (the app serves every connection; copies to this machine) "
                         f"8080 -> 127.0.0.1:{port}\n", "Ctrl-C to stop\n"], \
            (lines, process.stderr.read() if process.poll() is not None else "")
        with in_netns(app.client_ns):
            assert exchange((app.app_ip, 8080), b"hello") == b"app:hello"
        assert copies.wait_for(1, timeout=30) == [b"hello"]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "stopped: 1 connections served by the app; 1 copies to the operator (5 bytes)" \
        in out, out
    assert "stopped; the mirror is closed (it installed no rules)" in out
    assert app.tagged_rules() == []

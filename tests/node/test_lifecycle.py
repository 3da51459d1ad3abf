"""Manager lifecycle: auth, token hygiene, cleanup after kill -9, stale rules, node target."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from kdiag_manager.wire.api.v1 import manager_pb2 as pb
from kdiag_manager.wire.api.v1 import manager_pb2_grpc as pb_grpc

from demo.lab import sh
from kdiag.errors import ManagerUnavailable, TargetError
from kdiag.ownedfolders import start_time
from kdiag.session.client import ManagerClient
from kdiag.session.results import RedirectSpec
from kdiag.targets.node import NodeTarget

from .conftest import ENTER, Lab, exchange, in_netns, recv_all, tcp_server


def test_calls_without_the_token_are_refused(app: Lab, node_session) -> None:
    address = node_session.address
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.ManagerStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Version(pb.VersionRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        stub.Version(pb.VersionRequest(), metadata=[("authorization", "Bearer nope")], timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Streaming calls are refused at once too, before any message is read.
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Redirect(iter([]), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    bad = ManagerClient(grpc.insecure_channel(address), "wrong-token")
    with pytest.raises(ManagerUnavailable, match="UNAUTHENTICATED"):
        bad.version()
    bad.close()
    assert app.tagged_rules() == []


def test_token_is_scrubbed_and_process_not_dumpable(app: Lab, node_session) -> None:
    mgr = node_session.info["manager_pid"]
    token = node_session.manager._metadata[0][1].split()[1]
    environ = Path(f"/proc/{mgr}/environ").read_bytes()
    assert token.encode() not in environ
    # Non-dumpable: /proc/PID/* files owned by root:root instead of the process's user, and a
    # non-root process cannot read its memory or environment.
    probe = subprocess.run(
        [sys.executable, "-c", f"import os; os.setuid(65534); open('/proc/{mgr}/environ').read()"],
        capture_output=True, text=True)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


def _start_cli_helper(app: Lab, mechanism: str, operator_port: int = 1
                      ) -> tuple[subprocess.Popen[str], int, str]:
    """A stand-in CLI with a redirect of 8080 that does not fail open: (process, manager PID,
    session folder)."""
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.node.cli_helper", str(app.app_pid), "8080", str(ENTER),
         mechanism, str(operator_port)], stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2], text=True)
    assert helper.stdout is not None
    line = helper.stdout.readline()
    assert line.startswith("READY"), line
    return helper, int(line.split()[1]), line.split()[2]


@contextlib.contextmanager
def _cli_helper(app: Lab, mechanism: str, operator_port: int = 1
                ) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """:func:`_start_cli_helper`'s CLI, killed and its session folder removed when the block
    ends (however it ends)."""
    helper, manager_pid, workdir = _start_cli_helper(app, mechanism, operator_port)
    try:
        yield helper, manager_pid, workdir
    finally:
        helper.kill()
        helper.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _exited(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or \
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("mechanism", ["nftables", "iptables"])
def test_kill_9_of_the_cli_restores_traffic_within_1s(app: Lab, mechanism: str) -> None:
    with _cli_helper(app, mechanism) as (helper, manager_pid, workdir):
        rules = app.tagged_rules()
        assert len(rules) == 6  # 3 IPv4, 3 IPv6
        assert all(r.startswith("nft: ") == (mechanism == "nftables") for r in rules)
        with in_netns(app.client_ns), pytest.raises(ConnectionResetError):
            exchange((app.app_ip, 8080), b"x", timeout=5)  # redirected, operator refuses
        helper.kill()
        t0 = time.monotonic()
        attempts: list[str] = []
        with in_netns(app.client_ns):
            while True:
                try:
                    # Short attempts: a connection caught by the rules in the last moments
                    # before their removal is reset, the next one must reach the app.
                    got = exchange((app.app_ip, 8080), b"x", timeout=0.2)
                    attempts.append(f"{time.monotonic() - t0:.3f} {got!r}")
                    if got == b"app:x":
                        break
                except OSError as exc:
                    attempts.append(f"{time.monotonic() - t0:.3f} {exc!r}")
                assert time.monotonic() - t0 < 1.0, f"traffic did not reach the app: {attempts}"
                time.sleep(0.02)
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0
        while app.tagged_rules() and time.monotonic() - t0 < 1.0:
            time.sleep(0.02)
        assert app.tagged_rules() == []
        # The manager exits too (stdin EOF: its parent is gone), and removes the session's
        # folder, which the killed CLI could not.
        for _ in range(50):
            if _exited(manager_pid):
                break
            time.sleep(0.1)
        else:
            pytest.fail("manager still running after its parent died")
        assert not os.path.exists(workdir)


def test_a_carried_connection_is_reset_when_the_cli_vanishes(app: Lab) -> None:
    """A connection the redirect carries when the CLI is killed ends with a reset, never with
    a clean end that would pass the missing answer for an empty one (the manager resets what
    it still carries on its way out), and conntrack forgets it: the client's next connection
    from the same port is a new one (it would otherwise go to the gone listener)."""
    with tcp_server(_hold) as operator, \
            _cli_helper(app, "auto", operator[1]) as (helper, manager_pid, _):
        port = _expect_reset_after(app, helper.kill)
        while not _exited(manager_pid):
            time.sleep(0.02)
        assert not _conntrack_has(app, port)


@pytest.mark.parametrize("handoff", ["1", "0"])
def test_the_operator_side_of_a_cut_request_is_reset_when_the_cli_vanishes(
        app: Lab, monkeypatch: pytest.MonkeyPatch, handoff: str) -> None:
    """kill -9 of the CLI while the operator side holds half a request: it gets a reset, never
    a clean end that would pass the cut request for a whole one — whether the CLI pumped the
    connection (its socket, closed by the kernel) or handed it to the manager (which resets
    it when the lane goes)."""
    from .test_redirect import _OperatorEnd

    monkeypatch.setenv("KDIAG_HANDOFF", handoff)  # (the helper inherits it)
    end = _OperatorEnd()
    with tcp_server(end) as operator, \
            _cli_helper(app, "auto", operator[1]) as (helper, _, _):
        with _connect(app) as client:
            client.sendall(b"half a request")
            assert end.got_data.wait(10)
            helper.kill()
            assert end.done.wait(10)
        assert end.seen == ["reset"]


def _flood(conn: socket.socket) -> None:
    """An operator side that answers with more than any socket buffer holds, at once."""
    _requests.release()
    with contextlib.suppress(OSError):
        conn.sendall(b"y" * (64 << 20))


def test_a_connection_whose_client_stopped_reading_is_reset_when_the_cli_vanishes(
        app: Lab) -> None:
    """The manager is blocked writing the operator's answer to a client that stopped reading
    when the CLI is killed: the client, reading again after the manager's exit, gets a reset —
    never a clean end that would pass the cut answer for a whole one. (This passes without
    ``abort()``'s immediate reset too: a reading client's window updates reach the app's port
    once conntrack forgot the flow, and the app's kernel resets them. The late-reset mechanism
    itself is pinned by tests/manager/test_sockets.py.)"""
    with tcp_server(_flood) as operator, \
            _cli_helper(app, "auto", operator[1]) as (helper, manager_pid, _), \
            _connect(app) as client:
        client.sendall(b"request")
        assert _requests.acquire(timeout=10)
        time.sleep(0.5)  # the answer fills the client's buffers: the manager blocks
        helper.kill()
        while not _exited(manager_pid):
            time.sleep(0.02)
        time.sleep(1)  # conntrack has forgotten the manager's connections by now
        client.settimeout(5)
        received = 0
        with pytest.raises(ConnectionResetError):
            while data := client.recv(1 << 20):
                received += len(data)
        assert 0 < received < (64 << 20)


def test_no_connection_is_translated_to_a_gone_manager(app: Lab) -> None:
    """After the manager's exit no conntrack entry still sends a client port to its listener,
    however the connection ended (here: answered and closed by the operator side, and one
    still open when the CLI vanished): a client port reused while such an entry lingers would
    be refused although no rule redirects anything any more."""
    with tcp_server(_answer) as operator, \
            _cli_helper(app, "auto", operator[1]) as (helper, manager_pid, _):
        with in_netns(app.client_ns):
            answers = [exchange((app.app_ip, 8080), b"x", timeout=5) for _ in range(5)]
        held = _connect(app)
        assert answers == [b"op:x"] * 5
        assert _translated(app), "the redirect left no entry: the test checks nothing"
        with held:
            helper.kill()
            while not _exited(manager_pid):
                time.sleep(0.02)
        assert _translated(app) == []


def _translated(app: Lab) -> list[str]:
    """The conntrack entries in the app's namespace of connections to port 8080 answered from
    another port (translated to a listener)."""
    out = sh("ip", "netns", "exec", app.app_ns, "conntrack", "-L", "-p", "tcp", "--dport",
             "8080", check=False)
    return [line for line in out.splitlines()
            if "dport=8080" in line and line.split("sport=")[-1].split()[0] != "8080"]


def _answer(conn: socket.socket) -> None:
    """An operator side that answers ``op:`` + the request and closes."""
    conn.sendall(b"op:" + recv_all(conn))


def test_a_carried_connection_is_reset_when_its_tunnel_breaks(app: Lab, node_session) -> None:
    """The same with the manager alive (as in a pod): the client's lane breaks under a
    connection that has sent all its request and waits for the answer."""
    manager = node_session.manager
    assert manager.lane is not None
    with tcp_server(_hold) as operator:
        handle = manager.redirect(RedirectSpec("incoming", [8080], fail_open=False), operator)
        try:
            port = _expect_reset_after(
                app, lambda: manager._lane_socket.shutdown(socket.SHUT_RDWR))
            deadline = time.monotonic() + 5
            while _conntrack_has(app, port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _conntrack_has(app, port)
        finally:
            handle.close()


_requests = threading.Semaphore(0)


def _conntrack_has(app: Lab, client_port: int) -> bool:
    """Does conntrack in the app's namespace hold a connection from ``client_port``?"""
    return f"sport={client_port} " in sh("ip", "netns", "exec", app.app_ns, "conntrack", "-L",
                                         "-p", "tcp", "--sport", str(client_port), check=False)


def _hold(conn: socket.socket) -> None:
    """An operator side that reads the request and never answers."""
    recv_all(conn)
    _requests.release()
    time.sleep(10)


def _connect(app: Lab) -> socket.socket:
    """A client's connection to the app's port 8080 (redirected, if a redirect runs)."""
    with in_netns(app.client_ns):
        return socket.create_connection((app.app_ip, 8080), timeout=10)


def _expect_reset_after(app: Lab, fault: Callable[[], object]) -> int:
    """A client that sent its whole request and waits for the answer gets a reset after
    ``fault``; its port."""
    with _connect(app) as client:
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        assert _requests.acquire(timeout=10)
        fault()
        with pytest.raises(ConnectionResetError):
            client.recv(100)  # b"" (a clean end) would be a lie
        return int(client.getsockname()[1])


def test_kill_9_of_the_manager_removes_its_rules_at_once(app: Lab) -> None:
    """The rules live in a table the kernel owns for the manager: they vanish with it, also
    when a child it started (here a command still running through Exec) outlives it."""
    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
    try:
        handle = session.manager.redirect(RedirectSpec("incoming", [8080], fail_open=False),
                                          ("127.0.0.1", 1))
        assert handle.rules and all(r.startswith("add rule ip") for r in handle.rules)
        assert not handle.warnings
        threading.Thread(target=lambda: _ignore_errors(session.manager.exec, script="sleep 30"),
                         daemon=True).start()
        child = _wait_for_child(session.info["manager_pid"])
        assert len(app.tagged_rules()) == 6
        os.kill(session.info["manager_pid"], 9)
        session.proc.wait()
        assert app.tagged_rules() == []  # nothing had to run: the kernel removed the tables
        assert os.path.exists(f"/proc/{child}")  # the child lives on, without the socket
        with in_netns(app.client_ns):
            assert exchange((app.app_ip, 8080), b"y", timeout=5) == b"app:y"
        os.kill(child, 9)
    finally:
        session.close()


def _ignore_errors(call, **kwargs) -> None:
    with contextlib.suppress(Exception):  # the manager is killed under the call
        call(**kwargs)


def _wait_for_child(parent: int) -> int:
    """A child process of ``parent`` (waits up to 10 s for one)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"no child of {parent}")


def test_restarted_manager_removes_stale_iptables_rules(app: Lab) -> None:
    # With the iptables fallback, a manager killed with -9 leaves its rules; the next one
    # removes them.
    env = {"KDIAG_ENTER": str(ENTER), "KDIAG_REDIRECT_RULES": "iptables"}
    session = NodeTarget(app.app_pid, env=env).open()
    handle = session.manager.redirect(RedirectSpec("incoming", [8080]), ("127.0.0.1", 1))
    assert handle.rules[0].startswith("-A ") and "iptables" in handle.warnings[0]
    os.kill(session.info["manager_pid"], 9)
    session.proc.wait()
    time.sleep(0.2)
    assert len(app.tagged_rules()) == 6  # 3 IPv4, 3 IPv6
    sh("ip", "netns", "exec", app.app_ns, "iptables", "-t", "nat", "-I", "PREROUTING", "-p",
       "tcp", "--dport", "7777", "-m", "comment", "--comment", "kdiag:stale-one", "-j",
       "REDIRECT", "--to-ports", "1")
    session.manager.close()
    shutil.rmtree(session.workdir, ignore_errors=True)
    session2 = NodeTarget(app.app_pid, env=env).open()
    try:
        assert app.tagged_rules() == []
        # ...but never the rules of a live manager.
        session2.manager.redirect(RedirectSpec("incoming", [8080]), ("127.0.0.1", 1))
        session3 = NodeTarget(app.app_pid, env=env).open()
        assert len(app.tagged_rules()) == 6  # 3 IPv4, 3 IPv6
        session3.close()
        assert len(app.tagged_rules()) == 6  # 3 IPv4, 3 IPv6
    finally:
        session2.close()
    assert app.tagged_rules() == []


def test_folders_of_killed_sessions_are_removed_by_the_next_one(app: Lab,
                                                                 tmp_path: Path) -> None:
    """kill -9 of the CLI and of its manager leaves the session's folder; the next node session
    removes it, but never the folder of a session whose processes live."""
    helper, manager_pid, workdir = _start_cli_helper(app, "auto")
    os.kill(manager_pid, 9)
    helper.kill()
    helper.wait()
    while not _exited(manager_pid):
        time.sleep(0.02)
    assert os.path.isdir(workdir)
    live = tempfile.mkdtemp(prefix="kdiag-node-")  # owned by this (live) process
    (Path(live) / "owners").write_text(json.dumps([[os.getpid(), start_time(os.getpid())]]))
    unmarked = tempfile.mkdtemp(prefix="kdiag-node-")  # its CLI may be about to write owners
    try:
        session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
        session.close()
        assert not os.path.exists(workdir)
        assert os.path.isdir(live) and os.path.isdir(unmarked)
        assert not os.path.exists(session.workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(unmarked, ignore_errors=True)


def test_node_session_close_stops_manager_and_rules(app: Lab) -> None:
    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
    session.manager.redirect(RedirectSpec("outgoing", [9000]), ("127.0.0.1", 1))
    assert app.tagged_rules()
    session.close()
    assert session.proc.returncode == 0
    assert app.tagged_rules() == []
    assert not os.path.exists(session.workdir)


def test_node_target_errors() -> None:
    with pytest.raises(TargetError, match="no process with PID"):
        NodeTarget(999_999_999).open()
    assert TargetError("x").exit_code == 3


def test_node_target_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(TargetError, match="must run as root"):
        NodeTarget(os.getpid()).open()


def test_manager_first_line_and_no_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KDIAG_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "kdiag_manager"], capture_output=True,
                         text=True, env=env, timeout=30)
    assert out.returncode == 2
    assert '"error"' in out.stdout.splitlines()[0]
    proc = subprocess.Popen([sys.executable, "-m", "kdiag_manager", "--target-pid",
                             str(os.getpid())], stdout=subprocess.PIPE, text=True,
                            env={**env, "KDIAG_TOKEN": "t0ken"})
    try:
        import json

        first = json.loads(proc.stdout.readline())["kdiag_manager"]
        host, port = first["address"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        client = ManagerClient.connect(first["address"], "t0ken")
        assert client.version().pid == first["pid"] == proc.pid
        client.close()
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    finally:
        proc.terminate()
        assert proc.wait(10) == 0

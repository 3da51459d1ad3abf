"""Exec, shell, ps, capture, copy, net and probe against a target with no shell at all."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kdiag.errors import ManagerError

from .conftest import Lab, exchange, in_netns, make_dev_null, processes_in_root


def test_exec_script_in_target_without_shell(app: Lab, node_session) -> None:
    m = node_session.manager
    r = m.exec(script="ls /; cat /proc/self/status | grep -c Pid; echo err >&2; exit 7")
    assert r.exit_code == 7
    assert r.stdout_text.splitlines()[:2] == ["app", "proc"]
    assert r.stderr_text == "err\n"
    # The target's root has no shell: the command ran in its root through busybox.
    assert not (app.root / "bin").exists()


def test_exec_argv_uses_applets_and_stdin_env(app: Lab, node_session) -> None:
    m = node_session.manager
    r = m.exec(["cat"], stdin=b"x" * 300_000)
    assert r.ok and len(r.stdout) == 300_000
    r = m.exec(script='echo "$GREETING"', env={"GREETING": "hi there"})
    assert r.stdout_text == "hi there\n"
    r = m.exec(["/app-does-not-exist"])
    assert r.exit_code == 126 or r.exit_code == 127
    assert "enter:" in r.stderr_text


def test_exec_sees_target_network_and_streams(app: Lab, node_session) -> None:
    chunks: list[bytes] = []
    r = node_session.manager.exec(
        script="ip -4 addr; netstat -ltn", on_output=lambda s, d: chunks.append(d))
    assert app.app_ip in r.stdout_text
    assert ":8080" in r.stdout_text
    assert b"".join(chunks) == r.stdout


def test_exec_timeout_kills_the_process_group(app: Lab, node_session) -> None:
    # Without /dev/null in the target, ash cannot start a background job at all (and only the
    # last sleep, exec'd in its place, would run): give it one, so the group has three members.
    make_dev_null(app.root)
    seen: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(processes_in_root(app.root, "sleep 30"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    try:
        r = node_session.manager.exec(script="sleep 300 & sleep 301 & sleep 302", timeout=2)
    finally:
        done.set()
        watcher.join()
    assert r.timed_out and r.exit_code == 137
    assert time.monotonic() - t0 < 5
    assert max(len(found) for found in seen) == 3, seen  # all three ran ...
    deadline = time.monotonic() + 2
    while processes_in_root(app.root, "sleep 30") and time.monotonic() < deadline:
        time.sleep(0.05)  # ... and are gone (SIGKILL to the group; reaped by init)
    assert processes_in_root(app.root, "sleep 30") == []


def test_tty_shell(app: Lab, node_session) -> None:
    import pty

    master, slave = pty.openpty()
    out: list[bytes] = []
    result: list[int] = []

    def run() -> None:
        result.append(node_session.manager.shell_tty(stdin_fd=slave, stdout_fd=slave))

    import select

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    sent = False
    while t.is_alive() and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            out.append(os.read(master, 4096))
        if not sent and b"# " in b"".join(out):  # the prompt: the shell reads its terminal
            time.sleep(0.2)
            os.write(master, b"echo tty-$((6*7)); [ -t 0 ] && echo is-a-tty\r")
            os.write(master, b"exit 5\r")
            sent = True
    t.join(5)
    text = b"".join(out).decode(errors="replace")
    assert "tty-42" in text and "is-a-tty" in text
    assert result == [5]
    os.close(master)
    os.close(slave)


def test_ps_shows_the_app_and_its_listening_port(app: Lab, node_session) -> None:
    procs = node_session.manager.ps()
    target = [p for p in procs if p.pid == app.app_pid]
    assert target and target[0].is_target
    assert target[0].argv == ["/app", "8080"]
    assert target[0].user == "0"  # no /etc/passwd in the target
    assert [(s.protocol, s.port) for s in target[0].listening] == [("tcp", 8080)]
    assert all(p.pid != node_session.info["manager_pid"] for p in procs)


def test_capture_reads_back_with_tcpdump(app: Lab, node_session, tmp_path: Path) -> None:
    pcap = tmp_path / "out.pcap"
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(node_session.manager.capture(
        pcap, "tcp port 8080", max_packets=6, duration=10)))
    t.start()
    time.sleep(1.0)  # tcpdump starting
    with in_netns(app.client_ns):
        for _ in range(3):
            assert exchange((app.app_ip, 8080), b"ping") == b"app:ping"
    t.join(15)
    res = result[0]
    assert res.packets == 6 and res.reason == "packets"
    out = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 6 and ".8080" in out.stdout


def test_capture_byte_limit_leaves_a_valid_pcap(app: Lab, node_session, tmp_path: Path) -> None:
    pcap = tmp_path / "small.pcap"
    stop = threading.Event()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(node_session.manager.capture(
        pcap, "tcp", max_bytes=600, duration=10, stop=stop)))
    t.start()
    time.sleep(1.0)
    with in_netns(app.client_ns):
        for _ in range(5):
            exchange((app.app_ip, 8080), b"y" * 100)
    t.join(15)
    assert result[0].reason == "bytes" and 24 < pcap.stat().st_size <= 600
    assert subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True).returncode == 0


def test_capture_bad_filter_is_reported(app: Lab, node_session, tmp_path: Path) -> None:
    with pytest.raises(ManagerError, match="unknown port"):
        node_session.manager.capture(tmp_path / "x.pcap", "tcp port nope-nope", duration=5)


def test_copy_roundtrip_keeps_size_and_mode(app: Lab, node_session, tmp_path: Path) -> None:
    m = node_session.manager
    src = tmp_path / "tool.sh"
    src.write_bytes(os.urandom(200_000))
    src.chmod(0o751)
    info = m.copy_to(src, "/opt/kdiag/tool.sh", make_parents=True)
    assert info.size == 200_000 and info.mode == 0o751
    inside = app.root / "opt" / "kdiag" / "tool.sh"
    assert inside.read_bytes() == src.read_bytes()
    assert inside.stat().st_mode & 0o7777 == 0o751
    back = tmp_path / "back"
    got = m.copy_from("/opt/kdiag/tool.sh", back)
    assert got.size == 200_000 and back.read_bytes() == src.read_bytes()
    assert back.stat().st_mode & 0o7777 == 0o751
    # The target's binary itself, from a root with no tar.
    m.copy_from("/app", tmp_path / "app")
    assert (tmp_path / "app").stat().st_size == (app.root / "app").stat().st_size


def test_copy_limits_and_confinement(app: Lab, node_session, tmp_path: Path) -> None:
    m = node_session.manager
    with pytest.raises(ManagerError, match="over the limit"):
        m.copy_from("/app", tmp_path / "a", max_bytes=1000)
    with pytest.raises(ManagerError, match="No such file"):
        m.copy_from("/nope", tmp_path / "b")
    # An absolute symlink inside the target resolves inside the target's root.
    (app.root / "etc").mkdir()
    (app.root / "etc" / "secret").write_text("target's own")
    os.symlink("/etc/secret", app.root / "link")
    m.copy_from("/link", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "target's own"
    os.symlink("/etc/shadow", app.root / "escape")
    with pytest.raises(ManagerError):
        m.copy_from("/escape", tmp_path / "d")  # /etc/shadow of the host is not reachable
    with pytest.raises(ManagerError, match="No such file"):
        m.copy_to(tmp_path / "c", "/no/such/dir/file")


def test_net_describes_the_target_namespace(app: Lab, node_session) -> None:
    (app.root / "etc").mkdir(exist_ok=True)
    (app.root / "etc" / "resolv.conf").write_text("nameserver 10.203.0.53\nsearch svc.local\n")
    info = node_session.manager.net()
    names = {i["name"] for i in info.interfaces}
    assert "lo" in names and any(n.startswith("kv") for n in names)
    assert any(a["address"] == app.app_ip and a["prefixlen"] == 24 for a in info.addresses)
    assert any(r["destination"].startswith("10.203.") for r in info.routes)
    assert "nameserver 10.203.0.53" in info.resolv_conf


def test_probe_http_tcp_dns_from_target_namespace(app: Lab, node_session) -> None:
    m = node_session.manager
    r = m.probe_http("http://127.0.0.1:8080/health")
    assert r.ok and r.status == 200 and r.text == "app" and r.elapsed > 0
    assert r.headers["Content-Type"] == "text/plain"
    assert m.probe_tcp(app.app_ip, 8080).ok
    bad = m.probe_tcp(app.client_ip, 8081, timeout=2)
    assert not bad.ok and "refused" in bad.error.lower()
    asked = m.probe_tcp(app.app_ip, 8080, send=b"GET /health HTTP/1.0\r\n\r\n", expect=b"app")
    assert asked.ok and asked.text.startswith("HTTP/1.") and asked.text.endswith("app")
    unmet = m.probe_tcp(app.app_ip, 8080, send=b"GET /health HTTP/1.0\r\n\r\n",
                        expect=b"+PONG", timeout=2)
    assert not unmet.ok and "does not hold b'+PONG'" in unmet.error and "app" in unmet.text
    (app.root / "etc").mkdir(exist_ok=True)
    (app.root / "etc" / "hosts").write_text(f"{app.client_ip} peer.local\n")
    assert m.probe_dns("peer.local").addresses == [app.client_ip]
    assert m.probe_http("http://peer.local:8080/").error  # nothing listens there


def test_https_probe_verifies_with_the_targets_trust_store(app: Lab, node_session,
                                                          tmp_path: Path) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=app.local", "-addext", "subjectAltName=DNS:app.local",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    with in_netns(app.app_ns):
        server = socket.create_server(("127.0.0.1", 8443))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)
                tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\ntls")

    threading.Thread(target=serve, daemon=True).start()
    (app.root / "etc").mkdir(exist_ok=True)
    (app.root / "etc" / "hosts").write_text("127.0.0.1 app.local\n")
    m = node_session.manager
    try:
        missing = m.probe_http("https://app.local:8443/", verify=True)
        assert "the target has no CA bundle" in missing.error
        assert m.probe_http("https://app.local:8443/").text == "tls"  # unchecked by default
        bundle = app.root / "etc" / "ssl" / "certs" / "ca-certificates.crt"
        bundle.parent.mkdir(parents=True)
        bundle.write_text(cert.read_text())
        trusted = m.probe_http("https://app.local:8443/", verify=True)
        assert trusted.status == 200 and trusted.text == "tls", trusted.error
        wrong_name = m.probe_http("https://127.0.0.1:8443/", verify=True)
        assert "certificate verify failed" in wrong_name.error
    finally:
        server.close()

"""Fixtures for node end-to-end tests: real network namespaces, veth, iptables, enter, busybox.

A "lab" is two network namespaces joined by a veth pair: ``app`` (the target: a tiny static C
server chrooted into a directory holding only the binary, so it has no shell and no tools) and
``client`` (where traffic comes from). Addresses are 10.203.N.1 (app) and 10.203.N.2 (client),
with N unique per test. Everything is removed after the test, also on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import os
import secrets
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTER = REPO / "scratch-shell" / "build" / "enter"
APP_SOURCE = Path(__file__).with_name("app.c")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_counter = itertools.count(secrets.randbelow(200))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: node end-to-end tests (root, netns, iptables)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.node)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "node tests need root"
    for tool in ("ip", "iptables", "nsenter", "unshare", "gcc", "tcpdump"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make system-deps)"
    if not os.path.exists("/bin/busybox"):
        return "busybox-static not installed (make system-deps)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _requirements() -> None:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    if not ENTER.exists():
        subprocess.run(["make", "-C", str(REPO / "scratch-shell")], check=True,
                       capture_output=True)


def sh(*args: str, check: bool = True) -> str:
    """Run a command; return stdout."""
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def setns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body (this thread only) inside network namespace ``name``."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(f"/run/netns/{name}")
        yield
    finally:
        _libc.setns(orig, CLONE_NEWNET)
        os.close(orig)


def pool_in(name: str, workers: int) -> ThreadPoolExecutor:
    """A thread pool whose threads live in network namespace ``name``."""
    return ThreadPoolExecutor(workers, initializer=setns, initargs=(f"/run/netns/{name}",))


@pytest.fixture(scope="session")
def app_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static C app (tests/node/app.c)."""
    out = tmp_path_factory.mktemp("app") / "app"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(APP_SOURCE)], check=True)
    return out


@dataclass
class Lab:
    """Two namespaces joined by veth; an app in ``app``; helpers to reach them."""

    app_ns: str
    client_ns: str
    app_ip: str
    client_ip: str
    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    app_pid: int = 0

    def iptables_save(self) -> str:
        """iptables-save in the app namespace."""
        return sh("ip", "netns", "exec", self.app_ns, "iptables-save")

    def tagged_rules(self) -> list[str]:
        """Lines of kdiag-tagged rules in the app namespace."""
        return [line for line in self.iptables_save().splitlines() if "kdiag:" in line]

    def start_app(self, app_binary: Path, port: int = 8080) -> int:
        """Start the no-shell app on ``port``; return its PID (the target)."""
        (self.root / "proc").mkdir(exist_ok=True)
        shutil.copy(app_binary, self.root / "app")
        # nsenter, unshare, sh and chroot all exec: the Popen PID ends up being /app itself,
        # in a private mount namespace whose root holds only /app and /proc.
        proc = subprocess.Popen([
            "nsenter", f"--net=/run/netns/{self.app_ns}", "unshare", "-m",
            "--propagation", "private", "sh", "-c",
            f"mount -t proc proc {self.root}/proc && exec chroot {self.root} /app {port}"])
        self.procs.append(proc)
        wait_listening(self.app_ns, port)
        self.app_pid = proc.pid
        return proc.pid

    def run_in(self, ns: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        """Start a background process in namespace ``ns`` (killed at teardown)."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd])
        self.procs.append(proc)
        return proc


def wait_listening(ns: str, port: int, timeout: float = 5.0) -> None:
    """Wait until something listens on TCP ``port`` in namespace ``ns``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sh("ip", "netns", "exec", ns, "ss", "-Htln", f"sport = :{port}", check=False)
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} in {ns}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh pair of namespaces with a veth link (no app yet)."""
    n = next(_counter) % 250 + 1
    tag = secrets.token_hex(3)
    app_ns, client_ns = f"kdt-a-{tag}", f"kdt-c-{tag}"
    va, vc = f"kva{tag}", f"kvc{tag}"
    lab = Lab(app_ns, client_ns, f"10.203.{n}.1", f"10.203.{n}.2", tmp_path / "root")
    lab.root.mkdir()
    try:
        sh("ip", "netns", "add", app_ns)
        sh("ip", "netns", "add", client_ns)
        sh("ip", "link", "add", va, "type", "veth", "peer", "name", vc)
        sh("ip", "link", "set", va, "netns", app_ns)
        sh("ip", "link", "set", vc, "netns", client_ns)
        for ns, dev, ip in ((app_ns, va, lab.app_ip), (client_ns, vc, lab.client_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield lab
    finally:
        for proc in lab.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in (app_ns, client_ns):
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)  # processes our test started in its own namespace
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def app(lab: Lab, app_binary: Path) -> Lab:
    """The lab with the no-shell app listening on 8080 in ``app``."""
    lab.start_app(app_binary, 8080)
    return lab


@pytest.fixture
def node_session(app: Lab) -> Iterator[object]:
    """A NodeSession on the app (the manager joined its network namespace)."""
    from kdiag.targets.node import NodeTarget

    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER)}).open()
    try:
        yield session
    finally:
        session.close()


# -- operator-side servers (host namespace, loopback) -----------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512


@contextlib.contextmanager
def tcp_server(handler: Callable[[socket.socket], None], host: str = "127.0.0.1",
               netns: str | None = None) -> Iterator[tuple[str, int]]:
    """A threaded TCP server running ``handler(conn)`` per connection; yields (host, port)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handler(self.request)

    ctx = in_netns(netns) if netns else contextlib.nullcontext()
    with ctx:
        server = _Server((host, 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()


def recv_all(sock: socket.socket) -> bytes:
    """Read until EOF."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def echo_after_eof(conn: socket.socket) -> None:
    """Read everything until the peer half-closes, then send it all back and close."""
    data = recv_all(conn)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def reply_with(prefix: bytes) -> Callable[[socket.socket], None]:
    """A handler answering ``prefix`` + what it read until EOF."""

    def handler(conn: socket.socket) -> None:
        data = recv_all(conn)
        conn.sendall(prefix + data)
        conn.shutdown(socket.SHUT_WR)

    return handler


def http_reply(body: bytes) -> Callable[[socket.socket], None]:
    """A handler answering one HTTP request with ``body``."""

    def handler(conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))
        conn.shutdown(socket.SHUT_WR)

    return handler


def exchange(addr: tuple[str, int], payload: bytes, timeout: float = 30.0) -> bytes:
    """Connect, send ``payload``, half-close, return everything received until EOF."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def checksum_roundtrip(addr: tuple[str, int], size: int) -> tuple[str, str]:
    """Send ``size`` random bytes, half-close, read the echo; return (sent, received) sha256."""
    payload = os.urandom(size)
    got = exchange(addr, payload)
    return hashlib.sha256(payload).hexdigest(), hashlib.sha256(got).hexdigest()


def http_get(addr: tuple[str, int], headers: dict[str, str] | None = None) -> bytes:
    """One HTTP/1.1 GET; the response body."""
    lines = ["GET / HTTP/1.1", f"Host: {addr[0]}"] + [f"{k}: {v}" for k, v in
                                                        (headers or {}).items()]
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = recv_all(s)
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else data


PYTHON = sys.executable

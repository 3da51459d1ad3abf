"""Fixtures for node end-to-end tests: real network namespaces, veth, iptables, enter, busybox.

A "lab" is two network namespaces joined by a veth pair: ``app`` (the target: a tiny static C
server chrooted into a directory holding only the binary, so it has no shell and no tools) and
``client`` (where traffic comes from). Addresses are 10.203.N.1 (app) and 10.203.N.2 (client),
with N unique per test. Everything is removed after the test, also on failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import itertools
import os
import secrets
import shutil
import socket
import socketserver
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from demo.lab import Lab, build_app
from demo.lab import lab as make_lab

REPO = Path(__file__).resolve().parents[2]
ENTER = REPO / "scratch-shell" / "build" / "enter"
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
    for tool in ("ip", "iptables", "nft", "conntrack", "nsenter", "unshare", "gcc", "tcpdump"):
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
    """The static app of the demo (demo/app.c): a target with no shell or tools at all."""
    return build_app(tmp_path_factory.mktemp("app") / "app")


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh pair of namespaces joined by veth (no app yet); removed after the test."""
    with make_lab(secrets.token_hex(3), next(_counter) % 250 + 1) as the_lab:
        yield the_lab


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


@pytest.fixture
def iptables_session(app: Lab) -> Iterator[object]:
    """A NodeSession whose manager uses the iptables fallback for redirect rules (what it
    does where the kernel has no owned nftables tables)."""
    from kdiag.targets.node import NodeTarget

    session = NodeTarget(app.app_pid, env={"KDIAG_ENTER": str(ENTER),
                                           "KDIAG_REDIRECT_RULES": "iptables"}).open()
    try:
        yield session
    finally:
        session.close()


def processes_in_root(root: Path, word: str) -> list[str]:
    """``PID: command line`` of each process whose root folder is ``root`` (a lab's target and
    what runs inside it) and whose command line holds ``word``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "root") == str(root):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if word in cmdline:
                    found.append(f"{proc.name}: {cmdline.strip()}")
        except OSError:
            continue  # gone meanwhile
    return found


def make_dev_null(root: Path) -> None:
    """Give a lab's root a ``/dev/null`` (busybox ash starts background jobs on it)."""
    (root / "dev").mkdir(exist_ok=True)
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def ipv6_rule_lines(rules: list[str]) -> list[str]:
    """The IPv6 ones among a redirect's reported rules (nft commands or iptables-save lines)."""
    return [r for r in rules if r.startswith("add rule ip6 ") or r.endswith("(ip6tables)")]


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
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError as exc:
            # A reset that arrived after sendall: shutdown() of a closed connection fails with
            # ENOTCONN, while the reset itself is still pending and the read below raises it.
            if exc.errno != errno.ENOTCONN:
                raise
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

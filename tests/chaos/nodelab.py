"""What the node faults share: a lab with the app, an operator-side server, real kdiag CLIs.

The app (``demo/app.c``) answers ``app:`` + what it read; the operator-side server answers
``op:`` + what it read, so every answer says where the connection went. Each CLI runs with a
private ``TMPDIR``, so the session folders it leaves (``kdiag-node-*``) are ours to count.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from demo.lab import Lab, build_app, kdiag_rules, lab

from . import netprobe
from .scenarios import Bench

ROOT = Path(__file__).resolve().parents[2]
APP_PORT = 8080
RUNBOOK = """\
name: chaos-background-redirect
params:
  pid: {type: integer}
  to: {type: string}
target:
  node: {pid: "{{ params.pid }}"}
steps:
  - name: redirect
    redirect: {ports: [8080], to: "{{ params.to }}"}
    background: true
  - wait: 120s
"""


class OperatorServer:
    """The operator side of the redirect: answers ``op:`` + what it read until EOF; can go
    down (its port refuses) and come back on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: socketserver.ThreadingTCPServer | None = None
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                chunks = []
                with contextlib.suppress(OSError):
                    while data := self.request.recv(65536):
                        chunks.append(data)
                    self.request.sendall(b"op:" + b"".join(chunks))
                    self.request.shutdown(socket.SHUT_WR)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 512

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening: new connections to the port are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass
class NodeEnv:
    """A lab with the app, an operator-side server and a probe thread in the client's
    namespace."""

    lab: Lab
    operator: OperatorServer
    tmpdir: Path
    probe: ThreadPoolExecutor
    runbook: Path
    random: random.Random = field(default_factory=random.Random)
    stale_folders: set[str] = field(default_factory=set)  # left by the last round (kill both)

    @property
    def app(self) -> tuple[str, int]:
        """The app's address, as the client namespace reaches it."""
        return (self.lab.app_ip, APP_PORT)

    def wait_for(self, reply: bytes, since: float, deadline: float) -> float | None:
        """Seconds from ``since`` until a fresh connection from the client namespace gets
        ``reply`` (None: not by ``deadline``)."""
        return self.probe.submit(netprobe.wait_for, self.app, reply, since, deadline).result()

    def rules_left(self, deadline: float) -> int:
        """kdiag rules in the app's namespace at ``deadline`` (earlier once there are none:
        nothing that could add rules is left alive when this is called)."""
        while True:
            count = len(kdiag_rules(self.lab.app_ns))
            if count == 0 or time.monotonic() >= deadline:
                return count
            time.sleep(0.05)

    def bench(self) -> Bench:
        """This lab as the shared faults see it (clients in the client namespace)."""
        return Bench(self.random, self.operator, self.app, netprobe.RAW,
                     lambda workers: netprobe.pool_in(self.lab.client_ns, workers),
                     lambda since, deadline: self.wait_for(b"app:x", since, deadline),
                     lambda since, deadline: self.wait_for(b"op:x", since, deadline),
                     self.rules_left)

    def folders(self) -> set[str]:
        """Node session folders of our CLIs now."""
        return {p.name for p in self.tmpdir.glob("kdiag-node-*")}


@contextlib.contextmanager
def node_env(tag: str) -> Iterator[NodeEnv]:
    """A fresh lab (namespaces, the app on 8080), an operator server, a private TMPDIR."""
    binary = build_app(ROOT / "build" / "demo-app")
    subprocess.run(["make", "-s", "-C", str(ROOT / "scratch-shell")], check=True,
                   capture_output=True)
    with lab(f"x{tag}{secrets.token_hex(2)}", 200 + secrets.randbelow(40)) as the_lab, \
            tempfile.TemporaryDirectory(prefix="kdiag-chaos-") as tmp:
        the_lab.start_app(binary, APP_PORT)
        operator = OperatorServer()
        runbook = Path(tmp) / "background-redirect.yaml"
        runbook.write_text(RUNBOOK)
        probe = netprobe.pool_in(the_lab.client_ns, 2)
        try:
            yield NodeEnv(the_lab, operator, Path(tmp), probe, runbook)
        finally:
            probe.shutdown(wait=False, cancel_futures=True)
            operator.stop()


@dataclass
class Cli:
    """A real kdiag CLI process with a redirect of the app's port to the operator."""

    proc: subprocess.Popen[bytes]
    kind: str
    log: Path

    def tail(self) -> str:
        """The last line it printed (for problems)."""
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"

    def manager_pid(self) -> int | None:
        """Its manager: the child process running kdiag_manager."""
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                    if b"kdiag_manager" in cmdline and b"--cleanup-only" not in cmdline:
                        return int(child)
        return None

    def end(self) -> None:
        """Kill it (if still running) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_cli(env: NodeEnv, kind: str, mechanism: str = "auto") -> Cli:
    """``kdiag redirect --pid`` (kind "redirect") or ``kdiag run`` of a runbook with a
    background redirect and a long wait (kind "run")."""
    to = f"127.0.0.1:{env.operator.port}"
    if kind == "redirect":
        args = ["redirect", "--pid", str(env.lab.app_pid), "--to", "127.0.0.1",
                f"{APP_PORT}:{env.operator.port}"]
    else:
        args = ["run", str(env.runbook), "--set", f"pid={env.lab.app_pid}", "--set",
                f"to={to}", "--artifacts", str(env.tmpdir / "artifacts"), "-q"]
    log = env.tmpdir / f"cli-{kind}-{secrets.token_hex(3)}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kdiag", *args], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "TMPDIR": str(env.tmpdir),
                                     "KDIAG_REDIRECT_RULES": mechanism})
    return Cli(proc, kind, log)


def wait_ready(env: NodeEnv, cli: Cli, timeout: float = 30.0) -> bool:
    """Wait until connections to the app reach the operator (the redirect is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cli.proc.poll() is None:
        step = min(deadline, time.monotonic() + 0.5)
        if env.wait_for(b"op:x", time.monotonic(), step) is not None:
            return True
    return False


def alive(pid: int) -> bool:
    """Is ``pid`` running (a zombie is not)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has exited (by ``deadline``)."""
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill(pid: int) -> None:
    """SIGKILL ``pid`` (gone already: nothing)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def traffic(env: NodeEnv) -> Iterator[None]:
    """Connections from the client namespace, one after another, for the body's duration."""
    stop = threading.Event()

    def loop() -> None:
        netprobe.enter_netns(env.lab.client_ns)
        while not stop.is_set():
            netprobe.answer(env.app, b"t", timeout=0.5)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)

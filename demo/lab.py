"""A small lab of network namespaces on this host: an app with nothing but itself on disk,
in its own network namespace, and a client namespace joined to it by a veth pair.

Used by ``make demo`` and by the node end-to-end tests, so both exercise the same kind of
target a pod would be: no shell, no tools, its own network stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

APP_SOURCE = Path(__file__).with_name("app.c")


def sh(*args: str, check: bool = True) -> str:
    """Run a command and return its standard output."""
    return subprocess.run(args, check=check, capture_output=True, text=True).stdout


def build_app(out: Path) -> Path:
    """Compile the static app (cached by the source's modification time)."""
    if not out.exists() or out.stat().st_mtime < APP_SOURCE.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(APP_SOURCE)], check=True)
    return out


def wait_listening(namespace: str, port: int, timeout: float = 5.0) -> None:
    """Wait until something listens on TCP ``port`` in ``namespace``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sh("ip", "netns", "exec", namespace, "ss", "-Htln", f"sport = :{port}", check=False):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} in {namespace}")


@dataclass
class Lab:
    """Two network namespaces joined by veth; processes started in them end with the lab."""

    app_ns: str
    client_ns: str
    app_ip: str
    client_ip: str
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    app_pid: int = 0
    app_ip6: str = ""
    client_ip6: str = ""

    def start_app(self, binary: Path, port: int = 8080, env: dict[str, str] | None = None) -> int:
        """Start the app chrooted into a folder holding only itself (and /proc), and what was
        put in ``root`` before; with exactly ``env`` as its environment if given; its PID."""
        (self.root / "proc").mkdir(exist_ok=True)
        shutil.copy(binary, self.root / "app")
        # nsenter, unshare, sh and chroot all exec, so the PID is the app's own, and it lives
        # in a private mount namespace whose root holds nothing but /app.
        process = subprocess.Popen([
            "nsenter", f"--net=/run/netns/{self.app_ns}", "unshare", "-m", "--propagation",
            "private", "sh", "-c",
            f"mount -t proc proc {self.root}/proc && exec chroot {self.root} /app {port}"],
            env=None if env is None else {"PATH": os.environ.get("PATH", os.defpath), **env})
        self.processes.append(process)
        wait_listening(self.app_ns, port)
        self.app_pid = process.pid
        return process.pid

    def run_in(self, namespace: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a process in ``namespace`` that ends with the lab."""
        process = subprocess.Popen(["ip", "netns", "exec", namespace, *argv])
        self.processes.append(process)
        return process

    def tagged_rules(self) -> list[str]:
        """Every kdiag rule in the app namespace (see :func:`kdiag_rules`)."""
        return kdiag_rules(self.app_ns)


def kdiag_rules(namespace: str = "", *, pid: int = 0) -> list[str]:
    """Every kdiag rule in network namespace ``namespace`` (or that of process ``pid``, e.g. a
    pod's app seen from its node), whatever the mechanism: the rules of nftables tables named
    ``kdiag-*`` (``nft: <table> <rule>``) and the iptables/ip6tables rules tagged ``kdiag:``
    (as iptables-save prints them; ip6tables ones end in ``(ip6)``)."""
    enter = ["nsenter", "-t", str(pid), "-n"] if pid else ["ip", "netns", "exec", namespace]
    rules: list[str] = []
    table, block = "", ""  # the kdiag table we are in; the block in it (chain or object)
    listing = sh(*enter, "nft", "list", "ruleset")  # fails loudly
    for line in listing.splitlines():
        words = line.split()
        if words[:1] == ["table"] and len(words) >= 3:
            table = f"{words[1]} {words[2]}" if words[2].startswith("kdiag-") else ""
        elif words[-1:] == ["{"]:
            block = words[0]  # "chain", or an object ("ct", "counter"...)
        elif words == ["}"]:
            block = ""
        elif table and block == "chain" and words[0] not in ("type", "policy"):
            rules.append(f"nft: {table} {line.strip()}")  # a rule, with or without comment
    for tool, suffix in (("iptables-save", ""), ("ip6tables-save", " (ip6)")):
        save = sh(*enter, tool, check=False)
        rules += [line + suffix for line in save.splitlines() if "kdiag:" in line]
    return rules


def remove_namespace(name: str) -> None:
    """Kill what runs in a namespace of ours and delete it (no error if it is not there)."""
    for pid in sh("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def lab(tag: str, subnet: int) -> Iterator[Lab]:
    """Namespaces ``kd-<tag>-a`` (app, 10.203.SUBNET.1 and fd00:203:SUBNET::1) and ``kd-<tag>-c``
    (client, .2 and ::2).

    Everything is removed on exit, also after a failure; leftovers of an earlier lab with the
    same tag are removed first.
    """
    app_ns, client_ns = f"kd-{tag}-a", f"kd-{tag}-c"
    for name in (app_ns, client_ns):
        remove_namespace(name)
    with tempfile.TemporaryDirectory(prefix=f"kdiag-{tag}-") as folder:
        the_lab = Lab(app_ns, client_ns, f"10.203.{subnet}.1", f"10.203.{subnet}.2",
                      Path(folder) / "root", app_ip6=f"fd00:203:{subnet}::1",
                      client_ip6=f"fd00:203:{subnet}::2")
        the_lab.root.mkdir()
        veth_app, veth_client = f"kv{tag}a"[:15], f"kv{tag}c"[:15]
        try:
            sh("ip", "netns", "add", app_ns)
            sh("ip", "netns", "add", client_ns)
            sh("ip", "link", "add", veth_app, "type", "veth", "peer", "name", veth_client)
            sh("ip", "link", "set", veth_app, "netns", app_ns)
            sh("ip", "link", "set", veth_client, "netns", client_ns)
            for ns, dev, ip, ip6 in ((app_ns, veth_app, the_lab.app_ip, the_lab.app_ip6),
                                     (client_ns, veth_client, the_lab.client_ip,
                                      the_lab.client_ip6)):
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
                sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            yield the_lab
        finally:
            for process in the_lab.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for name in (app_ns, client_ns):
                remove_namespace(name)

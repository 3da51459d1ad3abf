"""kdiag against what users run without it (called by bench_cluster's ``run``):

- ``cluster.forward_vs_kubectl_ratio``: ``kdiag forward`` ÷ ``kubectl port-forward``;
- ``cluster.redirect_vs_kubectl_ratio``: ``kdiag redirect --outgoing`` ÷ ``kubectl port-forward``.

Both sides are the real commands, as processes, against the same pod: the bench pod's port
``SOURCE_PORT`` sends ``TRANSFER_BYTES`` of zeros to each connection (busybox ``nc -ll -e dd``).
Through ``kdiag forward`` and ``kubectl port-forward`` this machine connects to the command's
local port and reads to EOF; through ``kdiag redirect --outgoing`` the same ``dd`` in the pod
connects out to a port the redirect catches, and a sink on this machine reads to EOF. Every side
carries the same bytes from the pod to this machine over one stream through the API server, and
is timed the same way (first byte to EOF, on this machine). kubectl is the cluster's own, built
from the same Kubernetes module tree as its API server (``cluster/build.sh``). The three take
turns, one unmeasured round first, then ``ROUNDS`` rounds (the order rotating each round):
medians are compared, and the spread of each side is printed with the ratio.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = Callable[..., None]
ROUNDS = 3
FIGURES = ("cluster.kubectl_portforward_MBps", "cluster.forward_MBps",
           "cluster.redirect_cli_MBps", "cluster.forward_vs_kubectl_ratio",
           "cluster.redirect_vs_kubectl_ratio")


class _Command:
    """A long-running command (kdiag forward/redirect, kubectl port-forward) that prints a line
    holding ``ready`` once it serves."""

    def __init__(self, argv: list[str], ready: str, env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines: list[str] = []
        seen = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if ready in line:
                    seen.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not seen.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{' '.join(argv[:3])} did not start: {self.lines[-5:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def _read_all(sock: socket.socket) -> tuple[int, float]:
    total, first = 0, 0.0
    buf = bytearray(1 << 20)
    while n := sock.recv_into(buf):
        if not total:
            first = time.perf_counter()
        total += n
    return total, time.perf_counter() - first


def _pull(port: int) -> tuple[int, float]:
    """Connect to a local forwarding port and read to EOF: (bytes, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        return _read_all(sock)


class _Sink:
    """A listener on this machine that reads one connection at a time to EOF."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sock.settimeout(60)

    def take(self, start: Callable[[], Any]) -> tuple[int, float]:
        """Run ``start`` (which makes the pod connect here) beside the read: (bytes, seconds)."""
        result: list[tuple[int, float]] = []

        def accept() -> None:
            conn, _ = self.sock.accept()
            with conn:
                result.append(_read_all(conn))

        reader = threading.Thread(target=accept)
        reader.start()
        start()
        reader.join(90)
        if not result:
            raise RuntimeError("the pod did not connect through the redirect")
        return result[0]

    def close(self) -> None:
        self.sock.close()


def run(record: Record, namespace: str, pod: str, kubeconfig: Path, kubectl: Path,
        source_port: int, redirect_port: int, transfer_bytes: int,
        open_session: Callable[[str, str], Any]) -> None:
    """Measure and record :data:`FIGURES`."""
    if not kubectl.exists():
        raise RuntimeError(f"{kubectl} missing: cluster/build.sh builds it with the cluster")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NO_COLOR": "1"}
    kdiag = [sys.executable, "-m", "kdiag"]
    target = ["-n", namespace, "--pod", pod]
    kubectl_port, forward_port = _free_port(), _free_port()
    sink = _Sink()
    commands = []
    try:
        commands.append(_Command([str(kubectl), "port-forward", "-n", namespace, f"pod/{pod}",
                                  f"{kubectl_port}:{source_port}"], "Forwarding from", env))
        commands.append(_Command([*kdiag, "forward", *target, f"{source_port}:{forward_port}"],
                                 "Forwarding from", env))
        commands.append(_Command([*kdiag, "redirect", *target, "--outgoing",
                                  f"{redirect_port}:{sink.port}"], "redirecting", env))
        with open_session(namespace, pod) as session:
            sender = (f"nc 127.0.0.1 {redirect_port} -e dd if=/dev/zero bs=65536 "
                      f"count={transfer_bytes >> 16} 2>/dev/null")
            sides: dict[str, Callable[[], tuple[int, float]]] = {
                "kubectl": lambda: _pull(kubectl_port),
                "forward": lambda: _pull(forward_port),
                "redirect": lambda: sink.take(
                    lambda: session.manager.exec(script=sender, timeout=90)),
            }
            samples = _rounds(sides, transfer_bytes)
    finally:
        for command in commands:
            command.close()
        sink.close()
    _record(record, samples, transfer_bytes, source_port, redirect_port)


def _rounds(sides: dict[str, Callable[[], tuple[int, float]]], transfer_bytes: int
            ) -> dict[str, list[float]]:
    """MB/s of each side per round; round 0 (a warm-up) is not kept."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(ROUNDS + 1):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            got, seconds = sides[name]()
            if got != transfer_bytes:
                raise RuntimeError(f"{name}: {got} of {transfer_bytes} bytes arrived")
            if i:
                samples[name].append(transfer_bytes / seconds / 1e6)
    return samples


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} MB/s, range {min(values):.0f} to {max(values):.0f}"


def _record(record: Record, samples: dict[str, list[float]], transfer_bytes: int,
            source_port: int, redirect_port: int) -> None:
    med = {name: statistics.median(values) for name, values in samples.items()}
    mib = transfer_bytes >> 20
    same = (f"the pod's port {source_port} sends {mib} MiB (busybox nc -e dd), read to EOF on "
            f"this machine; {ROUNDS} rounds taking turns after a warm-up")
    kubectl_side = f"`kubectl port-forward pod/P LOCAL:{source_port}` ({_spread(samples['kubectl'])})"
    record("cluster.kubectl_portforward_MBps", med["kubectl"], "MB/s",
           sides=f"{kubectl_side}: {same}")
    record("cluster.forward_MBps", med["forward"], "MB/s",
           sides=f"`kdiag forward --pod P {source_port}:LOCAL` ({_spread(samples['forward'])})")
    record("cluster.redirect_cli_MBps", med["redirect"], "MB/s",
           sides=f"`kdiag redirect --pod P --outgoing {redirect_port}:SINK` "
                 f"({_spread(samples['redirect'])})")
    record("cluster.forward_vs_kubectl_ratio", med["forward"] / med["kubectl"], "x", ">= 1.0",
           baseline=med["kubectl"],
           sides=f"`kdiag forward` ({_spread(samples['forward'])}) ÷ {kubectl_side}: {same}")
    record("cluster.redirect_vs_kubectl_ratio", med["redirect"] / med["kubectl"], "x",
           ">= 1.0", baseline=med["kubectl"],
           sides=f"`kdiag redirect --outgoing` (the same dd connects out to port "
                 f"{redirect_port} in the pod, caught and carried to a sink here; "
                 f"{_spread(samples['redirect'])}) ÷ {kubectl_side}: {same}")

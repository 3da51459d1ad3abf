"""Kubernetes target benchmarks on the local cluster (`make cluster-up`), side by side in one run.

- redirect throughput: a process in the pod sends through an outgoing redirect (manager →
  tunnel on the lane → the session's one port-forward → this process → a sink), against a plain
  port-forward transfer from the same pod (a fresh port-forward through the API server, read by
  kdiag's own pump into a local socket — as `kdiag forward` does). For context: the same
  frames read straight off the WebSocket (delivered nowhere: the ceiling), and the `kubernetes`
  client's stock PortForward pump (slow: a socket pair and one select loop).
- per-connection setup: a new connection from inside the pod through the established session to
  a local echo server, and a 1-byte round trip on it (the manager's TCP probe with send/expect:
  connect, send, read the echo), against opening a new port-forward per connection (the way
  redirects worked before gRPC tunnels) for the same round trip. Both sides talk to the same
  echo program (single-threaded, in its own process: in the pod for the port-forward, on this
  machine for the session); both are warmed up and compared by medians. For context: the probe
  to the pod's own echo server (no tunnel); the round trip over an established port-forward
  (the Kubernetes path's own share of the session figure); and the same comparison with an
  HTTP request to busybox httpd on both sides.
- time from `kdiag run` to the end of its first manager step, with the manager already injected.
- keep-alive requests through a header-filtered redirect: keepalive_cluster.py (measured first,
  once the namespaces of earlier runs are gone).
- the manager image's size and its start (injection request → manager ready): manager_image.py.
- a shell step over every replica of a 10-replica Deployment against one replica, and the
  time to redirect every replica (a workload intercept): fanout.py.

- kdiag forward and redirect against `kubectl port-forward`, as commands: kubectl_baseline.py.

Not measurable (``Unmeasurable``) when the cluster is not up. Bounded: about two minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench import keepalive_cluster

Record = Callable[..., None]

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("KDIAG_CLUSTER_STATE", ROOT / ".cluster"))
KUBECONFIG = STATE / "kubeconfig"
TRANSFER_BYTES = 256 << 20
STOCK_BYTES = 4 << 20
ROUNDS = 2
SETUP_SAMPLES = 100
SETUP_WARMUP = 5
START_RUNS = 3
SOURCE_PORT, REDIRECT_PORT = 9000, 9100
BENCH_NS_PREFIX = "kdiag-bench-"
MANAGER_IMAGE = os.environ.get("KDIAG_E2E_MANAGER_IMAGE", "kdiag.local/manager:dev")
FIGURES = (
    "cluster.portforward_plain_MBps", "cluster.portforward_raw_websocket_MBps",
    "cluster.portforward_stock_client_MBps", "cluster.redirect_MBps",
    "cluster.redirect_throughput_ratio", "cluster.connection_setup_session_ms",
    "cluster.connection_setup_in_pod_ms", "cluster.portforward_echo_roundtrip_ms",
    "cluster.connection_setup_new_portforward_ms", "cluster.connection_setup_ratio",
    "cluster.http_exchange_session_ms", "cluster.http_exchange_new_portforward_ms",
    "cluster.run_to_first_step_s", "cluster.manager_image_mb", "cluster.manager_ready_s",
    "cluster.kubectl_portforward_MBps", "cluster.forward_MBps", "cluster.redirect_cli_MBps",
    "cluster.forward_vs_kubectl_ratio", "cluster.redirect_vs_kubectl_ratio",
    *keepalive_cluster.FIGURES,
)


def _cluster_up() -> str:
    """'' when the cluster answers, else why not."""
    if not KUBECONFIG.exists() or not (STATE / "run" / "cluster.json").exists():
        return f"the local cluster is not up ({STATE}/run missing): run `make cluster-up`"
    try:
        from kdiag.kube.config import KubeOptions, load

        load(KubeOptions(kubeconfig=str(KUBECONFIG))).core().list_namespace(
            limit=1, _request_timeout=5)
    except Exception as exc:
        return f"the local cluster does not answer: {exc}"
    return ""


class _Sink:
    """A local listener that reads each connection to EOF and keeps (bytes, seconds)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.results: list[tuple[int, float]] = []
        self.done = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        total, first = 0, 0.0
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                if not total:
                    first = time.perf_counter()
                total += n
        self.results.append((total, time.perf_counter() - first))
        self.done.set()


def _read_all(sock: Any) -> tuple[int, float]:
    total, first = 0, 0.0
    buf = bytearray(1 << 20)
    while n := sock.recv_into(buf):
        if not total:
            first = time.perf_counter()
        total += n
    return total, time.perf_counter() - first


def _plain_transfer(kube: Any, namespace: str, pod: str) -> tuple[int, float]:
    """One fresh port-forward to the source port, read to EOF with kdiag's pump."""
    from kdiag.kube.portforward import PodStream, open_websocket

    a, b = socket.socketpair()
    stream = PodStream(open_websocket(kube.stream_core(), namespace, pod, SOURCE_PORT), SOURCE_PORT)
    threading.Thread(target=stream.run, args=(b,), daemon=True).start()
    with a:
        return _read_all(a)


def _raw_transfer(kube: Any, namespace: str, pod: str) -> tuple[int, float]:
    """Frames read straight off the WebSocket, delivered nowhere: the ceiling (for context)."""
    from kdiag.kube.portforward import open_websocket

    ws = open_websocket(kube.stream_core(), namespace, pod, SOURCE_PORT)
    total, first, seen = 0, 0.0, [False, False]
    try:
        while True:
            opcode, frame = ws.recv_data_frame(True)
            if opcode == 0x8 or not frame.data or frame.data[0] > 1:
                break
            if not seen[frame.data[0]]:
                seen[frame.data[0]] = True
                continue
            if frame.data[0] == 1:
                break
            if not total:
                first = time.perf_counter()
            total += len(frame.data) - 1
    except Exception:
        pass  # the end of the transfer closes the WebSocket
    finally:
        ws.close()
    return total, time.perf_counter() - first


def _stock_transfer(kube: Any, namespace: str, pod: str) -> tuple[int, float]:
    """The same through the `kubernetes` client's own PortForward pump (for context)."""
    from kubernetes.stream import portforward

    pf = portforward(kube.stream_core().connect_get_namespaced_pod_portforward, pod, namespace,
                     ports=str(SOURCE_PORT + 1))
    sock = pf.socket(SOURCE_PORT + 1)
    try:
        return _read_all(sock)
    finally:
        sock.close()
        pf.close()


def _mbps(results: list[tuple[int, float]]) -> float:
    return max(n / s for n, s in results if s > 0) / 1e6


def _await_earlier_runs_gone(core: Any, limit: float = 120.0) -> None:
    """Wait (up to ``limit`` seconds) until the namespaces of earlier runs are gone: the
    deletion of one with ten replicas (fanout.py) keeps the kubelet and containerd busy for
    tens of seconds, inside the next run's measurements when runs follow each other."""
    started = time.monotonic()
    left: list[str] = []
    while time.monotonic() - started < limit:
        left = [ns.metadata.name for ns in core.list_namespace().items
                if ns.metadata.name.startswith(BENCH_NS_PREFIX)]
        if not left:
            break
        time.sleep(1)
    waited = time.monotonic() - started
    if waited >= 1:
        print(f"  waited {waited:.0f} s for earlier runs' namespaces to go"
              + (f" (still there: {', '.join(left)})" if left else ""))


def _setup(cluster_ns: str) -> tuple[Any, str]:
    from kdiag.kube.config import KubeOptions, load

    kube = load(KubeOptions(kubeconfig=str(KUBECONFIG), namespace=cluster_ns))
    core = kube.core()
    _await_earlier_runs_gone(core)
    core.create_namespace({"metadata": {"name": cluster_ns}})
    count = TRANSFER_BYTES >> 16
    script = (f"mkdir -p /www && echo ok > /www/index.html && httpd -p {HTTPD_PORT} -h /www && "
              f"nc -ll -p {SOURCE_PORT + 1} -e dd if=/dev/zero bs=65536 count={STOCK_BYTES >> 16} "
              f"2>/dev/null & exec nc -ll -p {SOURCE_PORT} -e dd if=/dev/zero bs=65536 "
              f"count={count}")
    pod = "bench"
    deadline = time.monotonic() + 60
    while True:  # the namespace's default service account comes a moment later
        try:
            core.create_namespaced_pod(cluster_ns, {
                "metadata": {"name": pod},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "bb", "image": "kdiag.local/busybox:dev", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script]}, {
                    # The echo server of the setup figure, same program as on this side.
                    "name": "echo", "image": MANAGER_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", ECHO_SERVER,
                                str(ECHO_PORT)]}, keepalive_cluster.container(MANAGER_IMAGE)]}})
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    while core.read_namespaced_pod(pod, cluster_ns).status.phase != "Running":
        if time.monotonic() > deadline:
            raise TimeoutError("the bench pod did not start")
        time.sleep(0.3)
    return kube, pod


def run(record: Record) -> None:
    """Measure and record the cluster figures (skipped without a cluster)."""
    why = _cluster_up()
    if why:
        from tests.bench.figures import Unmeasurable

        raise Unmeasurable(why)
    namespace = f"{BENCH_NS_PREFIX}{uuid.uuid4().hex[:6]}"
    cache = tempfile.mkdtemp(prefix="kdiag-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache
    os.environ.setdefault("KDIAG_MANAGER_PULL_POLICY", "Never")
    os.environ["KDIAG_MANAGER_IMAGE"] = MANAGER_IMAGE
    kube, pod = _setup(namespace)
    try:
        # First: its requests take a fraction of a millisecond each, so any other work on the
        # machine shows in it (the last run's namespace going, this run's own 256 MiB transfers).
        with _open_session(namespace, pod) as session:
            keepalive_cluster.run(record, session,
                                  kube.core().read_namespaced_pod(pod, namespace).status.pod_ip)
        _throughput(record, kube, namespace, pod)
        _connection_setup(record, kube, namespace, pod)
        _time_to_first_step(record, namespace, pod, cache)
        from tests.bench import manager_image

        node = kube.core().read_namespaced_pod(pod, namespace).spec.node_name
        manager_image.run(record, kube, namespace, pod, "bb", MANAGER_IMAGE, node)
        _against_kubectl(record, namespace, pod)
        from tests.bench import fanout

        fanout.run(record, kube, namespace, str(KUBECONFIG), cache)
    finally:
        kube.core().delete_namespace(namespace, grace_period_seconds=0)


def _against_kubectl(record: Record, namespace: str, pod: str) -> None:
    """kdiag forward and redirect against `kubectl port-forward` (kubectl_baseline.py)."""
    from tests.bench import kubectl_baseline

    kubectl_baseline.run(record, namespace, pod, KUBECONFIG, STATE / "bin" / "kubectl",
                         SOURCE_PORT, REDIRECT_PORT + 10, TRANSFER_BYTES, _open_session)


def _open_session(namespace: str, pod: str) -> Any:
    from kdiag.targets.kubernetes import KubernetesSpec, KubernetesTarget

    return KubernetesTarget(KubernetesSpec(namespace=namespace, pod=pod,
                                           kubeconfig=str(KUBECONFIG))).open()


def _throughput(record: Record, kube: Any, namespace: str, pod: str) -> None:
    from kdiag.session.results import RedirectSpec

    plain = [_plain_transfer(kube, namespace, pod) for _ in range(ROUNDS)]
    raw = [_raw_transfer(kube, namespace, pod)]
    stock = [_stock_transfer(kube, namespace, pod)]
    sink = _Sink()
    with _open_session(namespace, pod) as session:
        handle = session.manager.redirect(RedirectSpec("outgoing", [REDIRECT_PORT]),
                                          ("127.0.0.1", sink.port))
        try:
            for _ in range(ROUNDS):
                sink.done.clear()
                session.manager.exec(script=f"nc 127.0.0.1 {REDIRECT_PORT} -e dd if=/dev/zero "
                                            f"bs=65536 count={TRANSFER_BYTES >> 16} 2>/dev/null",
                                     timeout=60)
                sink.done.wait(30)
        finally:
            handle.close()
    redirected = [r for r in sink.results if r[0] == TRANSFER_BYTES]
    if len(redirected) < ROUNDS or any(n != TRANSFER_BYTES for n, _ in plain):
        raise RuntimeError(f"incomplete transfers: redirect {sink.results}, plain {plain}")
    plain_mbps, redirect_mbps = _mbps(plain), _mbps(redirected)
    record("cluster.portforward_plain_MBps", plain_mbps, "MB/s")
    record("cluster.portforward_raw_websocket_MBps", _mbps(raw), "MB/s")
    record("cluster.portforward_stock_client_MBps", _mbps(stock), "MB/s")
    record("cluster.redirect_MBps", redirect_mbps, "MB/s")
    record("cluster.redirect_throughput_ratio", redirect_mbps / plain_mbps, "x", ">= 0.9",
           baseline=plain_mbps, sides=(
               f"a process in the pod sends {TRANSFER_BYTES >> 20} MiB through an outgoing "
               "redirect (manager → lane → the session's port-forward → a sink here) ÷ the same "
               "bytes from the pod over a fresh port-forward read by kdiag's own pump (not "
               f"kubectl: see forward_vs_kubectl_ratio); best of {ROUNDS} each"))


# One echo server program for both sides of the setup figure: single-threaded (no fork or
# thread per connection, which would add the same cost to both sides and hide the difference).
ECHO_SERVER = r"""
import selectors, socket, sys
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=1024)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
print(srv.getsockname()[1], flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(65536)
            s.sendall(data)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
"""
ECHO_PORT, HTTPD_PORT = 9301, 9300


class _LocalServer:
    """An operator-side server in its own process, as an operator's app would be (in this
    process its threads took the GIL from the tunnel's: 2.7-3.0 ms per connection with
    http.server here, 2.1-2.3 ms in its own process)."""

    def __init__(self, argv: list[str], port: int) -> None:
        self.port = port
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"the local server {argv[0]} did not start") from None
                time.sleep(0.05)

    @classmethod
    def echo(cls) -> _LocalServer:
        port = _free_port()
        return cls([sys.executable, "-c", ECHO_SERVER, str(port)], port)

    @classmethod
    def httpd(cls, root: str) -> _LocalServer:
        """busybox httpd, the program the pod side serves with (Python's http.server without
        busybox)."""
        port = _free_port()
        busybox = shutil.which("busybox")
        if busybox:
            return cls([busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", root], port)
        return cls([sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", root,
                    str(port)], port)

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def _fresh_portforward_exchange(core: Any, namespace: str, pod: str, port: int,
                                request: bytes, reply: bytes) -> float:
    """A new port-forward to ``port`` in the pod, ``request`` sent, read until ``reply``
    (seconds)."""
    from kdiag.kube.portforward import open_websocket

    started = time.perf_counter()
    ws = open_websocket(core, namespace, pod, port)
    ws.send_binary(b"\x00" + request)
    got = b""
    seen = [False, False]
    while reply not in got:
        _, frame = ws.recv_data_frame(True)
        channel = frame.data[0]
        if not seen[channel]:
            seen[channel] = True
            continue
        got += frame.data[1:]
    elapsed = time.perf_counter() - started
    ws.close()
    return elapsed


def _established_roundtrips(core: Any, namespace: str, pod: str) -> list[float]:
    """1-byte echo round trips over one established port-forward, frames read straight off
    the WebSocket: what the Kubernetes path alone (API server, kubelet, runtime) costs each
    way and back, whatever carries the bytes (seconds)."""
    from kdiag.kube.portforward import open_websocket

    ws = open_websocket(core, namespace, pod, ECHO_PORT)
    seen = [False, False]

    def roundtrip() -> float:
        started = time.perf_counter()
        ws.send_binary(b"\x00x")
        while True:
            _, frame = ws.recv_data_frame(True)
            if seen[frame.data[0]]:
                return time.perf_counter() - started
            seen[frame.data[0]] = True  # the port number, once per channel

    try:
        return _samples(roundtrip)
    finally:
        ws.close()


def _samples(measure: Callable[[], float]) -> list[float]:
    """Warmed-up samples of ``measure`` (seconds)."""
    return [measure() for _ in range(SETUP_WARMUP + SETUP_SAMPLES)][SETUP_WARMUP:]


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _probe_s(probe: Any) -> float:
    if not probe.ok:
        raise RuntimeError(f"probe: {probe.error}")
    return float(probe.elapsed)


def _connection_setup(record: Record, kube: Any, namespace: str, pod: str) -> None:
    """Connect + a 1-byte round trip to an echo server (the node figure's definition), from
    inside the pod through the session vs over a new port-forward; the same with an HTTP
    request to busybox httpd for context."""
    from kdiag.session.results import RedirectSpec

    echo = _LocalServer.echo()
    www = tempfile.TemporaryDirectory()
    Path(www.name, "index.html").write_text("ok\n")
    httpd = _LocalServer.httpd(www.name)
    try:
        with _open_session(namespace, pod) as session:
            m = session.manager
            in_pod = _samples(lambda: _probe_s(m.probe_tcp("127.0.0.1", ECHO_PORT, send=b"x",
                                                           expect=b"x")))
            echo_redirect = m.redirect(RedirectSpec("outgoing", [REDIRECT_PORT + 1]),
                                       ("127.0.0.1", echo.port))
            http_redirect = m.redirect(RedirectSpec("outgoing", [REDIRECT_PORT + 2]),
                                       ("127.0.0.1", httpd.port))
            try:
                tunnelled = _samples(lambda: _probe_s(m.probe_tcp(
                    "127.0.0.1", REDIRECT_PORT + 1, send=b"x", expect=b"x")))
                http_tunnelled = _samples(lambda: _probe_s(m.probe_http(
                    f"http://127.0.0.1:{REDIRECT_PORT + 2}/")))
            finally:
                echo_redirect.close()
                http_redirect.close()
    finally:
        echo.close()
        httpd.close()
        www.cleanup()
    core = kube.stream_core()
    fresh = _samples(lambda: _fresh_portforward_exchange(core, namespace, pod, ECHO_PORT,
                                                         b"x", b"x"))
    http_fresh = _samples(lambda: _fresh_portforward_exchange(
        core, namespace, pod, HTTPD_PORT, b"GET / HTTP/1.0\r\n\r\n", b"ok"))
    established = _established_roundtrips(core, namespace, pod)
    ours, theirs = _ms(tunnelled), _ms(fresh)
    record("cluster.connection_setup_session_ms", ours, "ms")
    record("cluster.connection_setup_in_pod_ms", _ms(in_pod), "ms")
    record("cluster.portforward_echo_roundtrip_ms", _ms(established), "ms")
    record("cluster.connection_setup_new_portforward_ms", theirs, "ms")
    record("cluster.connection_setup_ratio", ours / theirs, "x", "<= 0.1", baseline=theirs,
           sides=("a new connection from the pod through the established session to an echo "
                  "server here, connect + 1-byte round trip ÷ a new port-forward per connection "
                  f"to the same echo program in the pod, the same round trip; medians of "
                  f"{SETUP_SAMPLES} after {SETUP_WARMUP} warm-ups each"))
    record("cluster.http_exchange_session_ms", _ms(http_tunnelled), "ms")
    record("cluster.http_exchange_new_portforward_ms", _ms(http_fresh), "ms")


def _time_to_first_step(record: Record, namespace: str, pod: str, cache: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runbook = Path(tmp) / "first.yaml"
        runbook.write_text(f"target:\n  kubernetes: {{namespace: {namespace}, pod: {pod}}}\n"
                           "steps:\n  - ps: {}\n")
        env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "XDG_CACHE_HOME": cache}
        # The first run may inject; the timed ones reuse the running manager.
        subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), "-q"], env=env,
                       check=True, timeout=120)
        times = []
        for i in range(START_RUNS):
            report = Path(tmp) / f"r{i}.json"
            started = time.time()
            subprocess.run([sys.executable, "-m", "kdiag", "run", str(runbook), "-q", "--report",
                            f"json={report}"], env=env, check=True, timeout=60)
            step = json.loads(report.read_text())["runs"][0]["steps"][0]
            times.append(step["started_at"] + step["duration"] - started)
    record("cluster.run_to_first_step_s", statistics.median(times), "s", "<= 1.5")

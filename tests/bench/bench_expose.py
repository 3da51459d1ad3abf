"""``expose`` on the local cluster (issue 14): ``cluster.expose_setup_s``, the seconds from the
step's start (creating the pod and the Service, the session with the pod's manager, its
redirect, the pod Ready) to the first request a client pod sent to ``http://SERVICE:8080/``
being served by the server on this machine — the manager image already on the node. The client
(busybox ``wget`` in a pod, every 50 ms) starts calling once the Service exists (before, its
name would not resolve and the cluster DNS would cache the miss for 5 s). Median of
:data:`ROUNDS`; printed beside it: the step's own time until Ready (``start()`` returning).

Needs the cluster up and a manager image that knows ``--exit-when-idle``
(``KDIAG_E2E_MANAGER_IMAGE``). Bounded: about half a minute.
"""

from __future__ import annotations

import http.server
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

Record = Callable[..., None]
ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("KDIAG_CLUSTER_STATE", ROOT / ".cluster"))
KUBECONFIG = STATE / "kubeconfig"
MANAGER_IMAGE = os.environ.get("KDIAG_E2E_MANAGER_IMAGE", "kdiag.local/manager:dev")
ROUNDS = 3
FIGURES = ("cluster.expose_setup_s",)


class _Laptop:
    """A local HTTP server noting when its first request came."""

    def __init__(self) -> None:
        laptop = self
        self.first: float | None = None

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if laptop.first is None:
                    laptop.first = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _kubectl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STATE / "bin" / "kubectl"), "--kubeconfig", str(KUBECONFIG),
                           *args], capture_output=True, text=True, timeout=timeout, check=False)


def _client(namespace: str, service: str) -> subprocess.Popen[str]:
    """The toolbox pod calling the Service every 50 ms until an answer (at most 30 s)."""
    script = (f"i=0; while [ $i -lt 600 ]; do timeout 2 wget -qO- http://{service}:8080/ "
              ">/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.05; done; exit 1")
    return subprocess.Popen([str(STATE / "bin" / "kubectl"), "--kubeconfig", str(KUBECONFIG),
                             "-n", namespace, "exec", "toolbox", "--", "sh", "-c", script],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def _round(kube: Any, namespace: str, service: str) -> tuple[float, float]:
    """(step start → first request served, step start → start() returned)."""
    from kdiag.expose.exposure import Traffic, Wanted, start

    laptop = _Laptop()
    client: subprocess.Popen[str] | None = None
    done = threading.Event()

    def call_once_it_exists() -> None:
        nonlocal client
        core = kube.core()
        while not done.is_set():
            if any(s.metadata.name == service for s in
                   core.list_namespaced_service(namespace, _request_timeout=10).items):
                client = _client(namespace, service)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=call_once_it_exists, daemon=True)
    watcher.start()
    began = time.monotonic()
    exposure = start(Wanted(service, 8080, ("127.0.0.1", laptop.port), namespace),
                     Traffic(lambda _line: None))
    ready = time.monotonic() - began
    try:
        deadline = time.monotonic() + 30
        while laptop.first is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if laptop.first is None:
            raise RuntimeError(f"no request reached the local server through {service}")
        return laptop.first - began, ready
    finally:
        done.set()
        watcher.join(5)
        if client is not None:
            client.kill()
            client.wait()
        exposure.stop()
        laptop.close()


def run(record: Record) -> None:
    """Measure and record ``cluster.expose_setup_s`` (Unmeasurable without a cluster)."""
    from tests.bench.figures import Unmeasurable

    if not KUBECONFIG.exists():
        raise Unmeasurable(f"no local cluster ({KUBECONFIG} is missing)")
    from kdiag.kube.config import KubeOptions, load

    os.environ["KDIAG_MANAGER_IMAGE"] = MANAGER_IMAGE
    os.environ.setdefault("KDIAG_MANAGER_PULL_POLICY", "Never")
    kube = load(KubeOptions(kubeconfig=str(KUBECONFIG)))
    namespace = f"kdiag-bench-expose-{uuid.uuid4().hex[:6]}"
    if _kubectl("create", "namespace", namespace).returncode != 0:
        raise Unmeasurable("the local cluster does not answer")
    try:
        _kubectl("-n", namespace, "apply", "-f",
                 str(ROOT / "cluster/testapps/manifests/toolbox.yaml"))
        _kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/toolbox",
                 "--timeout=90s", timeout=120)
        _kubectl("-n", namespace, "wait", "--for=jsonpath={.metadata.name}=default",
                 "serviceaccount/default", "--timeout=30s")
        _round(kube, namespace, "bench-warmup")  # the image cached, the first imports done
        samples = [_round(kube, namespace, f"bench-preview-{i}") for i in range(ROUNDS)]
    finally:
        _kubectl("delete", "namespace", namespace, "--wait=false")
    served = statistics.median(s for s, _ in samples)
    ready = statistics.median(r for _, r in samples)
    record("cluster.expose_setup_s", served, "s", "<= 5",
           sides=f"step start → first request served through the Service, median of "
                 f"{ROUNDS}: {', '.join(f'{s:.2f}' for s, _ in samples)} s; the step itself "
                 f"(start() returning, the pod Ready) {ready:.2f} s")

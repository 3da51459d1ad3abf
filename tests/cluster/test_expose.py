"""A port of this machine as a cluster Service (issue 14's expose), on the local cluster: a
client pod calls ``http://checkout-preview:8080`` and gets the local server's answer — through
cluster DNS, kube-proxy and the expose pod's tunnel; after the run neither the pod nor the
Service (nor the run's Lease) exists; after ``kill -9`` of kdiag the pod ends by itself, the
Service refuses connections at once (no endpoint) instead of hanging, and ``kdiag gc`` removes
both."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Cluster, make_namespace
from .kube_fixtures import Kdiag, kdiag_cli  # noqa: F401

pytestmark = pytest.mark.cluster

SELECTOR = "app.kubernetes.io/managed-by=kdiag"


@pytest.fixture(scope="module")
def client_ns(cluster: Cluster) -> Iterator[str]:
    """A namespace with the busybox ``toolbox`` pod (the client)."""
    namespace = make_namespace(cluster)
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("toolbox"))
    cluster.wait_pod_running(namespace, "toolbox")
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


class _Laptop:
    """A local HTTP server answering ``text`` and counting requests."""

    def __init__(self, text: str) -> None:
        laptop = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                laptop.requests += 1
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wget(cluster: Cluster, namespace: str, url: str, seconds: int = 10) -> tuple[int, str, float]:
    """``wget -qO- URL`` in the toolbox pod: exit code, output, seconds it took."""
    started = time.monotonic()
    proc = subprocess.run([str(cluster.kubeconfig.parent / "bin" / "kubectl"), "--kubeconfig",
                           str(cluster.kubeconfig), "-n", namespace, "exec", "toolbox", "--",
                           "timeout", str(seconds), "wget", "-qO-", url],
                          capture_output=True, text=True, timeout=seconds + 30, check=False)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def _ours(cluster: Cluster, namespace: str, *, deleting: bool = True) -> list[str]:
    """kdiag's pods, Services and Leases in ``namespace`` (``deleting``: also pods being
    deleted)."""
    from kubernetes import client

    pods = [p for p in cluster.core.list_namespaced_pod(namespace, label_selector=SELECTOR).items
            if deleting or p.metadata.deletion_timestamp is None]
    services = cluster.core.list_namespaced_service(namespace, label_selector=SELECTOR).items
    leases = client.CoordinationV1Api(cluster.api_client).list_namespaced_lease(
        namespace, label_selector=SELECTOR).items
    return [f"pod/{p.metadata.name}" for p in pods] + \
        [f"service/{s.metadata.name}" for s in services] + \
        [f"lease/{le.metadata.name}" for le in leases]


@pytest.mark.runbook("runbooks/expose-preview.yaml")
def test_a_client_pod_calls_the_exposed_service(cluster: Cluster, client_ns: str,
                                                kdiag_cli: Kdiag, tmp_path: Path  # noqa: F811
                                                ) -> None:
    port = _free_port()
    args = [sys.executable, "-m", "kdiag", "run", "runbooks/expose-preview.yaml",
            "--set", f"namespace={client_ns}", "--set", f"local_port={port}",
            "--set", "answer=hello from the laptop", "--report", f"json={tmp_path / 'r.json'}"]
    run = subprocess.Popen(args, cwd=REPO, env=kdiag_cli.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        answer = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "hello from the laptop" not in answer:
            rc, answer, _ = _wget(cluster, client_ns, "http://checkout-preview:8080/")
            if rc != 0:
                time.sleep(0.5)
        assert answer.strip() == "hello from the laptop", answer
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    assert "service " + client_ns + "/checkout-preview:8080 -> 127.0.0.1:" in output
    # Deleted as the run ended: the Service and Lease at once, the pod after its grace.
    assert all(x.startswith("pod/") for x in _ours(cluster, client_ns, deleting=False))
    cluster.wait_for(lambda: not _ours(cluster, client_ns), 20, 0.5, "the pod to be gone")


def test_kill_9_then_the_pod_ends_the_service_refuses_and_gc_removes_both(
        cluster: Cluster, client_ns: str, kdiag_cli: Kdiag) -> None:  # noqa: F811
    laptop = _Laptop("laptop, ad hoc")
    proc = subprocess.Popen([sys.executable, "-m", "kdiag", "expose", "-n", client_ns,
                             "killed-preview", "8080", "--to", f"127.0.0.1:{laptop.port}"],
                            cwd=REPO, env=kdiag_cli.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Exposing 127.0.0.1:"), line + (proc.stdout.read()
                                                              if proc.poll() is not None else "")
        said = _collect_lines(proc)
        rc, answer, took = _wget(cluster, client_ns, "http://killed-preview:8080/")
        assert (rc, answer.strip()) == (0, "laptop, ad hoc"), (
            rc, answer, took, laptop.requests, said, _expose_state(cluster, client_ns))
        assert laptop.requests >= 1
        proc.kill()  # kill -9: nothing of kdiag deletes anything
        proc.wait()
        left = _ours(cluster, client_ns)
        assert any(x.startswith("service/killed-preview") for x in left), left
        # The pod's manager sees its client gone and exits: no endpoint, connections refused.
        cluster.wait_for(lambda: _pod_ended(cluster, client_ns), 60, 0.5,
                         "the expose pod to end by itself")
        rc, answer, took = _wget(cluster, client_ns, "http://killed-preview:8080/")
        assert rc != 0 and took < 5, (rc, answer, took)
        # The run's Lease expires 30 s after its last renewal; then gc removes everything.
        def collected() -> bool:
            result = kdiag_cli("gc", "-n", client_ns)
            assert result.returncode == 0, result.output
            return not _ours(cluster, client_ns)

        cluster.wait_for(collected, 90, 3, "kdiag gc to remove the expose objects")
    finally:
        if proc.poll() is None:
            proc.kill()
        laptop.close()


def test_an_existing_service_is_never_replaced(cluster: Cluster, client_ns: str,
                                               kdiag_cli: Kdiag) -> None:  # noqa: F811
    cluster.core.create_namespaced_service(client_ns, {
        "metadata": {"name": "taken"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    result = kdiag_cli("expose", "-n", client_ns, "taken", "80", "--to", "8000")
    assert result.returncode == 3, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"kdiag: error: expose: service {client_ns}/taken already exists (not kdiag's); "
        "choose another name")
    assert _ours(cluster, client_ns) == []
    assert cluster.core.read_namespaced_service("taken", client_ns).metadata.labels is None


def _collect_lines(proc: subprocess.Popen[str]) -> list[str]:
    """The lines ``proc`` prints from now on, read by a thread (for a failure's message)."""
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(f"{time.monotonic():.3f} {line.rstrip()}")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _expose_state(cluster: Cluster, namespace: str) -> str:
    """The expose pods' status and manager log and the EndpointSlices (a failure's message)."""
    from kdiag.kube.podlog import read_pod_log

    said = [f"at {time.monotonic():.3f}"]
    for pod in cluster.core.list_namespaced_pod(namespace, label_selector=SELECTOR).items:
        said.append(f"pod {pod.metadata.name}: {pod.status.phase} {pod.status.conditions}")
        try:
            said.append(read_pod_log(cluster.core, pod.metadata.name, namespace,
                                     timestamps=True)[-6000:])
        except Exception as exc:  # a diagnosis, best effort
            said.append(f"no log: {exc}")
    kubectl = str(cluster.kubeconfig.parent / "bin" / "kubectl")
    slices = subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
                             "get", "endpointslices", "-o", "yaml"], capture_output=True,
                            text=True, check=False)
    said.append(slices.stdout[-4000:] + slices.stderr)
    return "\n".join(said)


def _pod_ended(cluster: Cluster, namespace: str) -> bool:
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=SELECTOR).items
    return all(p.status.phase in ("Succeeded", "Failed") for p in pods)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

"""Smoke test of the local cluster, through the `kubernetes` Python client only: a pod of
the distroless test app, an ephemeral debug container targeting it (shared PID namespace),
exec, logs and port-forward through the API server."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from kdiag.kube.podlog import read_pod_log

from .conftest import Cluster

pytestmark = pytest.mark.cluster


def exec_in(core: Any, namespace: str, pod: str, container: str, command: list[str]) -> str:
    from kubernetes.stream import stream

    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=container,
        command=command,
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    out = resp.read_stdout() + resp.read_stderr()
    code = resp.returncode
    resp.close()
    assert code == 0, f"{command} in {pod}/{container} exited {code}: {out}"
    return str(out)


def http_over_portforward(core: Any, namespace: str, pod: str, port: int, path: str) -> bytes:
    from kubernetes.stream import portforward

    pf = portforward(
        core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
    )
    sock = pf.socket(port)
    sock.settimeout(20)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
        pf.close()
    error = pf.error(port)
    assert error is None, f"port-forward error: {error}"
    return data


def test_distroless_app_debugged_with_ephemeral_container(cluster: Cluster, namespace: str) -> None:
    core = cluster.core
    pod = cluster.manifest("app")
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(namespace, pod)
    running = cluster.wait_pod_running(namespace, name)
    assert running.spec.node_name == cluster.node_name
    pod_ip = running.status.pod_ip

    # An ephemeral container sharing the app container's PID namespace.
    core.patch_namespaced_pod_ephemeralcontainers(
        name,
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "debugger",
                        "image": "kdiag.local/busybox:dev",
                        "imagePullPolicy": "Never",
                        "targetContainerName": "app",
                        "command": ["sh", "-c", "echo debugger up; exec sleep 3600"],
                    }
                ]
            }
        },
    )

    def debugger_running() -> bool:
        p = core.read_namespaced_pod(name, namespace)
        for cs in p.status.ephemeral_container_statuses or []:
            if cs.name == "debugger":
                if cs.state.terminated:
                    raise AssertionError(f"ephemeral container ended: {cs.state.terminated}")
                return cs.state.running is not None
        return False

    cluster.wait_for(debugger_running, 60, desc="the ephemeral container to run")

    streams = cluster.stream_core()
    # The target's processes are visible from the ephemeral container (targetContainerName).
    ps = exec_in(streams, namespace, name, "debugger", ["ps", "-o", "pid,args"])
    assert "/testapp" in ps, ps
    # ... and its filesystem through /proc/<pid>/root: the image holds only the binary.
    app_pid = next(line.split()[0] for line in ps.splitlines() if "/testapp" in line)
    root = exec_in(streams, namespace, name, "debugger", ["ls", f"/proc/{app_pid}/root/"])
    assert "testapp" in root.split(), root

    # Exec in the distroless container itself: only its own binary is there to run.
    assert "testapp 1.0" in exec_in(streams, namespace, name, "app", ["/testapp", "-version"])

    # Port-forward through the API server to the app.
    response = http_over_portforward(streams, namespace, name, 8080, "/via-portforward")
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b"hello from app" in response

    # Logs through the API server: the app logged the forwarded request; the debugger its line.
    def logged() -> str | None:
        text = read_pod_log(core, name, namespace, container="app")
        return text if "/via-portforward" in text else None

    cluster.wait_for(logged, 20, desc="the app to log the forwarded request")
    debugger_log = read_pod_log(core, name, namespace, container="debugger")
    assert "debugger up" in debugger_log

    # The pod IP is reachable from the host (CNI bridge).
    with socket.create_connection((pod_ip, 8080), timeout=5) as s:
        s.sendall(b"GET /from-host HTTP/1.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.0 200")


def test_app_with_sidecar(cluster: Cluster, namespace: str) -> None:
    core = cluster.core
    pod = cluster.manifest("app-with-sidecar")
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(namespace, pod)
    cluster.wait_pod_running(namespace, name)

    def calls_seen() -> bool:
        app = read_pod_log(core, name, namespace, container="app")
        sidecar = read_pod_log(core, name, namespace, container="sidecar")
        return "/from-sidecar" in app and 'call http://127.0.0.1:8080/from-sidecar: 200' in sidecar

    cluster.wait_for(calls_seen, 30, desc="the sidecar's periodic calls to reach the app")

    # A call on request, through port-forward to the sidecar's own port.
    response = http_over_portforward(cluster.stream_core(), namespace, name, 8081, "/call")
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b"hello from app" in response

"""The manager in a privileged pod on a node: the node itself (``node/NAME``) and a pod through
its node (``via: node``/``auto``) for an identity that may not patch pods/ephemeralcontainers
but may create pods. Nothing is left behind; Pod Security admission refusing says why."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Cluster, make_namespace
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, Pods, restricted_kubeconfig

pytestmark = pytest.mark.cluster

SELECTOR = "app.kubernetes.io/managed-by=kdiag"
NODE_RULES = [
    {"apiGroups": [""], "resources": ["pods"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "list", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": ["list"]},
]
"""What via: node needs (README); no pods/ephemeralcontainers."""


def _left(cluster: Cluster, namespace: str) -> list[str]:
    """kdiag's objects still in ``namespace`` (pods not being deleted, Leases)."""
    from kubernetes import client

    pods = [f"pod/{p.metadata.name}" for p in cluster.core.list_namespaced_pod(
        namespace, label_selector=SELECTOR).items if p.metadata.deletion_timestamp is None]
    leases = [f"lease/{x.metadata.name}" for x in client.CoordinationV1Api(
        cluster.api_client).list_namespaced_lease(namespace, label_selector=SELECTOR).items]
    return pods + leases


@pytest.fixture(scope="module")
def node_only(cluster: Cluster, example_pods: Pods, tmp_path_factory: Any) -> dict[str, str]:
    """A kubeconfig that may create pods but not patch pods/ephemeralcontainers."""
    path = tmp_path_factory.mktemp("node-only") / "kubeconfig"
    restricted_kubeconfig(cluster, example_pods.namespace, path, NODE_RULES, name="node-only")
    return {"KUBECONFIG": str(path)}


def test_ps_of_a_node_lists_the_kubelet_containerd_and_the_pods_processes(
        cluster: Cluster, example_pods: Pods, kdiag_cli: Kdiag) -> None:
    ns = example_pods.namespace
    result = kdiag_cli("ps", f"node/{cluster.node_name}", "-n", ns)
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert any("kubelet" in line and "[pod" not in line for line in lines), result.stdout
    assert any("containerd --config" in line for line in lines), result.stdout
    assert any("/testapp -listen=:8080 -name=app" in line and f"[pod {ns}/testapp/app]" in line
               for line in lines), result.stdout
    assert any(f"[pod {ns}/testapp-client/client]" in line for line in lines), result.stdout
    assert not _left(cluster, ns)


def test_shell_on_a_node_runs_in_the_hosts_root(cluster: Cluster, example_pods: Pods,
                                                kdiag_cli: Kdiag) -> None:
    result = kdiag_cli("shell", f"node/{cluster.node_name}", "-n", example_pods.namespace,
                       "--", "cat", "/proc/sys/kernel/hostname")
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == socket.gethostname()
    assert not _left(cluster, example_pods.namespace)


def test_the_ephemeral_way_is_refused_and_via_auto_goes_through_the_node(
        cluster: Cluster, example_pods: Pods, kdiag_cli: Kdiag, node_only: dict[str, str]
) -> None:
    ns = example_pods.namespace
    refused = kdiag_cli("shell", "-n", ns, "testapp", "--", "cat", "/etc/hostname",
                        env=node_only)
    assert refused.returncode == 3, refused.output
    assert "RBAC: cannot patch pods/ephemeralcontainers" in refused.stderr, refused.stderr
    auto = kdiag_cli("shell", "-n", ns, "testapp", "--via", "auto", "--", "cat",
                     "/etc/hostname", env=node_only)
    assert auto.returncode == 0, auto.output
    assert auto.stdout.strip() == "testapp"
    assert not _left(cluster, ns)


@pytest.mark.runbook("runbooks/diagnose-distroless.yaml")
def test_the_distroless_runbook_via_node(cluster: Cluster, example_pods: Pods,
                                         kdiag_cli: Kdiag, node_only: dict[str, str],
                                         tmp_path: Path) -> None:
    result, _ = kdiag_cli.run("runbooks/diagnose-distroless.yaml", example_pods.namespace,
                              extra=("--via", "node", "--artifacts", str(tmp_path / "a")),
                              env=node_only)
    assert result.returncode == 0, result.output
    assert "no /bin/sh in this image" in result.stdout
    assert f"manager through node {cluster.node_name}" in result.output
    hosts = list((tmp_path / "a").rglob("hosts"))
    assert hosts and hosts[0].stat().st_size > 0
    assert not _left(cluster, example_pods.namespace)
    assert not cluster.core.read_namespaced_pod("testapp", example_pods.namespace
                                                ).spec.ephemeral_containers


def _start(kdiag_cli: Kdiag, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kdiag", *args], cwd=REPO,
                            env={**kdiag_cli.env, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 90) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} in: {''.join(seen)}")


def test_a_redirect_via_node(cluster: Cluster, example_pods: Pods, kdiag_cli: Kdiag,
                             node_only: dict[str, str]) -> None:
    ns = example_pods.namespace
    server = subprocess.Popen([sys.executable, str(REPO / "runbooks/lib/recording_server.py"),
                               "18083", "hello through the node"], stdout=subprocess.DEVNULL)
    redirect = forward = None
    try:
        redirect = _start(kdiag_cli, "redirect", "-n", ns, "testapp", "--via", "node",
                          "8080:18083", env=node_only)
        _wait_for(redirect, "redirecting incoming 8080 -> 127.0.0.1:18083")
        forward = _start(kdiag_cli, "forward", "-n", ns, "testapp-client", "8081:0")
        line = _wait_for(forward, "Forwarding from 127.0.0.1:")
        local = int(line.split("127.0.0.1:")[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/call", timeout=20) as resp:
            assert b"hello through the node" in resp.read()
        redirect.send_signal(2)
        assert redirect.wait(30) == 130
        with urllib.request.urlopen(f"http://127.0.0.1:{local}/call", timeout=20) as resp:
            assert b"hello from app" in resp.read()  # the app answers again
    finally:
        for proc in (forward, redirect, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not _left(cluster, ns)


def test_pod_security_baseline_refuses_the_node_pod_and_says_so(
        cluster: Cluster, kdiag_cli: Kdiag) -> None:
    namespace = make_namespace(cluster)
    try:
        cluster.core.patch_namespace(namespace, {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "baseline"}}})
        result = kdiag_cli("ps", f"node/{cluster.node_name}", "-n", namespace)
        assert result.returncode == 3, result.output
        error = result.stderr.strip().splitlines()[-1]
        assert error.startswith(f"kdiag: error: cannot start the manager on node "
                                f"{cluster.node_name}"), error
        assert 'violates PodSecurity "baseline' in error and "hostPID=true" in error, error
        assert "pod-security.kubernetes.io/enforce=privileged" in error, error
        assert not _left(cluster, namespace)
    finally:
        cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def test_the_pod_on_the_node_goes_to_a_namespace_of_its_own(cluster: Cluster,
                                                            kdiag_cli: Kdiag) -> None:
    """The target's namespace is `baseline` (no privileged pods): `--via node` alone is
    refused and says how to name another namespace; with `--node-namespace` naming a
    privileged one, the pod on the node goes there and the shell reaches the target."""
    target_ns, node_ns = make_namespace(cluster), make_namespace(cluster)
    try:
        for ns, level in ((target_ns, "baseline"), (node_ns, "privileged")):
            cluster.core.patch_namespace(ns, {"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": level}}})
        cluster.core.create_namespaced_pod(target_ns, cluster.manifest("app"))
        cluster.wait_pod_running(target_ns, "testapp")
        refused = kdiag_cli("shell", "-n", target_ns, "testapp", "--via", "node", "--", "true")
        assert refused.returncode == 3, refused.output
        assert "--node-namespace" in refused.stderr, refused.stderr
        shell = kdiag_cli("shell", "-n", target_ns, "testapp", "--via", "node",
                          "--node-namespace", node_ns, "--", "cat", "/etc/hostname")
        assert shell.returncode == 0, shell.output
        assert shell.stdout.strip() == "testapp"
        assert not _left(cluster, target_ns) and not _left(cluster, node_ns)
    finally:
        for ns in (target_ns, node_ns):
            cluster.core.delete_namespace(ns, grace_period_seconds=0)

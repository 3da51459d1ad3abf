"""Fixtures for the Kubernetes target tests: a shared namespace with the example pods, the
kdiag CLI run against the local cluster, and a kubeconfig for a restricted service account.

Import the fixtures into a test module with ``from .kube_fixtures import *``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import MANAGER_IMAGE, REPO, Cluster, make_namespace

__all__ = ["APP_TARGET", "Kdiag", "Pods", "example_pods", "kdiag_cli", "make_namespace",
           "manager_pids", "restricted_kubeconfig"]

APP_TARGET = """\
params:
  namespace: {type: string}
target:
  kubernetes: {namespace: "{{ params.namespace }}", pod: testapp}
"""
"""The head of a runbook against the test app (``kdiag_cli.run`` sets the namespace)."""


@dataclass
class Pods:
    """The example runbooks' pods in one namespace."""

    namespace: str
    app: str = "testapp"
    client: str = "testapp-client"
    sidecar: str = "testapp-sidecar"
    app_ip: str = ""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Kdiag:
    """Runs ``kdiag`` as a user would, against the local cluster, with a private token cache."""

    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "XDG_CACHE_HOME": str(cache),
                    "XDG_CONFIG_HOME": str(cache / "config"), "KDIAG_MANAGER_IMAGE": MANAGER_IMAGE,
                    "KDIAG_MANAGER_PULL_POLICY": "Never", "NO_COLOR": "1"}

    def __call__(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None,
                 stdin: str | None = None, prefix: tuple[str, ...] = ()) -> Result:
        """``kdiag ARGS`` (``prefix``: a command that runs it, e.g. setpriv as another user)."""
        started = time.monotonic()
        proc = subprocess.run([*prefix, sys.executable, "-m", "kdiag", *args], cwd=REPO,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, input=stdin, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def run(self, runbook: str, namespace: str, *sets: str, report: Path | None = None,
            extra: tuple[str, ...] = (), **kwargs: Any) -> tuple[Result, dict[str, Any]]:
        """``kdiag run RUNBOOK --set namespace=NS --set ... EXTRA`` and its JSON report."""
        args = ["run", runbook, "--set", f"namespace={namespace}", *extra]
        for item in sets:
            args += ["--set", item]
        data: dict[str, Any] = {}
        if report is not None:
            args += ["--report", f"json={report}"]
        result = self(*args, **kwargs)
        if report is not None and report.exists():
            data = json.loads(report.read_text())
        return result, data


def client_manifest(api_ip: str, name: str = "testapp-client") -> dict[str, Any]:
    """The test app in sidecar mode, calling the API pod on GET /call."""
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "client", "image": "kdiag.local/testapp:dev",
                "imagePullPolicy": "Never",
                "args": ["-listen=:8081", "-name=client",
                         f"-call-url=http://{api_ip}:8080/from-client"],
                "ports": [{"containerPort": 8081}]}]}}


@pytest.fixture(scope="module")
def example_pods(cluster: Cluster) -> Iterator[Pods]:
    """One namespace (per test module) with the API app, a client pod calling it, and the app
    with its sidecar, all running."""
    namespace = make_namespace(cluster)
    core = cluster.core
    core.create_namespaced_pod(namespace, cluster.manifest("app"))
    core.create_namespaced_pod(namespace, cluster.manifest("app-with-sidecar"))
    app = cluster.wait_pod_running(namespace, "testapp")
    core.create_namespaced_pod(namespace, client_manifest(app.status.pod_ip))
    cluster.wait_pod_running(namespace, "testapp-client")
    cluster.wait_pod_running(namespace, "testapp-sidecar")
    yield Pods(namespace=namespace, app_ip=app.status.pod_ip)
    core.delete_namespace(namespace, grace_period_seconds=0)


@pytest.fixture
def kdiag_cli(cluster: Cluster, tmp_path: Path) -> Kdiag:
    """The kdiag CLI with the admin kubeconfig and a token cache of this test's own."""
    return Kdiag(cluster.kubeconfig, tmp_path / "cache")


def restricted_kubeconfig(cluster: Cluster, namespace: str, path: Path,
                          rules: list[dict[str, Any]], name: str = "restricted") -> Path:
    """A kubeconfig for a new service account bound to a Role with ``rules`` (a TokenRequest
    token, so RBAC applies as it would to a CI job)."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(cluster.api_client)
    cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = cluster.core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name,
                                                "namespace": namespace}}]}))
    path.chmod(0o600)
    return path


def manager_pids(pod: Any) -> list[int]:
    """The host PIDs of the managers in ``pod`` (the node is this machine): kdiag_manager
    processes in one of the pod's cgroups (an AssertionError when there is none)."""
    uid = pod.metadata.uid
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            cgroup = Path(f"/proc/{name}/cgroup").read_text()
        except OSError:
            continue
        if b"kdiag_manager" in cmdline and (uid in cgroup or uid.replace("-", "_") in cgroup):
            found.append(int(name))
    assert found, f"no manager process of pod {pod.metadata.name} on this node"
    return found

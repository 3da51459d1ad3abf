"""Objects kdiag creates (kdiag/kube/owned.py): labelled with the run, kept alive by a renewed
Lease, deleted when the run ends, and removed by ``kdiag gc`` when the run died (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag, restricted_kubeconfig

pytestmark = pytest.mark.cluster

SELECTOR = "app.kubernetes.io/managed-by=kdiag"


def _service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "c", "image": "kdiag.local/busybox:dev", "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]}]}}


def _managed(cluster: Cluster, namespace: str) -> set[str]:
    from kubernetes import client

    coordination = client.CoordinationV1Api(cluster.api_client)
    found = {f"pod/{p.metadata.name}" for p in cluster.core.list_namespaced_pod(
        namespace, label_selector=SELECTOR).items if p.metadata.deletion_timestamp is None}
    found |= {f"service/{s.metadata.name}" for s in cluster.core.list_namespaced_service(
        namespace, label_selector=SELECTOR).items}
    found |= {f"lease/{x.metadata.name}" for x in coordination.list_namespaced_lease(
        namespace, label_selector=SELECTOR).items}
    return found


def _kube(cluster: Cluster, namespace: str) -> Any:
    from kdiag.kube.config import KubeOptions, load

    return load(KubeOptions(kubeconfig=str(cluster.kubeconfig), namespace=namespace))


def test_a_runs_objects_are_labelled_alive_and_deleted_at_its_end(
        cluster: Cluster, namespace: str) -> None:
    from kdiag.kube.owned import Ownership, collect, lease_name

    kube = _kube(cluster, namespace)
    with Ownership(kube, run_id="20261203-000000-abcdef") as run:
        run.create("services", namespace, _service("gc-svc"), role="expose")
        service = cluster.core.read_namespaced_service("gc-svc", namespace)
        assert service.metadata.labels == {"app.kubernetes.io/managed-by": "kdiag",
                                           "kdiag.dev/run": "20261203-000000-abcdef",
                                           "kdiag.dev/role": "expose"}
        assert _managed(cluster, namespace) == {
            "service/gc-svc", f"lease/{lease_name('20261203-000000-abcdef')}"}
        # alive: a collector leaves it alone
        assert collect(kube, [namespace], dry_run=False) == []
        assert "service/gc-svc" in _managed(cluster, namespace)
    assert _managed(cluster, namespace) == set()


def test_a_failure_half_way_leaves_nothing(cluster: Cluster, namespace: str) -> None:
    from kdiag.errors import TargetError
    from kdiag.kube.owned import Ownership

    kube = _kube(cluster, namespace)
    with pytest.raises(TargetError, match="HTTP 422"), Ownership(kube) as run:
        run.create("services", namespace, _service("gc-first"), role="expose")
        run.create("services", namespace, _service("Not_A_Name"), role="expose")
    assert _managed(cluster, namespace) == set()


RUN_AND_WAIT = textwrap.dedent("""
    import sys, time
    from kdiag.kube.config import KubeOptions, load
    from kdiag.kube.owned import Ownership
    kube = load(KubeOptions(kubeconfig=sys.argv[1], namespace=sys.argv[2]))
    run = Ownership(kube, lease_seconds=4, renew_every=1)
    run.create("pods", sys.argv[2], {POD!r}, role="copy")
    run.create("services", sys.argv[2], {SERVICE!r}, role="expose")
    print("ready", flush=True)
    time.sleep(3600)
""")


def test_gc_removes_what_a_killed_run_left_and_spares_a_live_one(
        cluster: Cluster, namespace: str, kdiag_cli: Kdiag) -> None:
    script = RUN_AND_WAIT.replace("{POD!r}", repr(_pod("gc-pod"))).replace(
        "{SERVICE!r}", repr(_service("gc-svc")))
    proc = subprocess.Popen([sys.executable, "-c", script, str(cluster.kubeconfig), namespace],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(5)  # longer than the lease: only the renewals keep it alive
        alive = kdiag_cli("gc", "-n", namespace)
        assert alive.returncode == 0, alive.output
        assert "0 object(s) of dead kdiag runs" in alive.stdout, alive.output
        assert {"pod/gc-pod", "service/gc-svc"} <= _managed(cluster, namespace)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def listed() -> Any:
        result = kdiag_cli("gc", "-n", namespace, "--dry-run")
        return result if "would delete pod" in result.stdout else None

    dry = cluster.wait_for(listed, 30, interval=1, desc="the dead run's lease to expire")
    assert dry.returncode == 0
    assert f"would delete pod {namespace}/gc-pod (run " in dry.stdout
    assert f"would delete service {namespace}/gc-svc (run " in dry.stdout
    assert "role copy" in dry.stdout and "role expose" in dry.stdout
    assert "3 object(s) of dead kdiag runs" in dry.stdout, dry.stdout
    assert {"pod/gc-pod", "service/gc-svc"} <= _managed(cluster, namespace)  # dry run

    done = kdiag_cli("gc", "-n", namespace)
    assert done.returncode == 0, done.output
    assert f"deleted pod {namespace}/gc-pod" in done.stdout
    assert _managed(cluster, namespace) == set()


def test_gc_without_rbac_says_what_it_cannot_do(cluster: Cluster, namespace: str,
                                                 kdiag_cli: Kdiag, tmp_path: Path) -> None:
    config = restricted_kubeconfig(cluster, namespace, tmp_path / "kc", rules=[
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    result = kdiag_cli("gc", "--kubeconfig", str(config))
    assert result.returncode == 3, result.output
    assert result.stderr.strip() == (
        f"kdiag: error: RBAC: cannot list services in namespace {namespace} "
        f"(as system:serviceaccount:{namespace}:restricted)"), result.stderr

"""A copy of a pod that crashes at start (runbooks/crashing-pod.yaml, ``--copy``): its config
read and its binary run by hand in the copy; the copy gone after the run, and after
``kill -9`` + ``kdiag gc``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import REPO, Cluster, make_namespace
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import Kdiag

pytestmark = pytest.mark.cluster

COPY_OF = "kdiag.dev/copy-of=testapp-crashing"


@pytest.fixture(scope="module")
def crashing(cluster: Cluster) -> Iterator[str]:
    """A namespace with testapp-crashing in CrashLoopBackOff."""
    namespace = make_namespace(cluster)
    cluster.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "testapp-crashing-config"}, "data": {"LISTEN": ":99999"}})
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("crashing"))

    def crash_looping() -> bool:
        pod = cluster.core.read_namespaced_pod("testapp-crashing", namespace)
        return any(s.restart_count >= 1 for s in pod.status.container_statuses or [])

    cluster.wait_for(crash_looping, 90, desc="testapp-crashing to restart")
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def _copies(cluster: Cluster, namespace: str) -> list[Any]:
    return [p for p in cluster.core.list_namespaced_pod(namespace, label_selector=COPY_OF).items
            if p.metadata.deletion_timestamp is None]


@pytest.mark.runbook("runbooks/crashing-pod.yaml")
def test_a_crashing_pod_is_debugged_through_a_copy(cluster: Cluster, crashing: str,
                                                   kdiag_cli: Kdiag, tmp_path: Any) -> None:
    result, _report = kdiag_cli.run("runbooks/crashing-pod.yaml", crashing,
                                   report=tmp_path / "r.json")
    assert result.returncode == 0, result.output
    assert ":99999" in result.stdout  # its configuration
    assert "invalid port" in result.stdout and "exit code 1" in result.stdout  # by hand
    assert "hello from fixed" in result.stdout
    assert "a copy of pod testapp-crashing (deleted at the end)" in result.output
    assert not _copies(cluster, crashing)
    assert not [p for p in cluster.core.list_namespaced_pod(
        crashing, label_selector="app.kubernetes.io/managed-by=kdiag").items
        if p.metadata.deletion_timestamp is None]


def test_the_copy_has_no_probes_no_labels_of_the_original_and_can_be_kept(
        cluster: Cluster, crashing: str, kdiag_cli: Kdiag) -> None:
    result = kdiag_cli("shell", "-n", crashing, "testapp-crashing", "--copy", "--keep-copy",
                       "--", "cat", "/etc/testapp/LISTEN")
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == ":99999"
    try:
        [copy] = _copies(cluster, crashing)
        labels = copy.metadata.labels
        assert "app" not in labels and labels["kdiag.dev/role"] == "copy"
        assert labels["kdiag.dev/kept"] == "true"
        app = next(c for c in copy.spec.containers if c.name == "app")
        assert app.liveness_probe is None and app.readiness_probe is None
        assert app.command == ["/.kdiag/busybox", "sleep", "2147483647"] and not app.args
        assert copy.status.phase == "Running"
        # kept: no gc removes it
        gc = kdiag_cli("gc", "-n", crashing)
        assert gc.returncode == 0 and _copies(cluster, crashing), gc.output
    finally:
        for pod in _copies(cluster, crashing):
            cluster.core.delete_namespaced_pod(pod.metadata.name, crashing,
                                               grace_period_seconds=0)


def test_a_killed_runs_copy_is_removed_by_gc(cluster: Cluster, crashing: str,
                                             kdiag_cli: Kdiag) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdiag", "shell", "-n", crashing, "testapp-crashing", "--copy",
         "--", "sh", "-c", "echo in-the-copy; sleep 600"],
        cwd=REPO, env=kdiag_cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "in-the-copy"
        assert len(_copies(cluster, crashing)) == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(_copies(cluster, crashing)) == 1  # left behind by the killed run

    def collected() -> Any:
        result = kdiag_cli("gc", "-n", crashing)
        return result if "deleted pod" in result.stdout else None

    result = cluster.wait_for(collected, 60, interval=2, desc="gc to remove the copy")
    assert "role copy" in result.stdout, result.stdout
    assert not _copies(cluster, crashing)

"""``kdiag doctor`` against the local cluster, and the same checks refusing ``kdiag run`` before
it changes anything: as admin everything is ok; a service account with only some verbs gets
each missing one named; a namespace enforcing the ``restricted`` Pod Security level is said to
refuse the manager, and why (from its labels, or from a dry run of the injection when the
labels cannot be read); a runbook whose RBAC is missing stops with exit 3 and no ephemeral
container added to the pod."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import MANAGER_IMAGE, Cluster
from .kube_fixtures import *  # noqa: F403
from .kube_fixtures import APP_TARGET, Kdiag, make_namespace, restricted_kubeconfig

pytestmark = pytest.mark.cluster

PODS_READ = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
LOGS = {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}
PATCH = {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]}
FORWARD = {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]}
RUNBOOK = APP_TARGET + """\
steps:
  - name: look
    shell: {argv: [echo, hello]}
finally:
  - note: finally ran
"""


def _app_namespace(cluster: Cluster, labels: dict[str, str] | None = None) -> str:
    namespace = make_namespace(cluster)
    cluster.core.create_namespaced_pod(namespace, cluster.manifest("app"))
    cluster.wait_pod_running(namespace, "testapp")
    if labels:  # after the pod: the level applies to what comes next, the manager
        cluster.core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


@pytest.fixture(scope="module")
def app_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace with the test app running, no Pod Security labels."""
    namespace = _app_namespace(cluster)
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


@pytest.fixture
def restricted_namespace(cluster: Cluster) -> Iterator[str]:
    """The test app in a namespace that then enforces the restricted Pod Security level."""
    namespace = _app_namespace(cluster, {"pod-security.kubernetes.io/enforce": "restricted"})
    yield namespace
    cluster.core.delete_namespace(namespace, grace_period_seconds=0)


def _doctor(kdiag: Kdiag, *args: str, kubeconfig: Path | None = None
            ) -> tuple[int, dict[str, Any], str]:
    env = {"KUBECONFIG": str(kubeconfig)} if kubeconfig else None
    result = kdiag("doctor", "--json", *args, env=env, timeout=60)
    assert "Traceback" not in result.output, result.output
    return result.returncode, json.loads(result.stdout), result.stderr


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in report["checks"]}


def _ephemeral_containers(cluster: Cluster, namespace: str) -> list[str]:
    pod = cluster.core.read_namespaced_pod("testapp", namespace)
    return [c.name for c in pod.spec.ephemeral_containers or []]


def test_admin_all_ok(cluster: Cluster, app_namespace: str, kdiag_cli: Kdiag) -> None:
    code, report, _ = _doctor(kdiag_cli, "-n", app_namespace, "--pod", "testapp")
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert code == 0 and report["ok"], statuses
    assert set(statuses.values()) == {"ok"}, statuses
    names = set(statuses)
    for verb in ("patch pods/ephemeralcontainers", "get pods/log", "get pods/portforward",
                 "get pods", "list pods", "watch pods"):
        assert f"RBAC: {verb} in namespace {app_namespace}" in names, names
    assert {"cluster", "ephemeral containers", f"pod security (namespace {app_namespace})",
            f"manager image {MANAGER_IMAGE}", "manager admission (dry run)"} <= names, names
    assert "Kubernetes v1." in _by_name(report)["cluster"]["detail"]
    assert "present on node" in _by_name(report)[f"manager image {MANAGER_IMAGE}"]["detail"]
    # The table for people says the same.
    table = kdiag_cli("doctor", "-n", app_namespace, "--pod", "testapp", timeout=60)
    assert table.returncode == 0 and "nothing stops a run" in table.stdout, table.output
    assert _ephemeral_containers(cluster, app_namespace) == []  # a dry run stores nothing


def test_restricted_service_account_names_each_missing_verb(
        cluster: Cluster, app_namespace: str, kdiag_cli: Kdiag, tmp_path: Path) -> None:
    kubeconfig = restricted_kubeconfig(cluster, app_namespace, tmp_path / "kubeconfig",
                                       [PODS_READ, LOGS], name="doctor-some")
    code, report, _ = _doctor(kdiag_cli, "--pod", "testapp", kubeconfig=kubeconfig)
    assert code == 3 and not report["ok"]
    user = f"system:serviceaccount:{app_namespace}:doctor-some"
    failed = sorted(c["check"] for c in report["checks"] if c["status"] == "fail")
    assert failed == sorted(
        f"RBAC: cannot {verb} in namespace {app_namespace} (as {user})"
        for verb in ("patch pods/ephemeralcontainers", "get pods/portforward")), failed
    for check in report["checks"]:
        if check["status"] == "fail":
            assert check["fix"].startswith("ask the cluster admin for a Role"), check
            assert "the manager (ephemeral container)" in check["needed_by"], check
    # What it may not read is unknown, not a failure.
    checks = _by_name(report)
    assert checks[f"pod security (namespace {app_namespace})"]["status"] == "unknown"
    assert checks[f"RBAC: get pods/log in namespace {app_namespace}"]["status"] == "ok"
    table = kdiag_cli("doctor", "--pod", "testapp", env={"KUBECONFIG": str(kubeconfig)},
                      timeout=60)
    assert table.returncode == 3, table.output
    for verb in ("patch pods/ephemeralcontainers", "get pods/portforward"):
        assert f"RBAC: cannot {verb}" in table.stdout, table.stdout


def test_restricted_namespace_refuses_the_manager(cluster: Cluster, restricted_namespace: str,
                                                  kdiag_cli: Kdiag) -> None:
    code, report, _ = _doctor(kdiag_cli, "-n", restricted_namespace, "--pod", "testapp")
    assert code == 3
    check = _by_name(report)[f"pod security (namespace {restricted_namespace})"]
    assert check["status"] == "fail" and check["blocking"], check
    assert "enforces 'restricted'" in check["detail"], check
    assert "the manager cannot start there" in check["detail"], check
    assert "NET_ADMIN" in check["detail"] and "root" in check["detail"], check
    assert "pod-security.kubernetes.io/enforce=privileged" in check["fix"], check
    assert [c["check"] for c in report["checks"] if c["status"] == "fail"] == [check["check"]]


def test_unreadable_level_is_found_by_a_dry_run(cluster: Cluster, restricted_namespace: str,
                                               kdiag_cli: Kdiag, tmp_path: Path) -> None:
    """A service account with every verb kdiag needs but no right to read namespaces: the
    labels are unknown, admission's dry-run answer says the manager cannot start — and
    ``kdiag run`` stops on it before injecting."""
    kubeconfig = restricted_kubeconfig(cluster, restricted_namespace, tmp_path / "kubeconfig",
                                       [PODS_READ, LOGS, PATCH, FORWARD], name="doctor-all")
    code, report, _ = _doctor(kdiag_cli, "--pod", "testapp", kubeconfig=kubeconfig)
    checks = _by_name(report)
    assert code == 3, checks
    assert checks[f"pod security (namespace {restricted_namespace})"]["status"] == "unknown"
    dry = checks["manager admission (dry run)"]
    assert dry["status"] == "fail" and "the manager cannot start there" in dry["detail"], dry
    assert "violates PodSecurity" in dry["detail"] and "restricted" in dry["detail"], dry
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(RUNBOOK)
    result, _ = kdiag_cli.run(str(runbook), restricted_namespace,
                              env={"KUBECONFIG": str(kubeconfig)}, timeout=120)
    assert result.returncode == 3, result.output
    assert "violates PodSecurity" in result.stdout, result.output
    assert _ephemeral_containers(cluster, restricted_namespace) == []


def test_run_with_missing_rbac_stops_before_any_change(cluster: Cluster, app_namespace: str,
                                                       kdiag_cli: Kdiag, tmp_path: Path) -> None:
    """Patching is allowed, port-forwarding is not: without the check first, the manager would
    be injected (for good: ephemeral containers cannot be removed) and then be unreachable."""
    kubeconfig = restricted_kubeconfig(cluster, app_namespace, tmp_path / "kubeconfig",
                                       [PODS_READ, LOGS, PATCH], name="doctor-noforward")
    runbook = tmp_path / "rb.yaml"
    runbook.write_text(RUNBOOK)
    result, report = kdiag_cli.run(str(runbook), app_namespace, report=tmp_path / "r.json",
                                   env={"KUBECONFIG": str(kubeconfig)}, timeout=120)
    assert result.returncode == 3, result.output
    user = f"system:serviceaccount:{app_namespace}:doctor-noforward"
    line = (f"RBAC: cannot get pods/portforward in namespace {app_namespace} (as {user})"
            " (needed by shell 'look')")
    assert line in result.stdout, result.output
    assert _ephemeral_containers(cluster, app_namespace) == []
    steps = {s["name"]: s["status"] for s in report["runs"][0]["steps"]}
    assert steps["look"] == "error" and steps["note #1 (finally)"] == "passed", steps
    # The same runbook, as doctor sees it.
    code, doctor, _ = _doctor(kdiag_cli, "-f", str(runbook), "--set",
                              f"namespace={app_namespace}", kubeconfig=kubeconfig)
    failed = [c for c in doctor["checks"] if c["status"] == "fail"]
    assert code == 3 and [c["check"] for c in failed] == [line.split(" (needed")[0]], failed
    assert failed[0]["needed_by"] == ["shell 'look'"]

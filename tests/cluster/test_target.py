"""The Kubernetes target against real pods: resolution (name, selector, pick, default
container annotation, running only), manager injection (spec, token hash, capabilities) and
reuse by a later session."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kdiag.errors import TargetError

from .conftest import Cluster

pytestmark = pytest.mark.cluster


def _pod(name: str, labels: dict[str, str], containers: list[str],
         annotations: dict[str, str] | None = None, image: str = "kdiag.local/testapp:dev"
         ) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": c, "image": image, "imagePullPolicy": "Never",
                 "args": [f"-listen=:{8080 + i}", f"-name={c}"]}
                for i, c in enumerate(containers)]}}


@pytest.fixture
def kube(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A loaded KubeConfig for the local cluster, with a private token cache."""
    from kdiag.kube.config import KubeOptions, load

    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KDIAG_MANAGER_PULL_POLICY", "Never")
    return load(KubeOptions())


def test_resolution(cluster: Cluster, namespace: str, kube: Any) -> None:
    from kdiag.kube.pods import PodSelector, resolve

    core = cluster.core
    core.create_namespaced_pod(namespace, _pod("first", {"role": "web"}, ["main", "helper"],
                                               {"kubectl.kubernetes.io/default-container":
                                                "helper"}))
    cluster.wait_pod_running(namespace, "first")
    time.sleep(1.1)  # creation timestamps have one-second resolution
    core.create_namespaced_pod(namespace, _pod("second", {"role": "web"}, ["main"]))
    core.create_namespaced_pod(namespace, _pod("stuck", {"role": "web"}, ["main"],
                                               image="kdiag.local/no-such-image:dev"))
    cluster.wait_pod_running(namespace, "second")

    def names(**kw: Any) -> list[tuple[str, str]]:
        return [(p.name, p.container)
                for p in resolve(core, PodSelector(namespace=namespace, **kw), kube.server)]

    assert names(pod="first") == [("first", "helper")]  # the annotation wins
    assert names(pod="first", container="main") == [("first", "main")]
    assert names(selector="role=web") == [("second", "main")]  # newest, running only
    assert names(selector="role=web", pick="oldest") == [("first", "helper")]
    assert names(selector="role=web", pick="all") == [("second", "main"), ("first", "helper")]
    with pytest.raises(TargetError, match=r"no running pod matches role=db in namespace"):
        names(selector="role=db")
    with pytest.raises(TargetError, match=r"pod .*/stuck is Pending, not running"):
        names(pod="stuck")
    with pytest.raises(TargetError, match=r"has no container 'nope' \(containers: main, helper\)"):
        names(pod="first", container="nope")
    with pytest.raises(TargetError, match=r"pod .*/gone not found \(deleted\?\)"):
        names(pod="gone")


def test_injection_and_reuse(cluster: Cluster, namespace: str, kube: Any, tmp_path: Path) -> None:
    from kdiag.kube.inject import CAPABILITIES, name_prefix
    from kdiag.targets.kubernetes import KubernetesSpec, KubernetesTarget

    cluster.core.create_namespaced_pod(namespace, cluster.manifest("app"))
    cluster.wait_pod_running(namespace, "testapp")
    target = KubernetesTarget(KubernetesSpec(namespace=namespace, pod="testapp"))

    started = time.monotonic()
    with target.open() as first:
        first_open = time.monotonic() - started
        assert not first.reused
        assert first.manager.exec(["echo", "hi"]).stdout_text == "hi\n"
        container = first.container
        assert container.startswith(name_prefix() + "-")
        assert first.info["container"] == "app" and first.info["pod"] == "testapp"

    started = time.monotonic()
    with target.open() as second:
        second_open = time.monotonic() - started
        assert second.reused and second.container == container
        assert [p.command for p in second.manager.ps() if p.is_target] == [
            "/testapp -listen=:8080 -name=app"]
        assert second.relay.connections == 1  # one port-forward for the whole session
        # ...whose second port is the manager's lane: tunnels go there, not on gRPC.
        lane = second.manager.lane
        assert lane is not None and lane.ready and second.manager.tunnel() == lane.method
    assert second_open < first_open / 2, (first_open, second_open)

    pod = cluster.core.read_namespaced_pod("testapp", namespace)
    (spec,) = pod.spec.ephemeral_containers
    assert spec.target_container_name == "app"
    assert sorted(spec.security_context.capabilities.add) == sorted(CAPABILITIES)
    assert not spec.security_context.privileged
    env = {e.name: e.value for e in spec.env}
    assert set(env) == {"KDIAG_TOKEN_SHA256", "KDIAG_TARGET_CONTAINER_ID"}
    (app_status,) = pod.status.container_statuses
    assert app_status.container_id.endswith("://" + env["KDIAG_TARGET_CONTAINER_ID"])
    # The token itself is only in this machine's cache (mode 0600), never in the pod.
    cache = tmp_path / "cache" / "kdiag" / "managers.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    (entry,) = json.loads(cache.read_text()).values()
    assert hashlib.sha256(entry["token"].encode()).hexdigest() == env["KDIAG_TOKEN_SHA256"]
    assert entry["token"] not in json.dumps(pod.to_dict(), default=str)

    # A machine without the token injects a manager of its own instead of failing.
    cache.unlink()
    with target.open() as third:
        assert not third.reused and third.container != container



def test_pod_sharing_one_pid_namespace(cluster: Cluster, namespace: str, kube: Any) -> None:
    """With ``shareProcessNamespace`` PID 1 is the pause process: the manager finds the
    target container's own process, so shell, copy and ps act on the target's root."""
    from kdiag.targets.kubernetes import KubernetesSpec, KubernetesTarget

    pod = _pod("shared", {}, ["app"])
    pod["spec"]["shareProcessNamespace"] = True
    pod["spec"]["containers"].insert(0, {
        "name": "side", "image": "kdiag.local/busybox:dev", "imagePullPolicy": "Never",
        "command": ["sleep", "3600"]})
    cluster.core.create_namespaced_pod(namespace, pod)
    cluster.wait_pod_running(namespace, "shared")
    with KubernetesTarget(KubernetesSpec(namespace=namespace, pod="shared",
                                         container="app")).open() as session:
        assert int(session.info["target_pid"]) > 1
        root = session.manager.exec(["ls", "/"]).stdout_text.split()
        assert "testapp" in root and "pause" not in root, root
        targets = [p.command for p in session.manager.ps() if p.is_target]
        assert targets == ["/testapp -listen=:8080 -name=app"]

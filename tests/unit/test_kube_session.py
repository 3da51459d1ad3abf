"""The Kubernetes target's own logic with fakes of the API and the manager: the runbook's
``kubernetes:`` options, what a session says it is, why a lost manager was lost, what closing
deletes or keeps, and which pods a ``logs``/``forward`` step means. The sessions themselves
run in tests/cluster."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import ManagerError, ManagerUnavailable, TargetError
from kdiag.kube.errors import ClusterUnreachable, PodGone
from kdiag.kube.pods import PodRef, PodSelector, Selection
from kdiag.kube.workloads import ServicePort, Workload
from kdiag.targets import kubernetes
from kdiag.targets.kubernetes import KubernetesSession, KubernetesSpec

REF = PodRef("shop", "api-0", "uid-1", "app", ("app",), node="node-1",
             host_ips=("10.213.0.1",), named_ports={"http": 8080})


class Manager:
    def __init__(self, routes: list[dict[str, Any]] | Exception) -> None:
        self.routes = routes
        self.closed = 0

    def net(self) -> Any:
        if isinstance(self.routes, Exception):
            raise self.routes
        return NS(routes=self.routes)

    def close(self) -> None:
        self.closed += 1


class Owned:
    def __init__(self, keep_error: bool = False) -> None:
        self.kept: list[tuple[str, str, str]] = []
        self.closed = 0
        self.keep_error = keep_error

    def keep(self, kind: str, namespace: str, name: str) -> None:
        if self.keep_error:
            raise TargetError("lease gone")
        self.kept.append((kind, namespace, name))

    def close(self) -> None:
        self.closed += 1


def session(ref: PodRef = REF, workload: Workload | None = None, reused: bool = False,
            routes: list[dict[str, Any]] | Exception | None = None,
            pods: dict[str, Any] | None = None) -> KubernetesSession:
    core = NS(read_namespaced_pod=lambda name, ns, **_: (pods or {})[name])
    kube = NS(server="https://k:6443", context="main", in_cluster=False, user="u",
              core=lambda: core)
    relay = NS(closed=0)
    relay.close = lambda: setattr(relay, "closed", relay.closed + 1)
    return KubernetesSession(kube, ref, Selection([ref], "app=api" if workload else "",  # type: ignore[arg-type]
                                                  workload),
                             Manager(routes if routes is not None else []), relay,
                             "kdiag-7", reused, {"pid": 12, "target_pid": 1234})


def test_the_runbook_options_become_the_spec() -> None:
    spec = KubernetesSpec.from_options({"namespace": "shop", "pod": "deploy/api", "pick": "all",
                                        "timeout": "90s", "privileged": True, "image": "",
                                        "copy": {"command": "sleep 1d"}, "keep_copy": True})
    assert (spec.namespace, spec.pod, spec.pick, spec.timeout, spec.privileged, spec.image) == (
        "shop", "deploy/api", "all", 90.0, True, None)
    assert spec.copy is not None and (spec.copy.command, spec.copy.keep) == (("sleep", "1d"), True)
    assert spec.manager_image().privileged and spec.manager_image().timeout == 90.0
    assert spec.describe() == "deploy shop/api, every ready pod"  # the type as the user wrote it
    assert KubernetesSpec(selector="app=x").describe() == "pods app=x in (default namespace)"
    assert KubernetesSpec(pod="api-0", namespace="n").describe() == "pod n/api-0"
    assert KubernetesSpec(node="node-1", pod="x").describe() == "node node-1"
    assert KubernetesSpec(pod="x", pick="bogus").selector_for("n") == PodSelector(
        "n", pod="x", pick="newest")
    with pytest.raises(TargetError, match=r"^target kubernetes: timeout: "):
        KubernetesSpec.from_options({"timeout": "soon"})


def test_what_a_session_says_it_is() -> None:
    plain = session()
    assert plain.info["target_pid"] == 1234 and plain.info["way"] == "ephemeral"
    assert plain.summary() == "pod shop/api-0 (container app), manager kdiag-7 (injected)"
    assert session(reused=True).summary().endswith("manager kdiag-7 (reused)")
    of = session(workload=Workload("deployment", "api", "shop", "app=api"))
    assert of.info["workload"] == "deployment/api"
    assert of.summary().startswith("pod shop/api-0 (container app) of deployment/api, ")
    copied = session()
    copied.adopt(Owned(), "copy", copy_of="api-0", keep_copy=True)  # type: ignore[arg-type]
    assert copied.summary() == ("pod shop/api-0 (container app), a copy of pod api-0 (kept), "
                                "manager kdiag-7 (injected)")
    via = session()
    via.adopt(Owned(), "via-node", via_node="kdiag/kdiag-node-x",  # type: ignore[arg-type]
              fallback="the ephemeral container was refused (x)")
    assert via.summary() == ("pod shop/api-0 (container app), manager through node node-1 "
                             "(pod kdiag/kdiag-node-x) because the ephemeral container was "
                             "refused (x)")
    node = session()
    node.adopt(Owned(), "node")  # type: ignore[arg-type]
    assert node.summary() == "node node-1 (manager in pod shop/api-0)"


def test_ports_map_through_the_service_and_name_the_pod_when_unknown() -> None:
    svc = Workload("service", "api", "shop", "app=api", (ServicePort(80, "web", "http"),))
    assert session(workload=svc).map_port(80) == 8080
    with pytest.raises(ValueError, match=r"^pod api-0: no port named 'grpc' \(named ports: "
                                         r"http, web\)$"):
        session(workload=svc).map_port("grpc")


def test_node_sources_are_the_node_addresses_and_the_default_gateways_once() -> None:
    routes = [{"gateway": "10.1.0.1", "destination": ""}, {"gateway": "10.1.0.9",
                                                           "destination": "10.2.0.0/16"},
              {"gateway": "10.213.0.1"}, {"destination": "10.1.0.0/24"}]
    s = session(routes=routes)
    assert s.node_sources() == ("10.213.0.1", "10.1.0.1")
    s.manager.routes = []
    assert s.node_sources() == ("10.213.0.1", "10.1.0.1")  # asked once
    assert session(routes=ManagerError("no net")).node_sources() == ("10.213.0.1",)


def test_closing_ends_the_manager_then_the_port_forward_and_keeps_a_copy_if_asked() -> None:
    s = session()
    owned = Owned()
    s.adopt(owned, "copy", copy_of="api-0", keep_copy=True)  # type: ignore[arg-type]
    s.close()
    s.close()
    assert (s.manager.closed, s.relay.closed) == (1, 1)
    assert owned.kept == [("pods", "shop", "api-0")] and owned.closed == 1
    dropped = session()
    owned = Owned()
    dropped.adopt(owned, "copy", copy_of="api-0", keep_copy=False)  # type: ignore[arg-type]
    dropped.close()
    assert owned.kept == [] and owned.closed == 1
    failing = session()
    owned = Owned(keep_error=True)
    failing.adopt(owned, "copy", copy_of="api-0", keep_copy=True)  # type: ignore[arg-type]
    failing.close()  # a copy that cannot be kept is still released
    assert owned.closed == 1


def pod(uid: str = "uid-1", phase: str = "Running", deleting: bool = False,
        terminated: Any = None) -> Any:
    statuses = [NS(name="kdiag-7", state=NS(terminated=terminated)),
                NS(name="kdiag-1", state=NS(terminated=NS(exit_code=9, reason="Old")))]
    return NS(metadata=NS(uid=uid, deletion_timestamp="now" if deleting else None),
              status=NS(phase=phase, ephemeral_container_statuses=statuses))


@pytest.mark.parametrize(("found", "cause"), [
    (pod(), None),
    (pod(uid="uid-2"), "pod shop/api-0 was deleted and recreated during the run"),
    (pod(deleting=True), "pod shop/api-0 is being deleted"),
    (pod(phase="Failed"), "pod shop/api-0 is Failed"),
    (pod(terminated=NS(exit_code=137, reason="OOMKilled")),
     "the manager container kdiag-7 in pod shop/api-0 exited with code 137 (OOMKilled)"),
])
def test_why_the_manager_was_lost(found: Any, cause: str | None) -> None:
    error = session(pods={"api-0": found}).diagnose()
    assert (str(error) if error is not None else None) == cause
    if cause is not None and "manager container" not in cause:
        assert isinstance(error, PodGone)


def test_a_lost_manager_names_the_cluster_when_the_api_server_is_down() -> None:
    def down(*_: Any, **__: Any) -> Any:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    s = session()
    s.kube.core = lambda: NS(read_namespaced_pod=down)  # type: ignore[attr-defined]
    error = s.diagnose()
    assert isinstance(error, ClusterUnreachable)
    assert str(error) == "cluster unreachable: https://k:6443 (connection refused)"


def test_manager_calls_raise_the_diagnosed_cause_instead_of_unavailable() -> None:
    class Client:
        cause: TargetError | None = None

        def _diagnose(self) -> TargetError | None:
            return self.cause

        @kubernetes._diagnosing
        def ps(self) -> Any:
            raise ManagerUnavailable("manager unreachable: connection reset")

    client = Client()
    with pytest.raises(TargetError, match=r"^manager unreachable: connection reset$"):
        client.ps()
    client.cause = PodGone("pod shop/api-0 is being deleted")
    with pytest.raises(PodGone, match="being deleted"):
        client.ps()
    assert {"ps", "exec", "redirect"} <= set(vars(kubernetes._client_class()))


def test_a_steps_own_pod_replaces_the_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Any] = []

    def load(options: Any) -> Any:
        loaded.append(options)
        return NS(namespace=options.namespace or "default", server="s")

    monkeypatch.setattr(kubernetes, "load", load)
    target = {"kind": "kubernetes", "namespace": "shop", "pod": "api-0", "container": "app",
              "context": "prod"}
    _, want = kubernetes.selection_for_step(target, {"selector": "app=db"})
    assert want == PodSelector("shop", selector="app=db", container="app")
    assert loaded[-1].context == "prod"
    _, want = kubernetes.selection_for_step(target, {"pod": "db-0", "namespace": "data"},
                                            pick="all")
    assert want == PodSelector("data", pod="db-0", pick="all")  # the target's container not
    _, want = kubernetes.selection_for_step(target, {})
    assert want == PodSelector("shop", pod="api-0", container="app")
    with pytest.raises(TargetError, match=r"^name a pod or a selector \(or give the runbook a "
                                          r"kubernetes target\)$"):
        kubernetes.selection_for_step({"kind": "node", "pid": 1}, {"namespace": "x"})

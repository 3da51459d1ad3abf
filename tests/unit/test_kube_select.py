"""Which pods a Kubernetes target means, with a fake API client: a named pod (running or not),
a workload's or a Service's selector, ready or running or any live pod, the message naming why
none was found, and the PodRef built from the API object (container ID, node addresses, named
ports). tests/cluster/test_workloads.py runs the same against real objects."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.kube import errors
from kdiag.kube.pods import PodSelector, Selection, is_ready, resolve, select, to_ref
from kdiag.kube.workloads import Workload, is_workload_name, read_workload
from tests.unit.kubefakes import FakeApiException, FakeCore, install, pod


@pytest.fixture(autouse=True)
def _api_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch)


def test_a_named_pod_is_read_by_name_and_described_from_its_api_object() -> None:
    core = FakeCore([pod("api-0")])
    selection = select(core, PodSelector("shop", pod="api-0"))
    assert core.calls == [("read", "api-0", "shop")]
    assert selection.selector == "" and selection.workload is None
    assert selection.label == "pod/api-0"
    ref = selection.pods[0]
    assert (ref.name, ref.container, ref.containers, ref.node, ref.ip) == (
        "api-0", "app", ("app", "side"), "node-1", "10.1.0.5")
    assert ref.container_id == "aaa"  # its own container's, without "containerd://"
    assert ref.host_ips == ("10.213.0.1", "fd00::1")
    assert ref.named_ports == {"http": 8080}
    assert ref.to_dict()["host_ip"] == "10.213.0.1"
    assert select(core, PodSelector("shop", pod="pod/api-0", container="side")
                  ).pods[0].container_id == "bbb"


def test_a_named_pod_that_does_not_run_is_refused_with_its_phase() -> None:
    core = FakeCore([pod("api-0", phase="Pending"), pod("api-1", deleting=True)])
    with pytest.raises(errors.PodGone, match=r"^pod shop/api-0 is Pending, not running$"):
        select(core, PodSelector("shop", pod="api-0"))
    with pytest.raises(errors.PodGone, match=r"^pod shop/api-1 is terminating, not running$"):
        select(core, PodSelector("shop", pod="api-1"))
    # A pod to copy need not run; one being deleted still cannot be copied.
    assert select(core, PodSelector("shop", pod="api-0"), running=False).pods[0].name == "api-0"
    with pytest.raises(errors.PodGone, match="terminating"):
        select(core, PodSelector("shop", pod="api-1"), running=False)


def test_a_selector_lists_the_pods_and_picks_among_the_running_ones() -> None:
    pods = [pod("old", 1), pod("new", 3), pod("pending", 5, phase="Pending"),
            pod("gone", 7, deleting=True)]
    core = FakeCore(pods)
    newest = select(core, PodSelector("shop", selector="app=api"))
    assert core.calls == [("list", "shop", "app=api")]
    assert [p.name for p in newest.pods] == ["new"] and newest.label == "app=api"
    assert [p.name for p in resolve(core, PodSelector("shop", selector="app=api",
                                                      pick="oldest"))] == ["old"]
    everyone = select(core, PodSelector("shop", selector="app=api", pick="all"))
    assert [p.name for p in everyone.pods] == ["new", "old"]
    live = select(core, PodSelector("shop", selector="app=api", pick="all"), running=False)
    assert [p.name for p in live.pods] == ["pending", "new", "old"]


def test_pick_all_keeps_only_ready_pods_unless_told_otherwise() -> None:
    core = FakeCore([pod("ready", 1), pod("warming", 2, ready=False)])
    assert [p.name for p in select(core, PodSelector("shop", selector="a=b", pick="all")
                                   ).pods] == ["ready"]
    assert [p.name for p in select(core, PodSelector("shop", selector="a=b", pick="all"),
                                   ready=False).pods] == ["warming", "ready"]
    assert [p.name for p in select(core, PodSelector("shop", selector="a=b"), ready=True
                                   ).pods] == ["ready"]
    assert not is_ready(pod("x", status=True, phase="Pending"))


def test_no_pod_found_says_what_was_looked_for_and_how_many_were_not_eligible() -> None:
    core = FakeCore([pod("a", phase="Pending"), pod("b", phase="Failed")])
    with pytest.raises(TargetError, match=r"^no running pod matches app=api in namespace shop "
                                          r"\(2 not running\)$"):
        select(core, PodSelector("shop", selector="app=api"))
    with pytest.raises(TargetError, match=r"^no ready pod matches app=api in namespace shop "
                                          r"\(2 not ready\)$"):
        select(core, PodSelector("shop", selector="app=api", pick="all"))
    with pytest.raises(TargetError, match=r"^no running pod matches x=y in namespace shop$"):
        select(FakeCore([]), PodSelector("shop", selector="x=y"))
    with pytest.raises(TargetError, match=r"^no live pod matches app=api in namespace shop "
                                          r"\(1 not live\)$"):
        select(FakeCore([pod("a", deleting=True)]), PodSelector("shop", selector="app=api"),
               running=False)
    with pytest.raises(TargetError, match="name a pod, TYPE/NAME or a label selector"):
        select(FakeCore([]), PodSelector("shop"))


def service(selector: dict[str, str] | None, ports: list[Any] | None = None,
            name: str = "api") -> Any:
    return NS(metadata=NS(name=name), spec=NS(selector=selector, ports=ports))


def test_a_service_target_selects_its_pods_and_maps_its_ports() -> None:
    svc = service({"tier": "web", "app": "api"},
                  [NS(port=80, name="http", target_port="web"),
                   NS(port=9090, name=None, target_port=None)])
    core = FakeCore([pod("api-0", ready=False)], {"api": svc})
    selection = select(core, PodSelector("shop", pod="svc/api"))
    assert core.calls == [("service", "api", "shop"), ("list", "shop", "app=api,tier=web")]
    assert selection.label == "service/api" and selection.selector == "app=api,tier=web"
    assert selection.workload is not None
    assert [(p.port, p.name, p.target) for p in selection.workload.ports] == [
        (80, "http", "web"), (9090, "", 9090)]  # no targetPort: the port itself
    with pytest.raises(TargetError, match=r"^no ready pod of service/api in namespace shop "
                                          r"\(1 not ready\)$"):
        select(core, PodSelector("shop", pod="svc/api", pick="all"))


def test_a_service_without_selector_or_that_does_not_exist_is_refused() -> None:
    core = FakeCore([], {"bare": service(None, name="bare")})
    with pytest.raises(TargetError, match=r"^service shop/bare has no selector .*name the pods"):
        read_workload(core, "service", "bare", "shop")
    with pytest.raises(TargetError, match=r"^service shop/nope not found$"):
        read_workload(core, "service", "nope", "shop")


def test_workloads_are_read_through_their_own_api_group(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from kubernetes import client

    read: list[tuple[str, str, str]] = []

    def reader(method: str, selector: Any) -> Any:
        def _read(name: str, namespace: str, **_: Any) -> Any:
            read.append((method, name, namespace))
            if name == "missing":
                raise FakeApiException(404)
            if name == "denied":
                raise FakeApiException(403)
            return NS(spec=NS(selector=selector))
        return _read

    labels = NS(match_labels={"app": "api"}, match_expressions=None)

    class Apps:
        def __init__(self, _: Any) -> None:
            for method in ("deployment", "stateful_set", "daemon_set", "replica_set"):
                setattr(self, f"read_namespaced_{method}", reader(method, labels))

    class Batch:
        def __init__(self, _: Any) -> None:
            self.read_namespaced_job = reader("job", NS(match_labels=None,
                                                        match_expressions=None))

    monkeypatch.setattr(client, "AppsV1Api", Apps)
    monkeypatch.setattr(client, "BatchV1Api", Batch)
    core = FakeCore([])
    assert read_workload(core, "statefulset", "db", "shop") == Workload(
        "statefulset", "db", "shop", "app=api")
    assert read_workload(core, "daemonset", "agent", "shop").selector == "app=api"
    assert read[-2:] == [("stateful_set", "db", "shop"), ("daemon_set", "agent", "shop")]
    with pytest.raises(TargetError, match=r"^job shop/migrate has no selector$"):
        read_workload(core, "job", "migrate", "shop")
    with pytest.raises(TargetError, match=r"^deployment shop/missing not found$"):
        read_workload(core, "deployment", "missing", "shop")
    with pytest.raises(errors.RbacDenied, match=r"^RBAC: cannot get replicasets.apps in "
                                                r"namespace shop$"):
        read_workload(core, "replicaset", "denied", "shop")


def test_workload_names_and_selection_labels() -> None:
    assert is_workload_name("deploy/api") and is_workload_name("svc/api")
    assert not is_workload_name("pod/api-0") and not is_workload_name("api-0")
    assert not is_workload_name(None)
    ref = to_ref(pod("p", status=False), None)
    assert (ref.ip, ref.host_ips, ref.container_id) == ("", (), "")
    assert Selection([ref], "app=x").label == "app=x"

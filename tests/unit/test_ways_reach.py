"""How the other ways into a pod choose, with fakes of the target and the API: ``via: auto``
falls back on the node only for a refusal of the ephemeral container, ``via: ephemeral`` does
not; a node manager that found no process of the target is closed and refused; processes a
node's manager lists are named by the pods on that node (best effort). The ways themselves run
in tests/cluster/test_ways.py."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.kube.errors import EphemeralUnsupported, RbacDenied
from kdiag.kube.inject import ManagerImage
from kdiag.kube.pods import PodRef, Selection
from kdiag.session.results import ProcessInfo
from kdiag.targets import ways

REF = PodRef("shop", "api-0", "uid-1", "app", ("app",), node="node-1",
             container_id="0123456789abcdef0123")


class Session:
    def __init__(self, target_pid: int | None) -> None:
        self.info: dict[str, Any] = {"way": "?", "target_pid": target_pid}
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Target:
    """Refuses the ephemeral container with ``refusal`` (None: opens it)."""

    def __init__(self, via: str, refusal: Exception | None, target_pid: int | None = 42) -> None:
        self.spec = NS(via=via, node_namespace="", manager_image=lambda: ManagerImage("img:1"))
        self.refusal = refusal
        self.connected: list[tuple[str, str, bool, PodRef | None]] = []
        self.session = Session(target_pid)

    def open_pod(self, kube: Any, ref: PodRef, selection: Selection) -> Any:
        if self.refusal is not None:
            raise self.refusal
        return "ephemeral-session"

    def _connect(self, kube: Any, ref: PodRef, selection: Selection, injector: Any, name: str,
                 token: str, reused: bool, log_ref: PodRef | None = None) -> Any:
        self.connected.append((name, token, reused, log_ref))
        return self.session


@pytest.fixture
def node_pods(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """start_node_pod replaced: records (namespace, node) and answers a node pod."""
    from kdiag.kube import nodepod

    started: list[tuple[str, str]] = []

    def start(core: Any, owned: Any, namespace: str, node: str, image: Any, *,
              target: PodRef | None = None) -> Any:
        assert target == REF
        started.append((namespace, node))
        return nodepod.NodePod(replace(REF, namespace="kdiag", name="kdiag-node-x"), "tok")

    monkeypatch.setattr(nodepod, "start_node_pod", start)
    return started


KUBE = NS(core=lambda: object(), server="https://k:6443", namespace="shop")


def test_auto_goes_through_the_node_when_the_ephemeral_container_is_refused(
        node_pods: list[tuple[str, str]]) -> None:
    target = Target("auto", RbacDenied("RBAC: cannot patch pods/ephemeralcontainers"))
    session = ways._reach(target, KUBE, REF, Selection([REF]), owned=None)  # type: ignore[arg-type]
    assert session is target.session
    assert node_pods == [("shop", "node-1")]
    assert target.connected[0][:3] == ("manager", "tok", False)
    assert session.info["way"] == "via-node" and session.info["via_node"] == "kdiag/kdiag-node-x"
    assert session.info["fallback"] == ("the ephemeral container was refused (RBAC: cannot "
                                        "patch pods/ephemeralcontainers)")


def test_ephemeral_only_and_auto_that_succeeds_do_not_touch_the_node(
        node_pods: list[tuple[str, str]]) -> None:
    refused = Target("ephemeral", EphemeralUnsupported("too old"))
    with pytest.raises(EphemeralUnsupported, match="too old"):
        ways._reach(refused, KUBE, REF, Selection([REF]), owned=None)  # type: ignore[arg-type]
    ok = Target("auto", None)
    assert ways._reach(ok, KUBE, REF, Selection([REF]), None) == "ephemeral-session"  # type: ignore[arg-type]
    # Another failure than a refusal is not a reason to try the node.
    broken = Target("auto", TargetError("pod gone"))
    with pytest.raises(TargetError, match="pod gone"):
        ways._reach(broken, KUBE, REF, Selection([REF]), None)  # type: ignore[arg-type]
    assert node_pods == []


def test_via_node_set_explicitly_has_no_fallback_and_needs_the_target_process(
        node_pods: list[tuple[str, str]]) -> None:
    target = Target("node", None)
    target.spec.node_namespace = "kdiag-system"
    session = ways._reach(target, KUBE, REF, Selection([REF]), None)  # type: ignore[arg-type]
    assert "fallback" not in session.info and node_pods == [("kdiag-system", "node-1")]
    lost = Target("node", None, target_pid=1)
    with pytest.raises(TargetError, match=r"^the manager on node node-1 found no process of pod "
                                          r"shop/api-0 \(container app\) \(container "
                                          r"0123456789ab\)$"):
        ways._reach(lost, KUBE, REF, Selection([REF]), None)  # type: ignore[arg-type]
    assert lost.session.closed
    with pytest.raises(TargetError, match="is on no node yet"):
        ways._reach(target, KUBE, replace(REF, node=""), Selection([REF]), None)  # type: ignore[arg-type]


def test_other_ways_refuse_an_unknown_via_and_pick_all() -> None:
    spec = NS(via="sideways", node="", pick="newest")
    with pytest.raises(TargetError, match=r"^target kubernetes: via: 'sideways' is not one of "
                                          r"ephemeral, node, auto$"):
        ways.open_other_way(NS(spec=spec), KUBE)  # type: ignore[arg-type]
    spec = NS(via="node", node="", pick="all")
    with pytest.raises(TargetError, match="work on one pod, not pick: all"):
        ways.open_other_way(NS(spec=spec), KUBE)  # type: ignore[arg-type]


def process(pid: int, pod_uid: str = "", container_id: str = "") -> ProcessInfo:
    return ProcessInfo(pid, 1, 0, "root", ["x"], "x", [], False, pod_uid, container_id)


def test_a_nodes_processes_are_named_by_the_pods_on_that_node() -> None:
    listed: list[str] = []

    def list_all(field_selector: str, **_: Any) -> Any:
        listed.append(field_selector)
        status = NS(container_statuses=[NS(name="app", container_id="containerd://c1")],
                    init_container_statuses=None,
                    ephemeral_container_statuses=[NS(name="kdiag-1", container_id=None)])
        return NS(items=[NS(metadata=NS(uid="u1", namespace="shop", name="api-0"),
                            status=status)])

    kube = NS(core=lambda: NS(list_pod_for_all_namespaces=list_all), server="s")
    names = ways.PodNames(kube, "node-1")  # type: ignore[arg-type]
    host = [process(1)]
    assert names(host) is host and listed == []  # no pod process: no API call
    named = names([process(1), process(7, "u1", "c1"), process(8, "u2", "c2")])
    assert listed == ["spec.nodeName=node-1"]
    assert [(p.pid, p.pod, p.container) for p in named] == [
        (1, "", ""), (7, "shop/api-0", "app"), (8, "", "")]


def test_processes_stay_unnamed_when_the_pods_cannot_be_listed() -> None:
    def denied(**_: Any) -> Any:
        raise TargetError("RBAC: cannot list pods cluster-wide")

    kube = NS(core=lambda: NS(list_pod_for_all_namespaces=denied), server="s")
    processes = [process(7, "u1", "c1")]
    assert ways.PodNames(kube, "n")(processes) is processes  # type: ignore[arg-type]

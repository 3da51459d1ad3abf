"""Which checks doctor and ``kdiag run`` ask for, and in which order (kdiag/preflight/examine.py),
with each check replaced by a recorder: a node target asks the host, a runbook that does not
use the cluster asks nothing, an unreachable cluster stops at the first check, the dry-run
injection only when nothing refuses already, the target pod found or not.
test_preflight_cluster.py tests the checks themselves."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.preflight import examine as ex
from kdiag.preflight.checks import Check
from kdiag.preflight.demand import Demand, StepUse
from tests.unit.kubefakes import FakeCore, pod

POD = {"kubernetes": {"namespace": "shop", "pod": "api-0"}}


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Each check records its call; ``answers`` says what it returns."""
    state: dict[str, Any] = {"calls": [], "connect": "ok", "security": "ok", "rbac": "ok",
                             "pod": (NS(metadata=NS(name="api-0")), Check("target pod", "ok"))}
    session = NS(namespace="shop")

    def record(name: str, check: Check) -> Check:
        state["calls"].append(name)
        return check

    def connect(demand: Demand, identify: bool) -> Any:
        state["calls"].append(f"connect identify={identify}")
        if state["connect"] != "ok":
            return None, Check("cluster", "fail", "unreachable")
        return session, Check("cluster", "ok")

    monkeypatch.setattr(ex, "connect", connect)
    monkeypatch.setattr(ex, "ephemeral_check", lambda s, discover: record(
        f"ephemeral discover={discover}", Check("ephemeral containers", "ok")))
    monkeypatch.setattr(ex, "rbac_checks", lambda s, d: [record("rbac", Check(
        "RBAC", state["rbac"]))])
    monkeypatch.setattr(ex, "pod_security_check", lambda s, d, caps: record(
        "pod security", Check("pod security", state["security"], blocking=False)))
    monkeypatch.setattr(ex, "dry_run_injection", lambda s, p, spec: record(
        f"dry run {spec['targetContainerName']}", Check("dry run", "ok")))
    monkeypatch.setattr(ex, "_target_pod", lambda s, d: (state["calls"].append("target pod"),
                                                         state["pod"])[1])
    import kdiag.preflight.image as image

    monkeypatch.setattr(image, "image_check", lambda s, d, p: record("image", Check("image",
                                                                                    "ok")))
    monkeypatch.setattr(ex, "_manager_spec", lambda d, p: {"targetContainerName": "app"})
    return state


def test_doctor_asks_everything_in_order(asked: dict[str, Any]) -> None:
    checks = ex.examine(Demand(POD))
    assert asked["calls"] == ["connect identify=True", "ephemeral discover=True", "rbac",
                              "pod security", "target pod", "image", "dry run app"]
    assert [c.name for c in checks] == ["cluster", "ephemeral containers", "RBAC",
                                        "pod security", "target pod", "image", "dry run"]


def test_no_dry_run_when_something_refuses_already(asked: dict[str, Any]) -> None:
    asked["rbac"] = "fail"
    ex.examine(Demand(POD))
    assert asked["calls"][-2:] == ["target pod", "image"]


def test_a_run_asks_the_quick_checks_and_a_dry_run_only_when_pod_security_is_unknown(
        asked: dict[str, Any]) -> None:
    ex.examine(Demand(POD), full=False)
    assert asked["calls"] == ["connect identify=False", "ephemeral discover=False", "rbac",
                              "pod security"]
    asked["calls"].clear()
    asked["security"] = "unknown"
    ex.examine(Demand(POD), full=False)
    assert asked["calls"][-2:] == ["target pod", "dry run app"]
    asked["calls"].clear()
    asked["pod"] = (None, None)  # the target names no pod (a selector run later)
    ex.examine(Demand(POD), full=False)
    assert asked["calls"][-1] == "target pod"
    asked["calls"].clear()
    ex.examine(Demand({"kubernetes": {"pod": "api-0", "via": "node"}}), full=False)
    assert asked["calls"] == ["connect identify=False", "rbac", "pod security"]


def test_an_unreachable_cluster_is_the_only_check(asked: dict[str, Any]) -> None:
    asked["connect"] = "down"
    assert [(c.name, c.status) for c in ex.examine(Demand(POD))] == [("cluster", "fail")]
    assert asked["calls"] == ["connect identify=True"]


def test_other_targets_and_runbooks_without_cluster_steps(asked: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import kdiag.preflight.host as host

    monkeypatch.setattr(host, "host_checks", lambda d: [Check("host", "ok")])
    assert [c.name for c in ex.examine(Demand({"node": {"pid": 1}}))] == ["host"]
    [check] = ex.examine(Demand({"vm": {}}))
    assert (check.name, check.status, check.blocking) == ("target vm", "unknown", False)
    [check] = ex.examine(Demand(POD, [StepUse("n", "note")]))
    assert (check.name, check.status) == ("cluster", "skipped")
    assert asked["calls"] == []


def test_the_target_pod_found_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client

    core = FakeCore([pod("api-0"), pod("db-0", phase="Pending")])
    monkeypatch.setattr(client, "CoreV1Api", lambda api: core)
    from kdiag.kube.errors import Call, api_call

    session = NS(api=None, namespace="shop", kube=NS(server="s"),
                 call=lambda verb, resource, name="": api_call(Call(verb, resource, "shop",
                                                                     name)))
    found, check = ex._target_pod(session, Demand(POD))  # type: ignore[arg-type]
    assert found.metadata.name == "api-0"
    assert check is not None and (check.status, check.detail) == (
        "ok", "pod shop/api-0 (container app) on node node-1")
    _, check = ex._target_pod(session, Demand({"kubernetes": {"pod": "db-0"}}))  # type: ignore[arg-type]
    assert check is not None and (check.status, check.detail, check.fix) == (
        "fail", "pod shop/db-0 is Pending, not running", "name a running pod (--pod, -l, -n)")
    assert ex._target_pod(session, Demand({"kubernetes": {}})) == (None, None)  # type: ignore[arg-type]


def test_the_dry_run_adds_the_container_kdiag_would(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDIAG_MANAGER_IMAGE", "mine:1")
    spec = ex._manager_spec(Demand({"kubernetes": {"privileged": True}}), pod("api-0"))
    assert (spec["targetContainerName"], spec["image"], spec["securityContext"]) == (
        "app", "mine:1", {"privileged": True})
    spec = ex._manager_spec(Demand({"kubernetes": {"container": "side", "image": "x:2"}}),
                            pod("api-0"))
    assert (spec["targetContainerName"], spec["image"]) == ("side", "x:2")
    assert "privileged" not in spec["securityContext"]

"""The fleet of a ``pick: all`` target: who is in it as the watch reports changes, and when
its lifeline fails (the logic, with the watch's events made by hand; tests/cluster/
test_workloads.py runs it against a real Deployment)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.kube.errors import PodGone
from kdiag.kube.pods import PodRef, Selection
from kdiag.lifeline import Lifeline
from kdiag.targets import fleet as fleet_module
from kdiag.targets.fleet import FleetSession


class Watch:
    """Stands for PodWatch: keeps the fleet's callbacks."""

    def __init__(self, core: Any, namespace: str, selector: str, known: Any, on_running: Any,
                 server: str = "", **kwargs: Any) -> None:
        self.on_running, self.on_change = on_running, kwargs["on_change"]
        self.selector, self.field_selector = selector, kwargs["field_selector"]
        self.stopped = False
        WATCHES.append(self)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True


WATCHES: list[Watch] = []


def _pod(name: str, *, deleting: bool = False, phase: str = "Running", ready: bool = True,
         manager_exit: int | None = None) -> Any:
    terminated = NS(reason="Error", exit_code=manager_exit) if manager_exit is not None else None
    return NS(
        metadata=NS(name=name, uid=f"uid-{name}", namespace="shop", labels={"app": "api"},
                    annotations={}, deletion_timestamp="now" if deleting else None,
                    creation_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                    resource_version="1"),
        spec=NS(containers=[NS(name="app", ports=[])], node_name="node"),
        status=NS(phase=phase, reason=None, message=None, pod_ip="10.0.0.9", host_ip="10.0.0.1",
                  host_ips=[], container_statuses=[],
                  conditions=[NS(type="Ready", status="True" if ready else "False")],
                  ephemeral_container_statuses=[
                      NS(name="kdiag-m", state=NS(terminated=terminated, running=None))]))


def _ref(name: str) -> PodRef:
    return PodRef("shop", name, f"uid-{name}", "app", ("app",))


class Session:
    def __init__(self) -> None:
        self.relay = NS(lifeline=Lifeline())
        self.container = "kdiag-m"
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch):
    import kdiag.kube.podwatch

    monkeypatch.setattr(kdiag.kube.podwatch, "PodWatch", Watch)
    WATCHES.clear()

    def _make(names: list[str], selector: str = "app=api") -> tuple[FleetSession, list[str]]:
        kube = NS(core=lambda: None, server="https://api", context="c", in_cluster=False,
                  user="u")
        sessions: dict[str, Session] = {}
        opened: list[str] = []

        def open_pod(ref: PodRef) -> Session:
            opened.append(ref.name)
            return sessions.setdefault(ref.name, Session())

        fleet = FleetSession(open_pod,
                             lambda ref, container: None, kube,  # type: ignore[arg-type]
                             Selection([_ref(n) for n in names], selector))
        notes: list[str] = []
        fleet.on_notice(notes.append)
        fleet.sessions = sessions  # type: ignore[attr-defined]
        fleet.opened = opened  # type: ignore[attr-defined]
        return fleet, notes

    return _make


def test_pods_join_and_leave(make) -> None:
    fleet, notes = make(["api-a", "api-b"])
    (watch,) = WATCHES
    joined: list[str] = []
    fleet.on_join(lambda replica: joined.append(replica.name))
    watch.on_running(_pod("api-c"))
    assert [r.name for r in fleet.replicas()] == ["api-a", "api-b", "api-c"]
    deadline = time.monotonic() + 2
    while not joined and time.monotonic() < deadline:  # listeners run in threads of their own
        time.sleep(0.01)
    assert joined == ["api-c"]
    session = fleet.open(fleet.replicas()[0])
    watch.on_change("MODIFIED", _pod("api-a", deleting=True), "uid-api-a")
    watch.on_change("DELETED", _pod("api-b"), "uid-api-b")  # labels changed: not deleted
    assert [r.name for r in fleet.replicas()] == ["api-c"]
    assert notes == ["pod api-c joined app=api (ready)",
                     "pod shop/api-a deleted: it left app=api",
                     "pod shop/api-b no longer matches app=api: it left app=api"]
    deadline = time.monotonic() + 2
    while not session.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.closed  # a pod that left: its session is closed
    with pytest.raises(PodGone, match="api-a deleted"):
        fleet.open(fleet._member(NS(name="api-a")))  # type: ignore[arg-type]
    assert fleet.watch().loss is None


def test_a_live_pods_manager_dying_fails_the_fleet(make) -> None:
    fleet, _ = make(["api-a", "api-b"])
    (watch,) = WATCHES
    watch.on_change("MODIFIED", _pod("api-b", manager_exit=137), "uid-api-b")
    assert fleet.watch().loss is None  # its manager was never reached: nothing of ours died
    fleet.open(fleet.replicas()[1])
    watch.on_change("MODIFIED", _pod("api-b", ready=False), "uid-api-b")  # NotReady: stays
    assert fleet.watch().loss is None and len(fleet.replicas()) == 2
    watch.on_change("MODIFIED", _pod("api-b", manager_exit=137), "uid-api-b")
    loss = fleet.watch().loss
    assert loss is not None and loss.cause == \
        "pod api-b: manager gone (container kdiag-m terminated: Error, exit code 137)"


def test_no_pod_left_fails_after_the_grace(make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_module, "ALL_GONE_GRACE", 0.3)
    fleet, _ = make(["api-a"])
    (watch,) = WATCHES
    watch.on_change("MISSING", None, "uid-api-a")
    assert fleet.replicas() == [] and fleet.watch().loss is None
    watch.on_running(_pod("api-b"))  # one came back in time
    time.sleep(0.5)
    assert fleet.watch().loss is None
    watch.on_change("MISSING", None, "uid-api-b")
    loss = fleet.watch().wait(2)
    assert loss is not None and loss.cause == "no pod of app=api is left (none ready within 0.3s)"


def test_a_named_pod_gone_fails_at_once(make) -> None:
    fleet, _ = make(["api-a"], selector="")
    (watch,) = WATCHES
    assert watch.field_selector == "metadata.name=api-a"
    watch.on_change("DELETED", _pod("api-a", deleting=True), "uid-api-a")
    loss = fleet.watch().wait(2)
    assert loss is not None and loss.cause == "no pod of pod/api-a is left"
    fleet.close()
    assert watch.stopped


def test_a_starting_pod_is_reached_before_it_is_ready(make) -> None:
    fleet, _ = make(["api-a"])
    (watch,) = WATCHES
    watch.on_change("ADDED", _pod("api-b", ready=False), "uid-api-b")
    assert "api-b" not in fleet.sessions  # nothing follows the fleet: nothing to prepare
    fleet.on_join(lambda replica: None)
    watch.on_change("MODIFIED", _pod("api-b", ready=False), "uid-api-b")
    watch.on_change("ADDED", _pod("api-c", ready=False), "uid-api-c")
    deadline = time.monotonic() + 2
    while len(fleet.sessions) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(fleet.sessions) == {"api-b", "api-c"}  # injected while not ready
    warm = fleet.sessions["api-b"]
    watch.on_running(_pod("api-b"))
    member = fleet._member(NS(name="api-b"))  # type: ignore[arg-type]
    assert fleet.open(member) is warm and fleet.opened.count("api-b") == 1  # the join uses it
    watch.on_change("DELETED", _pod("api-c", deleting=True, ready=False), "uid-api-c")
    deadline = time.monotonic() + 2
    while not fleet.sessions["api-c"].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fleet.sessions["api-c"].closed  # a pod gone before it was ready: closed

"""Work kept up on every pod of a fleet (kdiag/targets/following.py) with a fake fleet: a pod
that joins gets the work once; a pod whose work breaks or cannot start is dropped when it went
away and fails the whole when it is still there (with its exit-code class); stop stops every
pod's work and names what failed to stop. tests/cluster rolls real Deployments."""

from __future__ import annotations

import threading
from types import SimpleNamespace as NS
from typing import Any

from kdiag.errors import TargetError
from kdiag.lifeline import Lifeline
from kdiag.targets.following import Following


class Fleet:
    label = "deployment/api"

    def __init__(self, replicas: list[str], gone: dict[str, str] | None = None) -> None:
        self._replicas = [NS(name=n, gone="") for n in replicas]
        self.gone = gone or {}  # pod → what settle says (went away)
        self.listeners: list[Any] = []
        self.settled: list[tuple[str, str]] = []

    def on_join(self, listener: Any) -> Any:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def replicas(self) -> list[Any]:
        return list(self._replicas)

    def settle(self, replica: Any, cause: str, wait: float) -> str:
        self.settled.append((replica.name, cause))
        return self.gone.get(replica.name, "")


class Work:
    def __init__(self, name: str, stop_error: Exception | None = None) -> None:
        self.name = name
        self.lifeline = Lifeline()
        self.stopped = 0
        self.stop_error = stop_error

    def stop(self) -> None:
        self.stopped += 1
        if self.stop_error is not None:
            raise self.stop_error


def following(fleet: Fleet, refuse: dict[str, Exception] | None = None
              ) -> tuple[Following, dict[str, Work], list[str], list[str]]:
    works: dict[str, Work] = {}
    notes: list[str] = []
    dropped: list[str] = []

    def start(replica: Any) -> Work:
        if refuse and replica.name in refuse:
            raise refuse[replica.name]
        works[replica.name] = Work(replica.name)
        return works[replica.name]

    return (Following(fleet, "redirect", start, notes.append,  # type: ignore[arg-type]
                      lambda replica, cause: dropped.append(f"{replica.name}: {cause}")),
            works, notes, dropped)


def test_each_pod_that_joins_gets_the_work_once() -> None:
    fleet = Fleet(["api-1"])
    follow, works, notes, _ = following(fleet)
    follow.follow()
    fleet.listeners[0](NS(name="api-2", gone=""))
    fleet.listeners[0](NS(name="api-2", gone=""))  # heard twice: started once
    assert sorted(works) == ["api-1", "api-2"]
    assert notes == ["api-1 joined deployment/api: its redirect is up",
                     "api-2 joined deployment/api: its redirect is up"]
    assert follow.stop() == [] and [w.stopped for w in works.values()] == [1, 1]
    assert fleet.listeners == []  # no longer listening
    assert follow.lifeline.loss is None


def test_a_pod_that_cannot_get_the_work_fails_the_whole_unless_it_went_away() -> None:
    fleet = Fleet([], gone={"api-3": "pod api-3 was deleted"})
    refuse: dict[str, Exception] = {"api-2": TargetError("RBAC: cannot patch pods"),
                                    "api-3": TargetError("pod gone")}
    follow, _, notes, dropped = following(fleet, refuse)
    follow.follow()
    fleet.listeners[0](NS(name="api-3", gone=""))
    assert dropped == ["api-3: pod api-3 was deleted"]
    assert notes == ["pod api-3 was deleted: its redirect is dropped"]
    assert follow.lifeline.loss is None
    fleet.listeners[0](NS(name="api-2", gone=""))
    loss = follow.lifeline.loss
    assert loss is not None and loss.environmental
    assert loss.cause == ("api-2 joined deployment/api but its redirect failed: RBAC: cannot "
                          "patch pods")
    assert fleet.settled == [("api-3", "pod gone"), ("api-2", "RBAC: cannot patch pods")]
    # Not an environment problem (exit 3): the loss says so.
    fleet = Fleet([])
    follow, _, _, _ = following(fleet, {"api-4": ValueError("bad port")})
    follow.follow()
    fleet.listeners[0](NS(name="api-4", gone=""))
    loss = follow.lifeline.loss
    assert loss is not None and not loss.environmental


def test_broken_work_is_dropped_with_its_pod_or_fails_the_whole() -> None:
    fleet = Fleet(["api-1", "api-2"], gone={"api-1": "pod api-1 was evicted"})
    follow, works, notes, dropped = following(fleet)
    follow.follow()
    noted = threading.Event()
    follow._note = lambda text: (notes.append(text), noted.set())  # type: ignore[assignment]
    works["api-1"].lifeline.fail("stream reset")
    assert noted.wait(10)
    assert dropped == ["api-1: pod api-1 was evicted"] and works["api-1"].stopped == 1
    assert notes[-1] == "pod api-1 was evicted: its redirect is dropped"
    lost = threading.Event()
    follow.lifeline.listen(lambda loss: lost.set())
    works["api-2"].lifeline.fail("manager exited", environmental=False)
    assert lost.wait(10)
    loss = follow.lifeline.loss
    assert loss is not None and (loss.cause, loss.environmental) == (
        "api-2: manager exited", False)
    assert follow.stop() == [] and works["api-2"].stopped == 1  # api-1's was stopped already


def test_stop_names_each_pod_whose_work_failed_to_stop() -> None:
    follow, _, _, _ = following(Fleet([]))
    follow.add(NS(name="b", gone=""), Work("b", RuntimeError("manager gone")))  # type: ignore[arg-type]
    follow.add(NS(name="a", gone=""), Work("a", RuntimeError("timeout")))  # type: ignore[arg-type]
    follow.add(NS(name="c", gone=""), Work("c"))  # type: ignore[arg-type]
    assert follow.stop() == ["a: timeout", "b: manager gone"]
    late = Work("d")
    follow.add(NS(name="d", gone=""), late)  # type: ignore[arg-type]
    assert late.stopped == 1  # added after the stop: stopped at once


def test_a_dropped_pod_is_never_started_again_by_a_late_catch_up() -> None:
    """The fan-out hands its first pods' work over, one pod's work breaks and the pod went
    away (dropped) — all before follow() runs. follow()'s catch-up walks a replicas() that
    may still list that pod (a snapshot from before the drop): it must not start it again.
    A new pod under the same name (a StatefulSet's, another replica) does get the work."""
    fleet = Fleet(["api-1", "api-2"], gone={"api-1": "pod api-1 was deleted"})
    follow, works, notes, dropped = following(fleet)
    first = {r.name: Work(r.name) for r in fleet.replicas()}
    noted = threading.Event()
    follow._note = lambda text: (notes.append(text), noted.set())  # type: ignore[assignment]
    for replica in fleet.replicas():
        follow.add(replica, first[replica.name])
    first["api-1"].lifeline.fail("the redirect's stream to the manager ended")
    assert noted.wait(10) and dropped == ["api-1: pod api-1 was deleted"]
    follow.follow()
    assert works == {}  # neither api-1 (dropped) nor api-2 (has its work) started again
    fleet.gone.clear()
    fleet.listeners[0](NS(name="api-1", gone=""))  # the StatefulSet's new api-1
    assert sorted(works) == ["api-1"]
    assert follow.stop() == [] and first["api-2"].stopped == 1 and works["api-1"].stopped == 1

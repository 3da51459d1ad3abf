"""Watching the pods under a selector (kdiag/kube/podwatch.py) with a fake API: each new pod
reported once when it runs, known ones never, every change heard, a pod gone from a new listing
reported MISSING, an ERROR event lists again, and an unreachable API server retried with its
reason kept until it answers. tests/cluster follows real rollouts."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.kube import podwatch
from kdiag.kube.podwatch import PodWatch


def pod(uid: str, phase: str = "Running", version: str = "1") -> Any:
    return NS(metadata=NS(uid=uid, name=f"pod-{uid}", resource_version=version,
                          deletion_timestamp=None),
              status=NS(phase=phase))


class Core:
    def __init__(self, listings: list[list[Any] | Exception]) -> None:
        self.listings = listings
        self.asked: list[dict[str, Any]] = []

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.asked.append({"namespace": namespace, **kw})
        items = self.listings.pop(0)
        if isinstance(items, Exception):
            raise items
        return NS(items=items, metadata=NS(resource_version="100"))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """Each watch request streams the next list of events."""
    from kubernetes import watch

    rounds: list[list[dict[str, Any]]] = []

    class Watch:
        def stream(self, _: Any, namespace: str, **kw: Any) -> Any:
            yield from (rounds.pop(0) if rounds else [])

        def stop(self) -> None:
            pass

    monkeypatch.setattr(watch, "Watch", Watch)
    return rounds


def test_new_running_pods_are_reported_once_and_known_ones_never(
        events: list[list[dict[str, Any]]]) -> None:
    core = Core([[pod("old"), pod("new"), pod("starting", "Pending")]])
    started: list[str] = []
    changes: list[tuple[str, str]] = []
    watch = PodWatch(core, "shop", "app=api", {"old"}, lambda p: started.append(p.metadata.uid),
                     on_change=lambda event, p, uid: changes.append((event, uid)))
    events.append([{"type": "MODIFIED", "object": pod("starting", version="101")},
                   {"type": "MODIFIED", "object": pod("new", version="102")},
                   {"type": "DELETED", "object": pod("old", version="103")}])
    assert watch._watch_from("") == "103"
    assert core.asked == [{"namespace": "shop", "_request_timeout": 30,
                           "label_selector": "app=api"}]
    assert started == ["new", "starting"]
    assert changes == [("ADDED", "old"), ("ADDED", "new"), ("ADDED", "starting"),
                       ("MODIFIED", "starting"), ("MODIFIED", "new"), ("DELETED", "old")]
    # A new listing: a pod gone meanwhile is MISSING; nothing is reported twice.
    core.listings.append([pod("starting")])
    changes.clear()
    events.append([{"type": "ERROR", "object": None}])
    assert watch._watch_from("") == ""  # an ERROR: list again
    assert changes == [("MISSING", "new"), ("ADDED", "starting")]
    assert started == ["new", "starting"]


def test_readiness_or_a_field_selector_as_asked(events: list[list[dict[str, Any]]]) -> None:
    core = Core([[pod("a"), pod("b")]])
    started: list[str] = []
    watch = PodWatch(core, "shop", "", (), lambda p: started.append(p.metadata.uid),
                     accept=lambda p: p.metadata.uid == "b", field_selector="spec.nodeName=n1")
    watch._watch_from("")
    assert started == ["b"]
    assert core.asked[0]["field_selector"] == "spec.nodeName=n1"
    assert "label_selector" not in core.asked[0]


def test_an_unreachable_api_server_is_retried_with_its_reason_kept(
        events: list[list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podwatch, "RETRY_PAUSES", (0.01,))
    core = Core([ConnectionRefusedError("[Errno 111] Connection refused"),
                 ConnectionRefusedError("[Errno 111] Connection refused"), [pod("a")]])
    errors: list[str] = []

    def running(p: Any) -> None:
        errors.append(watch.error)
        watch.stop()  # from the watch's own thread: does not wait for itself

    watch = PodWatch(core, "shop", "app=api", (), running, "https://k:6443")
    watch.start()
    assert watch._thread is not None
    watch._thread.join(10)
    assert not watch._thread.is_alive()
    assert len(core.asked) == 3
    # The listing that answered cleared the error before the pod was reported.
    assert errors == [""]


def test_the_reason_is_kept_while_the_api_server_stays_away(
        events: list[list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podwatch, "RETRY_PAUSES", (0.01,))
    down = [ConnectionRefusedError("[Errno 111] Connection refused") for _ in range(500)]
    watch = PodWatch(Core(list(down)), "shop", "app=api", (), lambda p: None, "https://k:6443")
    watch.start()
    for _ in range(1000):
        if watch.error:
            break
        watch._stopping.wait(0.01)
    watch.stop()
    assert watch.error == ("watching pods app=api: cluster unreachable: https://k:6443 "
                           "(connection refused)")

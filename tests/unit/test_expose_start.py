"""``expose`` in-process, with stand-ins for the cluster: the step passes the target's
namespace, context, kubeconfig and image on and says where the Service goes, keeps it up for a
duration then stops it; a Service already there is never replaced; the pod's watch ends on the
states that will not get Ready, with their cause."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.engine.events import StepNote
from kdiag.errors import TargetError
from kdiag.expose import exposure
from kdiag.expose.exposure import Exposure, Traffic, Wanted
from kdiag.kube.inject import ManagerImage
from kdiag.kube.owned import MANAGED_BY, RUN
from kdiag.lifeline import Lifeline
from tests.unit import kubefakes


class Made:
    """What the step got back from ``start``: records ``stop``."""

    def __init__(self, wanted: Wanted, traffic: Traffic) -> None:
        self.wanted, self.traffic, self.pod = wanted, traffic, "kdiag-expose-x1"
        self.lifeline = Lifeline()
        self.stopped = 0

    def summary(self) -> dict[str, Any]:
        return {"namespace": self.wanted.namespace or "default", "ready_seconds": 1.234,
                "service": self.wanted.service}

    def stop(self) -> list[str]:
        self.stopped += 1
        self.traffic.stats.update(connections=3, rejected=1)
        return ["could not delete lease x: gone"]


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Made, float]]:
    made: list[tuple[Made, float]] = []

    def start(wanted: Wanted, traffic: Traffic, timeout: float) -> Made:
        made.append((Made(wanted, traffic), timeout))
        return made[-1][0]

    monkeypatch.setattr(exposure, "start", start)
    return made


def notes(out: Any, step: str) -> list[str]:
    return [e.message for e in out.recorder.events
            if isinstance(e, StepNote) and e.step.qualified_name == step]


TARGET = """
target:
  kubernetes: {pod: api, namespace: shop, context: staging, kubeconfig: /k/config,
               image: reg.example/manager:1, image_pull_policy: Never}
"""


def test_the_target_gives_namespace_context_kubeconfig_and_image(run_runbook, started) -> None:
    out = run_runbook(TARGET + """
steps:
  - name: preview
    expose: {port: 8080, service: checkout-preview, local: "[::1]:3000", timeout: 5s}
    background: true
    register: preview
  - note: "{{ preview.service }} in {{ preview.namespace }}"
    name: told
""")
    assert out.exit_code == 0, out.status
    (made, timeout), = started
    assert made.wanted == Wanted("checkout-preview", 8080, ("::1", 3000), "shop", "/k/config",
                                 "staging", ManagerImage("reg.example/manager:1", "Never"))
    assert timeout == 5.0
    assert out.recorder.output("preview") == (
        "service shop/checkout-preview:8080 -> ::1:3000 (pod kdiag-expose-x1, ready in 1.23s)\n"
        "stopped: 3 connection(s) carried, 1 refused here; service and pod deleted\n")
    assert notes(out, "told") == ["checkout-preview in shop"]
    assert made.stopped == 1


def test_the_steps_own_namespace_wins_and_a_duration_stops_it(run_runbook, started) -> None:
    out = run_runbook(TARGET + """
steps:
  - name: preview
    expose: {port: 80, service: web, local: 3000, namespace: other, duration: 0.2s}
  - note: after
""")
    assert out.exit_code == 0, out.status
    (made, timeout), = started
    assert (made.wanted.namespace, made.wanted.local, timeout) == ("other", ("127.0.0.1", 3000),
                                                                   60.0)
    assert made.stopped == 1
    assert notes(out, "preview") == ["could not delete lease x: gone"]


@pytest.mark.parametrize(("body", "message"), [
    ("{port: 80, service: web, local: 3000}", "needs background: true"),
    ("{port: 80, service: web, local: nope, duration: 1s}", "HOST:PORT or PORT"),
    ("{port: 80, service: Web_1, local: 3000, duration: 1s}", "a Service name is"),
])
def test_mistakes_fail_the_step_before_anything_is_made(run_runbook, started, body: str,
                                                        message: str) -> None:
    out = run_runbook(f"steps:\n  - name: preview\n    expose: {body}\n")
    assert out.exit_code == 1
    assert started == []
    finished = out.recorder.finished()["preview"]
    assert finished.status == "failed" and message in finished.message, finished.message


class Core:
    def __init__(self, service: Any = None, status: int = 404) -> None:
        self.service, self.status = service, status

    def read_namespaced_service(self, name: str, namespace: str, **_: Any) -> Any:
        if self.service is None:
            raise kubefakes.FakeApiException(self.status)
        return self.service


KUBE: Any = NS(server="https://api.example:6443")


def test_a_service_already_there_is_never_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    kubefakes.install(monkeypatch)
    exposure._refuse_existing(Core(), KUBE, "shop", "web")  # 404: free
    ours = NS(metadata=NS(labels={MANAGED_BY: "kdiag", RUN: "r-42"}))
    with pytest.raises(TargetError, match=r"^expose: service shop/web already exists \(made by "
                       r"kdiag run r-42: `kdiag gc -n shop` removes it once that run is gone\); "
                       r"choose another name$"):
        exposure._refuse_existing(Core(ours), KUBE, "shop", "web")
    with pytest.raises(TargetError, match=r"already exists \(not kdiag's\)"):
        exposure._refuse_existing(Core(NS(metadata=NS(labels=None))), KUBE, "shop", "web")
    with pytest.raises(TargetError, match="RBAC: cannot get services in namespace shop"):
        exposure._refuse_existing(Core(status=403), KUBE, "shop", "web")


def state(*, waiting: str = "", message: str = "", terminated: Any = None,
          running: bool = False) -> Any:
    return NS(waiting=NS(reason=waiting, message=message) if waiting else None,
              terminated=terminated, running=NS() if running else None)


def a_pod(phase: str = "Pending", *statuses: Any, reason: str | None = None,
          version: str = "1") -> Any:
    return NS(metadata=NS(namespace="shop", name="p", resource_version=version),
              status=NS(phase=phase, reason=reason, container_statuses=list(statuses)))


IMAGE = ManagerImage("reg.example/manager:1", "IfNotPresent")


def test_states_that_will_not_get_ready_end_the_wait_with_their_cause() -> None:
    ended = NS(exit_code=2, reason=None, message="bad\n  flag")
    cases = [
        (a_pod("Failed", NS(state=state(terminated=ended), ready=False)),
         "pod shop/p ended (Failed): exit code 2 (terminated): bad flag"),
        (a_pod("Succeeded", reason="Evicted"), "pod shop/p ended (Succeeded): Evicted"),
        (a_pod("Failed"), "ended (Failed): no reason given"),
        (a_pod("Pending", NS(state=state(waiting="ErrImagePull", message="not\nfound"),
                             ready=False)),
         "pod shop/p cannot start: ErrImagePull: not found (image reg.example/manager:1, pull "
         "policy IfNotPresent)"),
        (a_pod("Pending", NS(state=state(waiting="ImagePullBackOff"), ready=False)),
         "cannot start: ImagePullBackOff (image"),
        (a_pod("Running", NS(state=state(terminated=NS(exit_code=0, reason="Completed",
                                                       message="")), ready=False)),
         "pod shop/p: the manager exited: exit code 0 (Completed)"),
    ]
    for pod, message in cases:
        with pytest.raises(TargetError) as caught:
            exposure._arrived(pod, IMAGE, running=True)
        assert message in str(caught.value)
        assert str(caught.value).startswith("pod shop/p")


def test_running_and_ready_are_told_apart() -> None:
    creating = NS(state=state(waiting="ContainerCreating"), ready=False)
    running = NS(state=state(running=True), ready=False)
    ready = NS(state=state(running=True), ready=True)
    assert not exposure._arrived(a_pod("Pending", creating), IMAGE, running=True)
    assert not exposure._arrived(a_pod("Pending", NS(state=None, ready=False)), IMAGE,
                                 running=True)
    assert exposure._arrived(a_pod("Running", running), IMAGE, running=True)
    assert not exposure._arrived(a_pod("Running", running), IMAGE, running=False)
    assert exposure._arrived(a_pod("Running", ready), IMAGE, running=False)


class Watches:
    """Stands in for ``kubernetes.watch.Watch``: each new watch streams the next list of
    events; records the resource version each one started from."""

    def __init__(self, *streams: list[dict[str, Any]]) -> None:
        self.streams = list(streams)
        self.versions: list[str | None] = []
        self.stopped = 0

    def __call__(self) -> Watches:
        return self

    def stream(self, _list: Any, _namespace: str, **kwargs: Any) -> Any:
        self.versions.append(kwargs["resource_version"])
        assert kwargs["field_selector"] == "metadata.name=p"
        yield from (self.streams.pop(0) if self.streams else [])

    def stop(self) -> None:
        self.stopped += 1


def wait(monkeypatch: pytest.MonkeyPatch, watches: Watches, seconds: float = 30,
         running: bool = False) -> Any:
    import time

    from kubernetes import watch

    monkeypatch.setattr(watch, "Watch", watches)
    return exposure._wait_pod(NS(list_namespaced_pod=None), KUBE, "shop", "p",
                              time.monotonic() + seconds, IMAGE, running=running)


def test_the_watch_resumes_from_the_last_version_and_starts_over_after_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    creating = NS(state=state(waiting="ContainerCreating"), ready=False)
    ready = a_pod("Running", NS(state=state(running=True), ready=True), version="9")
    watches = Watches([{"type": "ADDED", "object": a_pod("Pending", creating, version="5")}],
                      [{"type": "ERROR", "object": None}],
                      [{"type": "MODIFIED", "object": ready}])
    assert wait(monkeypatch, watches) is ready
    assert watches.versions == [None, "5", None]
    assert watches.stopped == 1


def test_a_deleted_pod_or_the_deadline_ends_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    watches = Watches([{"type": "DELETED", "object": a_pod()}])
    with pytest.raises(TargetError, match=r"^pod shop/p was deleted$"):
        wait(monkeypatch, watches)
    with pytest.raises(TargetError, match=r"^pod shop/p was not running within the timeout$"):
        wait(monkeypatch, Watches(), seconds=0.05, running=True)


def test_stop_ends_guard_redirect_session_then_deletes(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    def part(name: str) -> Any:
        return NS(stop=lambda: order.append(name), close=lambda: order.append(name))

    def delete() -> list[str]:
        order.append("delete")
        return ["lease: 403"]

    owned: Any = NS(close=delete, run_id="r-1")
    made = Exposure(KUBE, Wanted("web", 80, ("127.0.0.1", 3000)), "shop", owned,
                    Traffic(print), pod="kdiag-expose-1", session=part("session"),
                    handle=part("redirect"), guard=part("guard"), seconds=1.23456)
    assert made.stop() == ["lease: 403"]
    assert order == ["guard", "redirect", "session", "delete"]
    assert made.summary() == {
        "service": "web", "namespace": "shop", "port": 80, "local": "127.0.0.1:3000",
        "pod": "kdiag-expose-1", "url": "http://web.shop:80", "run": "r-1",
        "ready_seconds": 1.235, "stats": made.traffic.stats}


def test_a_background_that_fails_to_stop_is_noted_at_the_end(run_runbook, started,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    def stop(self: Made) -> list[str]:
        raise RuntimeError("the API server went away")

    monkeypatch.setattr(Made, "stop", stop)
    out = run_runbook(TARGET + """
steps:
  - name: preview
    expose: {port: 8080, service: web, local: 3000}
    background: true
""")
    assert notes(out, "preview") == [
        "stopping background work failed: the API server went away"]
    assert len(started) == 1

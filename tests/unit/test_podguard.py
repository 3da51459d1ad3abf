"""When a watched pod counts as lost, and what the cause says (pure logic on pod objects; the
watch itself runs against the real cluster in tests/cluster/test_faults.py)."""

from __future__ import annotations

import datetime

from kubernetes import client

from kdiag.kube.podguard import pod_loss, restart_count
from kdiag.kube.pods import PodRef

REF = PodRef("shop", "api-7d9", "uid-1", "app", ("app",))
MANAGER = "kdiag-0.1-abc-xyz"


def _pod(uid: str = "uid-1", *, phase: str = "Running", deleting: bool = False,
         reason: str | None = None, message: str | None = None, restarts: int = 0,
         last: client.V1ContainerStateTerminated | None = None,
         app_state: client.V1ContainerState | None = None,
         manager_state: client.V1ContainerState | None = None) -> client.V1Pod:
    now = datetime.datetime.now(datetime.UTC)
    app = client.V1ContainerStatus(
        name="app", image="i", image_id="", ready=True, restart_count=restarts,
        state=app_state or client.V1ContainerState(running=client.V1ContainerStateRunning()),
        last_state=client.V1ContainerState(terminated=last))
    manager = client.V1ContainerStatus(
        name=MANAGER, image="m", image_id="", ready=False, restart_count=0,
        state=manager_state or client.V1ContainerState(running=client.V1ContainerStateRunning()))
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="api-7d9", namespace="shop", uid=uid,
                                     deletion_timestamp=now if deleting else None),
        status=client.V1PodStatus(phase=phase, reason=reason, message=message,
                                  container_statuses=[app],
                                  ephemeral_container_statuses=[manager]))


def _terminated(reason: str, code: int) -> client.V1ContainerStateTerminated:
    return client.V1ContainerStateTerminated(reason=reason, exit_code=code)


def test_a_healthy_pod_is_not_lost() -> None:
    assert pod_loss(_pod(), REF, 0, MANAGER) is None


def test_causes() -> None:
    cases = {
        "pod shop/api-7d9 deleted": _pod(deleting=True),
        "pod shop/api-7d9 deleted (a new pod of that name replaced it)": _pod("uid-2"),
        "pod shop/api-7d9 evicted (The node was low on resource: memory.)":
            _pod(phase="Failed", reason="Evicted",
                 message="The node was low on resource: memory. "),
        "pod shop/api-7d9 failed (DeadlineExceeded)": _pod(phase="Failed",
                                                          reason="DeadlineExceeded"),
        "pod shop/api-7d9 succeeded (completed)": _pod(phase="Succeeded"),
        "manager gone (container kdiag-0.1-abc-xyz terminated: OOMKilled, exit code 137)":
            _pod(manager_state=client.V1ContainerState(
                terminated=_terminated("OOMKilled", 137))),
        "pod shop/api-7d9: container app restarted (Error, exit code 2)":
            _pod(restarts=1, last=_terminated("Error", 2)),
        "pod shop/api-7d9: container app terminated (Completed, exit code 0)":
            _pod(app_state=client.V1ContainerState(terminated=_terminated("Completed", 0))),
    }
    for cause, pod in cases.items():
        assert pod_loss(pod, REF, 0, MANAGER) == cause


def test_restarts_before_kdiag_came_do_not_count() -> None:
    pod = _pod(restarts=3, last=_terminated("Error", 2))
    assert restart_count(pod, "app") == 3
    assert pod_loss(pod, REF, 3, MANAGER) is None
    assert pod_loss(pod, REF, None, MANAGER) is None  # container not watched (forward)


class _FlakyCore:
    """An API server that is unreachable ``down`` times, then shows ``pod``."""

    def __init__(self, down: int, pod: client.V1Pod) -> None:
        self.down = down
        self.pod = pod
        self.calls = 0

    def read_namespaced_pod(self, name: str, namespace: str, **_: object) -> client.V1Pod:
        import urllib3

        self.calls += 1
        if self.calls <= self.down:
            raise urllib3.exceptions.MaxRetryError(None, "/", "connection refused")
        return self.pod


def test_an_unreachable_api_server_is_no_loss_and_the_guard_reads_again(monkeypatch) -> None:
    from kdiag.kube import podguard
    from kdiag.lifeline import Lifeline

    monkeypatch.setattr(podguard, "RETRY_PAUSES", (0.01, 0.02))
    core = _FlakyCore(3, _pod(deleting=True))
    lifeline = Lifeline()
    guard = podguard.PodGuard(core, REF, lifeline, manager=MANAGER)
    guard.start()
    loss = lifeline.wait(5)
    guard.stop()
    assert core.calls == 4  # three failures retried, then the pod as it is now
    assert loss is not None and loss.cause == "pod shop/api-7d9 deleted"

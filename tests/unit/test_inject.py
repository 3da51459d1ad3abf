"""Injecting the manager, with a fake API: the PATCH made, which running managers are reused,
the states that fail at once with their reason (image pull, terminated, pod gone), waiting on
the watch, and the manager's first log line. tests/cluster injects the real one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest

from kdiag.errors import TargetError
from kdiag.kube import inject
from kdiag.kube.errors import PodGone
from kdiag.kube.inject import Injector, ManagerImage, name_prefix
from kdiag.kube.pods import PodRef
from kdiag.kube.tokens import TokenCache, token_sha256

REF = PodRef("shop", "api-0", "uid-1", "app", ("app",), container_id="c0ffee")


def state(running: bool = False, terminated: Any = None, waiting: Any = None) -> Any:
    return NS(running=NS() if running else None, terminated=terminated, waiting=waiting)


def pod(statuses: dict[str, Any] | None = None, uid: str = "uid-1", phase: str = "Running",
        deleting: bool = False, version: str = "1", targets: dict[str, str] | None = None
        ) -> Any:
    statuses = statuses or {}
    specs = [NS(name=n, target_container_name=(targets or {}).get(n, "app")) for n in statuses]
    return NS(metadata=NS(uid=uid, deletion_timestamp="now" if deleting else None,
                          resource_version=version),
              spec=NS(ephemeral_containers=specs),
              status=NS(phase=phase, ephemeral_container_statuses=[
                  NS(name=n, state=s) for n, s in statuses.items()]))


class Core:
    def __init__(self) -> None:
        self.patched: list[tuple[str, str, Any]] = []
        self.answer: Any = None
        self.reads: list[Any] = []
        self.log: bytes | Exception = b""

    def patch_namespaced_pod_ephemeralcontainers(self, name: str, ns: str, body: Any,
                                                 **_: Any) -> Any:
        self.patched.append((name, ns, body))
        return self.answer

    def read_namespaced_pod(self, name: str, ns: str, **_: Any) -> Any:
        return self.reads.pop(0)

    def read_namespaced_pod_log(self, name: str, ns: str, container: str, **kw: Any) -> Any:
        if isinstance(self.log, Exception):
            raise self.log
        assert kw.get("_preload_content") is False, "a log is read as raw bytes"
        return Stream(self.log)

    def list_namespaced_pod(self, *_: Any, **__: Any) -> Any:
        raise AssertionError("the watch is faked")


class Stream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.released = False

    def stream(self, size: int) -> Any:
        for i in range(0, len(self.data), 7):  # lines cut across chunks
            yield self.data[i:i + 7]

    def release_conn(self) -> None:
        self.released = True

    def close(self) -> None:
        pass


@pytest.fixture
def injector(tmp_path: Path) -> Injector:
    return Injector(Core(), "https://k:6443", ManagerImage("img:1", "IfNotPresent", timeout=5),
                    TokenCache(tmp_path / "tokens"))


def test_inject_patches_one_container_with_the_tokens_hash_and_caches_the_token(
        injector: Injector, monkeypatch: pytest.MonkeyPatch) -> None:
    core = injector.core
    waited: list[str] = []
    monkeypatch.setattr(Injector, "wait_running", lambda self, ref, name, p: waited.append(name))
    core.answer = pod()
    name, token = injector.inject(REF)
    [(pod_name, namespace, body)] = core.patched
    [spec] = body["spec"]["ephemeralContainers"]
    assert (pod_name, namespace, spec["name"], waited) == ("api-0", "shop", name, [name])
    assert name.startswith(name_prefix() + "-")
    assert spec["env"] == [{"name": "KDIAG_TOKEN_SHA256", "value": token_sha256(token)},
                           {"name": "KDIAG_TARGET_CONTAINER_ID", "value": "c0ffee"}]
    assert (spec["image"], spec["imagePullPolicy"]) == ("img:1", "IfNotPresent")
    assert injector.cache.get("https://k:6443", "uid-1", name) == token
    core.answer = pod(uid="uid-2")
    with pytest.raises(PodGone, match=r"^pod shop/api-0 was replaced while kdiag ran$"):
        injector.inject(REF)


def test_only_running_managers_of_this_version_on_this_container_with_a_token_are_reused(
        injector: Injector) -> None:
    prefix = name_prefix()
    old, new, other, stopped = (f"{prefix}-aaa", f"{prefix}-bbb", f"{prefix}-ccc",
                                f"{prefix}-ddd")
    injector.core.reads.append(pod(
        {old: state(running=True), "kdiag-0-0-1-xyz-eee": state(running=True),
         new: state(running=True), other: state(running=True), stopped: state()},
        targets={other: "sidecar"}))
    for name in (old, new, other, stopped, "kdiag-0-0-1-xyz-eee"):
        injector.cache.put(injector.server, "uid-1", name, f"token-{name[-3:]}")
    assert injector.candidates(REF) == [(new, "token-bbb"), (old, "token-aaa")]
    injector.forget(REF, new)  # a manager that did not work is not tried again
    injector.core.reads.append(pod({new: state(running=True)}))
    assert injector.candidates(REF) == []


@pytest.mark.parametrize(("found", "message"), [
    (pod(deleting=True), r"^pod shop/api-0 is being deleted$"),
    (pod(phase="Succeeded"), r"^pod shop/api-0 is Succeeded$"),
    (pod({"m": state(waiting=NS(reason="ImagePullBackOff",
                                message="Back-off pulling\n image \"img:1\""))}),
     r"^the manager in pod shop/api-0 \(container app\) cannot start: ImagePullBackOff: "
     r"Back-off pulling image \"img:1\" \(image img:1, pull policy IfNotPresent\)$"),
    (pod({"m": state(terminated=NS(exit_code=2, reason="Error", message="bad flag"))}),
     r"^the manager in pod shop/api-0 \(container app\) exited with code 2 \(Error\): "
     r"last words$"),
])
def test_states_that_cannot_lead_to_a_running_manager_fail_at_once(
        injector: Injector, found: Any, message: str) -> None:
    injector.core.log = b"first words\n\nlast words\n"
    with pytest.raises(TargetError, match=message.replace("last words", "first words \\| "
                                                          "last words")):
        injector.wait_running(REF, "m", found)


def test_a_terminated_manager_without_logs_gives_its_termination_message(
        injector: Injector) -> None:
    injector.core.log = RuntimeError("no logs")
    found = pod({"m": state(terminated=NS(exit_code=1, reason=None, message="boom"))})
    with pytest.raises(TargetError, match=r"exited with code 1 \(terminated\): boom$"):
        injector.wait_running(REF, "m", found)


def test_waiting_follows_the_watch_until_the_manager_runs(injector: Injector,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from kubernetes import watch

    rounds: list[list[dict[str, Any]]] = [
        [{"type": "ERROR", "object": None}],  # resource version too old: read again
        [{"type": "MODIFIED", "object": pod({"m": state(waiting=NS(reason="ContainerCreating",
                                                                   message=None))},
                                            version="3")},
         {"type": "MODIFIED", "object": pod({"m": state(running=True)}, version="4")}]]
    asked: list[str] = []

    class Watch:
        def stream(self, _: Any, namespace: str, **kw: Any) -> Any:
            asked.append(kw["resource_version"])
            yield from rounds.pop(0)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(watch, "Watch", Watch)
    injector.core.reads.append(pod({"m": state()}, version="2"))
    injector.wait_running(REF, "m", pod({}, version="1"))
    assert asked == ["1", "2"] and rounds == []
    rounds.append([{"type": "DELETED", "object": None}])
    with pytest.raises(PodGone, match=r"^pod shop/api-0 was deleted$"):
        injector.wait_running(REF, "m", pod({}, version="1"))


def test_waiting_gives_up_at_the_timeout_with_the_waiting_reason(injector: Injector,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    clock = iter([0.0, 10.0])
    monkeypatch.setattr(inject.time, "monotonic", lambda: next(clock))
    waiting = pod({"m": state(waiting=NS(reason="ContainerCreating", message=None))})
    with pytest.raises(TargetError, match=r"^the manager in pod shop/api-0 \(container app\) did "
                                          r"not start within 5s \(ContainerCreating\)$"):
        injector.wait_running(REF, "m", waiting)


def manager_line(**fields: Any) -> bytes:
    return json.dumps({"kdiag_manager": fields}).encode()


def test_the_first_log_line_is_found_among_other_output(injector: Injector) -> None:
    injector.core.log = b"warming up\n{not json\n" + manager_line(port=50051, pid=7) + b"\n"
    assert injector.first_line(REF, "m") == {"port": 50051, "pid": 7}
    injector.core.log = b"x\n" + manager_line(port=1)  # no newline at the end
    assert injector.first_line(REF, "m") == {"port": 1}
    injector.core.log = manager_line(error="iptables: permission denied") + b"\n"
    with pytest.raises(TargetError, match=r"failed to start: iptables: permission denied$"):
        injector.first_line(REF, "m")
    injector.core.log = b"exec format error\n" + json.dumps({"other": 1}).encode() + b"\n"
    with pytest.raises(TargetError, match=r"printed no address: exec format error \| "
                                          r"\{\"other\": 1\}$"):
        injector.first_line(REF, "m")
    injector.core.log = b""
    with pytest.raises(TargetError, match=r"printed no address: no output$"):
        injector.first_line(REF, "m")

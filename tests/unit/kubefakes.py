"""Stand-ins for the Kubernetes client in unit tests of kdiag's own logic: its ApiException
(installed where kdiag imports it from), a pod object, and a CoreV1Api answering pods and
Services and recording the calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace as NS
from typing import Any

import pytest


class FakeApiException(Exception):
    """An HTTP error answer: ``status``, the Status object ``body`` (JSON), ``reason``."""

    def __init__(self, status: int, body: dict[str, Any] | None = None,
                 reason: str = "") -> None:
        super().__init__(reason or f"HTTP {status}")
        self.status = status
        self.reason = reason or f"HTTP {status}"
        self.body = json.dumps(body) if body is not None else None


def install(monkeypatch: pytest.MonkeyPatch) -> type[FakeApiException]:
    """Make ``kubernetes.client.exceptions.ApiException`` the fake for this test."""
    import kubernetes.client.exceptions as exceptions

    monkeypatch.setattr(exceptions, "ApiException", FakeApiException)
    return FakeApiException


def pod(name: str, created: int = 1, *, phase: str = "Running", ready: bool = True,
        deleting: bool = False, labels: dict[str, str] | None = None,
        status: bool = True) -> Any:
    meta = NS(name=name, namespace="shop", uid=f"uid-{name}", annotations=None,
              labels=labels or {"app": "api"},
              creation_timestamp=datetime(2026, 1, 1, 0, 0, created, tzinfo=UTC),
              deletion_timestamp=datetime(2026, 1, 2, tzinfo=UTC) if deleting else None)
    ports = [NS(name="http", container_port=8080), NS(name=None, container_port=9000)]
    spec = NS(containers=[NS(name="app", ports=ports), NS(name="side", ports=None)],
              node_name="node-1")
    conditions = [NS(type="Ready", status="True" if ready else "False")]
    st = NS(phase=phase, pod_ip="10.1.0.5", conditions=conditions, host_ip="10.213.0.1",
            host_ips=[NS(ip="10.213.0.1"), NS(ip="fd00::1")],
            container_statuses=[NS(name="side", container_id="containerd://bbb"),
                                NS(name="app", container_id="containerd://aaa")])
    return NS(metadata=meta, spec=spec, status=st if status else None)


class FakeCore:
    """Records the calls made and answers from ``pods`` / ``services``."""

    def __init__(self, pods: list[Any], services: dict[str, Any] | None = None) -> None:
        self.pods = pods
        self.services = services or {}
        self.calls: list[tuple[str, ...]] = []
        self.api_client = object()

    def read_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append(("read", name, namespace))
        return next(p for p in self.pods if p.metadata.name == name)

    def list_namespaced_pod(self, namespace: str, label_selector: str, **_: Any) -> Any:
        self.calls.append(("list", namespace, label_selector))
        return NS(items=list(self.pods))

    def read_namespaced_service(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append(("service", name, namespace))
        if name not in self.services:
            raise FakeApiException(404)
        return self.services[name]


class FakePodGuard:
    """Stands in for :class:`kdiag.kube.podguard.PodGuard` (the watch of one pod): records
    each one made (``made``, reset by the test) and its ``start``/``stop``."""

    made: list[FakePodGuard] = []

    def __init__(self, core: Any, pod: Any, lifeline: Any, **_: Any) -> None:
        self.pod, self.lifeline = pod, lifeline
        self.events: list[str] = []
        FakePodGuard.made.append(self)

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")

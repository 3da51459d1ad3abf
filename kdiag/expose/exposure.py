"""A running exposure: the pod and Service made (through :class:`kdiag.kube.owned.Ownership`),
a session with the pod's manager, and a redirect of the pod's port to the local address.

:func:`start` returns once the pod is Ready (a connection to the Service reaches the local
server); anything failing half-way removes what was made. :meth:`Exposure.stop` ends the
redirect and deletes the Service, the pod and the run's Lease. :attr:`Exposure.lifeline` fails
when the redirect's stream ends or the pod is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, api_call
from kdiag.kube.inject import FATAL_WAITING, ManagerImage

from . import objects

if TYPE_CHECKING:
    from kdiag.kube.config import KubeConfig
    from kdiag.kube.owned import Ownership
    from kdiag.kube.podguard import PodGuard
    from kdiag.lifeline import Lifeline
    from kdiag.session.redirect import RedirectHandle
    from kdiag.session.results import RedirectEventInfo
    from kdiag.targets.kubernetes import KubernetesSession


@dataclass(frozen=True)
class Wanted:
    """What to expose: Service ``service`` in ``namespace`` on ``port``, carried to
    ``local`` (host, port) on this machine."""

    service: str
    port: int
    local: tuple[str, int]
    namespace: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    image: ManagerImage = field(default_factory=ManagerImage)


STAT_NAMES = ("connections", "open", "closed", "rejected", "probes", "bytes_in", "bytes_out")


@dataclass
class Traffic:
    """Counts an exposure's connections into ``stats`` and says a line per connection; the
    kubelet's readiness probes (from the node's addresses, ``probe_sources``) only count as
    ``probes``. ``rejected``: nothing took the connection on this machine (it was reset)."""

    say: Callable[[str], None]
    on_change: Callable[[dict[str, int]], None] | None = None
    probe_sources: tuple[str, ...] = ()
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))
    _probes: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, info: RedirectEventInfo) -> None:
        """A redirect event of the exposure (see :class:`kdiag.session.redirect.RedirectHandle`)."""
        cid, stats = info.connection_id, self.stats
        with self._lock:
            if info.kind == "connection":
                if info.peer and info.peer[0] in self.probe_sources:
                    self._probes.add(cid)
                    stats["probes"] += 1
                    return
                stats["connections"] += 1
                stats["open"] += 1
                peer = f"{info.peer[0]}:{info.peer[1]}" if info.peer else "?"
                self.say(f"connection {cid}: {peer}\n")
            elif info.kind == "rejected":
                if cid not in self._probes:
                    stats["rejected"] += 1
                    self.say(f"connection {cid} refused here: {info.error or 'rejected'}\n")
            elif info.kind == "closed":
                if cid in self._probes:
                    self._probes.discard(cid)
                    return
                stats["open"] = max(0, stats["open"] - 1)
                stats["closed"] += 1
                stats["bytes_in"] += info.bytes_in
                stats["bytes_out"] += info.bytes_out
            else:
                return
            snapshot = dict(stats)
        if self.on_change is not None:
            self.on_change(snapshot)


@dataclass
class Exposure:
    """See the module's docstring."""

    kube: KubeConfig
    wanted: Wanted
    namespace: str
    ownership: Ownership
    traffic: Traffic
    pod: str = ""
    session: KubernetesSession | None = None
    handle: RedirectHandle | None = None
    guard: PodGuard | None = None
    seconds: float = 0.0
    """From the start until the pod was Ready."""

    @property
    def lifeline(self) -> Lifeline:
        """Fails when the redirect ends by itself or the pod is lost."""
        assert self.handle is not None
        return self.handle.lifeline

    def summary(self) -> dict[str, Any]:
        """Plain data for a result."""
        host, port = self.wanted.local
        return {"service": self.wanted.service, "namespace": self.namespace,
                "port": self.wanted.port, "local": f"{host}:{port}", "pod": self.pod,
                "url": f"http://{self.wanted.service}.{self.namespace}:{self.wanted.port}",
                "run": self.ownership.run_id, "ready_seconds": round(self.seconds, 3),
                "stats": self.traffic.stats}

    def stop(self) -> list[str]:
        """End the redirect, delete the Service, the pod and the Lease; the failures to
        delete (one line each; never raises)."""
        if self.guard is not None:
            self.guard.stop()
        if self.handle is not None:
            self.handle.close()
        if self.session is not None:
            self.session.close()
        return self.ownership.close()


def start(wanted: Wanted, traffic: Traffic, timeout: float = 60.0) -> Exposure:
    """Create the pod and the Service, connect, redirect, wait until Ready (TargetError with
    the cause if any of it fails; what was made is deleted again)."""
    from kdiag.kube.config import KubeOptions, load
    from kdiag.kube.owned import Ownership

    kube = load(KubeOptions(wanted.kubeconfig, wanted.context, wanted.namespace))
    exposure = Exposure(kube, wanted, kube.namespace, Ownership(kube), traffic)
    began = time.monotonic()
    try:
        _start(exposure, timeout)
    except BaseException:
        exposure.stop()
        raise
    exposure.seconds = time.monotonic() - began
    return exposure


def _start(exposure: Exposure, timeout: float) -> None:
    from kdiag.kube.inject import Injector
    from kdiag.kube.podguard import PodGuard
    from kdiag.kube.pods import Selection, to_ref
    from kdiag.kube.tokens import new_token, token_sha256
    from kdiag.session.results import RedirectSpec
    from kdiag.targets.kubernetes import connect_manager

    kube, wanted, namespace = exposure.kube, exposure.wanted, exposure.namespace
    core = kube.core()
    _refuse_existing(core, kube, namespace, wanted.service)
    image = wanted.image.resolved()
    token = new_token()
    exposure.pod = objects.pod_name(wanted.service)
    exposure.ownership.create("pods", namespace, objects.pod_body(
        exposure.pod, wanted.port, image, token_sha256(token)), objects.ROLE)
    exposure.ownership.create("services", namespace, objects.service_body(
        wanted.service, wanted.port, exposure.pod), objects.ROLE)
    deadline = time.monotonic() + timeout
    pod = _wait_pod(core, kube, namespace, exposure.pod, deadline, image, running=True)
    ref = to_ref(pod, objects.CONTAINER)
    injector = Injector(core, kube.server, image)
    exposure.session = connect_manager(kube, ref, Selection([ref]), injector, objects.CONTAINER,
                                       token, False, timeout)
    exposure.traffic.probe_sources = exposure.session.node_sources()
    exposure.handle = exposure.session.manager.redirect(
        RedirectSpec("incoming", (wanted.port,), fail_open=False), wanted.local,
        on_event=exposure.traffic.on_event)
    exposure.guard = PodGuard(kube.core(), ref, exposure.handle.lifeline, server=kube.server,
                              watch_container=False)
    exposure.guard.start()
    try:
        _wait_pod(core, kube, namespace, exposure.pod, deadline, image, running=False)
    except TargetError as exc:
        host, port = wanted.local
        raise TargetError(f"expose: {exc}; is anything listening on {host}:{port}? (the "
                          "pod is Ready once a connection reaches it)") from None


def _refuse_existing(core: Any, kube: KubeConfig, namespace: str, service: str) -> None:
    """A Service of that name already there is never replaced (TargetError)."""
    from kubernetes.client.exceptions import ApiException

    from kdiag.kube.owned import MANAGED_BY, RUN

    with api_call(Call("get", "services", namespace, service, kube.server)):
        try:
            found = core.read_namespaced_service(service, namespace, _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
    labels = found.metadata.labels or {}
    whose = (f"made by kdiag run {labels.get(RUN, '?')}: `kdiag gc -n {namespace}` removes it "
             "once that run is gone" if labels.get(MANAGED_BY) == "kdiag" else "not kdiag's")
    raise TargetError(f"expose: service {namespace}/{service} already exists ({whose}); "
                      "choose another name")


def _wait_pod(core: Any, kube: KubeConfig, namespace: str, name: str, deadline: float,
              image: ManagerImage, *, running: bool) -> Any:
    """Watch pod ``name`` until its container runs (``running``) or it is Ready; TargetError
    at once on a state that will not get there, or at ``deadline``."""
    from kubernetes import watch

    what = "running" if running else "Ready"
    version = ""
    while (left := deadline - time.monotonic()) > 0:
        w = watch.Watch()
        with api_call(Call("watch", "pods", namespace, name, kube.server)):
            for event in w.stream(core.list_namespaced_pod, namespace,
                                  field_selector=f"metadata.name={name}",
                                  resource_version=version or None,
                                  timeout_seconds=max(1, int(left + 0.999)),
                                  _request_timeout=left + 10):
                if event["type"] == "ERROR":
                    version = ""
                    break
                pod = event["object"]
                version = pod.metadata.resource_version
                if event["type"] == "DELETED":
                    w.stop()
                    raise TargetError(f"pod {namespace}/{name} was deleted")
                if _arrived(pod, image, running):
                    w.stop()
                    return pod
    raise TargetError(f"pod {namespace}/{name} was not {what} within the timeout")


def _arrived(pod: Any, image: ManagerImage, running: bool) -> bool:
    """Whether ``pod`` is there yet; TargetError for a state it will not leave."""
    name = f"{pod.metadata.namespace}/{pod.metadata.name}"
    if pod.status.phase in ("Succeeded", "Failed"):
        raise TargetError(f"pod {name} ended ({pod.status.phase}): "
                          f"{_terminated(pod) or pod.status.reason or 'no reason given'}")
    for status in pod.status.container_statuses or []:
        state = status.state
        if state is not None and state.waiting is not None \
                and state.waiting.reason in FATAL_WAITING:
            message = " ".join((state.waiting.message or "").split())[:300]
            raise TargetError(f"pod {name} cannot start: {state.waiting.reason}"
                              f"{': ' + message if message else ''} (image {image.image}, pull "
                              f"policy {image.pull_policy})")
        if state is not None and state.terminated is not None:
            raise TargetError(f"pod {name}: the manager exited: {_terminated(pod)}")
        if running and state is not None and state.running is not None:
            return True
        if not running and status.ready:
            return True
    return False


def _terminated(pod: Any) -> str:
    for status in pod.status.container_statuses or []:
        t = status.state.terminated if status.state is not None else None
        if t is not None:
            return f"exit code {t.exit_code} ({t.reason or 'terminated'})" + (
                f": {' '.join(t.message.split())[:300]}" if t.message else "")
    return ""

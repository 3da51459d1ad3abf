"""Kubernetes target: a pod, debugged through a manager in an ephemeral container.

Opening it resolves the pod (name, ``TYPE/NAME`` or selector, ``pick``, running only, kubectl's
default container; ``pick: all`` opens a :class:`~kdiag.targets.fleet.FleetSession` over every
ready pod instead), reuses a running manager of this kdiag version whose token this machine holds or
injects a new one, reads the manager's address from its log, and connects gRPC to it over one
port-forward through the API server. Ephemeral containers cannot be removed: the manager stays
(idle) after the session; everything it changed (iptables rules) is removed when the session's
streams end, for whatever reason.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from kdiag.errors import ManagerError, ManagerUnavailable, TargetError
from kdiag.kube.config import KubeConfig, KubeOptions, load
from kdiag.kube.errors import Call, PodGone, api_call, translate
from kdiag.kube.inject import DEFAULT_TIMEOUT, Injector, ManagerImage
from kdiag.kube.podcopy import CopySpec
from kdiag.kube.pods import PodRef, PodSelector, Selection, select
from kdiag.language.durations import parse_duration
from kdiag.lifeline import Lifeline

from .base import Target, TargetSession

if TYPE_CHECKING:
    from kdiag.kube.owned import Ownership
    from kdiag.kube.podguard import PodGuard
    from kdiag.targets.fleet import FleetSession

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class KubernetesSpec:
    """The runbook's ``target: {kubernetes: {...}}`` (or the ad-hoc commands' flags)."""

    namespace: str | None = None
    pod: str | None = None
    selector: str | None = None
    container: str | None = None
    pick: str = "newest"
    context: str | None = None
    kubeconfig: str | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    privileged: bool = False
    timeout: float = DEFAULT_TIMEOUT
    labels: dict[str, str] = field(default_factory=dict)
    copy: CopySpec | None = None
    """Debug a copy of the pod (for pods that crash at start): :mod:`kdiag.kube.podcopy`."""
    node: str | None = None
    """The node itself (a privileged pod on it): :mod:`kdiag.kube.nodepod`."""
    via: str = "ephemeral"
    """How the manager reaches the pod: ``ephemeral``, ``node`` or ``auto``."""
    node_namespace: str | None = None
    """Where the pods on nodes (``node``, ``via: node``) are created: a namespace that allows
    privileged pods (default: the target's)."""

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> KubernetesSpec:
        """From a rendered ``kubernetes:`` mapping (TargetError on bad values)."""
        try:
            timeout = parse_duration(options["timeout"]) if options.get("timeout") is not None \
                else DEFAULT_TIMEOUT
        except ValueError as exc:
            raise TargetError(f"target kubernetes: timeout: {exc}") from None

        def text(name: str) -> str | None:
            value = options.get(name)
            return str(value) if value not in (None, "") else None

        copy = None
        if options.get("copy") not in (None, False):
            copy = CopySpec.from_options(options["copy"], options.get("keep_copy", False))
        return cls(namespace=text("namespace"), pod=text("pod"), selector=text("selector"),
                   container=text("container"), pick=text("pick") or "newest",
                   context=text("context"), kubeconfig=text("kubeconfig"), image=text("image"),
                   image_pull_policy=text("image_pull_policy"),
                   privileged=bool(options.get("privileged", False)), timeout=timeout,
                   copy=copy, node=text("node"), via=text("via") or "ephemeral",
                   node_namespace=text("node_namespace"))

    def kube_options(self) -> KubeOptions:
        """What config loading needs."""
        return KubeOptions(kubeconfig=self.kubeconfig, context=self.context,
                           namespace=self.namespace)

    def selector_for(self, namespace: str) -> PodSelector:
        """What pod resolution needs."""
        pick = self.pick if self.pick in ("newest", "oldest", "all") else "newest"
        return PodSelector(namespace=namespace, pod=self.pod, selector=self.selector,
                           container=self.container, pick=pick)  # type: ignore[arg-type]

    def manager_image(self) -> ManagerImage:
        """Image, pull policy, privileges and start timeout of the manager."""
        return ManagerImage(image=self.image or "", pull_policy=self.image_pull_policy or "",
                            privileged=self.privileged, timeout=self.timeout)

    def describe(self) -> str:
        """``pod ns/name``, ``deployment ns/api`` or ``pods app=x in ns`` (``, every ready
        pod`` with ``pick: all``)."""
        ns = self.namespace or "(default namespace)"
        if self.node:
            return f"node {self.node}"
        if self.pod:
            kind, _, name = self.pod.rpartition("/")
            text = f"{kind or 'pod'} {ns}/{name}"
        else:
            text = f"pods {self.selector} in {ns}"
        return text + (", every ready pod" if self.pick == "all" else "")


def _diagnosing(method: F) -> F:
    """Turn "manager unreachable" into the reason (pod deleted, API server down, ...)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:

        try:
            return method(self, *args, **kwargs)
        except ManagerUnavailable as exc:
            cause = self._diagnose()
            if cause is not None:
                raise cause from None
            raise TargetError(str(exc)) from None

    return cast(F, wrapper)


_WRAPPED = ("version", "ps", "net", "exec", "shell_tty", "redirect", "capture", "copy_from",
            "copy_to", "_probe", "environ", "list_dir")


def _client_class() -> type:
    """A ManagerClient whose unreachable-manager errors name their cause (built lazily:
    importing the session client pulls in grpc)."""
    from kdiag.session.client import ManagerClient

    methods: dict[str, Any] = {"_diagnose": staticmethod(lambda: None)}
    for name in _WRAPPED:
        if callable(getattr(ManagerClient, name, None)):
            methods[name] = _diagnosing(getattr(ManagerClient, name))
    return type("KubeManagerClient", (ManagerClient,), methods)


class KubernetesSession(TargetSession):
    """A manager in a pod and a gRPC client connected to it over one port-forward."""

    def __init__(self, kube: KubeConfig, ref: PodRef, selection: Selection, manager: Any,
                 relay: Any, container: str, reused: bool, first: dict[str, Any]) -> None:
        self.kube = kube
        self.ref = ref
        self.selection = selection
        self.pods = pods = selection.pods
        self.manager = manager
        self.relay = relay
        self.container = container
        self.reused = reused
        self.info = {"kind": "kubernetes", **ref.to_dict(), "manager_container": container,
                     "manager_reused": reused, "manager_pid": first.get("pid"),
                     "target_pid": first.get("target_pid"),
                     "session": first.get("session", ""), "server": kube.server,
                     "context": kube.context, "in_cluster": kube.in_cluster, "user": kube.user,
                     "pods": [p.to_dict() for p in pods],
                     "workload": selection.workload.label if selection.workload else ""}
        self._closed = False
        self._guard: PodGuard | None = None
        self._node_sources: tuple[str, ...] | None = None
        self.owned: Ownership | None = None
        self.copy_of = ""
        self.keep_copy = False
        self.info["way"] = "ephemeral"

    def adopt(self, owned: Ownership, way: str, **info: Any) -> None:
        """What this session created (``owned``: a copy, a node pod) is deleted at
        :meth:`close`; ``way`` (``copy``, ``node``, ``via-node``) and details go to the
        report's target info."""
        self.owned = owned
        self.copy_of = str(info.get("copy_of") or "")
        self.keep_copy = bool(info.get("keep_copy"))
        self.info.update(way=way, **info)

    def summary(self) -> str:
        """``pod ns/name (container c), manager NAME (reused)``, and the workload it is of."""
        ref = self.ref
        workload = self.selection.workload
        if self.info["way"] == "node":
            return f"node {ref.node} (manager in pod {ref.namespace}/{ref.name})"
        via = self.info.get("via_node")
        return (f"pod {ref.namespace}/{ref.name} (container {ref.container})"
                + (f" of {workload.label}" if workload is not None else "")
                + (f", a copy of pod {self.copy_of}" + (" (kept)" if self.keep_copy else
                                                          " (deleted at the end)")
                   if self.copy_of else "")
                + (f", manager through node {ref.node} (pod {via})" + (
                    f" because {self.info['fallback']}" if self.info.get("fallback") else "")
                   if via else
                   f", manager {self.container}{' (reused)' if self.reused else ' (injected)'}"))

    def map_port(self, port: str | int) -> int:
        """A Service's port (number or name) → the pod's targetPort; a name → the pod's
        container port of that name (ValueError naming what is missing)."""
        from kdiag.kube.workloads import map_port

        try:
            return map_port(port, self.ref.named_ports, self.selection.workload)
        except TargetError as exc:
            raise ValueError(f"pod {self.ref.name}: {exc}") from None

    def node_sources(self) -> tuple[str, ...]:
        """The node's addresses (``status.hostIPs``) and the pod's default gateways (on
        bridge CNIs the node reaches its pods from its bridge address): where the kubelet's
        probes come from."""
        if self._node_sources is None:
            found = list(self.ref.host_ips)
            try:
                routes = self.manager.net().routes
            except (ManagerError, TargetError) as exc:
                log.info("no routes of %s: %s", self.ref.describe(), exc)
                routes = []
            found += [str(r["gateway"]) for r in routes
                      if r.get("gateway") and not r.get("destination")]
            self._node_sources = tuple(dict.fromkeys(found))
        return self._node_sources

    def diagnose(self) -> TargetError | None:
        """Why the manager stopped answering, if the cluster can tell."""
        return diagnose(self.kube, self.ref, self.container)

    def _start_watching(self, lifeline: Lifeline) -> None:
        """The pod (deleted, evicted, replaced, its container restarted), the manager's
        container (terminated) and the port-forward to it (lost after retries)."""
        from kdiag.kube.podguard import PodGuard

        self._guard = PodGuard(self.kube.core(), self.ref, lifeline, server=self.kube.server,
                               manager=self.container)
        self._guard.start()
        self.relay.lifeline.listen(lambda loss: lifeline.fail(loss.cause))

    def close(self) -> None:
        """End every stream (the manager removes this session's rules), then the
        port-forward. The manager itself stays, idle, for the next run to reuse."""
        if self._closed:
            return
        self._closed = True
        if self._guard is not None:
            self._guard.stop()
        try:
            self.manager.close()
        finally:
            self.relay.close()
            self._release()

    def _release(self) -> None:
        """Delete what this session created (the copy), or keep it as asked."""
        if self.owned is None:
            return
        if self.keep_copy:
            try:
                self.owned.keep("pods", self.ref.namespace, self.ref.name)
            except TargetError as exc:
                log.warning("keeping the copy %s: %s", self.ref.name, exc)
        self.owned.close()


def diagnose(kube: KubeConfig, ref: PodRef, container: str) -> TargetError | None:
    """The cause of a lost manager: the pod is gone or replaced, stopped, the manager
    container ended, or the API server is unreachable; None if all looks fine."""
    try:
        core = kube.core()
        with api_call(Call("get", "pods", ref.namespace, ref.name, kube.server)):
            pod = core.read_namespaced_pod(ref.name, ref.namespace, _request_timeout=10)
    except TargetError as exc:
        return exc
    except Exception as exc:  # anything else: report it rather than hide the first error
        return translate(exc, Call("get", "pods", ref.namespace, ref.name, kube.server))
    if pod.metadata.uid != ref.uid:
        return PodGone(f"pod {ref.namespace}/{ref.name} was deleted and recreated during the run")
    if pod.metadata.deletion_timestamp is not None:
        return PodGone(f"pod {ref.namespace}/{ref.name} is being deleted")
    if pod.status.phase != "Running":
        return PodGone(f"pod {ref.namespace}/{ref.name} is {pod.status.phase}")
    for status in pod.status.ephemeral_container_statuses or []:
        if status.name == container and status.state is not None and status.state.terminated:
            t = status.state.terminated
            return TargetError(f"the manager container {container} in pod {ref.namespace}/"
                               f"{ref.name} exited with code {t.exit_code} ({t.reason})")
    return None


class KubernetesTarget(Target):
    """A pod in a cluster (by name or selector)."""

    def __init__(self, spec: KubernetesSpec) -> None:
        self.spec = spec

    def describe(self) -> str:
        """E.g. ``pod shop/api-0``."""
        return self.spec.describe()

    def open(self) -> KubernetesSession | FleetSession:
        """Resolve the pod(s); for one, reuse or inject the manager and connect (TargetError
        if it cannot); with ``pick: all``, a fleet whose pods are reached as steps need them."""
        kube = load(self.spec.kube_options())
        if self.spec.copy is not None or self.spec.node or self.spec.via != "ephemeral":
            from kdiag.targets import ways

            return ways.open_other_way(self, kube)
        selection = select(kube.core(), self.spec.selector_for(kube.namespace), kube.server)
        if self.spec.pick == "all":
            from kdiag.targets.fleet import FleetSession

            return FleetSession(lambda ref: self.open_pod(kube, ref, selection),
                                lambda ref, container: diagnose(kube, ref, container),
                                kube, selection, self.spec.container)
        return self.open_pod(kube, selection.pods[0], selection)

    def open_pod(self, kube: KubeConfig, ref: PodRef, selection: Selection
                 ) -> KubernetesSession:
        """Reuse or inject the manager in pod ``ref`` and connect to it (TargetError if it
        cannot)."""
        injector = Injector(kube.core(), kube.server, self.spec.manager_image())
        for name, token in injector.candidates(ref):
            try:
                return self._connect(kube, ref, selection, injector, name, token, reused=True)
            except TargetError as exc:
                log.info("not reusing manager %s: %s", name, exc)
                injector.forget(ref, name)
        name, token = injector.inject(ref)
        return self._connect(kube, ref, selection, injector, name, token, reused=False)

    def _connect(self, kube: KubeConfig, ref: PodRef, selection: Selection, injector: Injector,
                 name: str, token: str, reused: bool, log_ref: PodRef | None = None
                 ) -> KubernetesSession:
        return connect_manager(kube, ref, selection, injector, name, token, reused,
                               self.spec.timeout, log_ref)


def connect_manager(kube: KubeConfig, ref: PodRef, selection: Selection, injector: Injector,
                    name: str, token: str, reused: bool, timeout: float,
                    log_ref: PodRef | None = None) -> KubernetesSession:
    """A session with the manager running as container ``name`` (its log in pod ``log_ref``,
    default ``ref``: injected, the main container of a pod kdiag made, or a node pod reaching
    ``ref``): its first log line, one port-forward to pod ``ref`` carrying gRPC and the lane
    (TargetError if it cannot be reached)."""
    from kdiag.kube.portforward import ManagerRelay
    from kdiag.session.lane import LaneClient

    first = injector.first_line(log_ref or ref, name)
    port = _port_of(first.get("address"))
    if not port:
        raise TargetError(f"the manager in {ref.describe()} gave no usable address: "
                          f"{first.get('address')!r}")
    lane_port = _port_of(first.get("lane"))
    lane = LaneClient(token) if lane_port else None
    relay = ManagerRelay(kube.stream_core, ref.namespace, ref.name, port, kube.server,
                         lane_port, lane)
    try:
        manager = _client_class()(_ready_channel(relay, min(timeout, 30)), token)
        manager._diagnose = lambda: diagnose(kube, ref, name)
        manager.version()  # checks the token too
        if lane is not None and lane.wait_ready():
            manager.lane = lane  # redirected connections go on the port-forward's lane
    except (ManagerError, TargetError) as exc:
        relay.close()
        detail = relay.errors[-1] if relay.errors else str(exc)
        raise TargetError(f"manager {name} in {ref.describe()} unreachable: "
                          f"{detail}") from None
    return KubernetesSession(kube, ref, selection, manager, relay, name, reused, first)


def _port_of(address: object) -> int:
    """The port of a ``host:port`` address from the manager's first line (0: none)."""
    try:
        return int(str(address).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _ready_channel(relay: Any, timeout: float) -> Any:
    """A gRPC channel through ``relay``, connected; fails at the first port-forward error
    instead of letting gRPC retry with backoff until the timeout."""
    import time

    import grpc

    from kdiag.session.client import CHANNEL_OPTIONS

    channel = grpc.insecure_channel(relay.address, options=CHANNEL_OPTIONS)
    ready = grpc.channel_ready_future(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready.result(timeout=0.1)
            return channel
        except grpc.FutureTimeoutError:
            pass
        if relay.errors or time.monotonic() > deadline:
            ready.cancel()
            channel.close()
            raise TargetError(relay.errors[-1] if relay.errors else
                              f"no connection within {timeout:g}s")


def pods_for_step(target: dict[str, Any], body: dict[str, Any], *, pick: str | None = None
                  ) -> tuple[KubeConfig, Selection]:
    """The cluster and pods (running, ready or not) a ``logs``/``forward`` step means: its own
    ``pod``/``selector``/``namespace``/``container`` first, else the runbook's kubernetes
    target's."""
    kube, want = selection_for_step(target, body, pick=pick)
    return kube, select(kube.core(), want, kube.server, ready=False)


def selection_for_step(target: dict[str, Any], body: dict[str, Any], *,
                       pick: str | None = None) -> tuple[KubeConfig, PodSelector]:
    """The cluster and the selection (not yet resolved) of :func:`pods_for_step`."""
    own = {k: body[k] for k in ("namespace", "pod", "selector", "container", "context",
                                "kubeconfig") if body.get(k) not in (None, "")}
    base = dict(target) if target.get("kind") == "kubernetes" else {}
    base.pop("kind", None)
    if "pod" in own or "selector" in own:
        base.pop("pod", None)
        base.pop("selector", None)
    if "pod" in own:
        base.pop("container", None)
    merged = {**base, **own}
    if pick is not None:
        merged["pick"] = pick
    spec = KubernetesSpec.from_options(merged)
    if not spec.pod and not spec.selector:
        raise TargetError("name a pod or a selector (or give the runbook a kubernetes target)")
    kube = load(spec.kube_options())
    return kube, spec.selector_for(kube.namespace)

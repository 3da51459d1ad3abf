"""Which pod(s) and container a target means: by name, kubectl's ``TYPE/NAME`` (the pods of a
workload or Service, see :mod:`kdiag.kube.workloads`) or a label selector; ``pick``; running
pods only (``all``: every Ready one); and the default container as kubectl chooses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, PodGone, api_call
from kdiag.kube.workloads import Workload, parse_name, read_workload

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
Pick = Literal["newest", "oldest", "all"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PodSelector:
    """What the user asked for (``pod``: a name, or ``TYPE/NAME``)."""

    namespace: str
    pod: str | None = None
    selector: str | None = None
    container: str | None = None
    pick: Pick = "newest"


@dataclass(frozen=True)
class PodRef:
    """One running pod and the container kdiag acts on."""

    namespace: str
    name: str
    uid: str
    container: str
    containers: tuple[str, ...]
    node: str = ""
    ip: str = ""
    created: datetime = _EPOCH
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    container_id: str = ""  # the container's runtime ID (no ``containerd://``), if running
    host_ips: tuple[str, ...] = ()
    """The node's addresses (``status.hostIPs``): where the kubelet's probes come from."""
    named_ports: dict[str, int] = field(default_factory=dict, compare=False)
    """The pod's container ports that have a name (``http`` → 8080)."""

    def describe(self) -> str:
        """``pod ns/name (container app)``."""
        return f"pod {self.namespace}/{self.name} (container {self.container})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for templates and reports."""
        return {"namespace": self.namespace, "name": self.name, "pod": self.name,
                "uid": self.uid, "container": self.container,
                "containers": list(self.containers), "node": self.node, "ip": self.ip,
                "host_ip": self.host_ips[0] if self.host_ips else ""}


@dataclass(frozen=True)
class Selection:
    """The pods a target means, and how to find more of them later."""

    pods: list[PodRef]
    selector: str = ""
    """The label selector the pods were found by ('' for one named pod)."""
    workload: Workload | None = None
    """What a ``TYPE/NAME`` target named (None: a pod name or a selector)."""

    @property
    def label(self) -> str:
        """``deployment/api``, ``app=api`` or ``pod/api-0``."""
        if self.workload is not None:
            return self.workload.label
        return self.selector or f"pod/{self.pods[0].name}"


def default_container(pod: Any) -> str:
    """The container kubectl would pick: the default-container annotation if it names a
    container of the pod, else the first container."""
    names = [c.name for c in pod.spec.containers]
    annotations = pod.metadata.annotations or {}
    wanted = annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    if wanted and wanted in names:
        return str(wanted)
    return str(names[0])


def is_running(pod: Any) -> bool:
    """Running phase and not being deleted."""
    return (pod.status is not None and pod.status.phase == "Running"
            and pod.metadata.deletion_timestamp is None)


def is_ready(pod: Any) -> bool:
    """Running, not being deleted, and its Ready condition true (it gets Service traffic)."""
    return is_running(pod) and any(c.type == "Ready" and c.status == "True"
                                   for c in pod.status.conditions or [])


def _not_deleted(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None


def _created(pod: Any) -> datetime:
    return pod.metadata.creation_timestamp or _EPOCH


def pick_pods(pods: list[Any], how: Pick) -> list[Any]:
    """Order running pods newest first (or oldest first) and keep one, or all for ``all``."""
    ordered = sorted(pods, key=lambda p: (_created(p), p.metadata.name),
                     reverse=how != "oldest")
    return ordered if how == "all" else ordered[:1]


def to_ref(pod: Any, container: str | None) -> PodRef:
    """A PodRef for ``pod``, checking that ``container`` (default: kubectl's) exists."""
    names = tuple(c.name for c in pod.spec.containers)
    chosen = container or default_container(pod)
    if chosen not in names:
        raise TargetError(f"pod {pod.metadata.namespace}/{pod.metadata.name} has no container "
                          f"{chosen!r} (containers: {', '.join(names)})")
    return PodRef(namespace=pod.metadata.namespace, name=pod.metadata.name,
                  uid=pod.metadata.uid, container=chosen, containers=names,
                  node=pod.spec.node_name or "", ip=(pod.status.pod_ip or "") if pod.status else "",
                  created=_created(pod), labels=dict(pod.metadata.labels or {}),
                  container_id=_container_id(pod, chosen), host_ips=_host_ips(pod),
                  named_ports={p.name: int(p.container_port) for c in pod.spec.containers
                               for p in c.ports or [] if p.name})


def _host_ips(pod: Any) -> tuple[str, ...]:
    status = pod.status
    if status is None:
        return ()
    found = [h.ip for h in getattr(status, "host_ips", None) or [] if getattr(h, "ip", None)]
    if status.host_ip and status.host_ip not in found:
        found.insert(0, status.host_ip)
    return tuple(found)


def _container_id(pod: Any, container: str) -> str:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == container and status.container_id:
            return str(status.container_id).partition("://")[2] or str(status.container_id)
    return ""


def resolve(core: Any, want: PodSelector, server: str = "") -> list[PodRef]:
    """The running pod(s) ``want`` selects, ready or not (TargetError naming why when there
    is none)."""
    return select(core, want, server, ready=False).pods


def select(core: Any, want: PodSelector, server: str = "", *, ready: bool | None = None,
           running: bool = True) -> Selection:
    """The pod(s) ``want`` selects and how they were found; TargetError naming why when there
    is none. ``ready`` (default: with ``pick: all``): only pods whose Ready condition holds
    (a named pod need only run); ``running=False``: any pod not being deleted (one to copy,
    crashing or pending)."""
    kind, name = parse_name(want.pod) if want.pod else ("", "")
    if kind == "pod":
        with api_call(Call("get", "pods", want.namespace, name, server)):
            pod = core.read_namespaced_pod(name, want.namespace, _request_timeout=30)
        if not is_running(pod) and (running or pod.metadata.deletion_timestamp is not None):
            phase = "terminating" if pod.metadata.deletion_timestamp else pod.status.phase
            raise PodGone(f"pod {want.namespace}/{name} is {phase}, not running")
        return Selection([to_ref(pod, want.container)])
    workload = read_workload(core, kind, name, want.namespace, server) if kind else None
    selector = workload.selector if workload is not None else want.selector
    if not selector:
        raise TargetError("kubernetes target: name a pod, TYPE/NAME or a label selector")
    with api_call(Call("list", "pods", want.namespace, "", server)):
        pods = core.list_namespaced_pod(want.namespace, label_selector=selector,
                                        _request_timeout=30).items
    wanted = is_ready if (want.pick == "all" if ready is None else ready) else is_running
    if not running:
        wanted = _not_deleted
    chosen = [p for p in pods if wanted(p)]
    if not chosen:
        what = workload.label if workload is not None else selector
        state = {is_ready: "ready", _not_deleted: "live"}.get(wanted, "running")
        others = f" ({len(pods)} not {state})" if pods else ""
        raise TargetError(f"no {state} pod of {what} in namespace {want.namespace}{others}"
                          if workload is not None else
                          f"no {state} pod matches {selector} in namespace "
                          f"{want.namespace}{others}")
    return Selection([to_ref(p, want.container) for p in pick_pods(chosen, want.pick)],
                     selector, workload)

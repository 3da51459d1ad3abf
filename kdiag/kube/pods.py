"""Which pod(s) and container a target means: by name or label selector, ``pick``, running
pods only, and the default container as kubectl chooses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, PodGone, api_call

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
Pick = Literal["newest", "oldest", "all"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PodSelector:
    """What the user asked for."""

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

    def describe(self) -> str:
        """``pod ns/name (container app)``."""
        return f"pod {self.namespace}/{self.name} (container {self.container})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for templates and reports."""
        return {"namespace": self.namespace, "name": self.name, "pod": self.name,
                "uid": self.uid, "container": self.container,
                "containers": list(self.containers), "node": self.node, "ip": self.ip}


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
                  container_id=_container_id(pod, chosen))


def _container_id(pod: Any, container: str) -> str:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == container and status.container_id:
            return str(status.container_id).partition("://")[2] or str(status.container_id)
    return ""


def resolve(core: Any, want: PodSelector, server: str = "") -> list[PodRef]:
    """The running pod(s) ``want`` selects (TargetError naming why when there is none)."""
    if want.pod:
        with api_call(Call("get", "pods", want.namespace, want.pod, server)):
            pod = core.read_namespaced_pod(want.pod, want.namespace, _request_timeout=30)
        if not is_running(pod):
            phase = "terminating" if pod.metadata.deletion_timestamp else pod.status.phase
            raise PodGone(f"pod {want.namespace}/{want.pod} is {phase}, not running")
        return [to_ref(pod, want.container)]
    if not want.selector:
        raise TargetError("kubernetes target: name a pod or a label selector")
    with api_call(Call("list", "pods", want.namespace, "", server)):
        pods = core.list_namespaced_pod(want.namespace, label_selector=want.selector,
                                        _request_timeout=30).items
    running = [p for p in pods if is_running(p)]
    if not running:
        others = f" ({len(pods)} not running)" if pods else ""
        raise TargetError(f"no running pod matches {want.selector} in namespace "
                          f"{want.namespace}{others}")
    return [to_ref(p, want.container) for p in pick_pods(running, want.pick)]

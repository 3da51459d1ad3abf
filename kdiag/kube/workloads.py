"""Targets in kubectl's ``TYPE/NAME`` form: a workload (Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job) or a Service stands for the pods its label selector matches.

``deploy/api`` is read once (``get`` on it) for its selector; the pods are then listed (and
followed) by that selector, as ``kubectl logs deploy/api`` finds them. A Service also maps its
ports: a port given as the Service's port number or name becomes the pod's ``targetPort`` (a
named targetPort is looked up among the pod's container ports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, api_call

KINDS: dict[str, str] = {
    "pod": "pod", "pods": "pod", "po": "pod",
    "deployment": "deployment", "deployments": "deployment", "deploy": "deployment",
    "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset",
    "daemonset": "daemonset", "daemonsets": "daemonset", "ds": "daemonset",
    "replicaset": "replicaset", "replicasets": "replicaset", "rs": "replicaset",
    "job": "job", "jobs": "job",
    "service": "service", "services": "service", "svc": "service",
}
"""kubectl's names for the types (singular, plural, short) → the kind kdiag means."""
GROUPS = {"deployment": "apps", "statefulset": "apps", "daemonset": "apps", "replicaset": "apps",
          "job": "batch", "service": "", "pod": ""}
"""Each kind's API group (``deployment.apps/api`` is accepted too)."""
FORMS = ("pod/", "deployment/ (deploy/)", "statefulset/ (sts/)", "daemonset/ (ds/)",
         "replicaset/ (rs/)", "job/", "service/ (svc/)")


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service: its number, name and the pods' port (a number or a name)."""

    port: int
    name: str
    target: int | str


@dataclass(frozen=True)
class Workload:
    """What a ``TYPE/NAME`` target stands for: the pods of ``selector`` (a label selector)."""

    kind: str
    name: str
    namespace: str
    selector: str
    ports: tuple[ServicePort, ...] = ()
    """A Service's ports (empty for other kinds)."""

    @property
    def label(self) -> str:
        """``deployment/api``."""
        return f"{self.kind}/{self.name}"


def parse_name(text: str) -> tuple[str, str]:
    """``deploy/api`` → (``deployment``, ``api``); a bare name is a pod's. TargetError for a
    type kdiag does not know."""
    if "/" not in text:
        return "pod", text
    kind, _, name = text.partition("/")
    kind = kind.strip().lower()
    base, dot, group = kind.partition(".")
    canonical = KINDS.get(base)
    if canonical is None or (dot and group not in (GROUPS[canonical], "")) or not name \
            or "/" in name:
        raise TargetError(f"target {text!r}: use NAME or TYPE/NAME with TYPE one of "
                          f"{', '.join(FORMS)}")
    return canonical, name


def is_workload_name(text: str | None) -> bool:
    """Whether ``text`` names something other than one pod (``deploy/api``, ``svc/api``)."""
    return bool(text) and "/" in str(text) and parse_name(str(text))[0] != "pod"


def selector_text(selector: Any) -> str:
    """A ``LabelSelector`` (matchLabels, matchExpressions) as a label selector string."""
    parts = [f"{k}={v}" for k, v in sorted((getattr(selector, "match_labels", None)
                                            or {}).items())]
    for expr in getattr(selector, "match_expressions", None) or []:
        values = ",".join(expr.values or [])
        op = expr.operator
        if op == "In":
            parts.append(f"{expr.key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr.key} notin ({values})")
        elif op == "Exists":
            parts.append(expr.key)
        elif op == "DoesNotExist":
            parts.append(f"!{expr.key}")
    return ",".join(parts)


def read_workload(core: Any, kind: str, name: str, namespace: str, server: str = ""
                  ) -> Workload:
    """Read the workload (or Service) ``kind/name`` for its selector; TargetError when it
    does not exist, cannot be read, or selects nothing."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = core.api_client
    readers: dict[str, tuple[str, Any]] = {
        "deployment": ("deployments", client.AppsV1Api(api).read_namespaced_deployment),
        "statefulset": ("statefulsets", client.AppsV1Api(api).read_namespaced_stateful_set),
        "daemonset": ("daemonsets", client.AppsV1Api(api).read_namespaced_daemon_set),
        "replicaset": ("replicasets", client.AppsV1Api(api).read_namespaced_replica_set),
        "job": ("jobs", client.BatchV1Api(api).read_namespaced_job),
        "service": ("services", core.read_namespaced_service),
    }
    resource, read = readers[kind]
    group = GROUPS[kind]
    call = Call("get", f"{resource}.{group}" if group else resource, namespace, name, server)
    with api_call(call):
        try:
            found = read(name, namespace, _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetError(f"{kind} {namespace}/{name} not found") from None
            raise
    if kind == "service":
        return _service(found, namespace)
    selector = selector_text(found.spec.selector)
    if not selector:
        raise TargetError(f"{kind} {namespace}/{name} has no selector")
    return Workload(kind, name, namespace, selector)


def _service(service: Any, namespace: str) -> Workload:
    name = service.metadata.name
    labels = service.spec.selector or {}
    if not labels:
        raise TargetError(f"service {namespace}/{name} has no selector (its endpoints are "
                          "not pods kdiag can find): name the pods instead")
    ports = tuple(ServicePort(int(p.port), p.name or "",
                              p.target_port if p.target_port is not None else int(p.port))
                  for p in service.spec.ports or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return Workload("service", name, namespace, selector, ports)


def map_port(port: str | int, named_ports: dict[str, int], workload: Workload | None) -> int:
    """The pod's port for ``port``: a Service's port (number or name) becomes its targetPort;
    a name is else one of the pod's container ports; any other number is the pod's own.
    TargetError for a name nothing knows."""
    text = str(port).strip()
    service = workload.ports if workload is not None else ()
    for entry in service:
        if text in (str(entry.port), entry.name) and text:
            target = entry.target
            if isinstance(target, int) or str(target).isdigit():
                return int(target)
            number = named_ports.get(str(target))
            if number is None:
                raise TargetError(f"port {text} of {workload.label if workload else ''}: its "
                                  f"targetPort {target!r} names no port of the pod")
            return number
    if text.isdigit():
        return int(text)
    number = named_ports.get(text)
    if number is None:
        known = sorted({*named_ports, *(p.name for p in service if p.name)})
        raise TargetError(f"no port named {text!r}"
                          + (f" (named ports: {', '.join(known)})" if known else ""))
    return number

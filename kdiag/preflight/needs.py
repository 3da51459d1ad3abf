"""The one table of what kdiag needs of a cluster: for the target, each way into a pod, and
each step type beyond that, the (verb, resource[/subresource][.group]) a Role must grant.

``kdiag doctor`` and the check before ``kdiag run`` both read it (:func:`needs`), so what doctor
says a runbook needs is what the run checks. A step type that talks to the manager (its
``needs_target``) needs the way's verbs; :data:`STEPS` adds what a step type needs beside that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdiag.preflight.demand import Demand

READ_PODS = ("get pods", "list pods", "watch pods")
"""Finding the target pod (name or selector), and watching the manager start."""
PORT_FORWARD = ("get pods/portforward", "create pods/portforward")
"""The session's one port-forward (a WebSocket upgrade: ``get``, and ``create`` as well from
Kubernetes 1.35, see :data:`CREATE_UPGRADE_SINCE`)."""
CREATE_UPGRADE_SINCE = (1, 35)
LEASE = ("create leases.coordination.k8s.io", "patch leases.coordination.k8s.io",
         "delete leases.coordination.k8s.io")
"""Keeping what a run creates alive (:mod:`kdiag.kube.owned`)."""

WAYS: dict[str, tuple[str, ...]] = {
    # The manager as an ephemeral container in the target pod (the default).
    "ephemeral": ("patch pods/ephemeralcontainers", "get pods/log", *PORT_FORWARD),
    # A copy of the pod (pods crashing at start), the manager injected into the copy; the
    # copy is kept alive by a Lease (kdiag/kube/owned.py).
    "copy": ("create pods", "delete pods", "patch pods/ephemeralcontainers", "get pods/log",
             *PORT_FORWARD, *LEASE),
    # A privileged pod on the target's node that enters the target's namespaces (or a node
    # target: the node's own), kept alive by a Lease.
    "node": ("create pods", "delete pods", "get pods/log", *PORT_FORWARD, *LEASE),
    # The ephemeral container, else through the node: what both need (the run says the rest).
    "auto": ("get pods/log", *PORT_FORWARD),
}
"""Ways into a pod: what reaching the manager needs."""

STEPS: dict[str, tuple[str, ...]] = {
    "logs": ("get pods/log", *READ_PODS),
    "forward": ("get pods", *PORT_FORWARD),
    "redirect:expose": ("create services", "delete services"),
    "run:names": ("get services", "list services", "list pods", *PORT_FORWARD),
    "run:connect": ("get services", "list services", "list pods", *PORT_FORWARD),
    "expose": ("create pods", "delete pods", "get pods/log", *READ_PODS, *PORT_FORWARD,
               "get services", "create services", "delete services",
               "create leases.coordination.k8s.io", "patch leases.coordination.k8s.io",
               "delete leases.coordination.k8s.io"),
}
"""What a step type (``kind``, or ``kind:mode``) needs beyond the manager."""
MANAGER_MODES = frozenset({"run:from_target", "run:names"})
"""Steps of a type that does not talk to the manager, but does in this mode (a local command
reading the target's context)."""

WORKLOADS: dict[str, str] = {
    "deployment": "get deployments.apps", "statefulset": "get statefulsets.apps",
    "daemonset": "get daemonsets.apps", "replicaset": "get replicasets.apps",
    "job": "get jobs.batch", "service": "get services",
}
"""A target named in kubectl's ``TYPE/NAME`` form (any of its names for the type, see
:mod:`kdiag.kube.workloads`): reading the workload for its selector (then its pods, which
``pick: all`` also watches)."""


@dataclass(frozen=True, order=True)
class Access:
    """One thing to ask the API server: may I ``verb`` this resource?"""

    verb: str
    resource: str
    subresource: str = ""
    group: str = ""

    @classmethod
    def parse(cls, text: str) -> Access:
        """``patch pods/ephemeralcontainers``, ``get deployments.apps``."""
        verb, _, what = text.partition(" ")
        name, _, group = what.partition(".")
        resource, _, subresource = name.partition("/")
        return cls(verb, resource, subresource, group)

    def __str__(self) -> str:
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {name}{'.' + self.group if self.group else ''}"

    def rule(self) -> str:
        """The Role rule granting it, in YAML flow style."""
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f'{{apiGroups: ["{self.group}"], resources: ["{name}"], verbs: ["{self.verb}"]}}'


@dataclass
class Need:
    """An access the run needs, and what for (``optional``: only some features need it)."""

    access: Access
    reasons: list[str] = field(default_factory=list)
    optional: bool = False


def manager_kinds() -> frozenset[str]:
    """The step types that talk to the manager."""
    from kdiag.steps import step_types

    return frozenset(kind for kind, step in step_types().items() if step.needs_target)


def needs(demand: Demand, server: tuple[int, int] | None = None) -> list[Need]:
    """What ``demand`` needs of a cluster running version ``server`` (major, minor), in a
    stable order; empty when no step uses the cluster. ``KeyError`` for a way the table does
    not know (:func:`known_way` first)."""
    found: dict[Access, Need] = {}

    def add(texts: tuple[str, ...], reason: str, optional: bool = False) -> None:
        for text in texts:
            access = Access.parse(text)
            if (access.subresource == "portforward" and access.verb == "create"
                    and server is not None and server < CREATE_UPGRADE_SINCE):
                continue
            need = found.get(access)
            if need is None:
                need = found[access] = Need(access, optional=optional)
            need.optional = need.optional and optional
            if reason not in need.reasons:
                need.reasons.append(reason)

    way = WAYS[demand.way]
    if demand.steps is None:
        add(way, f"the manager ({demand.way} container)" if demand.way == "ephemeral"
            else f"the manager (way {demand.way})")
        for key, texts in STEPS.items():
            kind, _, mode = key.partition(":")
            add(texts, f"{kind} steps with mode {mode}" if mode else f"{kind} steps",
                optional=True)
    else:
        managed = manager_kinds()
        for step in demand.steps:
            if step.kind in managed or step.key in MANAGER_MODES:
                add(way, step.label())
            for key in dict.fromkeys((step.kind, step.key)):
                if key in STEPS:
                    add(STEPS[key], step.label())
    if not found:
        return []
    reason = "the target"
    add(READ_PODS, reason)
    workload = workload_kind(demand)
    if workload:
        add((WORKLOADS[workload],), reason)
    for need in found.values():  # the target first, then steps as they come
        if reason in need.reasons:
            need.reasons.insert(0, need.reasons.pop(need.reasons.index(reason)))
    return sorted(found.values(), key=lambda n: (n.optional, n.access.resource,
                                                 n.access.subresource, n.access.verb))


def known_way(demand: Demand) -> bool:
    """Whether the table knows the target's way in."""
    return demand.way in WAYS


def workload_kind(demand: Demand) -> str:
    """``deployment`` for a target ``pod: deploy/api`` ('' for a pod, or a form kdiag does not
    know: opening the target says so)."""
    from kdiag.errors import TargetError
    from kdiag.kube.workloads import parse_name

    pod = str(demand.options.get("pod") or "")
    try:
        kind = parse_name(pod)[0] if "/" in pod else ""
    except TargetError:
        return ""
    return kind if kind in WORKLOADS else ""

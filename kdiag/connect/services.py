"""Which Services a process connects to, and the running pod behind each that gets the
traffic (its newest running pod, as ``kubectl port-forward svc/NAME`` picks one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.errors import Call, api_call
from kdiag.kube.pods import is_running, pick_pods


@dataclass(frozen=True)
class Port:
    """A Service's TCP port and the pod's port it reaches."""

    port: int
    pod_port: int
    name: str = ""


@dataclass
class Service:
    """A Service to reach, the pod picked behind it, and its ports."""

    name: str
    namespace: str
    cluster_ip: str
    pod: str = ""
    ports: list[Port] = field(default_factory=list)


@dataclass
class Found:
    """The Services found, and why others were left out (one line each)."""

    services: list[Service] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_wanted(text: str, namespace: str) -> tuple[str, str]:
    """``api`` → (api, NAMESPACE); ``api.shop`` (or ``api.shop.svc...``) → (api, shop)."""
    name, _, rest = text.partition(".")
    return name, rest.split(".", 1)[0] if rest else namespace


def find(core: Any, namespace: str, wanted: tuple[str, ...], server: str = "") -> Found:
    """The Services ``wanted`` names (empty: every Service of ``namespace``). A named one that
    cannot be reached is an error (TargetError); with ``all``, it is skipped, with the reason."""
    found = Found()
    if wanted:
        for text in dict.fromkeys(wanted):
            name, ns = parse_wanted(text, namespace)
            with api_call(Call("get", "services", ns, name, server)):
                svc = core.read_namespaced_service(name, ns, _request_timeout=30)
            service, why = _service(core, svc, server)
            if service is None:
                raise TargetError(f"names: service {ns}/{name}: {why}")
            found.services.append(service)
        return found
    with api_call(Call("list", "services", namespace, "", server)):
        items = core.list_namespaced_service(namespace, _request_timeout=30).items
    for svc in sorted(items, key=lambda s: s.metadata.name):
        service, why = _service(core, svc, server)
        if service is None:
            found.skipped.append(f"{namespace}/{svc.metadata.name}: {why}")
        else:
            found.services.append(service)
    return found


def _service(core: Any, svc: Any, server: str) -> tuple[Service | None, str]:
    """The Service with its pod and ports, or None and why it cannot be reached."""
    ns, name = svc.metadata.namespace, svc.metadata.name
    spec = svc.spec
    if not spec.selector:
        return None, "it has no selector (no pods behind it to forward to)"
    tcp = [p for p in spec.ports or [] if (p.protocol or "TCP") == "TCP"]
    if not tcp:
        return None, "it has no TCP port"
    selector = ",".join(f"{k}={v}" for k, v in sorted(spec.selector.items()))
    with api_call(Call("list", "pods", ns, "", server)):
        pods = core.list_namespaced_pod(ns, label_selector=selector, _request_timeout=30).items
    running = [p for p in pods if is_running(p)]
    if not running:
        return None, f"no running pod matches {selector}"
    pod = pick_pods(running, "newest")[0]
    service = Service(name, ns, spec.cluster_ip or "", pod.metadata.name)
    for port in tcp:
        pod_port = _pod_port(pod, port.target_port if port.target_port is not None
                             else port.port)
        if pod_port is None:
            return None, (f"port {port.port}: pod {pod.metadata.name} has no container port "
                          f"named {port.target_port!r}")
        service.ports.append(Port(int(port.port), pod_port, port.name or ""))
    return service, ""


def _pod_port(pod: Any, target: int | str) -> int | None:
    """A Service's targetPort on ``pod``: a number, or a container port's name."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod.spec.containers:
        for port in container.ports or []:
            if port.name == target:
                return int(port.container_port)
    return None

"""Forwarding each Service's ports on its own loopback address, and what to name them."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kdiag.errors import TargetError
from kdiag.lifeline import Lifeline

from . import hosts
from .services import Found, Service

if TYPE_CHECKING:
    from kdiag.kube.config import KubeConfig
    from kdiag.kube.portforward import PortForwarder


@dataclass
class Route:
    """A Service on its loopback address, under the names a pod would use."""

    service: Service
    address: str
    names: list[str]


def lowest_unprivileged_port() -> int:
    """Ports below this need root to listen on."""
    if os.geteuid() == 0:
        return 0
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1024


def routes(found: Found, home: str, domain: str, *, strict: bool) -> tuple[list[Route],
                                                                           list[str]]:
    """A route per Service, and notes for ports left out: below the unprivileged ports when
    not root (``strict``, for Services asked for by name: TargetError instead)."""
    lowest = lowest_unprivileged_port()
    made, notes = [], []
    for index, service in enumerate(found.services):
        low = [p.port for p in service.ports if p.port < lowest]
        if low:
            why = (f"names: service {service.namespace}/{service.name} port "
                   f"{', '.join(map(str, low))}: listening below {lowest} needs root (or "
                   f"sysctl net.ipv4.ip_unprivileged_port_start)")
            if strict:
                raise TargetError(why)
            notes.append(why + "; left out")
            service.ports = [p for p in service.ports if p.port >= lowest]
            if not service.ports:
                continue
        made.append(Route(service, hosts.address(index), hosts.names(service, home, domain)))
    return made, notes


IN_USE = os.strerror(errno.EADDRINUSE)
MAX_PASSED_OVER = 254
"""Addresses in use passed over before giving up (each try is one bind, no cluster call)."""


def _listen(kube: KubeConfig, route: Route, lifeline: Lifeline) -> list[PortForwarder]:
    """A forwarder per port of ``route`` on its address; none left open on a failure."""
    from kdiag.kube.portforward import PortForwarder

    made: list[PortForwarder] = []
    svc = route.service
    try:
        for port in svc.ports:
            made.append(PortForwarder(kube.stream_core, svc.namespace, svc.pod, port.pod_port,
                                      port.port, route.address, kube.server, lifeline=lifeline))
    except TargetError:
        for forwarder in made:
            forwarder.close()
        raise
    return made


@dataclass
class Connection:
    """Every route's ports forwarded; ``lifeline`` fails when one of them is lost."""

    routes: list[Route]
    lifeline: Lifeline = field(default_factory=Lifeline)
    forwarders: list[PortForwarder] = field(default_factory=list)

    @classmethod
    def open(cls, kube: KubeConfig, routes: list[Route]) -> Connection:
        """Listen on every route's address and ports (TargetError if one cannot be had). An
        address another process already listens on (another ``kdiag connect``, a step of
        another run) is passed over for the next free one: the route's address changes."""
        connection = cls(routes)
        taken = 0  # addresses passed over so far
        try:
            for index, route in enumerate(routes):
                while True:
                    route.address = hosts.address(index + taken)
                    try:
                        connection.forwarders += _listen(kube, route, connection.lifeline)
                        break
                    except TargetError as exc:
                        if IN_USE not in str(exc) or taken >= MAX_PASSED_OVER:
                            raise
                        taken += 1
        except TargetError:
            connection.stop()
            raise
        return connection

    def stop(self) -> None:
        """Stop listening; end every forwarded connection."""
        for forwarder in self.forwarders:
            forwarder.close()

    def summary(self) -> list[dict[str, Any]]:
        """Plain data: each Service, its address, names, pod and ports."""
        return [{"service": r.service.name, "namespace": r.service.namespace,
                 "address": r.address, "names": r.names, "pod": r.service.pod,
                 "ports": [p.port for p in r.service.ports]} for r in self.routes]

    def hosts_entries(self) -> list[tuple[str, list[str]]]:
        """``(address, names)`` per Service, for the hosts file."""
        return [(r.address, r.names) for r in self.routes]

"""Connecting one process to cluster Services: find them, forward them, name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import hosts, services
from .forwards import Connection, routes

if TYPE_CHECKING:
    from kdiag.kube.config import KubeConfig

DEFAULT_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass
class Connected:
    """The forwards kept up, the hosts file naming them, and what was left out (notes)."""

    connection: Connection
    hosts_file: str
    notes: list[str] = field(default_factory=list)


def connect(kube: KubeConfig, namespace: str, wanted: tuple[str, ...],
            domain: str = hosts.DEFAULT_DOMAIN) -> Connected:
    """Forward the Services ``wanted`` names (empty: all of ``namespace``'s), named as a pod
    in ``namespace`` of a cluster with DNS ``domain`` would name them (TargetError if a named
    one cannot be reached)."""
    found = services.find(kube.core(), namespace, wanted, kube.server)
    made, notes = routes(found, namespace, domain,
                         strict=bool(wanted))
    notes = [f"names: {line} (left out)" for line in found.skipped] + notes
    connection = Connection.open(kube, made)
    try:
        local = Path("/etc/hosts").read_text()
    except OSError:
        local = DEFAULT_HOSTS
    return Connected(connection, hosts.hosts_file(local, connection.hosts_entries()), notes)

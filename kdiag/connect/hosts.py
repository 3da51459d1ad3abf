"""Loopback addresses for Services and the hosts file that names them there."""

from __future__ import annotations

from .services import Service

BASE = (127, 77)
"""Services get 127.77.0.1, 127.77.0.2, ...: the whole of 127/8 reaches this machine's
loopback on Linux without adding an address, and 127.77 is far from what tools use."""
DEFAULT_DOMAIN = "cluster.local"


def address(index: int) -> str:
    """The loopback address of the ``index``-th Service (0-based)."""
    if not 0 <= index < 254 * 256:
        raise ValueError(f"too many services ({index + 1})")
    return f"{BASE[0]}.{BASE[1]}.{index // 254}.{index % 254 + 1}"


def cluster_domain(resolv_conf: str) -> str:
    """The cluster's DNS domain from a pod's resolv.conf (``search ns.svc.cluster.local
    svc.cluster.local cluster.local``), else ``cluster.local``."""
    for line in resolv_conf.splitlines():
        words = line.split()
        if words[:1] == ["search"]:
            for word in words[1:]:
                if word.startswith("svc.") and len(word) > 4:
                    return word[4:].rstrip(".")
    return DEFAULT_DOMAIN


def names(service: Service, home: str, domain: str) -> list[str]:
    """What a pod in namespace ``home`` may call ``service``."""
    full = [f"{service.name}.{service.namespace}", f"{service.name}.{service.namespace}.svc",
            f"{service.name}.{service.namespace}.svc.{domain}"]
    return ([service.name] if service.namespace == home else []) + full


def hosts_file(local_hosts: str, entries: list[tuple[str, list[str]]]) -> str:
    """This machine's hosts file with a line per Service (``address name...``) after it."""
    lines = [local_hosts.rstrip("\n"), "# kdiag: cluster Services for this process"]
    lines += [f"{addr} {' '.join(hostnames)}" for addr, hostnames in entries]
    return "\n".join(lines) + "\n"

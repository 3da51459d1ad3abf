"""Net: the target's network namespace over netlink (pyroute2), plus resolv.conf and hosts.

The manager lives in the target's network namespace, so a plain IPRoute socket sees it.
pyroute2 is imported here only (≈125 ms), when the first Net call arrives.
"""

from __future__ import annotations

import socket
from typing import Any

from .sysutil import read_in_root
from .wire.api.v1 import manager_pb2 as pb

_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
_IFF = {0x1: "UP", 0x2: "BROADCAST", 0x8: "LOOPBACK", 0x10: "POINTOPOINT", 0x40: "RUNNING",
        0x100: "PROMISC", 0x1000: "MULTICAST", 0x10000: "LOWER_UP"}
_NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
        0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get_attr(name)
    return default if value is None else value


def describe(target_pid: int | None) -> pb.NetResponse:
    """Interfaces, addresses, routes and neighbours of the current network namespace."""
    from pyroute2 import IPRoute

    resp = pb.NetResponse()
    with IPRoute() as ipr:
        names: dict[int, str] = {}
        for link in ipr.get_links():
            idx = link["index"]
            names[idx] = _attr(link, "IFLA_IFNAME", "")
            flags = link["flags"]
            resp.interfaces.append(pb.Interface(
                index=idx, name=names[idx], mac=_attr(link, "IFLA_ADDRESS", ""),
                mtu=_attr(link, "IFLA_MTU", 0), state=_attr(link, "IFLA_OPERSTATE", ""),
                flags=[n for bit, n in _IFF.items() if flags & bit]))
        for addr in ipr.get_addr():
            resp.addresses.append(pb.Address(
                interface=names.get(addr["index"], str(addr["index"])),
                family=_FAMILIES.get(addr["family"], str(addr["family"])),
                address=_attr(addr, "IFA_ADDRESS", ""), prefixlen=addr["prefixlen"]))
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.get_routes(family=family, table=254):
                dst = _attr(route, "RTA_DST")
                oif = _attr(route, "RTA_OIF")
                resp.routes.append(pb.Route(
                    family=_FAMILIES[family],
                    destination=f"{dst}/{route['dst_len']}" if dst else "default",
                    gateway=_attr(route, "RTA_GATEWAY", ""),
                    interface=names.get(oif, "") if oif is not None else "",
                    metric=_attr(route, "RTA_PRIORITY", 0), table=_attr(route, "RTA_TABLE", 0),
                    source=_attr(route, "RTA_PREFSRC", "")))
        for neigh in ipr.get_neighbours():
            state = neigh["state"]
            resp.neighbours.append(pb.Neighbour(
                interface=names.get(neigh["ifindex"], ""), address=_attr(neigh, "NDA_DST", ""),
                mac=_attr(neigh, "NDA_LLADDR", ""),
                state="|".join(n for bit, n in _NUD.items() if state & bit) or str(state)))
    resp.resolv_conf = read_in_root(target_pid, "/etc/resolv.conf")
    resp.hosts = read_in_root(target_pid, "/etc/hosts")
    return resp

"""Ps: the target's processes and the TCP/UDP sockets each one listens on, read from /proc."""

from __future__ import annotations

import os
import re
import socket
import struct
from dataclasses import dataclass

from .sysutil import read_in_root
from .wire.api.v1 import manager_pb2 as pb

# /proc/net/tcp states: 0A is LISTEN; UDP sockets are "listening" when unconnected (07).
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class SocketEntry:
    """A listening socket from /proc/net/{tcp,udp}[6]."""

    protocol: str
    address: str
    port: int
    inode: int


def parse_address(hex_addr: str, v6: bool) -> tuple[str, int]:
    """Decode ``0100007F:1F90`` (or the IPv6 form) into (address, port)."""
    addr_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(addr_hex)
    if v6:
        # Four 32-bit words, each in host (little-endian) order.
        raw = b"".join(struct.pack(">I", w) for w in struct.unpack("<4I", raw))
        return socket.inet_ntop(socket.AF_INET6, raw), int(port_hex, 16)
    return socket.inet_ntoa(struct.pack("<I", int(addr_hex, 16))), int(port_hex, 16)


def parse_net_table(text: str, protocol: str) -> list[SocketEntry]:
    """Listening sockets in the text of /proc/net/``protocol``."""
    want = _TCP_LISTEN if protocol.startswith("tcp") else _UDP_UNCONNECTED
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or f[3] != want:
            continue
        addr, port = parse_address(f[1], protocol.endswith("6"))
        out.append(SocketEntry(protocol, addr, port, int(f[9])))
    return out


def listening_sockets(pid: int) -> dict[int, SocketEntry]:
    """Listening sockets of ``pid``'s network namespace, by inode."""
    result: dict[int, SocketEntry] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/{pid}/net/{proto}") as f:
                text = f.read()
        except OSError:
            continue
        for entry in parse_net_table(text, proto):
            result[entry.inode] = entry
    return result


_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CONTAINER = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def kube_container(cgroup: str) -> tuple[str, str]:
    """(pod UID, container runtime ID) named by a ``/proc/PID/cgroup`` text, ('', '') when the
    process is in no pod (cgroupfs: ``.../pod<uid>/<id>``; systemd:
    ``...-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope``)."""
    pod = _POD.search(cgroup)
    if pod is None:
        return "", ""
    container = _CONTAINER.search(cgroup, pod.end())
    return pod.group(1).replace("_", "-"), container.group(1) if container else ""


def _kube_container(pid: str) -> tuple[str, str]:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return kube_container(f.read())
    except OSError:
        return "", ""


def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _users(pid: int) -> dict[int, str]:
    users: dict[int, str] = {}
    for line in read_in_root(pid, "/etc/passwd").splitlines():
        parts = line.split(":")
        if len(parts) > 2 and parts[2].isdigit():
            users.setdefault(int(parts[2]), parts[0])
    return users


def _status(pid: str) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def list_processes(target_pid: int | None, all_processes: bool = False) -> pb.PsResponse:
    """Processes sharing the target's PID and network namespaces (all with ``all_processes``),
    excluding the manager and its children."""
    target = target_pid or os.getpid()
    pidns, netns = _ns(target, "pid"), _ns(target, "net")
    sockets = listening_sockets(target)
    users = _users(target)
    me = os.getpid()
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            status = _status(name)
            if pid == me or (int(status.get("PPid", "0")) == me and pid != target):
                continue
            if not all_processes and (_ns(name, "pid") != pidns or _ns(name, "net") != netns):
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            uid = int(status.get("Uid", "0").split()[0])
            listening = []
            if sockets:
                for fd in os.listdir(f"/proc/{name}/fd"):
                    try:
                        link = os.readlink(f"/proc/{name}/fd/{fd}")
                    except OSError:
                        continue
                    if link.startswith("socket:["):
                        entry = sockets.get(int(link[8:-1]))
                        if entry is not None:
                            listening.append(pb.ListeningSocket(
                                protocol=entry.protocol, address=entry.address,
                                port=entry.port))
        except (OSError, ValueError):
            continue  # the process exited while we looked
        listening.sort(key=lambda s: (s.protocol, s.port))
        pod_uid, container_id = _kube_container(name)
        procs.append(pb.Process(pid=pid, ppid=int(status.get("PPid", "0")), uid=uid,
                                user=users.get(uid, str(uid)), argv=argv,
                                comm=status.get("Name", ""), listening=listening,
                                is_target=pid == target_pid, pod_uid=pod_uid,
                                container_id=container_id))
    procs.sort(key=lambda p: p.pid)
    return pb.PsResponse(processes=procs)

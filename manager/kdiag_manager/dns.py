"""A minimal DNS stub resolver that follows the *target's* hosts file and resolv.conf.

In node mode the manager shares the host's mount namespace, so getaddrinfo() would read the
host's /etc/resolv.conf; probes must resolve names the way the target does. A and AAAA over
UDP, search domains and ndots, hosts file first.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

QTYPE_A = 1
QTYPE_AAAA = 28


class DnsError(Exception):
    """The name could not be resolved."""


@dataclass
class ResolvConf:
    """What resolv.conf says."""

    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1


def parse_resolv_conf(text: str) -> ResolvConf:
    """Parse resolv.conf text (nameserver, search/domain, options ndots:N)."""
    conf = ResolvConf()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            conf.nameservers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            conf.search = parts[1:]
        elif parts[0] == "options":
            for opt in parts[1:]:
                if opt.startswith("ndots:") and opt[6:].isdigit():
                    conf.ndots = int(opt[6:])
    return conf


def lookup_hosts(text: str, name: str) -> list[str]:
    """Addresses for ``name`` in hosts-file text."""
    found = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) > 1 and name.lower() in (p.lower() for p in parts[1:]):
            found.append(parts[0])
    return found


def candidates(name: str, conf: ResolvConf) -> list[str]:
    """Fully qualified names to try, in order (search list and ndots, like glibc)."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{d}." for d in conf.search]
    if name.count(".") >= conf.ndots:
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


def build_query(name: str, qtype: int, qid: int) -> bytes:
    """A recursive query for ``name``."""
    labels = b"".join(bytes([len(p)]) + p.encode("idna") for p in name.rstrip(".").split(".") if p)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, i: int) -> int:
    while True:
        n = data[i]
        if n & 0xC0 == 0xC0:
            return i + 2
        if n == 0:
            return i + 1
        i += n + 1


def parse_response(data: bytes, qid: int) -> tuple[int, list[str]]:
    """(rcode, addresses of A/AAAA answers) of a response to query ``qid``."""
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    if rid != qid:
        raise DnsError("mismatched response id")
    i = 12
    for _ in range(qd):
        i = _skip_name(data, i) + 4
    out = []
    for _ in range(an):
        i = _skip_name(data, i)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[i:i + 10])
        i += 10
        rdata = data[i:i + rdlen]
        i += rdlen
        if rtype == QTYPE_A and rdlen == 4:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == QTYPE_AAAA and rdlen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return flags & 0xF, out


def _query(server: str, name: str, qtype: int, timeout: float) -> tuple[int, list[str]]:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    qid = int.from_bytes(os.urandom(2), "big")
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((server, 53))
        s.send(build_query(name, qtype, qid))
        while True:
            data = s.recv(4096)
            try:
                return parse_response(data, qid)
            except (DnsError, struct.error, IndexError):
                continue


def resolve(name: str, hosts_text: str, resolv_text: str, timeout: float = 5.0) -> list[str]:
    """Addresses of ``name`` (IPv4 first), as the target would resolve it."""
    try:
        return [str(ipaddress.ip_address(name))]
    except ValueError:
        pass
    if found := lookup_hosts(hosts_text, name):
        return found
    conf = parse_resolv_conf(resolv_text)
    servers = conf.nameservers or ["127.0.0.1"]
    per_query = max(timeout / max(len(servers), 1) / 2, 0.2)
    errors = []
    for fqdn in candidates(name, conf):
        for server in servers:
            try:
                rcode, v4 = _query(server, fqdn, QTYPE_A, per_query)
                _, v6 = _query(server, fqdn, QTYPE_AAAA, per_query) if rcode == 0 else (0, [])
            except OSError as exc:
                errors.append(f"{server}: {exc}")
                continue
            if v4 or v6:
                return v4 + v6
            break  # NXDOMAIN/empty from a working server: next search candidate
    raise DnsError(f"cannot resolve {name}" + (f" ({errors[-1]})" if errors else ""))

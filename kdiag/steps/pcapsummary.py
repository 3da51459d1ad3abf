"""A short account of a pcap file: packets by direction, protocol and port.

The ``capture`` step prints it when a capture ends, instead of leaving a reader to run
``tcpdump -r`` on the file (whose interface names are this machine's, not the target's: ``?``).
Reads the classic pcap format tcpdump writes (either byte order, micro- or nanosecond
timestamps) with the link types a capture in a network namespace produces: Linux cooked
v1 and v2 (``-i any``; they say whether a packet came in or went out), Ethernet and raw IP.
At most :data:`MAX_PACKETS` packets are read; the account then says it covers only those.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_PACKETS = 1_000_000
"""Packets read for an account (a few seconds of work); a bigger file is counted in part."""
MAX_ROWS = 8
"""Rows shown; the rest are added up on one more line."""

_LINK_ETHERNET, _LINK_RAW, _LINK_RAW_IP, _LINK_SLL, _LINK_SLL2 = 1, 101, 228, 113, 276
_LINK_RAW_IP6 = 229
_ARPHRD_LOOPBACK = 772
_PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 132: "sctp"}
_WITH_PORTS = frozenset({"tcp", "udp", "sctp"})


@dataclass
class Row:
    """Packets of one direction, protocol and port (the lower of the two, usually the
    service's: clients use high ephemeral ports)."""

    direction: str
    """``in``, ``out``, ``loopback``, or ``-`` where the link type does not say."""
    protocol: str
    port: int
    packets: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        """Plain data for the step's result."""
        return {"direction": self.direction, "protocol": self.protocol, "port": self.port,
                "packets": self.packets, "bytes": self.bytes}


@dataclass
class Account:
    """What a pcap file holds, counted."""

    packets: int = 0
    bytes: int = 0
    rows: dict[tuple[str, str, int], Row] | None = None
    partial: bool = False
    """Only the first :data:`MAX_PACKETS` packets were counted."""
    error: str = ""

    def sorted_rows(self) -> list[Row]:
        """Busiest first."""
        return sorted((self.rows or {}).values(),
                      key=lambda r: (-r.packets, r.protocol, r.port, r.direction))

    def lines(self) -> list[str]:
        """``in   tcp/8080    14 packets   1.2 KiB`` per row (at most :data:`MAX_ROWS`)."""
        if self.error:
            return [f"(no account of the packets: {self.error})"]
        rows = self.sorted_rows()
        shown, rest = rows[:MAX_ROWS], rows[MAX_ROWS:]
        labels = [(r.direction, f"{r.protocol}/{r.port}" if r.port else r.protocol, r) for r in shown]
        width = max((len(label) for _d, label, _r in labels), default=0)
        out = [f"{direction:<8} {label:<{width}}  {_count(r.packets, 'packet')}, {_size(r.bytes)}"
               for direction, label, r in labels]
        if rest:
            out.append(f"... and {_count(sum(r.packets for r in rest), 'packet')} "
                       f"in {len(rest)} more rows")
        if self.partial:
            out.append(f"(the first {MAX_PACKETS} packets only)")
        return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def summarise(path: str | Path) -> Account:
    """Count the packets of the pcap file at ``path`` (an unreadable file: ``error`` says why)."""
    account = Account(rows={})
    try:
        with open(path, "rb") as f:
            for direction, protocol, port, size in _packets(f):
                if account.packets >= MAX_PACKETS:
                    account.partial = True
                    break
                account.packets += 1
                account.bytes += size
                key = (direction, protocol, port)
                assert account.rows is not None
                row = account.rows.get(key) or account.rows.setdefault(
                    key, Row(direction, protocol, port))
                row.packets += 1
                row.bytes += size
    except (OSError, ValueError) as exc:
        account.error = str(exc) if isinstance(exc, ValueError) else (exc.strerror or str(exc))
    return account


def _packets(f: BinaryIO) -> Iterator[tuple[str, str, int, int]]:
    header = f.read(24)
    if len(header) == 0:
        return
    if len(header) < 24:
        raise ValueError("not a pcap file (too short)")
    magic = header[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise ValueError("not a pcap file (pcapng or another format)")
    link = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:
        head = f.read(16)
        if len(head) < 16:
            return  # the end (or a record cut short by a capture that was stopped)
        _sec, _frac, captured, original = record.unpack(head)
        data = f.read(min(captured, 128))
        if len(data) < min(captured, 128):
            return  # a record cut short: the capture stopped while it was written
        if captured > 128:
            f.seek(captured - 128, 1)
        yield (*_decode(link, data), original)


def _decode(link: int, data: bytes) -> tuple[str, str, int]:
    """Direction, protocol and port of one packet (``-``, ``other``, 0 where unknown)."""
    direction, ethertype, offset = "-", 0, 0
    if link == _LINK_SLL2 and len(data) >= 20:
        ethertype, hatype, kind = struct.unpack(">H6xHB", data[:11])
        direction = _direction(kind, hatype)
        offset = 20
    elif link == _LINK_SLL and len(data) >= 16:
        kind, hatype = struct.unpack(">HH", data[:4])
        ethertype = struct.unpack(">H", data[14:16])[0]
        direction = _direction(kind, hatype)
        offset = 16
    elif link == _LINK_ETHERNET and len(data) >= 14:
        ethertype, offset = struct.unpack(">H", data[12:14])[0], 14
        if ethertype == 0x8100 and len(data) >= 18:  # a VLAN tag
            ethertype, offset = struct.unpack(">H", data[16:18])[0], 18
    elif link in (_LINK_RAW, _LINK_RAW_IP, _LINK_RAW_IP6) and data:
        ethertype = 0x86DD if data[0] >> 4 == 6 else 0x0800
    return (direction, *_transport(ethertype, data[offset:]))


def _direction(kind: int, hatype: int) -> str:
    if hatype == _ARPHRD_LOOPBACK:
        return "loopback"
    return "out" if kind == 4 else "in"  # 4: PACKET_OUTGOING; host, broadcast...: in


def _transport(ethertype: int, ip: bytes) -> tuple[str, int]:
    if ethertype == 0x0800 and len(ip) >= 20:
        proto, start = ip[9], (ip[0] & 0x0F) * 4
        fragment = struct.unpack(">H", ip[6:8])[0] & 0x1FFF
        if fragment:  # no transport header in a later fragment
            return _PROTOCOLS.get(proto, f"ip/{proto}"), 0
    elif ethertype == 0x86DD and len(ip) >= 40:
        proto, start = ip[6], 40
    elif ethertype == 0x0806:
        return "arp", 0
    else:
        return "other", 0
    name = _PROTOCOLS.get(proto, f"ip/{proto}")
    if name in _WITH_PORTS and len(ip) >= start + 4:
        sport, dport = struct.unpack(">HH", ip[start:start + 4])
        return name, min(sport, dport)
    return name, 0

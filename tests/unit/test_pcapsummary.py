"""The capture's account of its pcap file: packets by direction, protocol and port, from the
link types a capture produces (pcap files written here byte by byte, as tcpdump writes them).
The node end-to-end demo reads a real capture of the app's traffic (tests/demo)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kdiag.steps import pcapsummary
from kdiag.steps.pcapsummary import summarise


def ipv4(proto: int, sport: int, dport: int, payload: int = 0) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + payload, 0, 0, 64, proto, 0,
                         bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]))
    return header + struct.pack(">HH", sport, dport) + bytes(4 + payload)


def ipv6(proto: int, sport: int, dport: int) -> bytes:
    return struct.pack(">IHBB16s16s", 6 << 28, 8, proto, 64, bytes(16), bytes(16)) + \
        struct.pack(">HH", sport, dport) + bytes(4)


def sll2(packet: bytes, kind: int, hatype: int = 1, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", ethertype, 0, 2, hatype, kind, 6, bytes(8)) + packet


def sll(packet: bytes, kind: int, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", kind, 1, 6, bytes(8), ethertype) + packet


def ethernet(packet: bytes, vlan: bool = False) -> bytes:
    tag = struct.pack(">HH", 0x8100, 5) if vlan else b""
    return bytes(12) + tag + struct.pack(">H", 0x0800) + packet


def pcap(path: Path, link: int, frames: list[bytes], order: str = "<",
         nanoseconds: bool = False) -> Path:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, link)
    for frame in frames:
        data += struct.pack(order + "IIII", 1, 2, len(frame), len(frame)) + frame
    path.write_bytes(data)
    return path


def rows(path: Path) -> list[tuple[str, str, int, int]]:
    account = summarise(path)
    assert account.error == "", account.error
    return [(r.direction, r.protocol, r.port, r.packets) for r in account.sorted_rows()]


def test_cooked_v2_says_in_out_and_loopback(tmp_path: Path) -> None:
    frames = [sll2(ipv4(6, 50956, 8080), 0)] * 3 + [sll2(ipv4(6, 8080, 50956), 4)] * 2 \
        + [sll2(ipv4(6, 58656, 8080), 0, hatype=772)] * 4 \
        + [sll2(ipv6(17, 53, 40000), 0, ethertype=0x86DD)] \
        + [sll2(b"\x00" * 28, 1, ethertype=0x0806)]
    path = pcap(tmp_path / "c.pcap", 276, frames)
    assert rows(path) == [("loopback", "tcp", 8080, 4), ("in", "tcp", 8080, 3),
                          ("out", "tcp", 8080, 2), ("in", "arp", 0, 1), ("in", "udp", 53, 1)]
    lines = summarise(path).lines()
    assert lines[0] == "loopback tcp/8080  4 packets, 192 B"
    assert lines[3] == "in       arp       1 packet, 48 B"


def test_other_link_types_byte_orders_and_timestamps(tmp_path: Path) -> None:
    cooked = pcap(tmp_path / "v1.pcap", 113, [sll(ipv4(6, 1234, 443), 4)], order=">",
                  nanoseconds=True)
    assert rows(cooked) == [("out", "tcp", 443, 1)]
    ether = pcap(tmp_path / "e.pcap", 1, [ethernet(ipv4(17, 5353, 53)),
                                          ethernet(ipv4(6, 80, 9000), vlan=True)])
    assert rows(ether) == [("-", "tcp", 80, 1), ("-", "udp", 53, 1)]
    raw = pcap(tmp_path / "r.pcap", 101, [ipv4(1, 0, 0), ipv6(6, 22, 60000)])
    assert rows(raw) == [("-", "icmp", 0, 1), ("-", "tcp", 22, 1)]


def test_a_file_cut_short_or_not_a_pcap(tmp_path: Path) -> None:
    path = pcap(tmp_path / "cut.pcap", 276, [sll2(ipv4(6, 1, 2), 0)] * 2)
    path.write_bytes(path.read_bytes()[:-10])  # the capture stopped mid-record
    assert rows(path) == [("in", "tcp", 1, 1)]
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert summarise(empty).packets == 0 and summarise(empty).error == ""
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng
    assert "not a pcap file" in summarise(bad).error
    assert summarise(bad).lines() == [f"(no account of the packets: {summarise(bad).error})"]
    assert summarise(tmp_path / "missing.pcap").error == "No such file or directory"


def test_rows_and_packets_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcapsummary, "MAX_PACKETS", 50)
    frames = [sll2(ipv4(6, 40000 + i, 1000 + i), 0) for i in range(60)]
    account = summarise(pcap(tmp_path / "many.pcap", 276, frames))
    assert account.packets == 50 and account.partial
    lines = account.lines()
    assert len(lines) == pcapsummary.MAX_ROWS + 2
    assert lines[-2] == "... and 42 packets in 42 more rows"
    assert lines[-1] == "(the first 50 packets only)"


def test_a_later_fragment_has_a_protocol_but_no_port(tmp_path: Path) -> None:
    first = ipv4(17, 5353, 53)
    later = first[:6] + struct.pack(">H", 185) + first[8:]  # fragment offset 185 (x 8 bytes)
    path = pcap(tmp_path / "f.pcap", 101, [first, later])
    assert rows(path) == [("-", "udp", 0, 1), ("-", "udp", 53, 1)]


def test_a_bare_ethernet_header_and_an_unknown_ethertype(tmp_path: Path) -> None:
    arp = bytes(12) + struct.pack(">H", 0x0806)  # the header alone: 14 bytes
    lldp = bytes(12) + struct.pack(">H", 0x88CC) + bytes(30)
    path = pcap(tmp_path / "e.pcap", 1, [arp, lldp, lldp])
    assert rows(path) == [("-", "other", 0, 2), ("-", "arp", 0, 1)]
    assert summarise(path).lines() == ["-        other  2 packets, 88 B",
                                       "-        arp    1 packet, 14 B"]


def test_a_row_as_the_steps_result_gives_it(tmp_path: Path) -> None:
    path = pcap(tmp_path / "c.pcap", 276, [sll2(ipv4(6, 50956, 8080), 4)] * 2)
    assert [r.to_dict() for r in summarise(path).sorted_rows()] == [
        {"direction": "out", "protocol": "tcp", "port": 8080, "packets": 2, "bytes": 96}]

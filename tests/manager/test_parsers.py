"""Pure parsers of the manager: /proc/net tables, pcap cutting, DNS, resolv.conf."""

from __future__ import annotations

import struct

from kdiag_manager import dns
from kdiag_manager.capture import PcapCutter
from kdiag_manager.ps import parse_address, parse_net_table

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1
   1: 0100007F:0035 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1
"""
TCP6 = (
    "  sl  local_address                         remote_address                        st\n"
    "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 77 1\n"
)


def test_proc_net_tables() -> None:
    (entry,) = parse_net_table(TCP, "tcp")
    assert (entry.address, entry.port, entry.inode) == ("0.0.0.0", 8080, 1234)
    (entry6,) = parse_net_table(TCP6, "tcp6")
    assert (entry6.address, entry6.port) == ("::1", 22)
    assert parse_address("0100007F:0050", False) == ("127.0.0.1", 80)


def _pcap(n: int, size: int) -> bytes:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = b"".join(struct.pack("<IIII", i, 0, size, size) + bytes([i]) * size for i in range(n))
    return header + rec


def test_pcap_cutter_splits_on_records() -> None:
    data = _pcap(5, 100)
    cutter = PcapCutter()
    out = b""
    for i in range(0, len(data), 7):  # arbitrary chunking
        chunk, limited = cutter.feed(data[i:i + 7])
        out += chunk
        assert not limited
    assert out == data and cutter.packets == 5


def test_pcap_cutter_limits() -> None:
    data = _pcap(5, 100)
    out, limited = PcapCutter().feed(data, max_packets=2)
    assert limited and len(out) == 24 + 2 * 116
    out, limited = PcapCutter().feed(data, max_bytes=24 + 3 * 116 + 50)
    assert limited and len(out) == 24 + 3 * 116


def test_resolv_conf_and_candidates() -> None:
    conf = dns.parse_resolv_conf(
        "# comment\nnameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\n"
        "options ndots:5 timeout:1\n")
    assert conf.nameservers == ["10.96.0.10"] and conf.ndots == 5
    assert dns.candidates("api", conf)[0] == "api.ns.svc.cluster.local."
    assert dns.candidates("api", conf)[-1] == "api."
    assert dns.candidates("example.com.", conf) == ["example.com."]
    conf1 = dns.parse_resolv_conf("nameserver 1.1.1.1\nsearch a\n")
    assert dns.candidates("x.y", conf1)[0] == "x.y."


def test_hosts_and_literal_addresses() -> None:
    hosts = "127.0.0.1 localhost\n10.0.0.5 db db.local # comment\n"
    assert dns.lookup_hosts(hosts, "DB.local") == ["10.0.0.5"]
    assert dns.resolve("10.1.2.3", "", "") == ["10.1.2.3"]
    assert dns.resolve("db", hosts, "") == ["10.0.0.5"]


def test_dns_wire_format() -> None:
    q = dns.build_query("a.example", dns.QTYPE_A, 0x1234)
    assert q[:2] == b"\x12\x34" and b"\x01a\x07example\x00" in q
    answer = (q[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:]
              + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 9]))
    assert dns.parse_response(answer, 0x1234) == (0, ["10.0.0.9"])


def test_kube_container_from_cgroup_paths() -> None:
    from kdiag_manager.ps import kube_container

    uid = "3ae90877-c5bc-4268-bd0d-9e236c1de358"
    cid = "cf" + "0" * 62
    cgroupfs = f"9:name=systemd:/kdiag/kubepods/besteffort/pod{uid}/{cid}\n8:pids:/x\n"
    assert kube_container(cgroupfs) == (uid, cid)
    systemd = ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
               f"{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope\n")
    assert kube_container(systemd) == (uid, cid)
    assert kube_container(f"0::/kubepods/pod{uid}\n") == (uid, "")  # the pod's own cgroup
    assert kube_container("0::/system.slice/kubelet.service\n") == ("", "")

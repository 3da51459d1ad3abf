"""Manager paths the node tests never reach, each in a network namespace of its own (root):

- a redirect where IPv6 is not available: an IPv4 listener, and IPv4 rules only (real nftables);
- ``dns.resolve`` against a real DNS server speaking UDP on port 53: search domains and ndots as
  the target's resolv.conf says, A then AAAA, NXDOMAIN moving on to the next candidate, and a
  clear error when nothing answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kdiag_manager import dns, redirect, redirectrules, tunnelpool
from kdiag_manager.iptables import Iptables
from kdiag_manager.redirectspec import RedirectOptions

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
T = TypeVar("T")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def netns() -> Iterator[str]:
    """A new network namespace with loopback up; removed afterwards."""
    name = f"kdm-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def in_netns(name: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread inside namespace ``name`` (threads it starts stay there)."""
    result: list[Any] = []

    def run() -> None:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)
        try:
            result.append(("ok", work()))
        except BaseException as exc:
            result.append(("raised", exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    kind, value = result[0]
    if kind == "raised":
        raise value
    return value


# -- without IPv6 ------------------------------------------------------------------------------


@pytest.fixture
def no_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    """This kernel as if built without IPv6: AF_INET6 sockets cannot be made."""
    real = socket.socket

    def make(family: int = socket.AF_INET, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(redirect.socket, "socket", make)


def test_listener_without_ipv6_is_an_ipv4_one(no_ipv6: None, netns: str) -> None:
    listener, dual = in_netns(netns, tunnelpool.listen)
    with listener:
        assert dual is False
        assert listener.family == socket.AF_INET
        assert listener.getsockname()[0] == "0.0.0.0" and listener.getsockname()[1] > 0


def test_listener_with_ipv6_is_dual_stack(netns: str) -> None:
    listener, dual = in_netns(netns, tunnelpool.listen)
    with listener:
        assert dual is True and listener.family == socket.AF_INET6
        assert listener.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


@pytest.mark.parametrize("dual", [False, True], ids=["ipv4-only", "dual-stack"])
def test_rules_follow_the_listener_families(netns: str, dual: bool) -> None:
    options = RedirectOptions(incoming=True, ports=(8080,), session="unit")

    def install_and_list() -> tuple[list[str], str]:
        rules = redirectrules.install(options, 40000, dual, Iptables(), "kdiag-unit-1")
        try:
            listing = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                                     check=True).stdout
        finally:
            rules.remove()
        return rules.lines, listing

    lines, listing = in_netns(netns, install_and_list)
    ip6 = [line for line in lines if " ip6 " in f" {line} "]
    assert any(" ip " in f" {line} " for line in lines)
    assert "table ip kdiag-unit-1" in listing
    if dual:
        assert ip6 and "table ip6 kdiag-unit-1" in listing
    else:
        assert ip6 == [] and "table ip6" not in listing


# -- DNS ---------------------------------------------------------------------------------------


def _answer(query: bytes, zone: dict[tuple[str, int], list[bytes]]) -> bytes:
    """A response to ``query`` from ``zone`` ((name, qtype) → rdata list; NXDOMAIN else)."""
    qid, _flags, _qd = struct.unpack("!HHH", query[:6])
    i, labels = 12, []
    while query[i]:
        labels.append(query[i + 1:i + 1 + query[i]].decode())
        i += query[i] + 1
    question = query[12:i + 5]
    qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
    records = zone.get((".".join(labels) + ".", qtype), [])
    name_known = any(key[0] == ".".join(labels) + "." for key in zone)
    rcode = 0 if records or name_known else 3
    head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(records), 0, 0)
    answers = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 30, len(r)) + r
                       for r in records)
    return head + question + answers


@contextlib.contextmanager
def dns_server(zone: dict[tuple[str, int], list[bytes]], asked: list[str],
               host: str = "127.0.0.1") -> Iterator[None]:
    """A UDP DNS server on HOST:53 in the calling thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 53))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            i, labels = 12, []
            while query[i]:
                labels.append(query[i + 1:i + 1 + query[i]].decode())
                i += query[i] + 1
            asked.append(".".join(labels))
            sock.sendto(_answer(query, zone), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)
        sock.close()


ZONE = {("api.svc.cluster.local.", dns.QTYPE_A): [socket.inet_aton("10.1.2.3")],
        ("api.svc.cluster.local.", dns.QTYPE_AAAA): [socket.inet_pton(socket.AF_INET6, "fd00::1")],
        ("example.com.", dns.QTYPE_A): [socket.inet_aton("10.9.9.9")]}
RESOLV = "nameserver 127.0.0.1\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"


def test_resolve_walks_the_search_list_and_returns_ipv4_then_ipv6(netns: str) -> None:
    asked: list[str] = []

    def work() -> tuple[list[str], list[str]]:
        with dns_server(ZONE, asked):
            short = dns.resolve("api", "", RESOLV, timeout=5)
            absolute = dns.resolve("example.com.", "", RESOLV, timeout=5)
        return short, absolute

    short, absolute = in_netns(netns, work)
    assert short == ["10.1.2.3", "fd00::1"]
    # ndots:5: "api" is tried with each search domain first; the first one does not exist.
    assert asked[:3] == ["api.ns.svc.cluster.local", "api.svc.cluster.local",
                         "api.svc.cluster.local"]
    assert absolute == ["10.9.9.9"] and asked[-2:] == ["example.com", "example.com"]


def test_resolve_prefers_the_hosts_file_and_says_when_nothing_answers(netns: str) -> None:
    def work() -> tuple[list[str], str]:
        found = dns.resolve("api", "10.7.7.7 api api.local\n", RESOLV, timeout=1)
        with pytest.raises(dns.DnsError) as err:
            dns.resolve("nowhere", "", "nameserver 127.0.0.1\n", timeout=1)
        return found, str(err.value)

    found, error = in_netns(netns, work)
    assert found == ["10.7.7.7"]
    assert error.startswith("cannot resolve nowhere (127.0.0.1: ")  # no server: refused


def test_an_unknown_name_is_an_error_after_every_candidate(netns: str) -> None:
    asked: list[str] = []

    def work() -> str:
        with dns_server(ZONE, asked), pytest.raises(dns.DnsError) as err:
            dns.resolve("db", "", RESOLV, timeout=5)
        return str(err.value)

    assert in_netns(netns, work) == "cannot resolve db"
    assert asked == ["db.ns.svc.cluster.local", "db.svc.cluster.local", "db"]


def test_a_no_from_a_working_server_is_final_for_that_name(netns: str) -> None:
    """NXDOMAIN from the first server moves on to the next candidate name, not to the next
    server (as glibc does): the second server, which would know the name, is not asked."""
    first: list[str] = []
    second: list[str] = []

    def work() -> str:
        with dns_server({}, first), dns_server(ZONE, second, host="127.0.0.2"), \
                pytest.raises(dns.DnsError) as err:
            dns.resolve("api", "", "nameserver 127.0.0.1\nnameserver 127.0.0.2\n"
                        "search svc.cluster.local\n", timeout=5)
        return str(err.value)

    assert in_netns(netns, work) == "cannot resolve api"
    assert first == ["api.svc.cluster.local", "api"] and second == []

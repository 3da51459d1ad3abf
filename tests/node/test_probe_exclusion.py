"""Incoming redirects leave the node's connections alone (the kubelet's probes): connections
from a ``skip_sources`` address reach the app, others the operator — with owned nftables
tables and with the iptables fallback, for plain and header-filtered redirects, IPv4 and IPv6.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from demo.lab import sh
from kdiag.session.results import RedirectSpec

from .conftest import Lab, http_get, http_reply, in_netns, recv_all, tcp_server


def _device(lab: Lab) -> str:
    """The client namespace's veth."""
    line = sh("ip", "-n", lab.client_ns, "-o", "addr", "show", "to", f"{lab.client_ip}/32")
    return line.split()[1]


@pytest.fixture
def second_client(app: Lab) -> Iterator[tuple[str, str]]:
    """A second address in the client namespace (IPv4, IPv6): a client that is not the node."""
    prefix4, prefix6 = app.client_ip.rsplit(".", 1)[0], app.client_ip6.rsplit(":", 1)[0]
    other4, other6 = f"{prefix4}.3", f"{prefix6}:3"
    device = _device(app)
    sh("ip", "-n", app.client_ns, "addr", "add", f"{other4}/24", "dev", device)
    sh("ip", "-n", app.client_ns, "addr", "add", f"{other6}/64", "dev", device, "nodad")
    yield other4, other6


def _get(addr: tuple[str, int], source: str, headers: dict[str, str] | None = None) -> bytes:
    """One HTTP GET from ``source``; the body."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    lines = ["GET /healthz HTTP/1.1", "Host: app"] + [f"{k}: {v}" for k, v in
                                                       (headers or {}).items()]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(addr)
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = recv_all(s)
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else data


@contextlib.contextmanager
def _app6(app: Lab) -> Iterator[None]:
    """An IPv6 HTTP app on port 8081 in the app namespace (the demo app speaks IPv4 only)."""
    with in_netns(app.app_ns):
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::", 8081))
    listener.listen(16)
    reply = http_reply(b"app")

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                reply(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield
    finally:
        listener.close()


def _check(app: Lab, session, second_client: tuple[str, str], header: bool) -> list[str]:
    other4, other6 = second_client
    spec = RedirectSpec("incoming", [8080, 8081],
                        skip_sources=(app.client_ip, f"{app.client_ip6}/128"),
                        header=("X-Kdiag", "me") if header else None)
    headers = {"X-Kdiag": "me"} if header else None
    with tcp_server(http_reply(b"operator")) as operator, _app6(app):
        handle = session.manager.redirect(spec, operator)
        try:
            with in_netns(app.client_ns):
                # The "node" (skipped sources) reaches the app, on both families ...
                assert _get((app.app_ip, 8080), app.client_ip, headers) == b"app"
                assert _get((app.app_ip6, 8081), app.client_ip6, headers) == b"app"
                # ... any other client the operator.
                assert _get((app.app_ip, 8080), other4, headers) == b"operator"
                assert _get((app.app_ip6, 8081), other6, headers) == b"operator"
                if header:  # without the header, the filter sends it to the app anyway
                    assert http_get((app.app_ip, 8080)) == b"app"
            return list(handle.rules)
        finally:
            handle.close()


@pytest.mark.parametrize("header", [False, True], ids=["plain", "header-filter"])
def test_node_sources_reach_the_app_nftables(app: Lab, node_session, second_client,
                                             header: bool) -> None:
    rules = _check(app, node_session, second_client, header)
    prerouting = [r.split(" prerouting ", 1)[1].split(" redirect ")[0] for r in rules
                  if " prerouting " in r]
    assert sorted(prerouting) == sorted(
        [f"ip saddr != {app.client_ip} tcp dport {port}" for port in (8080, 8081)]
        + [f"ip6 saddr != {app.client_ip6} tcp dport {port}" for port in (8080, 8081)]), rules
    assert app.tagged_rules() == []


@pytest.mark.parametrize("header", [False, True], ids=["plain", "header-filter"])
def test_node_sources_reach_the_app_iptables(app: Lab, iptables_session, second_client,
                                             header: bool) -> None:
    rules = _check(app, iptables_session, second_client, header)
    prerouting = [r for r in rules if r.startswith("-A PREROUTING")]
    assert len(prerouting) == 4, rules
    for rule in prerouting:
        source = app.client_ip6 if rule.endswith("(ip6tables)") else app.client_ip
        assert f"-m iprange ! --src-range {source}-{source}" in rule, rule
    assert app.tagged_rules() == []


def test_skip_sources_are_checked(app: Lab, node_session) -> None:
    from kdiag.errors import ManagerError

    with pytest.raises(ManagerError, match="not an IP address"):
        node_session.manager.redirect(RedirectSpec("incoming", [8080],
                                                   skip_sources=("node-a",)), ("127.0.0.1", 1))
    with pytest.raises(ManagerError, match="incoming redirects only"):
        node_session.manager.redirect(RedirectSpec("outgoing", [8080],
                                                   skip_sources=("10.0.0.1",)), ("127.0.0.1", 1))

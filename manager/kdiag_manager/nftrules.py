"""The redirect rules as nf_tables rules, for a table of their own (see :mod:`nftables`).

The same semantics as the iptables rules of :mod:`kdiag_manager.iptables`, in one table per
redirect and family (``M``: the manager's socket mark, ``L``: its listener's port):

- chain ``prerouting`` (nat, dstnat - 10), incoming port P: ``[ip saddr != S ...] tcp dport P
  redirect to :L`` (``S``: the sources not to redirect, e.g. the node's addresses, where the
  kubelet's probes come from);
- chain ``output`` (nat, -110), incoming: ``tcp dport P fib daddr type local meta mark != M
  redirect to :L``; outgoing port P [to D]: ``[ip daddr D] tcp dport P meta mark != M dnat to
  127.0.0.1:L`` (``[::1]:L`` in the ip6 table);
- chain ``input`` (filter, 0), both: ``tcp dport L ct status ! dnat drop``.

While a manager has redirected, its *anchor* table (:func:`anchor`) keeps two things on in the
namespace that connections already redirected (carried, or failed open to the app) need after
their redirect's table is gone: the NAT hooks (one nat chain, empty) and connection tracking (a
``ct expectation`` object no rule uses: each nat, redirect or ct expression holds conntrack
on, and deleting the last one turns it off). Without it, such connections would stop being
translated: their packets, resets included, would go astray and they would hang. The anchor
has no rule and goes with the manager.

The nat chains run at priority -110, before iptables' nat chains (-100): kdiag's rules come
first, as ``iptables -I CHAIN 1`` made them. The manager's own sockets carry the mark ``M`` (its
fail-open and probe connections are never redirected). Every rule carries the comment
``kdiag:<session>``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from . import nftables as nft
from .sysutil import KDIAG_MARK

NAT_PRIORITY = -110  # dstnat (-100) - 10
FILTER_PRIORITY = 0
CHAINS = {
    "prerouting": nft.Chain("prerouting", "nat", nft.HOOK_PREROUTING, NAT_PRIORITY),
    "output": nft.Chain("output", "nat", nft.HOOK_OUTPUT, NAT_PRIORITY),
    "input": nft.Chain("input", "filter", nft.HOOK_INPUT, FILTER_PRIORITY),
}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAMES = {4: "ip", 6: "ip6"}
_DADDR = {4: (16, 4), 6: (24, 16)}  # offset and length of the destination in the IP header
_SADDR = {4: (12, 4), 6: (8, 16)}  # ... and of the source
_LOOPBACK = {4: ("127.0.0.1", "127.0.0.1"), 6: ("::1", "[::1]")}


@dataclass(frozen=True)
class _Match:
    """Expressions and their ``nft`` text."""

    expressions: tuple[bytes, ...]
    text: str


def family_name(family: int) -> str:
    """``ip`` or ``ip6``: the table family ``nft`` names."""
    return _NAMES[family]


def _tcp_dport(port: int) -> _Match:
    return _Match((nft.meta(nft.META_L4PROTO), nft.cmp(nft.CMP_EQ, bytes([socket.IPPROTO_TCP])),
                   nft.payload(nft.PAYLOAD_TRANSPORT, 2, 2),
                   nft.cmp(nft.CMP_EQ, struct.pack(">H", port))), f"tcp dport {port}")


def _address(network: Network, field: str, equal: bool = True) -> _Match:
    """``ip daddr N`` / ``ip saddr != N`` (``field``: daddr or saddr; a network with its mask)."""
    offset, length = (_DADDR if field == "daddr" else _SADDR)[network.version]
    exprs = [nft.payload(nft.PAYLOAD_NETWORK, offset, length)]
    if network.prefixlen < network.max_prefixlen:
        exprs.append(nft.bitwise_and(network.netmask.packed))
    exprs.append(nft.cmp(nft.CMP_EQ if equal else nft.CMP_NEQ, network.network_address.packed))
    shown = (network.network_address if network.prefixlen == network.max_prefixlen
             else network)
    return _Match(tuple(exprs), f"{_NAMES[network.version]} {field} {'' if equal else '!= '}"
                                f"{shown}")


def _not_marked() -> _Match:
    return _Match((nft.meta(nft.META_MARK), nft.cmp(nft.CMP_NEQ, nft.host_u32(KDIAG_MARK))),
                  f"meta mark != {KDIAG_MARK:#010x}")


def _local_destination() -> _Match:
    return _Match((nft.fib_daddr_type(), nft.cmp(nft.CMP_EQ, nft.host_u32(nft.RTN_LOCAL))),
                  "fib daddr type local")


def _not_redirected() -> _Match:
    return _Match((nft.ct(nft.CT_STATUS), nft.bitwise_and(nft.host_u32(nft.IPS_DST_NAT)),
                   nft.cmp(nft.CMP_EQ, nft.host_u32(0))), "ct status ! dnat")


def _redirect(listen_port: int) -> _Match:
    return _Match(tuple(nft.redirect_to(listen_port)), f"redirect to :{listen_port}")


def _dnat_loopback(family: int, listen_port: int) -> _Match:
    address, shown = _LOOPBACK[family]
    packed = ipaddress.ip_address(address).packed
    return _Match(tuple(nft.dnat_to(family, packed, listen_port)), f"dnat to {shown}:{listen_port}")


def _drop() -> _Match:
    return _Match((nft.verdict(nft.NF_DROP),), "drop")


def _rule(chain: str, tag: str, *parts: _Match) -> nft.Rule:
    return nft.Rule(chain, tuple(e for p in parts for e in p.expressions), tag,
                    " ".join(p.text for p in parts))


def refuse_direct(tag: str, listen_port: int) -> nft.Rule:
    """The listener binds every address: drop connections that reach it without having been
    redirected (no DNAT/REDIRECT in their conntrack entry)."""
    return _rule("input", tag, _tcp_dport(listen_port), _not_redirected(), _drop())


def incoming(tag: str, port: int, listen_port: int, skip: Sequence[Network] = ()
             ) -> list[nft.Rule]:
    """Connections arriving at ``port`` go to the manager's ``listen_port``: from other hosts
    (prerouting; not from the ``skip`` sources of this family) and from inside the namespace
    to a local address (output, except the manager's own); direct connections to the
    listener are dropped."""
    return [
        _rule("prerouting", tag, *(_address(n, "saddr", equal=False) for n in skip), _tcp_dport(port),
              _redirect(listen_port)),
        _rule("output", tag, _tcp_dport(port), _local_destination(), _not_marked(),
              _redirect(listen_port)),
        refuse_direct(tag, listen_port),
    ]


def outgoing(tag: str, port: int, listen_port: int, family: int,
             networks: Sequence[Network] = ()) -> list[nft.Rule]:
    """The namespace's own connections to ``port`` (towards one of ``networks``, or anywhere)
    go to the manager on loopback:``listen_port``; direct connections to it are dropped."""
    targets: list[tuple[_Match, ...]] = [(_address(n, "daddr"),) for n in networks] or [()]
    return [*(_rule("output", tag, *t, _tcp_dport(port), _not_marked(),
                    _dnat_loopback(family, listen_port)) for t in targets),
            refuse_direct(tag, listen_port)]


def anchor(family: int) -> tuple[str, list[nft.Chain], tuple[nft.CtExpectation, ...]]:
    """The manager's anchor table for ``family``: its name, chain and object."""
    return (f"kdiag-anchor-{os.getpid()}", [nft.Chain("keep-nat", "nat", nft.HOOK_POSTROUTING,
                                                      100)],
            (nft.CtExpectation("keep-conntrack"),))


def chains_for(rules: Sequence[nft.Rule]) -> list[nft.Chain]:
    """The base chains ``rules`` use (only those: an empty chain would still hook in)."""
    used = {r.chain for r in rules}
    return [chain for name, chain in CHAINS.items() if name in used]


def line(family: int, table: str, rule: nft.Rule) -> str:
    """The rule as an ``nft`` command (what ``nft list ruleset`` shows, in ``add rule`` form)."""
    return f'add rule {_NAMES[family]} {table} {rule.chain} {rule.text} comment "{rule.comment}"'

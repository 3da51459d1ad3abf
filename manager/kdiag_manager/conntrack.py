"""Forgetting connection-tracking entries (ctnetlink), for connections the manager resets.

A redirected connection's conntrack entry holds its translation to the manager's listener. When
the manager resets such a connection (its tunnel broke, the manager exits), the entry lingers,
closed, for a while (10 s): a new connection from the same client port within that time is
matched to it — the kernel does not treat a SYN after the server's reset as a new connection —
and is sent to the listener, gone by then: the client is refused although no rule redirects
anything any more. Deleting the entry right after the reset makes the next one a new
connection, which reaches the app.

Not at once, though: a socket closed while another thread is still inside a call on it sends
its reset when that call returns; with the entry already gone the reset would not be translated
and the client would wait for an answer forever. :data:`RESET_DELAY` leaves time for that.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import threading
import time

from . import nftables as nft

log = logging.getLogger(__name__)

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3

RESET_DELAY = 0.5

Endpoint = tuple[str, int]


Flow = tuple[Endpoint, Endpoint]
_pending: list[Flow] = []  # to forget soon (forget_later); taken by the manager's exit
_pending_lock = threading.Lock()


def forget_later(flows: list[Flow]) -> None:
    """:func:`forget` ``flows`` :data:`RESET_DELAY` from now, on a thread of its own (or
    with the manager's exit, if that comes first: see :func:`take_pending`)."""
    with _pending_lock:
        _pending.extend(flows)
    timer = threading.Timer(RESET_DELAY, _forget_pending, args=(flows,))
    timer.daemon = True
    timer.start()


def _forget_pending(flows: list[Flow]) -> None:
    with _pending_lock:
        mine = [f for f in flows if f in _pending]
        for flow in mine:
            _pending.remove(flow)
    forget(mine)


def take_pending() -> list[Flow]:
    """The flows :func:`forget_later` has not forgotten yet (the caller forgets them)."""
    with _pending_lock:
        flows = list(_pending)
        _pending.clear()
    return flows


def forget(flows: list[Flow], delay: float = 0.0) -> int:
    """After ``delay`` seconds, delete the conntrack entries of the TCP connections ``(peer,
    original destination)`` in this network namespace; how many were deleted (best effort:
    errors are logged)."""
    if not flows:
        return 0
    time.sleep(delay)
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             nft.NETLINK_NETFILTER)
    except OSError as exc:
        log.info("cannot reach conntrack: %s", exc)
        return 0
    deleted = 0
    with sock:
        sock.bind((0, 0))
        for seq, (peer, original) in enumerate(flows, 1):
            try:
                body = _tuple(peer, original)
            except ValueError:
                continue
            family = socket.AF_INET6 if ":" in original[0] else socket.AF_INET
            sock.send(nft.message(seq, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
                                  nft.NLM_F_REQUEST | nft.NLM_F_ACK, family, body))
            error = nft.read_acks(sock, {seq})
            if error == 0:
                deleted += 1
            elif error != errno.ENOENT:
                log.info("forgetting conntrack entry %s -> %s: %s", peer, original,
                         errno.errorcode.get(error, error))
    return deleted


def _tuple(peer: Endpoint, original: Endpoint) -> bytes:
    src, dst = ipaddress.ip_address(peer[0]), ipaddress.ip_address(original[0])
    if src.version != dst.version:
        raise ValueError("mixed families")
    kinds = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if src.version == 4 else (CTA_IP_V6_SRC,
                                                                       CTA_IP_V6_DST)
    return nft.nest(CTA_TUPLE_ORIG,
                    nft.nest(CTA_TUPLE_IP, nft.attr(kinds[0], src.packed),
                             nft.attr(kinds[1], dst.packed)),
                    nft.nest(CTA_TUPLE_PROTO, nft.attr(CTA_PROTO_NUM, bytes([socket.IPPROTO_TCP])),
                             nft.attr(CTA_PROTO_SRC_PORT, struct.pack(">H", peer[1])),
                             nft.attr(CTA_PROTO_DST_PORT, struct.pack(">H", original[1]))))

"""Forgetting connection-tracking entries (ctnetlink), for connections the manager resets.

A redirected connection's conntrack entry holds its translation to the manager's listener. When
the manager resets such a connection (its tunnel broke, the manager exits), the entry lingers,
closed, for a while (10 s): a new connection from the same client port within that time is
matched to it — the kernel does not treat a SYN after the server's reset as a new connection —
and is sent to the listener, gone by then: the client is refused although no rule redirects
anything any more. Deleting the entry right after the reset makes the next one a new
connection, which reaches the app.

Only an entry that saw the reset is forgotten (:func:`forget`, :func:`reset_seen`): a socket
closed while another thread is still inside a call on it sends its reset when that call
returns, and with the entry already gone the reset would not be translated: the client would
wait for an answer forever. Such an entry is tried again :data:`RESET_DELAY` later. And an entry
a new connection from the same client port took over meanwhile (a SYN moves a reset entry back
to SYN_SENT, translation kept) carries that connection: deleting it would cut it off from its
answers (seen in ``make chaos``: answers sent from the listener's port, untranslated, and the
client waiting forever).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from . import nftables as nft

log = logging.getLogger(__name__)

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO, CTA_TIMEOUT, CTA_ID = 1, 2, 4, 7, 12
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
TCP_CONNTRACK_SYN_SENT, TCP_CONNTRACK_SYN_RECV = 1, 2
TCP_CONNTRACK_TIME_WAIT, TCP_CONNTRACK_CLOSE = 7, 8  # (CLOSE: the state after a reset)
CLOSE_TIMEOUT_SYSCTL = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close"
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3

RESET_DELAY = 0.5

Endpoint = tuple[str, int]


Flow = tuple[Endpoint, Endpoint]
_pending: list[Flow] = []  # to forget soon (forget_reset); taken by the manager's exit
_pending_lock = threading.Lock()


def forget_reset(flows: list[Flow]) -> None:
    """Forget the entries of ``flows`` (connections just reset) that saw their reset now; the
    others :data:`RESET_DELAY` from now, on a thread of their own (or with the manager's exit,
    if that comes first: see :func:`take_pending`)."""
    late = forget(flows)
    if not late:
        return
    with _pending_lock:
        _pending.extend(late)
    timer = threading.Timer(RESET_DELAY, _forget_pending, args=(late,))
    timer.daemon = True
    timer.start()


def _forget_pending(flows: list[Flow]) -> None:
    with _pending_lock:
        mine = [f for f in flows if f in _pending]
        for flow in mine:
            _pending.remove(flow)
    forget(mine)


def take_pending() -> list[Flow]:
    """The flows :func:`forget_reset` has not forgotten yet (the caller forgets them)."""
    with _pending_lock:
        flows = list(_pending)
        _pending.clear()
    return flows


def forget(flows: list[Flow]) -> list[Flow]:
    """Delete the conntrack entries of the TCP connections ``(peer, original destination)`` in
    this network namespace that are in the state a reset leaves, each by its id (see the
    module); the flows whose entry has not seen its reset yet, for a later try. Best effort:
    errors are logged."""
    late: list[Flow] = []
    sock = _netlink() if flows else None
    if sock is None:
        return late
    with sock:
        for seq, flow in enumerate(flows, 1):
            entry = _entry(sock, seq, flow)
            if entry is None:
                continue  # gone already
            if not reset_seen(entry):
                late.append(flow)
            else:  # (by its id: a SYN that killed it since made a new entry, a live one)
                _delete(sock, seq, flow, entry.entry_id)
    return late


@dataclass(frozen=True)
class Entry:
    """What :func:`forget` needs to know of a conntrack entry."""

    state: int
    entry_id: bytes  # (as the kernel encodes it)
    timeout: int  # seconds left


def reset_seen(entry: Entry) -> bool:
    """Whether the last packet ``entry`` saw was a reset: it is in CLOSE, or conntrack kept its
    state (a reset whose sequence number is not the peer's last acknowledgement is kept
    "for a possible challenge ACK": ESTABLISHED, CLOSE_WAIT, ...) but gave it the CLOSE timeout,
    which no other packet in those states gives. Not an entry in a handshake: a new connection
    from the same client port took it over (its SYN passes, ignored, with the old translation,
    and the answer moves it to SYN_RECV), and deleting it would cut that connection off; nor
    one in TIME_WAIT, which a new SYN replaces by a new entry anyway."""
    if entry.state == TCP_CONNTRACK_CLOSE:
        return True
    if entry.state in (TCP_CONNTRACK_SYN_SENT, TCP_CONNTRACK_SYN_RECV, TCP_CONNTRACK_TIME_WAIT):
        return False
    return entry.timeout <= _close_timeout()


@functools.cache
def _close_timeout() -> int:
    """This namespace's timeout of a reset entry (the kernel's default, 10 s, if unreadable)."""
    try:
        with open(CLOSE_TIMEOUT_SYSCTL, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 10


def _netlink() -> socket.socket | None:
    """A ctnetlink socket (None, logged, when conntrack cannot be reached)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             nft.NETLINK_NETFILTER)
    except OSError as exc:
        log.info("cannot reach conntrack: %s", exc)
        return None
    sock.bind((0, 0))
    sock.settimeout(5.0)
    return sock


def _named(flow: Flow) -> tuple[int, bytes] | None:
    """The address family and the original tuple naming ``flow``'s entry (None: the two ends'
    families differ)."""
    peer, original = flow
    try:
        body = _tuple(peer, original)
    except ValueError:
        return None
    return (socket.AF_INET6 if ":" in original[0] else socket.AF_INET), body


def _delete(sock: socket.socket, seq: int, flow: Flow, entry_id: bytes) -> bool:
    """Delete ``flow``'s entry if its id is ``entry_id``; whether it was there."""
    named = _named(flow)
    if named is None:
        return False
    family, body = named
    sock.send(nft.message(seq, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
                          nft.NLM_F_REQUEST | nft.NLM_F_ACK, family,
                          body + nft.attr(CTA_ID, entry_id)))
    error = nft.read_acks(sock, {seq})
    if error not in (0, errno.ENOENT):
        log.info("forgetting conntrack entry %s -> %s: %s", *flow,
                 errno.errorcode.get(error, error))
    return error == 0


def _entry(sock: socket.socket, seq: int, flow: Flow) -> Entry | None:
    """``flow``'s entry; None when there is none (or it cannot be read)."""
    named = _named(flow)
    if named is None:
        return None
    family, body = named
    sock.send(nft.message(seq, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                          nft.NLM_F_REQUEST, family, body))
    try:
        buf = sock.recv(65536)
    except OSError as exc:
        log.info("reading a conntrack entry: %s", exc)
        return None
    if len(buf) < nft.NLMSGHDR.size:
        return None
    length, kind, _flags, _seq, _pid = nft.NLMSGHDR.unpack_from(buf)
    if kind != (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW:
        return None  # NLMSG_ERROR: ENOENT, or refused
    return _parsed(_attrs(buf[nft.NLMSGHDR.size + 4:length]))  # (after the nfgenmsg)


def _parsed(parts: dict[int, bytes]) -> Entry | None:
    """An entry from its attributes (None: not a TCP entry with an id and a timeout)."""
    tcp = _attrs(_attrs(parts.get(CTA_PROTOINFO, b"")).get(CTA_PROTOINFO_TCP, b""))
    state = tcp.get(CTA_PROTOINFO_TCP_STATE, b"")
    if not state or CTA_ID not in parts or len(parts.get(CTA_TIMEOUT, b"")) != 4:
        return None
    return Entry(state[0], parts[CTA_ID], struct.unpack(">I", parts[CTA_TIMEOUT])[0])


def forget_translated(ports: set[int], reset_only: bool = False) -> int:
    """Forget every TCP entry in this network namespace whose address translation sends it to
    one of ``ports`` here (a redirect's listener: the reply comes from that port, not from the
    original destination's); with ``reset_only``, those that saw a reset last
    (:func:`reset_seen`). How many
    were deleted (best effort: errors are logged).

    The manager's exit forgets them all: once its listeners are closed, every such entry is a
    dead end for a client port reused while it lingers, whichever way its connection ended. A
    redirect that stops forgets those reset (connections the closing listener reset, or that
    reached it through an entry left over). Each is deleted by its id: an entry made since for
    the same client port (a new connection, translated to another listener, or to none) is not
    one of them."""
    sock = _netlink() if ports else None
    if sock is None:
        return 0
    with sock:
        sock.send(nft.message(1, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                              nft.NLM_F_REQUEST | NLM_F_DUMP, socket.AF_UNSPEC, b""))
        found: list[tuple[Flow, bytes]] = []
        try:
            for entry in _dump_entries(sock):
                flow = _translated_flow(entry, ports)
                seen = _parsed(_attrs(entry))
                if flow is not None and seen is not None and \
                        not (reset_only and not reset_seen(seen)):
                    found.append((flow, seen.entry_id))
        except OSError as exc:
            log.info("reading conntrack: %s", exc)
        deleted = 0
        for seq, (flow, entry_id) in enumerate(found, 2):
            deleted += _delete(sock, seq, flow, entry_id)
    return deleted


_ATTR = struct.Struct("=HH")


def _dump_entries(sock: socket.socket) -> Iterator[bytes]:
    """The attribute area of each conntrack entry a dump answers, until its end."""
    while True:
        buf = sock.recv(1 << 20)
        offset = 0
        while offset + nft.NLMSGHDR.size <= len(buf):
            length, kind, _flags, _seq, _pid = nft.NLMSGHDR.unpack_from(buf, offset)
            if kind in (NLMSG_DONE, nft.NLMSG_ERROR) or length < nft.NLMSGHDR.size:
                return
            if kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW:
                yield buf[offset + nft.NLMSGHDR.size + 4:offset + length]  # after the nfgenmsg
            offset += (length + 3) & ~3


def _attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes by type (flags stripped)."""
    found, offset = {}, 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def _endpoints(tuple_attr: bytes) -> tuple[Endpoint, Endpoint, int] | None:
    """(source, destination, protocol) of a conntrack tuple."""
    parts = _attrs(tuple_attr)
    ip, proto = _attrs(parts.get(CTA_TUPLE_IP, b"")), _attrs(parts.get(CTA_TUPLE_PROTO, b""))
    kinds = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if CTA_IP_V4_SRC in ip else (CTA_IP_V6_SRC,
                                                                         CTA_IP_V6_DST)
    try:
        src, dst = (str(ipaddress.ip_address(ip[k])) for k in kinds)
        (sport,), (dport,) = (struct.unpack(">H", proto[k]) for k in (CTA_PROTO_SRC_PORT,
                                                                      CTA_PROTO_DST_PORT))
        return (src, sport), (dst, dport), proto[CTA_PROTO_NUM][0]
    except (KeyError, ValueError, struct.error, IndexError):
        return None


def _translated_flow(entry: bytes, ports: set[int]) -> Flow | None:
    parts = _attrs(entry)
    orig = _endpoints(parts.get(CTA_TUPLE_ORIG, b""))
    reply = _endpoints(parts.get(CTA_TUPLE_REPLY, b""))
    if orig is None or reply is None or orig[2] != socket.IPPROTO_TCP:
        return None
    answered_by = reply[0]
    if answered_by[1] in ports and answered_by != orig[1]:
        return orig[0], orig[1]
    return None


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

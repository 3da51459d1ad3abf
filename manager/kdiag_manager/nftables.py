"""nf_tables over netlink, without libraries: tables the kernel owns on our behalf.

A table created with ``NFT_TABLE_F_OWNER`` (Linux 5.12+) belongs to the netlink socket that
created it: when that socket is released — the process closes it, exits, is killed with
``kill -9`` or by the OOM killer — the kernel deletes the table with every chain and rule in it.
That is a lease held by the kernel itself, at no refresh cost: a redirect's rules cannot outlive
the manager that installed them. The socket is opened with ``SOCK_CLOEXEC`` so that children
(``enter``, ``tcpdump``) never inherit it and keep a table alive after the manager died.

This module encodes the netlink messages (a batch per change, every message acknowledged) and
the few expressions the redirect rules need (:mod:`kdiag_manager.nftrules` builds those).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x1, 0x4, 0x200, 0x400, 0x800
NLA_F_NESTED = 0x8000
NLMSGHDR = struct.Struct("=IHHII")

MSG_NEWTABLE, MSG_DELTABLE, MSG_NEWCHAIN, MSG_NEWRULE, MSG_NEWOBJ = 0, 2, 3, 6, 18
TABLE_NAME, TABLE_FLAGS, TABLE_F_OWNER = 1, 2, 0x2
CHAIN_TABLE, CHAIN_NAME, CHAIN_HOOK, CHAIN_POLICY, CHAIN_TYPE = 1, 3, 4, 5, 7
HOOK_NUM, HOOK_PRIORITY = 1, 2
RULE_TABLE, RULE_CHAIN, RULE_EXPRESSIONS, RULE_USERDATA = 1, 2, 4, 7
OBJ_TABLE, OBJ_NAME, OBJ_TYPE, OBJ_DATA = 1, 2, 3, 4
OBJECT_CT_EXPECT = 9
CT_EXPECT_L4PROTO, CT_EXPECT_DPORT, CT_EXPECT_TIMEOUT, CT_EXPECT_SIZE = 2, 3, 4, 5
UDATA_RULE_COMMENT = 0
LIST_ELEM, EXPR_NAME, EXPR_DATA = 1, 1, 2
DATA_VALUE, DATA_VERDICT, VERDICT_CODE = 1, 2, 1

# Families (nfgenmsg), hooks, verdicts, registers.
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}  # NFPROTO_IPV4 = 2, NFPROTO_IPV6 = 10
HOOK_PREROUTING, HOOK_INPUT, HOOK_OUTPUT, HOOK_POSTROUTING = 0, 1, 3, 4
NF_DROP, NF_ACCEPT = 0, 1
REG_VERDICT, REG_1, REG_2 = 0, 1, 2

# Expression constants (linux/netfilter/nf_tables.h).
CMP_EQ, CMP_NEQ = 0, 1
META_MARK, META_L4PROTO = 3, 16
CT_STATUS = 2
IPS_DST_NAT = 1 << 5
PAYLOAD_NETWORK, PAYLOAD_TRANSPORT = 1, 2
FIB_RESULT_ADDRTYPE, FIB_F_DADDR = 3, 2
RTN_LOCAL = 2
NAT_DNAT = 1


class NftError(OSError):
    """A netlink request failed (errno set), or nf_tables cannot be reached at all."""


# -- attributes ----------------------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nest(kind: int, *attrs: bytes) -> bytes:
    """A nested attribute holding ``attrs``."""
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def u32(kind: int, value: int) -> bytes:
    """A 32-bit attribute in network byte order (negative values as two's complement)."""
    return attr(kind, struct.pack(">I", value & 0xFFFFFFFF))


def string(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, value.encode() + b"\0")


def data(kind: int, value: bytes) -> bytes:
    """An ``nft_data`` value attribute."""
    return nest(kind, attr(DATA_VALUE, value))


def host_u32(value: int) -> bytes:
    """A 32-bit value in host byte order (meta mark, ct status, fib address type)."""
    return struct.pack("=I", value)


# -- expressions ---------------------------------------------------------------------------------


def expr(name: str, *attrs: bytes) -> bytes:
    """One expression of a rule."""
    return nest(LIST_ELEM, string(EXPR_NAME, name), nest(EXPR_DATA, *attrs))


def meta(key: int, reg: int = REG_1) -> bytes:
    """Load a meta key (mark, l4proto) into ``reg``."""
    return expr("meta", u32(2, key), u32(1, reg))  # NFTA_META_KEY, NFTA_META_DREG


def cmp(op: int, value: bytes, reg: int = REG_1) -> bytes:
    """Compare ``reg`` with ``value``; the rule stops here unless it holds."""
    return expr("cmp", u32(1, reg), u32(2, op), data(3, value))


def payload(base: int, offset: int, length: int, reg: int = REG_1) -> bytes:
    """Load ``length`` bytes of a header (network or transport) into ``reg``."""
    return expr("payload", u32(1, reg), u32(2, base), u32(3, offset), u32(4, length))


def bitwise_and(mask: bytes, reg: int = REG_1) -> bytes:
    """``reg &= mask``."""
    return expr("bitwise", u32(1, reg), u32(2, reg), u32(3, len(mask)), data(4, mask),
                data(5, bytes(len(mask))))


def ct(key: int, reg: int = REG_1) -> bytes:
    """Load a conntrack key (status) into ``reg``."""
    return expr("ct", u32(1, reg), u32(2, key))


def fib_daddr_type(reg: int = REG_1) -> bytes:
    """Load the route type of the destination address (local, unicast...) into ``reg``."""
    return expr("fib", u32(1, reg), u32(2, FIB_RESULT_ADDRTYPE), u32(3, FIB_F_DADDR))


def immediate(value: bytes, reg: int) -> bytes:
    """Load a constant into ``reg``."""
    return expr("immediate", u32(1, reg), data(2, value))


def verdict(code: int) -> bytes:
    """Accept or drop."""
    return expr("immediate", u32(1, REG_VERDICT),
                nest(2, nest(DATA_VERDICT, u32(VERDICT_CODE, code))))


def redirect_to(port: int) -> list[bytes]:
    """``redirect to :port``."""
    return [immediate(struct.pack(">H", port), REG_1),
            expr("redir", u32(1, REG_1), u32(2, REG_1))]


def dnat_to(family: int, address: bytes, port: int) -> list[bytes]:
    """``dnat to address:port`` (``family``: 4 or 6)."""
    return [immediate(address, REG_1), immediate(struct.pack(">H", port), REG_2),
            expr("nat", u32(1, NAT_DNAT), u32(2, FAMILIES[family]), u32(3, REG_1),
                 u32(4, REG_1), u32(5, REG_2), u32(6, REG_2))]


def comment(text: str) -> bytes:
    """The rule's comment (user data, as ``nft`` writes and shows it)."""
    value = text.encode() + b"\0"
    return attr(RULE_USERDATA, struct.pack("BB", UDATA_RULE_COMMENT, len(value)) + value)


# -- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A base chain: its name, type (``nat``/``filter``), hook and priority."""

    name: str
    kind: str
    hook: int
    priority: int


@dataclass(frozen=True)
class CtExpectation:
    """A stateful ``ct expectation`` object. Unused by any rule it does nothing, but like
    every conntrack user it keeps connection tracking on in the namespace (see
    :mod:`nftrules`: what carried connections need once their rules are gone)."""

    name: str


@dataclass(frozen=True)
class Rule:
    """A rule: its chain, expressions, comment, and what it does in ``nft`` syntax (for
    people: reports and logs)."""

    chain: str
    expressions: tuple[bytes, ...]
    comment: str
    text: str = ""


class OwnedTable:
    """A table the kernel deletes, with all its chains and rules, when this object's netlink
    socket is released (:meth:`close`, process exit, ``kill -9``). Thread-safe."""

    def __init__(self, family: int, name: str) -> None:
        self.family = family
        self.name = name
        self._seq = 0
        self._lock = threading.Lock()
        try:
            self._sock: socket.socket | None = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
            self._sock.bind((0, 0))
        except OSError as exc:
            raise NftError(exc.errno, f"no nf_tables netlink here: {exc.strerror or exc}") \
                from None

    def create(self, chains: list[Chain], rules: list[Rule],
               objects: tuple[CtExpectation, ...] = ()) -> None:
        """Create the owned table with ``chains``, ``rules`` and ``objects`` in one
        transaction (all or nothing). Raises NftError: EOPNOTSUPP before Linux 5.12 (no owner
        flag), EPERM without CAP_NET_ADMIN, ENOENT or EOPNOTSUPP without nf_tables..."""
        messages = [(MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL,
                     string(TABLE_NAME, self.name) + u32(TABLE_FLAGS, TABLE_F_OWNER))]
        for obj in objects:
            messages.append((MSG_NEWOBJ, NLM_F_CREATE | NLM_F_EXCL, (
                string(OBJ_TABLE, self.name) + string(OBJ_NAME, obj.name)
                + u32(OBJ_TYPE, OBJECT_CT_EXPECT)
                + nest(OBJ_DATA, attr(CT_EXPECT_L4PROTO, bytes([socket.IPPROTO_TCP])),
                       attr(CT_EXPECT_DPORT, bytes(2)), attr(CT_EXPECT_TIMEOUT, host_u32(1000)),
                       attr(CT_EXPECT_SIZE, bytes([1]))))))
        for chain in chains:
            messages.append((MSG_NEWCHAIN, NLM_F_CREATE, (
                string(CHAIN_TABLE, self.name) + string(CHAIN_NAME, chain.name)
                + nest(CHAIN_HOOK, u32(HOOK_NUM, chain.hook), u32(HOOK_PRIORITY, chain.priority))
                + u32(CHAIN_POLICY, NF_ACCEPT) + string(CHAIN_TYPE, chain.kind))))
        for rule in rules:
            messages.append((MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, (
                string(RULE_TABLE, self.name) + string(RULE_CHAIN, rule.chain)
                + nest(RULE_EXPRESSIONS, *rule.expressions) + comment(rule.comment))))
        self._transaction(messages)

    def delete(self) -> bool:
        """Delete the table now (the kernel acknowledges it); False if it was not there."""
        try:
            self._transaction([(MSG_DELTABLE, 0, string(TABLE_NAME, self.name))])
        except NftError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def close(self) -> None:
        """Release the socket: the kernel deletes the table if it is still there."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    @property
    def closed(self) -> bool:
        """Has :meth:`close` run?"""
        return self._sock is None

    def _message(self, kind: int, flags: int, body: bytes, family: int, res_id: int = 0
                 ) -> tuple[int, bytes]:
        self._seq += 1
        return self._seq, message(self._seq, kind, flags, family, body, res_id)

    def _transaction(self, messages: list[tuple[int, int, bytes]]) -> None:
        """Send ``messages`` as one nf_tables batch and check every acknowledgement."""
        with self._lock:
            sock = self._sock
            if sock is None:
                raise NftError(errno.EBADF, "the nf_tables socket is closed")
            family = FAMILIES[self.family]
            parts = [self._message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, b"", 0,
                                   NFNL_SUBSYS_NFTABLES)[1]]
            pending: set[int] = set()
            for kind, flags, body in messages:
                seq, msg = self._message((NFNL_SUBSYS_NFTABLES << 8) | kind,
                                         flags | NLM_F_REQUEST | NLM_F_ACK, body, family)
                pending.add(seq)
                parts.append(msg)
            parts.append(self._message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, b"", 0,
                                       NFNL_SUBSYS_NFTABLES)[1])
            sock.send(b"".join(parts))
            error = read_acks(sock, pending)
        if error:
            raise NftError(error, f"nf_tables: {os.strerror(error)}")


def message(seq: int, kind: int, flags: int, family: int, body: bytes, res_id: int = 0
            ) -> bytes:
    """One nfnetlink message: header, ``nfgenmsg`` (family, version 0, ``res_id``), body."""
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def read_acks(sock: socket.socket, pending: set[int]) -> int:
    """Read the acknowledgements of the messages numbered ``pending``; the first error's errno
    (0: all acknowledged).

    The kernel processes netlink requests while ``send`` runs, so its answers are already
    queued; after an error in a batch it answers only some messages, so reading stops at the
    first one that fails.
    """
    sock.settimeout(5.0)
    try:
        while pending:
            buf = sock.recv(65536)
            offset = 0
            while offset + NLMSGHDR.size <= len(buf):
                length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    code = -struct.unpack_from("=i", buf, offset + NLMSGHDR.size)[0]
                    if code:
                        _discard_queued(sock)
                        return code
                    pending.discard(seq)
                offset += max((length + 3) & ~3, NLMSGHDR.size)
    except TimeoutError:
        return errno.ETIMEDOUT
    return 0


def _discard_queued(sock: socket.socket) -> None:
    """Drop answers still queued (the failed batch's other messages): the next transaction
    must only read its own."""
    sock.setblocking(False)  # (with a timeout set, Python would wait despite MSG_DONTWAIT)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass

"""A packet socket that sees a mirror's TCP segments, filtered in the kernel.

An ``AF_PACKET`` socket (``SOCK_DGRAM``: packets from their IP header on, whatever the link
layer) on every interface of the namespace, with a classic BPF program attached
(``SO_ATTACH_FILTER``) so that only what the mirror needs reaches Python:

- segments *to* a mirrored port that carry data or SYN/FIN/RST (pure ACKs stay in the kernel),
  arriving on any interface (not the copies of packets this namespace sends out: on loopback
  every packet is seen twice, once leaving and once arriving; only the arrival is taken);
- segments *from* a mirrored port with SYN, FIN or RST (the app's side of the handshake and of
  the end: what the connection's state and ``bytes_out`` need), arriving on loopback or leaving
  by another interface.

IPv4 (not fragments after the first) and IPv6 (TCP right after the fixed header). A packet
socket is a copy: the app's packets go on exactly as without it. Packets the kernel could not
queue for the socket (its receive buffer full) are counted by ``PACKET_STATISTICS``:
:meth:`PacketTap.drops` reads (and resets) that count, so that they are reported, never lost
silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
# Room for bursts. ``$KDIAG_MIRROR_RCVBUF`` sets another size (bytes; the tests make it tiny to
# see lost packets reported).
RCVBUF = int(os.environ.get("KDIAG_MIRROR_RCVBUF", "") or 32 << 20)
# Largest packet read whole (GRO/TSO aggregates reach 64 KiB; a longer one is reported).
MAX_PACKET = 256 << 10
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10

# Classic BPF opcodes (linux/filter.h).
_LD, _LDX, _ST, _ALU, _JMP, _RET, _MISC = 0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07
_W, _H, _B = 0x00, 0x08, 0x10
_IMM, _ABS, _IND, _MEM, _LEN, _MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_ADD, _AND, _RSH = 0x00, 0x50, 0x70
_JA, _JEQ, _JGT, _JSET = 0x00, 0x10, 0x20, 0x40
_K, _X = 0x00, 0x08
_TAX, _TXA = 0x00, 0x80
_SKF_AD = -0x1000
_AD_PROTOCOL, _AD_PKTTYPE, _AD_IFINDEX = 0, 4, 8
_ACCEPT = 0x40000
# Scratch memory: whether the packet is leaving, the IP packet's length, TCP's SYN/FIN/RST.
_M_OUT, _M_LEN, _M_FLAGS, _M_TMP = 0, 1, 2, 3


class _Program:
    """A classic BPF program with named jump targets (resolved by :meth:`code`)."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.ins.append((code, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def code(self) -> bytes:
        out = b""
        for i, (code, jt, jf, k) in enumerate(self.ins):
            jumps = [self.labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
            if code == _JMP | _JA and isinstance(jt, str):
                k, jumps = self.labels[jt] - i - 1, [0, 0]
            if not all(0 <= j < 256 for j in jumps):
                raise ValueError("BPF jump too far")
            out += struct.pack("HBBI", code, jumps[0], jumps[1], k)
        return out


def bpf_program(ports: tuple[int, ...], loopback: int) -> tuple[int, bytes]:
    """The filter (see the module's docstring): its instruction count and code."""
    p = _Program()
    p.op(_LD | _W | _ABS, _SKF_AD + _AD_PKTTYPE)
    p.op(_JMP | _JEQ | _K, PACKET_OUTGOING, "leaving", "arriving")
    p.label("leaving")
    p.op(_LD | _W | _ABS, _SKF_AD + _AD_IFINDEX)
    p.op(_JMP | _JEQ | _K, loopback, "drop", 0)  # seen again as it arrives
    p.op(_LD | _IMM, 1)
    p.op(_JMP | _JA, 0, "mark")
    p.label("arriving")
    p.op(_LD | _IMM, 0)
    p.label("mark")
    p.op(_ST, _M_OUT)
    p.op(_LD | _W | _ABS, _SKF_AD + _AD_PROTOCOL)
    p.op(_JMP | _JEQ | _K, ETH_P_IP, "ipv4", 0)
    p.op(_JMP | _JEQ | _K, ETH_P_IPV6, "ipv6", "drop")
    p.label("ipv4")
    p.op(_LD | _B | _ABS, 9)
    p.op(_JMP | _JEQ | _K, socket.IPPROTO_TCP, 0, "drop")
    p.op(_LD | _H | _ABS, 6)
    p.op(_JMP | _JSET | _K, 0x1FFF, "drop", 0)  # a fragment after the first: no TCP header
    p.op(_LD | _H | _ABS, 2)
    p.op(_JMP | _JGT | _K, 0, "v4len", 0)
    p.op(_LD | _W | _LEN)  # (a GSO packet over 64 KiB says 0)
    p.label("v4len")
    p.op(_ST, _M_LEN)
    p.op(_LDX | _B | _MSH, 0)  # X = 4 * IHL: where TCP starts
    p.op(_JMP | _JA, 0, "tcp")
    p.label("ipv6")
    p.op(_LD | _B | _ABS, 6)
    p.op(_JMP | _JEQ | _K, socket.IPPROTO_TCP, 0, "drop")
    p.op(_LD | _H | _ABS, 4)
    p.op(_ALU | _ADD | _K, 40)
    p.op(_ST, _M_LEN)
    p.op(_LDX | _IMM, 40)
    p.label("tcp")
    p.op(_LD | _B | _IND, 13)
    p.op(_ALU | _AND | _K, TCP_FIN | TCP_SYN | TCP_RST)
    p.op(_ST, _M_FLAGS)
    p.op(_LD | _H | _IND, 2)  # destination port
    for port in ports:
        p.op(_JMP | _JEQ | _K, port, "to_app", 0)
    p.op(_LD | _H | _IND, 0)  # source port
    for port in ports:
        p.op(_JMP | _JEQ | _K, port, "from_app", 0)
    p.op(_JMP | _JA, 0, "drop")
    p.label("to_app")
    p.op(_LD | _MEM, _M_OUT)
    p.op(_JMP | _JEQ | _K, 1, "drop", 0)  # (leaving: the namespace calling out to that port)
    p.op(_LD | _MEM, _M_FLAGS)
    p.op(_JMP | _JGT | _K, 0, "accept", 0)
    p.op(_LD | _B | _IND, 12)  # data offset (words, high nibble) ...
    p.op(_ALU | _RSH | _K, 2)
    p.op(_ALU | _AND | _K, 0x3C)
    p.op(_ALU | _ADD | _X)  # ... + where TCP starts = where the data starts
    p.op(_ST, _M_TMP)
    p.op(_LDX | _MEM, _M_TMP)
    p.op(_LD | _MEM, _M_LEN)
    p.op(_JMP | _JGT | _X, 0, "accept", "drop")  # data: the packet is longer
    p.label("from_app")
    p.op(_LD | _MEM, _M_FLAGS)
    p.op(_JMP | _JGT | _K, 0, "accept", "drop")
    p.label("accept")
    p.op(_RET | _K, _ACCEPT)
    p.label("drop")
    p.op(_RET | _K, 0)
    return len(p.ins), p.code()


@dataclass(frozen=True)
class Segment:
    """A TCP segment as the tap saw it."""

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    data: bytes


def parse(packet: memoryview) -> Segment | None:
    """The TCP segment in an IP packet (None: not IPv4/IPv6 TCP, or cut short)."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0] or len(packet)
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
    elif version == 6 and len(packet) >= 40:
        ihl = 40
        total = 40 + struct.unpack_from("!H", packet, 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    else:
        return None
    if len(packet) < ihl + 20 or total > len(packet):
        return None
    sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", packet, ihl)
    start = ihl + (offset >> 4) * 4
    if start > total:
        return None
    return Segment((src, sport), (dst, dport), seq, ack, flags, bytes(packet[start:total]))


class _Stats(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint), ("drops", ctypes.c_uint)]


class PacketTap:
    """The packet socket of one mirror (see the module's docstring). Raises OSError."""

    def __init__(self, ports: tuple[int, ...]) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                  socket.htons(ETH_P_ALL))
        try:
            count, code = bpf_program(ports, socket.if_nametoindex("lo"))
            self._code = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("HL", count, ctypes.addressof(self._code))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            try:  # room for bursts (root may exceed rmem_max)
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.setblocking(False)
            # What arrived before the filter was attached is unfiltered: read it away.
            self._buf = bytearray(MAX_PACKET)
            self._cut = 0
            self.drain()
            self.drops()
        except BaseException:
            self.sock.close()
            raise

    def drain(self) -> None:
        """Discard every packet queued now."""
        with contextlib.suppress(OSError):
            while True:
                self.sock.recv_into(self._buf)

    def read(self) -> memoryview | None:
        """The next queued packet, from its IP header (None: none queued now). One larger
        than MAX_PACKET is skipped and counted with the drops."""
        while True:
            try:
                n = self.sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
            except BlockingIOError:
                return None
            if n <= MAX_PACKET:
                return memoryview(self._buf)[:n]
            self._cut += 1

    def drops(self) -> int:
        """Packets lost since the last call: dropped by the kernel (the socket's buffer was
        full), or too large to read whole."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, ctypes.sizeof(_Stats))
        cut, self._cut = self._cut, 0
        return _Stats.from_buffer_copy(raw).drops + cut

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

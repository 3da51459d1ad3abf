"""One direction of a TCP connection put back together from captured segments (a mirror's copy).

The stream starts after the SYN (its sequence number + 1). In-order data is handed on at once;
bytes seen before (retransmissions, overlaps, keep-alive probes) are dropped; a segment from
beyond a hole waits in a bounded buffer until the hole is filled. A hole that cannot be filled
(the buffer overflows, or the stream ends past it) raises :class:`StreamGap`: the copy is then
dropped with that reason, never handed on with bytes missing. Sequence numbers wrap at 2^32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEQ_MOD = 1 << 32
# Bytes that may wait beyond a hole (a reordered segment is usually filled within one RTT).
OUT_OF_ORDER_LIMIT = 1 << 20
# A segment starting this far beyond the expected sequence is not this stream's (or is lost).
WINDOW_LIMIT = 1 << 30


class StreamGap(Exception):
    """Bytes of the stream are missing for good (the message says where and why)."""


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in sequence space: negative when ``a`` comes before ``b`` (wrap-around)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


@dataclass
class Reassembly:
    """What one side of a connection sent, in order (see the module's docstring)."""

    next_seq: int
    """The sequence number of the next byte to hand on."""
    limit: int = OUT_OF_ORDER_LIMIT
    fin_seq: int | None = None
    """Where the stream ends (the FIN's sequence number), once a FIN was seen."""
    delivered: int = 0
    """Bytes handed on so far."""
    _pending: dict[int, bytes] = field(default_factory=dict)
    _pending_bytes: int = 0

    @classmethod
    def after_syn(cls, isn: int, limit: int = OUT_OF_ORDER_LIMIT) -> Reassembly:
        """The stream of a side whose SYN carried ``isn``."""
        return cls((isn + 1) % SEQ_MOD, limit)

    @property
    def finished(self) -> bool:
        """Has every byte up to the FIN been handed on?"""
        return self.fin_seq is not None and self.next_seq == self.fin_seq

    @property
    def waiting(self) -> int:
        """Bytes held beyond a hole."""
        return self._pending_bytes

    def segment(self, seq: int, data: bytes, fin: bool = False) -> bytes:
        """Take one segment; return the bytes it makes available in order (maybe none).
        Raises StreamGap when a hole can no longer be filled."""
        if fin:
            end = (seq + len(data)) % SEQ_MOD
            if self.fin_seq is None:
                self.fin_seq = end
            elif self.fin_seq != end:
                raise StreamGap(f"two FINs at different places ({self.fin_seq}, {end})")
        ahead = seq_diff(seq, self.next_seq)
        if ahead < 0:  # starts with bytes handed on already
            data = data[-ahead:] if -ahead < len(data) else b""
            ahead = 0
        if self.fin_seq is not None and data:
            beyond = seq_diff((self.next_seq + ahead + len(data)) % SEQ_MOD, self.fin_seq)
            if beyond > 0:
                raise StreamGap(f"{beyond} bytes after the stream's end (FIN)")
        if ahead > 0:
            self._hold(seq, data, ahead)
        elif data:
            out = [data]
            self._advance(len(data))
            out += self._drain()
            data = b"".join(out)
        self._check_end()
        return data if ahead == 0 else b""

    def close_check(self) -> None:
        """The stream ended (FIN or reset): StreamGap if bytes before its end are missing."""
        if self._pending:
            raise StreamGap(f"{self._pending_bytes} bytes arrived beyond a hole that was never "
                            f"filled (at sequence {self.next_seq})")
        if self.fin_seq is not None and not self.finished:
            raise StreamGap(f"{seq_diff(self.fin_seq, self.next_seq)} bytes before the end "
                            "were never seen")

    def discard(self) -> int:
        """Forget the bytes held beyond a hole; how many there were."""
        held, self._pending_bytes = self._pending_bytes, 0
        self._pending.clear()
        return held

    def _hold(self, seq: int, data: bytes, ahead: int) -> None:
        if not data:
            return
        if ahead > WINDOW_LIMIT:
            raise StreamGap(f"a segment {ahead} bytes beyond the expected sequence")
        if len(data) <= len(self._pending.get(seq, b"")):
            return  # (a retransmission of a segment held already)
        self._pending_bytes += len(data) - len(self._pending.get(seq, b""))
        self._pending[seq] = data
        if self._pending_bytes > self.limit:
            raise StreamGap(f"a hole at sequence {self.next_seq} not filled while "
                            f"{self._pending_bytes} bytes arrived beyond it")

    def _advance(self, n: int) -> None:
        self.next_seq = (self.next_seq + n) % SEQ_MOD
        self.delivered += n

    def _drain(self) -> list[bytes]:
        """Held segments that the stream reached now, in order."""
        out: list[bytes] = []
        progress = True
        while self._pending and progress:
            progress = False
            for seq in list(self._pending):
                ahead = seq_diff(seq, self.next_seq)
                if ahead > 0:
                    continue
                data = self._pending.pop(seq)
                self._pending_bytes -= len(data)
                if -ahead < len(data):
                    data = data[-ahead:]
                    out.append(data)
                    self._advance(len(data))
                progress = True
        return out

    def _check_end(self) -> None:
        if self.fin_seq is not None and seq_diff(self.next_seq, self.fin_seq) > 0:
            raise StreamGap("the stream went on past its FIN")

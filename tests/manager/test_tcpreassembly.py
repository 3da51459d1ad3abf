"""A mirror's TCP reassembly (``tcpreassembly``): one client's stream put back in order from
segments as a packet socket sees them — out of order, repeated, cut, across 2^32."""

from __future__ import annotations

import pytest
from kdiag_manager.tcpreassembly import SEQ_MOD, Reassembly, StreamGap, seq_diff


def _feed(stream: Reassembly, segments: list[tuple[int, bytes]], fin_at: int = -1) -> bytes:
    out = b""
    for i, (seq, data) in enumerate(segments):
        out += stream.segment(seq % SEQ_MOD, data, fin=i == fin_at)
    return out


def test_in_order_segments_come_out_at_once() -> None:
    s = Reassembly.after_syn(1000)
    assert s.segment(1001, b"GET / ") == b"GET / "
    assert s.segment(1007, b"HTTP/1.1\r\n") == b"HTTP/1.1\r\n"
    assert s.delivered == 16 and not s.finished


def test_out_of_order_segments_wait_for_the_hole() -> None:
    s = Reassembly.after_syn(0)
    assert s.segment(6, b"world") == b""  # (1..5 missing)
    assert s.segment(11, b"!") == b""
    assert s.waiting == 6
    assert s.segment(1, b"hello") == b"helloworld!"
    assert s.waiting == 0 and s.next_seq == 12


def test_duplicates_and_overlaps_are_dropped() -> None:
    s = Reassembly.after_syn(99)
    assert s.segment(100, b"abcdef") == b"abcdef"
    assert s.segment(100, b"abcdef") == b""  # a retransmission
    assert s.segment(103, b"defgh") == b"gh"  # overlaps: only what is new
    assert s.segment(105, b"") == b""  # a keep-alive probe (no data)
    assert s.segment(104, b"e") == b""  # a keep-alive probe with one old byte
    held = Reassembly.after_syn(0)
    held.segment(4, b"dd")
    held.segment(4, b"dd")  # the same segment held twice counts once
    assert held.waiting == 2
    assert held.segment(1, b"abc") == b"abcdd"


def test_fin_ends_the_stream_once_every_byte_came() -> None:
    s = Reassembly.after_syn(10)
    assert s.segment(16, b"", fin=True) == b""  # a bare FIN, ahead of the data
    assert not s.finished
    with pytest.raises(StreamGap, match="5 bytes before the end were never seen"):
        s.close_check()
    assert s.segment(11, b"first") == b"first"
    assert s.finished
    s.close_check()  # whole
    t = Reassembly.after_syn(10)
    assert t.segment(16, b"end", fin=True) == b""  # the last data with the FIN, early
    assert t.segment(11, b"first") == b"firstend" and t.finished


def test_a_hole_never_filled_is_a_gap_with_its_reason() -> None:
    s = Reassembly.after_syn(0, limit=100)
    assert s.segment(1, b"ok") == b"ok"
    s.segment(10, b"x" * 60)
    with pytest.raises(StreamGap, match="a hole at sequence 3 not filled while 120 bytes"):
        s.segment(70, b"y" * 60)
    cut = Reassembly.after_syn(0)
    cut.segment(5, b"late")
    with pytest.raises(StreamGap, match="4 bytes arrived beyond a hole"):
        cut.close_check()


def test_bytes_after_the_fin_or_far_beyond_are_refused() -> None:
    s = Reassembly.after_syn(0)
    s.segment(1, b"ab", fin=True)
    with pytest.raises(StreamGap, match="after the stream's end"):
        s.segment(3, b"more")
    with pytest.raises(StreamGap, match="beyond the expected sequence"):
        Reassembly.after_syn(0).segment(1 + (1 << 31) - 10, b"far")


def test_sequence_numbers_wrap_at_2_to_the_32() -> None:
    isn = SEQ_MOD - 4  # the data starts 3 bytes before the wrap
    s = Reassembly.after_syn(isn)
    first, second, third = (isn + 1, b"abcde"), (isn + 6, b"fgh"), (isn + 9, b"ij")
    assert _feed(s, [third, first, second], fin_at=0) == b"abcdefghij"
    assert s.next_seq == (isn + 11) % SEQ_MOD == 7
    assert s.finished
    assert seq_diff(2, SEQ_MOD - 2) == 4 and seq_diff(SEQ_MOD - 2, 2) == -4


def test_discard_forgets_what_waits() -> None:
    s = Reassembly.after_syn(0)
    s.segment(9, b"held")
    assert s.discard() == 4 and s.waiting == 0 and s.discard() == 0

"""The manager's side of a mirror's copy stream (``copystream``, ``mirrorcopy``): pieces of many
copies in few messages, in order per copy, bounded memory, drops that travel on the stream."""

from __future__ import annotations

from collections.abc import Callable

from kdiag_manager.copystream import MESSAGE_BYTES, CopyStream, StreamTaken
from kdiag_manager.mirrorcopy import Budget
from kdiag_manager.wire.api.v1 import manager_pb2 as pb


class _Call:
    """What the stream's handler uses of its call: the end-of-call callback."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, fn: Callable[[], None]) -> bool:
        self.callbacks.append(fn)
        return True

    def end(self) -> None:
        for fn in self.callbacks:
            fn()


def _sent_then_closed(stream: CopyStream) -> list[bytes]:
    """Every message of ``stream`` (the CLI's side opened it, then the mirror ended)."""
    messages = stream.serve(_Call().add_callback, lambda: None)
    first = next(messages)  # (something is queued: the stream is open now)
    stream.close()
    return [first, *messages]


def _chunks(messages: list[bytes]) -> list[pb.CopyChunk]:
    out = []
    for raw in messages:
        frame = pb.TunnelFrame.FromString(raw)
        assert frame.WhichOneof("msg") == "copies"
        out.extend(frame.copies.chunks)
    return out


def _whole(chunks: list[pb.CopyChunk]) -> dict[int, bytes]:
    """Each copy's bytes, put together in the order of its pieces (only ended copies)."""
    data: dict[int, bytes] = {}
    ended = set()
    for c in chunks:
        assert c.copy_id not in ended, "a piece after the copy's end"
        data[c.copy_id] = data.get(c.copy_id, b"") + c.data
        if c.end:
            ended.add(c.copy_id)
    return {k: v for k, v in data.items() if k in ended}


def test_many_copies_go_in_few_messages_each_whole_and_in_order() -> None:
    budget = Budget(64 << 20)
    stream = CopyStream(lambda: None, budget)
    sent: dict[int, bytes] = {}
    copies = [stream.new_copy(i, ("10.0.0.1", 8080), ("10.0.0.2", 40000 + i))
              for i in range(1, 101)]
    for round_ in range(5):
        for c in copies:
            piece = f"{c.id}:{round_};".encode() * (2000 if c.id == 1 else 3)
            c.feed(piece)
            sent[c.id] = sent.get(c.id, b"") + piece
        if round_ % 2:  # (two rounds' pieces in one take)
            stream.pump()
    for c in copies:
        c.end()
    stream.pump()
    messages = _sent_then_closed(stream)
    chunks = _chunks(messages)
    assert _whole(chunks) == sent
    assert len(messages) <= 12  # (5 pumps of 100 copies, and the ends: not one per piece)
    assert all(len(m) <= MESSAGE_BYTES + 16 * 1024 for m in messages)
    firsts = {}
    for c in chunks:
        firsts.setdefault(c.copy_id, c)
    assert firsts[7].peer.port == 40007 and firsts[7].original_destination.port == 8080
    assert budget.used == 0


def test_a_copy_larger_than_a_message_spans_several() -> None:
    budget = Budget(64 << 20)
    stream = CopyStream(lambda: None, budget)
    copy = stream.new_copy(1, ("a", 1), ("b", 2))
    data = bytes(range(256)) * 4096  # 1 MiB
    copy.feed(data)
    copy.end()
    stream.pump()
    messages = _sent_then_closed(stream)
    assert len(messages) == 4
    assert _whole(_chunks(messages)) == {1: data}


def test_a_stream_that_does_not_keep_up_drops_copies_with_the_reason_never_waits() -> None:
    """Nothing reads the stream: bytes pile up to the budget, then copies are dropped (their
    drop queued like a piece); once the stream is read, all is accounted for."""
    budget = Budget(1 << 20)
    stream = CopyStream(lambda: None, budget)
    copies = [stream.new_copy(i, ("a", 1), ("b", 2)) for i in range(1, 5)]
    for c in copies:
        c.feed(b"x" * (400 << 10))
        stream.pump()
    assert [bool(c.dropped) for c in copies] == [False, False, True, True]
    assert "fell behind" in copies[2].dropped
    for c in copies:
        c.end()
    stream.pump()
    chunks = _chunks(_sent_then_closed(stream))
    assert sorted(_whole(chunks)) == [1, 2]
    assert sorted(c.copy_id for c in chunks if c.dropped) == [3, 4]
    assert budget.used == 0


def test_the_stream_ending_first_tells_the_mirror_and_frees_what_waited() -> None:
    budget = Budget(64 << 20)
    stream = CopyStream(lambda: None, budget)
    call, gone = _Call(), []
    messages = stream.serve(call.add_callback, lambda: gone.append(1))
    copy = stream.new_copy(1, ("a", 1), ("b", 2))
    copy.feed(b"y" * 1000)
    stream.pump()
    assert next(messages)
    copy.feed(b"z" * 1000)
    stream.pump()
    call.end()  # the CLI's side is gone
    assert gone == [1]
    assert list(messages) == []
    assert budget.used == 0
    try:
        next(stream.serve(_Call().add_callback, lambda: None))
    except StreamTaken:
        pass
    else:
        raise AssertionError("a second copy stream for one mirror was accepted")


def test_a_closed_stream_ending_does_not_count_as_gone() -> None:
    stream = CopyStream(lambda: None, Budget(1 << 20))
    call, gone = _Call(), []
    messages = stream.serve(call.add_callback, lambda: gone.append(1))
    stream.close()
    assert list(messages) == []
    call.end()
    assert gone == []


def test_what_waited_for_a_stream_never_opened_is_let_go() -> None:
    """A mirror whose copy stream never opened (its CLI gone first) leaves nothing counted in
    the manager's budget, which every later mirror shares."""
    budget = Budget(1 << 20)
    stream = CopyStream(lambda: None, budget)
    copy = stream.new_copy(1, ("a", 1), ("b", 2))
    copy.feed(b"q" * 5000)
    stream.pump()
    assert budget.used == 5000
    stream.close()
    assert budget.used == 0

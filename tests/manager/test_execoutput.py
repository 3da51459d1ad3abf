"""Exec output between real pipes and a consumer: bounded read-ahead, the drain after exit."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from kdiag_manager import execoutput
from kdiag_manager.execoutput import Output

PIPE_SIZE = 64 * 1024  # Linux's default pipe capacity


def _writer(fd: int, total: int, written: list[int], block: bytes = b"x" * 4096) -> None:
    try:
        left = total
        while left:
            n = os.write(fd, block[:left])
            written[0] += n
            left -= n
    finally:
        os.close(fd)


def test_a_slow_consumer_holds_the_writer_back_and_gets_every_byte() -> None:
    """The readers never run more than the queue (plus one chunk each) ahead of the consumer:
    the writer blocks on the full pipe instead, and every byte arrives in order."""
    total = 8 << 20
    r, w = os.pipe()
    written = [0]
    out = Output(max_chunks=4)
    out.add_reader(r, "stdout")
    out.start()
    writer = threading.Thread(target=_writer, args=(w, total, written))
    writer.start()
    sent = hashlib.sha256(b"x" * total).hexdigest()
    got = hashlib.sha256()
    consumed = 0
    ahead = []
    for kind, data in out.stream(lambda: 0 if not writer.is_alive() else None):
        assert kind == "stdout"
        consumed += len(data)
        got.update(data)
        ahead.append(written[0] - consumed)
        time.sleep(0.0005)
    writer.join()
    assert consumed == total and got.hexdigest() == sent
    bound = (4 + 1) * execoutput.CHUNK + PIPE_SIZE + 4096
    assert max(ahead) <= bound, f"read {max(ahead)} bytes ahead of the consumer"


def test_quiet_pipes_held_open_after_exit_end_the_stream_after_the_grace() -> None:
    r, w = os.pipe()
    out = Output(grace=0.3)
    out.add_reader(r, "stdout")
    out.start()
    os.write(w, b"before exit\n")
    t0 = time.monotonic()
    items = list(out.stream(lambda: 0))  # the main process has exited; w stays open
    assert items == [("stdout", b"before exit\n")]
    assert 0.25 < time.monotonic() - t0 < 2
    os.close(w)


def test_a_background_writer_is_cut_after_the_limit_and_the_cut_is_said() -> None:
    r, w = os.pipe()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            try:
                os.write(w, b"more\n")
            except OSError:
                return
            time.sleep(0.01)

    thread = threading.Thread(target=chatter)
    thread.start()
    out = Output(grace=0.3, limit=0.8)
    out.add_reader(r, "stdout")
    out.start()
    t0 = time.monotonic()
    items = list(out.stream(lambda: 0))
    elapsed = time.monotonic() - t0
    stop.set()
    thread.join()
    os.close(w)
    assert 0.75 < elapsed < 3
    assert items[-1][0] == "stderr" and b"no longer read" in items[-1][1]
    assert all(data == b"more\n" * (len(data) // 5) for kind, data in items[:-1])


def test_abandon_stops_the_readers_and_closes_their_pipes() -> None:
    r, w = os.pipe()
    out = Output(max_chunks=1)
    out.add_reader(r, "stdout")
    out.start()
    os.write(w, b"a" * 150_000)  # more than the queue holds: the reader waits to put
    out.abandon()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.fstat(r)
        except OSError:
            break  # closed by the reader
        time.sleep(0.02)
    else:
        raise AssertionError("the reader did not stop")
    os.close(w)

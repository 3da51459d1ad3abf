"""A command's output on its way to the client: pipe readers, a bounded queue, the drain.

Flow control end to end: the readers block when the queue is full, so the command blocks on
its pipe while the client reads slowly (gRPC's send waits for the client's flow-control
window). Memory stays bounded however much the command prints, and nothing is dropped while
the client is there.

After the main process exits, background children may still hold the pipes open (they are not
killed, as with ``kubectl exec``). The stream goes on until both pipes reach EOF, or until no new
output came for :data:`DRAIN_GRACE` with nothing left queued (so a slow client never ends it
early), or :data:`DRAIN_LIMIT` after the exit (a background process that keeps writing): then
a note on stderr says the output was cut. What the readers already read is always delivered.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator

CHUNK = 64 * 1024
QUEUE_CHUNKS = 16  # at most 1 MiB read ahead of the client (plus one chunk per reader)
DRAIN_GRACE = 1.0
DRAIN_LIMIT = 30.0
WAKE_INTERVAL = 0.25  # how soon a reader notices it should stop
CUT_NOTE = ("\nkdiag: output no longer read {limit:g}s after the command exited: a background "
            "process still writes to it\n")

Item = tuple[str, bytes]


class Output:
    """Readers of a command's pipes (or pty) and the queue between them and the response
    stream: :meth:`add_reader` each, :meth:`start`, then iterate :meth:`stream`."""

    def __init__(self, max_chunks: int = QUEUE_CHUNKS, grace: float = DRAIN_GRACE,
                 limit: float = DRAIN_LIMIT) -> None:
        self._queue: queue.Queue[Item | None] = queue.Queue(max_chunks)
        self._grace = grace
        self._limit = limit
        self._stop_reading = threading.Event()  # no new reads (what is read is delivered)
        self._gone = threading.Event()  # the client is gone: drop everything
        self._threads: list[threading.Thread] = []

    def add_reader(self, fd: int, kind: str) -> None:
        """Read ``fd`` (closed at its end) as ``kind`` ("stdout"/"stderr")."""
        self._threads.append(threading.Thread(target=self._read, args=(fd, kind), daemon=True,
                                              name=f"exec-{kind}"))

    def start(self) -> None:
        """Start the readers."""
        for thread in self._threads:
            thread.start()

    def abandon(self) -> None:
        """The call ended (client gone, cancelled): readers stop and drop what they hold."""
        self._gone.set()
        self._stop_reading.set()

    def _read(self, fd: int, kind: str) -> None:
        poller = select.poll()  # not select(): the manager may hold more than 1024 descriptors
        poller.register(fd, select.POLLIN)
        try:
            while not self._stop_reading.is_set():
                if not poller.poll(WAKE_INTERVAL * 1000):
                    continue
                try:
                    data = os.read(fd, CHUNK)
                except OSError:  # EIO on a pty whose other side closed
                    break
                if not data or not self._put((kind, data)):
                    break
        finally:
            os.close(fd)
            self._put(None)

    def _put(self, item: Item | None) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the client is gone."""
        while not self._gone.is_set():
            try:
                self._queue.put(item, timeout=WAKE_INTERVAL)
                return True
            except queue.Full:
                continue
        return False

    def stream(self, exit_status: Callable[[], int | None]) -> Iterator[Item]:
        """The output as it comes, until the end described in the module's docstring
        (``exit_status``: the main process's, None while it runs)."""
        open_readers = len(self._threads)
        exited_at: float | None = None
        cut = False
        while open_readers:
            if exited_at is None and exit_status() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > self._limit:
                cut = True
                break
            try:
                item = self._queue.get(timeout=0.1 if exited_at is None else self._grace)
            except queue.Empty:
                if exited_at is None:
                    continue
                break  # quiet since the exit, nothing queued: background processes hold them
            if item is None:
                open_readers -= 1
            else:
                yield item
        self._stop_reading.set()
        yield from self._rest()
        if cut:
            yield "stderr", CUT_NOTE.format(limit=self._limit).encode()

    def _rest(self) -> Iterator[Item]:
        """What the readers still hold or have queued, once they stop reading."""
        while any(t.is_alive() for t in self._threads) or not self._queue.empty():
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is not None:
                yield item

"""A mirror's header filter: of what a client sent (reassembled from its packets), only the HTTP
requests carrying the header go into the copy.

The client's bytes are fed in as they come (never blocking the feeder); a worker thread reads
them as an HTTP/1.x request stream with the header-filtered redirect's parser
(``httpio.Reader``: one head, then a body framed by ``Content-Length`` or chunked) and
copies each matching request, head and body, into one copy per connection. A stream that does
not start with an HTTP/1.x request is not copied; after a request that may switch protocols
(``Upgrade``, ``CONNECT``) nothing more is copied, as the bytes that follow are no longer
requests.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from . import httpfilter, httprouter
from .httpio import HttpError, Reader
from .mirrorcopy import COPY_LIMIT, Copy
from .wire.workers import Workers

log = logging.getLogger(__name__)

# Request parsers (one per connection while its stream goes on).
WORKERS = Workers("mirror-http", max_idle=16)


class _Feed:
    """Bytes on their way from the packet reader to the parser (``recv`` blocks for them)."""

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._limit = limit
        self._ended = False
        self.overflowed = False

    def put(self, data: bytes) -> bool:
        """Queue ``data`` (False: the parser fell behind by more than the limit)."""
        with self._cond:
            if self._ended:
                return True
            if self._queued + len(data) > self._limit:
                self.overflowed = True
                self._ended = True
                self._cond.notify()
                return False
            self._chunks.append(data)
            self._queued += len(data)
            self._cond.notify()
            return True

    def end(self) -> None:
        """No more bytes: ``recv`` returns b"" once the queue is empty."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    def recv(self, bufsize: int, /) -> bytes:
        with self._cond:
            while not self._chunks and not self._ended:
                self._cond.wait()
            if self.overflowed or not self._chunks:
                return b""
            data = self._chunks.popleft()
            self._queued -= len(data)
            return data


class HeaderCopier:
    """Copies the matching requests of one client's stream (see the module's docstring)."""

    def __init__(self, header: tuple[str, str], new_copy: Callable[[], Copy]) -> None:
        self._header = header
        self._new_copy = new_copy
        self._feed = _Feed(COPY_LIMIT)
        self._lock = threading.Lock()
        self.copy: Copy | None = None
        self._gave_up = ""
        WORKERS.submit(self._parse)

    def feed(self, data: bytes) -> None:
        """The client's next bytes, in order."""
        if not self._feed.put(data):
            self.give_up("the header filter fell behind")

    def end(self) -> None:
        """The client's stream is over."""
        self._feed.end()

    def give_up(self, reason: str) -> None:
        """Bytes are missing: the copy (if any) is dropped, nothing more is copied."""
        with self._lock:
            self._gave_up = self._gave_up or reason
            copy = self.copy
        self._feed.end()
        if copy is not None:
            copy.drop(reason)

    def _copy(self) -> Copy:
        with self._lock:
            if self.copy is None:
                self.copy = self._new_copy()
                if self._gave_up:
                    self.copy.drop(self._gave_up)
            return self.copy

    def _parse(self) -> None:
        reader = Reader(self._feed)
        try:
            while True:
                raw = reader.head()
                if raw is None:
                    return
                head = httpfilter.parse_head(raw)
                if head is None:
                    return  # not (or no longer) HTTP/1.x requests: nothing more is copied
                framing = httprouter.request_framing(head)
                if httpfilter.matches(head, *self._header):
                    into = self._copy()
                    into.feed(raw)
                    httprouter.copy_body(reader, framing, into.feed)
                else:
                    httprouter.copy_body(reader, framing, lambda data: None)
                if head.method == "CONNECT" or head.header("Upgrade"):
                    return
        except HttpError as exc:
            log.info("mirror: stopped copying a connection's requests: %s", exc)
        finally:
            with self._lock:
                last = self.copy
            if last is not None:
                last.end()

"""The manager's memory under load: a compact allocator, and freed memory returned after a burst.

A burst of redirected connections (two threads each, a buffer per direction) leaves freed
memory behind that glibc keeps: 200 connections moving 4 MiB each at once took the manager
from 40 to 110-150 MB, and it stayed there. Two causes, two remedies:

- glibc gives threads that allocate at the same time arenas of their own, up to eight per
  core, and keeps each arena's free space. The manager's threads mostly wait on sockets and
  allocate holding the GIL, so they gain nothing from more than :data:`ARENAS`.
- Freed pages stay with the process until ``malloc_trim(0)``: :class:`Load` counts the data
  pumps running and trims once they fall to a quarter of their peak (a burst is over).

Measured with ``make bench`` (``manager.rss_peak_load_mb``, ``manager.rss_after_load_mb``); the
buffers themselves are bounded by the lane's sending budget (``wire.lane``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from . import sysutil

ARENAS = 2
TRIM_AFTER_PEAK = 8
"""A burst worth trimming after: at least this many pumps at once."""


def tune() -> None:
    """Limit glibc's arenas (call early: arenas already made stay)."""
    sysutil.limit_malloc_arenas(ARENAS)


class Load:
    """The data pumps running now; memory goes back to the kernel after a burst."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self._peak = 0

    @contextlib.contextmanager
    def pump(self) -> Iterator[None]:
        """Count the body as a running pump."""
        with self._lock:
            self.active += 1
            self._peak = max(self._peak, self.active)
        try:
            yield
        finally:
            self._leave()

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1
            burst_over = self._peak >= TRIM_AFTER_PEAK and self.active <= self._peak // 4
            if burst_over:
                self._peak = self.active
        if burst_over:
            sysutil.release_free_memory()


LOAD = Load()

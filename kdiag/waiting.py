"""Waits on the main thread that Ctrl-C (SIGINT, and SIGTERM made into it) ends at once.

Python runs signal handlers on the main thread only, between bytecodes, but the kernel hands a
signal sent to the process to any thread that does not block it. When it picks another thread
(a pump blocked in a read, a step's worker), a main thread blocked on a lock or an Event with
no timeout is not woken: the KeyboardInterrupt waits until that wait ends by itself. A
`sleep 30` step then ignored Ctrl-C for its whole 30 s, about one run in 15 on a busy machine.
Waiting in short slices bounds the delay to one slice.
"""

from __future__ import annotations

import threading
import time

SLICE = 0.1
"""Longest a pending Ctrl-C waits for the main thread (seconds)."""


def wait_event(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, waking every :data:`SLICE` so that a signal delivered to
    another thread is handled now (KeyboardInterrupt is raised from here)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
        if left <= 0:
            return event.is_set()
        if event.wait(left):
            return True

"""Best-effort work that must not compete with the target's own: the calling thread's CPU
priority lowered (a higher nice value, for this thread only).

A mirror's copies are taken beside the app, on the same CPUs: on a busy node the app's threads
must come first, and the copies take what CPU is left (they are bounded and dropped, counted,
when they fall behind). Nice 10 gives such a thread about a tenth of the CPU share of a thread
at nice 0 when both want to run, and all it wants when the CPU is idle: enough for thousands
of copies a second even beside a CPU hog on every core (``tests/node`` run under
``stress-ng``), while the app's requests are rarely preempted by the copies' work.
"""

from __future__ import annotations

import os
import threading

BACKGROUND_NICE = 10


def lower_this_thread(nice: int = BACKGROUND_NICE) -> None:
    """Make the calling thread's nice value at least ``nice`` (Linux: per thread; elsewhere,
    or where it is not allowed, nothing changes)."""
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError):
        pass

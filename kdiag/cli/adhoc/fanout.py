"""Ad-hoc commands on every ready pod of a target (``--all``): the work on each pod at once
(at most :data:`PARALLEL`), and their output line by line, each line prefixed ``[pod]``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar

from kdiag.targets.base import Fleet, Replica

PARALLEL = 10
T = TypeVar("T")


class Prefixed:
    """Writes each pod's output whole lines at a time, prefixed ``[pod]`` (a line of one pod
    never cuts into another's); :meth:`flush` writes what is left of unfinished lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial: dict[tuple[str, str], bytes] = {}

    def write(self, pod: str, stream: str, data: bytes) -> None:
        """A chunk of ``pod``'s ``stream`` (``stdout`` or ``stderr``)."""
        with self._lock:
            pending = self._partial.pop((pod, stream), b"") + data
            *lines, rest = pending.split(b"\n")
            if rest:
                self._partial[(pod, stream)] = rest
            if lines:
                prefix = f"[{pod}] ".encode()
                self._out(stream).write(b"".join(prefix + line + b"\n" for line in lines))
                self._out(stream).flush()

    def line(self, pod: str, text: str, stream: str = "stdout") -> None:
        """One whole line of ``pod``."""
        self.write(pod, stream, text.encode() + b"\n")

    def flush(self) -> None:
        """Write the unfinished lines."""
        with self._lock:
            pending, self._partial = self._partial, {}
            for (pod, stream), rest in pending.items():
                self._out(stream).write(f"[{pod}] ".encode() + rest + b"\n")
                self._out(stream).flush()

    @staticmethod
    def _out(stream: str) -> BinaryIO:
        return sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer


def each(fleet: Fleet, work: Callable[[Replica, Any], T], parallel: int = PARALLEL
         ) -> list[tuple[Replica, T | Exception]]:
    """``work(replica, session)`` on every pod of ``fleet`` at once (the session opened for
    it), in the pods' order; an exception stands for its pod's result."""

    def one(replica: Replica) -> T | Exception:
        try:
            return work(replica, fleet.open(replica))
        except Exception as exc:
            return exc

    replicas = fleet.replicas()
    if not replicas:
        return []
    with ThreadPoolExecutor(min(parallel, len(replicas)), thread_name_prefix="pod") as pool:
        return list(zip(replicas, pool.map(one, replicas), strict=True))

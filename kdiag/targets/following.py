"""Work kept up on every pod of a fleet (a redirect, a capture), following the fleet.

A pod that joins gets the work (``start``); a pod whose work breaks is asked about
(:meth:`~kdiag.targets.base.Fleet.settle`): when the pod went away, its work is dropped and
noted, and everything goes on; when the pod is still there, the work itself was lost, and the
:attr:`Following.lifeline` fails with the pod named. So does a joining pod that cannot get the
work (unless it went away meanwhile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kdiag.errors import EXIT_ENVIRONMENT
from kdiag.lifeline import Lifeline, Loss

from .base import Fleet, Replica

log = logging.getLogger(__name__)

SETTLE_WAIT = 3.0
"""Seconds a pod's broken work waits for the cluster to say the pod went away (then it is
dropped, not failed)."""
STOP_WORKERS = 10


def lifeline_of(work: Any) -> Lifeline | None:
    """The work's lifeline, if it has one."""
    lifeline = getattr(work, "lifeline", None)
    return lifeline if isinstance(lifeline, Lifeline) else None


class Following:
    """``what`` (e.g. ``redirect``) on every pod of ``fleet``.

    ``start(replica)`` starts the work on a joining pod and returns it (something with
    ``stop()`` and a ``lifeline``), or raises; ``note(text)`` hears what happened;
    ``dropped(replica, cause)`` that a pod's work was dropped (the pod went away).
    """

    def __init__(self, fleet: Fleet, what: str, start: Callable[[Replica], Any],
                 note: Callable[[str], None],
                 dropped: Callable[[Replica, str], None] = lambda replica, cause: None) -> None:
        self.fleet = fleet
        self.what = what
        self.lifeline = Lifeline()
        self._start = start
        self._note = note
        self._dropped = dropped
        self._lock = threading.Lock()
        self._works: dict[str, Any] = {}
        self._stopped = False
        self._forget_join: Callable[[], None] | None = None
        self._starting: set[str] = set()  # pods whose work is being started
        # Pods whose work was dropped, by identity: a snapshot of replicas() taken before the
        # drop (follow()'s catch-up) must not start it again, while a new pod of the same name
        # (a StatefulSet's) is another replica and does get it.
        self._left: list[Replica] = []

    def add(self, replica: Replica, work: Any) -> None:
        """Keep ``work`` (on ``replica``) up and watch it."""
        with self._lock:
            if self._stopped:
                stopping = True
            else:
                stopping = False
                self._works[replica.name] = work
        if stopping:
            _stop_quietly(work)
            return
        lifeline = lifeline_of(work)
        if lifeline is not None:
            lifeline.listen(lambda loss: threading.Thread(
                target=self._lost, args=(replica, loss), daemon=True,
                name=f"following-{replica.name}").start())

    def follow(self) -> None:
        """Start the work on each pod that joins the fleet from now on, and on each pod that
        joined while the work started on the first ones (before anyone listened)."""
        self._forget_join = self.fleet.on_join(self._joined)
        for replica in self.fleet.replicas():
            self._joined(replica)

    def _claim(self, replica: Replica) -> bool:
        """Whether the work is to be started on ``replica`` by this caller (once a pod)."""
        with self._lock:
            if (self._stopped or replica.name in self._works or replica.name in self._starting
                    or replica.gone or any(r is replica for r in self._left)):
                return False
            self._starting.add(replica.name)
            return True

    def _joined(self, replica: Replica) -> None:
        if not self._claim(replica):
            return
        try:
            self._join(replica)
        finally:
            with self._lock:
                self._starting.discard(replica.name)

    def _join(self, replica: Replica) -> None:
        try:
            work = self._start(replica)
        except Exception as exc:
            gone = self.fleet.settle(replica, str(exc), SETTLE_WAIT)
            if gone:
                self._drop(replica, gone)
            elif not self._stopped:
                environmental = getattr(exc, "exit_code", None) == EXIT_ENVIRONMENT
                self.lifeline.fail(f"{replica.name} joined {self.fleet.label} but its "
                                   f"{self.what} failed: {exc}", environmental=environmental)
            return
        self.add(replica, work)
        if not self._stopped:
            self._note(f"{replica.name} joined {self.fleet.label}: its {self.what} is up")

    def _lost(self, replica: Replica, loss: Loss) -> None:
        if self._stopped:
            return
        gone = self.fleet.settle(replica, loss.cause, SETTLE_WAIT)
        if gone:
            self._drop(replica, gone)
        elif not self._stopped:
            self.lifeline.fail(f"{replica.name}: {loss.cause}", environmental=loss.environmental)

    def _drop(self, replica: Replica, cause: str) -> None:
        """The pod went away: its work is noted and dropped, the rest goes on."""
        with self._lock:
            work = self._works.pop(replica.name, None)
            self._left.append(replica)
        self._dropped(replica, cause)
        if work is not None:
            _stop_quietly(work)
        if not self._stopped:
            self._note(f"{cause}: its {self.what} is dropped")

    def stop(self) -> list[str]:
        """Stop following and stop every pod's work (concurrently); what failed to stop,
        each ``pod: error``."""
        with self._lock:
            self._stopped = True
            works = dict(self._works)
            self._works.clear()
        if self._forget_join is not None:
            self._forget_join()
        errors: list[str] = []

        def stop_one(item: tuple[str, Any]) -> None:
            try:
                item[1].stop()
            except Exception as exc:
                errors.append(f"{item[0]}: {exc}")

        if works:
            with ThreadPoolExecutor(min(len(works), STOP_WORKERS)) as pool:
                list(pool.map(stop_one, works.items()))
        return sorted(errors)


def _stop_quietly(work: Any) -> None:
    try:
        work.stop()
    except Exception as exc:  # the pod went away, or its step failed: said already
        log.info("stopping a pod's work: %s", exc)

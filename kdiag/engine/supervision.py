"""Watching background work and the target while a run goes on.

Each background step's work and the target session have a :class:`~kdiag.lifeline.Lifeline`.
The supervisor listens to them (it is called back from the thread that saw the death, so
nothing polls): a death is emitted as a :class:`~kdiag.engine.events.BackgroundFailed` at once
and, unless the step has ``continue_on_error``, becomes the run's *fatal* failure. The step
running at that moment is woken (its wait ends, its ``cancelled`` is set) and cut; the runner
then skips the rest and runs the ``finally`` steps, during which the supervisor is disarmed
(they are not cut, but steps needing a lost target fail at once).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from kdiag.engine.events import TARGET, BackgroundFailed, RunStatus, StepRef
from kdiag.lifeline import EXPLAIN_WAIT, Lifeline, Loss


def status_of(failure: BackgroundFailed) -> RunStatus:
    """The run's status for a fatal failure: ``error`` (exit 3) or ``failed`` (exit 1)."""
    return "error" if failure.environmental else "failed"


class Supervisor:
    """Listens to lifelines; ``emit`` receives every failure (from the thread that saw it)."""

    def __init__(self, emit: Callable[[BackgroundFailed], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._fatal: BackgroundFailed | None = None
        self._claimed = False
        self._wakers: list[threading.Event] = []
        self._disarmed = 0
        self._closed = False
        self._target: Lifeline | None = None
        self._forget: list[Callable[[], None]] = []
        self._watches: list[_Watch] = []

    # -- what the runner asks -----------------------------------------------------------

    @property
    def fatal(self) -> BackgroundFailed | None:
        """The first failure that ends the run (None while all is well)."""
        return self._fatal

    def fatal_now(self) -> BackgroundFailed | None:
        """The fatal failure, if steps are to be cut now (not during ``finally`` steps)."""
        with self._lock:
            return self._fatal if not self._disarmed else None

    @property
    def target_loss(self) -> Loss | None:
        """Why the target was lost, if it was."""
        return self._target.loss if self._target is not None else None

    @contextlib.contextmanager
    def disarmed(self) -> Iterator[None]:
        """Steps run inside (the ``finally`` steps) are not cut by a failure."""
        with self._lock:
            self._disarmed += 1
        try:
            yield
        finally:
            with self._lock:
                self._disarmed -= 1

    @contextlib.contextmanager
    def waking(self, *events: threading.Event) -> Iterator[None]:
        """Set ``events`` when a fatal failure comes (at once if one already has) while the
        body runs; nothing is set while disarmed."""
        with self._lock:
            if self._disarmed:
                events = ()
            elif self._fatal is not None:
                for event in events:
                    event.set()
            self._wakers.extend(events)
        try:
            yield
        finally:
            with self._lock:
                for event in events:
                    self._wakers.remove(event)

    # -- what is watched ----------------------------------------------------------------

    def watch_target(self, lifeline: Lifeline) -> None:
        """Watch the target session: its loss is fatal (and environmental), and takes the
        background work that goes through its manager with it."""
        self._target = lifeline

        def lost(loss: Loss) -> None:
            self._failed(BackgroundFailed(TARGET, loss.cause, loss.at, True))
            with self._lock:
                gone = [w for w in self._watches if w.uses_target]
            for watched in gone:  # their streams may take a while to notice
                watched.report(loss.cause, loss.at, True)

        self._forget.append(lifeline.listen(lost))

    def watch(self, ref: StepRef, lifeline: Lifeline, *, ignored: bool,
              uses_target: bool) -> Callable[[], None]:
        """Watch the work of background step ``ref``; returns a function that stops watching
        (call it before stopping the work on purpose). ``uses_target``: the work goes through
        the manager, so the target's own cause is the better one when it follows shortly."""
        watched = _Watch(ref, ignored, uses_target, self._failed)

        def lost(loss: Loss) -> None:
            cause = loss.cause
            target = self._target
            if uses_target and loss.environmental and target is not None:
                found = target.wait(EXPLAIN_WAIT)
                if found is not None:
                    cause = found.cause
            watched.report(cause, loss.at, loss.environmental)

        with self._lock:
            self._watches.append(watched)
        forget = lifeline.listen(lost)
        self._forget.append(forget)

        def unwatch() -> None:
            watched.reported.set()
            forget()
            with self._lock:
                if watched in self._watches:
                    self._watches.remove(watched)

        return unwatch

    def close(self) -> None:
        """Stop listening (the run ends: what stops from now on is stopped on purpose)."""
        with self._lock:
            self._closed = True
            forget, self._forget = self._forget, []
        for call in forget:
            call()

    def _failed(self, failure: BackgroundFailed) -> None:
        with self._lock:
            if self._closed:
                return
            first = not failure.ignored and not self._claimed
            self._claimed = self._claimed or first
        self._emit(failure)  # before the runner can see it: reports show the cause first
        if first:
            with self._lock:
                self._fatal = failure
                for event in self._wakers:
                    event.set()


class _Watch:
    """One watched background step; its failure is reported once (by its own lifeline, or
    by the target's loss), never after it was stopped on purpose."""

    def __init__(self, ref: StepRef, ignored: bool, uses_target: bool,
                 failed: Callable[[BackgroundFailed], None]) -> None:
        self.ref = ref
        self.ignored = ignored
        self.uses_target = uses_target
        self.reported = threading.Event()
        self._failed = failed
        self._lock = threading.Lock()

    def report(self, cause: str, at: float, environmental: bool) -> None:
        with self._lock:
            if self.reported.is_set():
                return
            self.reported.set()
        self._failed(BackgroundFailed(self.ref, cause, at, environmental, self.ignored))

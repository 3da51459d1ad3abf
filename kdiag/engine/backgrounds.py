"""Work steps keep up after they return (servers, redirects, log followers), until stopped.

Work with a lifeline (see :func:`kdiag.steps.base.lifeline_of`) is watched by the run's
:class:`~kdiag.engine.supervision.Supervisor` while it is up: dying on its own fails the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kdiag.engine.context import StepRuntime
from kdiag.engine.events import BackgroundStopped
from kdiag.engine.supervision import Supervisor
from kdiag.steps.base import Background, lifeline_of


@dataclass
class _Entry:
    runtime: StepRuntime
    background: Background
    unwatch: Callable[[], None]


class Backgrounds:
    """The run's background work, by the step that started it; stopped newest first."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._entries: list[_Entry] = []

    def add(self, runtime: StepRuntime, background: Background, *, ignored: bool,
            uses_target: bool) -> None:
        """Keep ``background`` up until :meth:`stop` or :meth:`stop_all`, and watch it
        (``ignored``: its death is reported but does not fail the run)."""
        lifeline = lifeline_of(background)
        unwatch: Callable[[], None] = lambda: None  # noqa: E731 - nothing to watch
        if lifeline is not None:
            unwatch = self._supervisor.watch(runtime.ref, lifeline, ignored=ignored,
                                             uses_target=uses_target)
        self._entries.append(_Entry(runtime, background, unwatch))

    def stop(self, qualified: tuple[str, ...]) -> bool:
        """Stop the work of the step named ``qualified`` now (the ``stop`` step); False if
        none is running."""
        for entry in self._entries:
            ref = entry.runtime.ref
            if (*ref.path, ref.name) == qualified:
                self._entries.remove(entry)
                entry.unwatch()  # stopping it on purpose is no failure
                try:
                    entry.background.stop()
                finally:
                    _stopped(entry.runtime)
                return True
        return False

    def stop_all(self, failed: Callable[[StepRuntime, Exception], None]) -> None:
        """Stop everything, newest first; one failing stop (reported to ``failed``) does not
        keep the others running."""
        for entry in self._entries:
            entry.unwatch()
        for entry in reversed(self._entries):
            try:
                entry.background.stop()
            except Exception as exc:
                failed(entry.runtime, exc)
            _stopped(entry.runtime)
        self._entries.clear()


def _stopped(runtime: StepRuntime) -> None:
    """What the work still held back goes out, then that it stopped (for the timeline)."""
    runtime.flush()
    runtime.run.bus.emit(BackgroundStopped(runtime.ref, time.time()))

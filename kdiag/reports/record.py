"""A structured model of a run built from engine events: the one place that understands events.

The JSON, JUnit, markdown and artifacts reporters (and the console summary) render from
:class:`RunRecord`. Feed it every event with :meth:`RunRecord.handle`, call :meth:`RunRecord.close`
when the stream ends (whether or not ``RunFinished`` came), then read it or call
:meth:`RunRecord.to_dict` for a JSON-ready dictionary.

Everything in a record comes from the events; nothing is added (text in events is already masked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdiag.engine.events import (
    AssertionResult,
    AttemptFinished,
    BackgroundFailed,
    BackgroundStopped,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    StepOutput,
    StepProgress,
    StepRef,
    StepStarted,
)
from kdiag.errors import EnvironmentProblem
from kdiag.reports.steprecord import AssertionRecord, AttemptRecord, StepRecord, background_failure
from kdiag.reports.text import jsonable, write_atomic

REPORT_FORMAT = "kdiag.report/v1"
"""Identifies the layout of :meth:`RunLog.to_dict`; bump on incompatible changes."""

STATUSES: tuple[str, ...] = ("passed", "failed", "skipped", "ignored", "error", "incomplete")
"""Statuses counted in :attr:`RunRecord.totals`, in display order."""


@dataclass(frozen=True)
class RunNote:
    """A note not attached to a step of the run; ``source`` names what it is about."""

    source: str
    message: str


class RunRecord:
    """The record of one run (one ``RunStarted`` … ``RunFinished``)."""

    def __init__(self, started: RunStarted | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.runbook = started.runbook if started else ""
        self.file = started.file if started else ""
        self.target = started.target if started else None
        self.params: dict[str, Any] = dict(started.params) if started else {}
        self.step_count = started.step_count if started else 0
        self.started_at: float | None = started.started_at if started else None
        self.dry_run = started.dry_run if started else False
        self.status: str = "running"
        """A :data:`~kdiag.engine.events.RunStatus`, ``running``, or ``incomplete`` after
        :meth:`close` without a ``RunFinished``."""
        self.exit_code: int | None = None
        self.duration: float | None = None
        self.message = ""
        self.reported_counts: dict[str, int] = {}
        self.complete = False
        """True once ``RunFinished`` arrived."""
        self.closed = False
        self.notes: list[RunNote] = []
        """Notes about things other than this run's steps (e.g. the target session)."""
        self.background_failures: list[dict[str, Any]] = []
        """Background work (or the target) that died during the run: which, when, why."""
        self._steps: dict[StepRef, StepRecord] = {}

    @property
    def steps(self) -> list[StepRecord]:
        """Steps in the order they first appeared."""
        return list(self._steps.values())

    def step(self, ref: StepRef) -> StepRecord:
        """The record of ``ref``, created on first sight."""
        rec = self._steps.get(ref)
        if rec is None:
            rec = StepRecord(ref=ref, number=len(self._steps) + 1)
            self._steps[ref] = rec
        return rec

    def handle(self, event: Event) -> StepRecord | None:
        """Fold ``event`` into the record; returns the step record it touched, if any."""
        if isinstance(event, RunFinished):
            self.status = event.status
            self.exit_code = event.exit_code
            self.duration = event.duration
            self.reported_counts = dict(event.counts)
            self.message = event.message
            self.complete = True
            self._cut_off_running()
            return None
        if isinstance(event, RunStarted):
            return None  # a RunStarted starts a new record (see RunLog)
        if isinstance(event, BackgroundFailed):
            return self._background_failed(event)
        if isinstance(event, StepNote) and event.step not in self._steps:
            # A note about something that is not a step of this run (the engine's teardown
            # reports on "target"): keep it with the run rather than invent an unfinished step.
            self.notes.append(RunNote(event.step.qualified_name, event.message))
            return None
        rec = self.step(event.step)
        if isinstance(event, StepStarted):
            rec._started(event)
        elif isinstance(event, StepOutput):
            rec.add_output(event.text)
        elif isinstance(event, AssertionResult):
            rec.assertions.append(AssertionRecord.from_event(event))
        elif isinstance(event, StepNote):
            rec.notes.append(event.message)
        elif isinstance(event, AttemptFinished):
            rec.attempt_log.append(AttemptRecord.from_event(event))
        elif isinstance(event, StepFinished):
            rec._finished(event)
        elif isinstance(event, StepProgress):
            rec.add_progress(event.at, event.counts)
        elif isinstance(event, BackgroundStopped) and isinstance(event.at, int | float):
            rec.background_stopped_at = float(event.at)
        return rec

    def _background_failed(self, event: BackgroundFailed) -> StepRecord | None:
        failure = background_failure(event)
        self.background_failures.append(failure)
        rec = self._steps.get(event.step)
        if rec is None:  # the target itself
            self.notes.append(RunNote(event.step.qualified_name,
                                      f"lost at {failure['time']}: {event.cause}"))
            return None
        rec.background_failed(event, failure)
        return rec

    def close(self) -> None:
        """The stream ended: mark unfinished steps and, without ``RunFinished``, the run."""
        if self.closed:
            return
        self.closed = True
        if not self.complete:
            self.status = "incomplete"
            if self.started_at is not None:
                self.duration = max(0.0, self._clock() - self.started_at)
        self._cut_off_running()

    def _cut_off_running(self) -> None:
        now = self._clock()
        for rec in self._steps.values():
            if rec.status == "running":
                rec.status = "incomplete"
                if rec.duration is None and rec.started_at is not None:
                    rec.duration = max(0.0, now - rec.started_at)

    @property
    def totals(self) -> dict[str, int]:
        """Number of steps per status (every status present, zeros included) and ``steps``."""
        counts = {"steps": len(self._steps), **dict.fromkeys(STATUSES, 0)}
        for rec in self._steps.values():
            key = "incomplete" if rec.status == "running" else rec.status
            counts[key] += 1
        return counts

    @property
    def problem_steps(self) -> list[StepRecord]:
        """Steps that failed, errored, were ignored after failing, or did not finish."""
        return [s for s in self._steps.values() if s.has_problem or s.status == "running"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the run."""
        return {
            "runbook": self.runbook,
            "file": self.file,
            "target": self.target,
            "dry_run": self.dry_run,
            "complete": self.complete,
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "started_at": self.started_at,
            "duration": self.duration,
            "params": jsonable(self.params),
            "notes": [{"source": n.source, "message": n.message} for n in self.notes],
            "background_failures": list(self.background_failures),
            "step_count": self.step_count,
            "totals": self.totals,
            "reported_counts": dict(self.reported_counts),
            "steps": [s.to_dict() for s in self._steps.values()],
        }


class RunLog:
    """Records of every run in one event stream (usually exactly one)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.runs: list[RunRecord] = []

    @property
    def current(self) -> RunRecord:
        """The run being recorded; one is made up if events come before any ``RunStarted``."""
        if not self.runs:
            self.runs.append(RunRecord(clock=self._clock))
        return self.runs[-1]

    def handle(self, event: Event) -> tuple[RunRecord, StepRecord | None]:
        """Fold ``event`` into the right run; returns the run and the step touched."""
        if isinstance(event, RunStarted):
            if self.runs and not self.runs[-1].closed:
                self.runs[-1].close()
            run = RunRecord(event, clock=self._clock)
            self.runs.append(run)
            return run, None
        run = self.current
        return run, run.handle(event)

    def close(self) -> None:
        """Close every run (see :meth:`RunRecord.close`)."""
        for run in self.runs:
            run.close()

    @property
    def complete(self) -> bool:
        """Whether every run got its ``RunFinished`` (and there was at least one)."""
        return bool(self.runs) and all(r.complete for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report document: ``{"format", "complete", "runs": [...]}``."""
        return {
            "format": REPORT_FORMAT,
            "complete": self.complete,
            "runs": [r.to_dict() for r in self.runs],
        }


class FileReporter:
    """Base of reporters that record the run and write one file at :meth:`close`.

    The file is written on ``close()`` whatever happened (failed run, interrupted run, no
    ``RunFinished`` at all: the report then says ``complete: false``/``incomplete``).
    """

    kind = "file"

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.log = RunLog(clock=clock)
        self._closed = False

    def handle(self, event: Event) -> None:
        """Record ``event``."""
        self.log.handle(event)

    def render(self) -> str:
        """The file's contents (called once, after the log is closed)."""
        raise NotImplementedError

    def close(self) -> None:
        """Write the report file (once)."""
        if self._closed:
            return
        self._closed = True
        self.log.close()
        try:
            write_atomic(self.path, self.render())
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = f"cannot write the {self.kind} report {self.path}: {reason}"
            raise EnvironmentProblem(message) from exc

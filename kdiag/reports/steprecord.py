"""What a report knows of one step (and its assertions), built from the step's events.

:class:`~kdiag.reports.record.RunRecord` makes one per step it sees and feeds it the step's
events; reporters read them (status, attempts, output, assertions, result).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from kdiag.engine.events import (
    AssertionResult,
    AttemptFinished,
    BackgroundFailed,
    StepFinished,
    StepRef,
    StepStarted,
)
from kdiag.reports.pods import pod_lines
from kdiag.reports.text import indent_rest, jsonable

MAX_RECORD_OUTPUT = 4 * 1024 * 1024
"""Characters of output a record keeps per step (the tail); ``--artifacts`` keeps everything."""
MAX_PROGRESS = 1000
"""Counter samples a record keeps per step; beyond, every other one is dropped (they are
cumulative: a timeline loses resolution, never a count)."""

RecordStepStatus = Literal["passed", "failed", "skipped", "ignored", "error", "running", "incomplete"]
"""A step's status in a record: a :data:`~kdiag.engine.events.StepStatus`, or ``running`` while
it goes on and ``incomplete`` when the run ended (or was cut off) before the step finished."""

PROBLEM_STATUSES = frozenset({"failed", "error", "ignored", "incomplete"})
"""Statuses whose steps get a failure section in reports (``ignored`` failed too, tolerated)."""


def background_failure(event: BackgroundFailed) -> dict[str, Any]:
    """What a report says of lost background work: which step, when, why."""
    return {"step": event.step.qualified_name, "kind": event.step.kind, "cause": event.cause,
            "at": event.at, "time": time.strftime("%H:%M:%S", time.localtime(event.at)),
            "environmental": event.environmental, "ignored": event.ignored}


@dataclass
class AssertionRecord:
    """One assertion: the expression, whether it held, the values it used, an optional message."""

    expression: str
    passed: bool
    values: dict[str, str] = field(default_factory=dict)
    message: str = ""

    @classmethod
    def from_event(cls, event: AssertionResult) -> AssertionRecord:
        """The record of an :class:`AssertionResult` event."""
        return cls(event.expression, event.passed, dict(event.values), event.message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "expression": self.expression,
            "passed": self.passed,
            "values": dict(self.values),
            "message": self.message,
        }


@dataclass
class AttemptRecord:
    """One attempt of a step: automatic (``retries``/``until``) or asked for in step mode."""

    number: int
    status: str
    message: str = ""
    duration: float = 0.0
    by_user: bool = False

    @classmethod
    def from_event(cls, event: AttemptFinished) -> AttemptRecord:
        """The record of an :class:`AttemptFinished` event."""
        return cls(event.attempt, event.status, event.message, event.duration, event.by_user)

    def line(self) -> str:
        """``attempt 2 (retried by the user): failed: message``."""
        who = " (retried by the user)" if self.by_user else ""
        message = f": {self.message}" if self.message else ""
        return f"attempt {self.number}{who}: {self.status}{message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"attempt": self.number, "status": self.status, "message": self.message,
                "duration": self.duration, "by_user": self.by_user}


@dataclass
class StepRecord:
    """Everything reported about one step, across its attempts."""

    ref: StepRef
    number: int
    """1-based position of the step in the run, in the order steps first appeared."""
    status: RecordStepStatus = "running"
    description: str = ""
    started_at: float | None = None
    duration: float | None = None
    attempts: int = 0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    assertions: list[AssertionRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    attempt_log: list[AttemptRecord] = field(default_factory=list)
    """Every attempt that ended, in order (automatic retries and step-mode retries)."""
    finished: bool = False
    output_dropped: int = 0
    """Characters cut from the start of :attr:`output` to bound memory (see MAX_RECORD_OUTPUT)."""
    background_failure: dict[str, Any] | None = None
    """The step's background work died (see :func:`background_failure`)."""
    attempt_started_at: list[float] = field(default_factory=list)
    """When each attempt started (seconds since the epoch), in order."""
    progress: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """The step's counters over time (``StepProgress``: when, and the counts then)."""
    background_stopped_at: float | None = None
    """When the step's background work was stopped (None: it had none, or it never was)."""
    _chunks: list[str] = field(default_factory=list, repr=False)
    _size: int = field(default=0, repr=False)

    @property
    def qualified_name(self) -> str:
        """``parent / child`` name of the step."""
        return self.ref.qualified_name

    @property
    def output(self) -> str:
        """The step's output: what streamed in ``StepOutput`` events, all attempts included.

        The streamed chunks are complete, while ``StepFinished.output`` is only the engine's kept
        tail, so it is used only for a step that streamed nothing. Chunks arriving after the step
        finished (a background step's logs) are appended. Only the last
        :data:`MAX_RECORD_OUTPUT` characters are kept (:attr:`output_dropped` counts the rest).
        """
        return "".join(self._chunks)

    def add_output(self, text: str) -> None:
        """Append ``text`` to the output, dropping the oldest text beyond the limit."""
        self._chunks.append(text)
        self._size += len(text)
        while self._size > MAX_RECORD_OUTPUT:
            excess = self._size - MAX_RECORD_OUTPUT
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.pop(0)
                cut = len(first)
            else:
                self._chunks[0] = first[excess:]
                cut = excess
            self._size -= cut
            self.output_dropped += cut

    @property
    def pod_lines(self) -> list[str]:
        """One line per pod for a step that ran on every pod of the target (else none)."""
        return pod_lines(self.result)

    @property
    def failed_assertions(self) -> list[AssertionRecord]:
        """The assertions that did not hold."""
        return [a for a in self.assertions if not a.passed]

    @property
    def failed_attempts(self) -> list[AttemptRecord]:
        """Attempts that did not pass (for a passed step: the ones before it passed)."""
        return [a for a in self.attempt_log if a.status != "passed"]

    def attempts_text(self) -> str:
        """``Attempts:`` and one line per attempt, when there was more than one ("")."""
        if len(self.attempt_log) < 2:
            return ""
        return "\n".join(["Attempts:", *(f"  {a.line()}" for a in self.attempt_log)])

    @property
    def has_problem(self) -> bool:
        """Whether reports should show this step's failure details."""
        return self.status in PROBLEM_STATUSES

    def summary_message(self) -> str:
        """The step's message, or for a failed step without one, the first failed assertion."""
        if self.message:
            return self.message
        failed = self.failed_assertions
        if failed:
            return failed[0].message or f"assertion failed: {failed[0].expression}"
        if self.status == "incomplete":
            return "the step did not finish"
        return ""

    def failure_text(self, *, include_output: bool = True) -> str:
        """Full plain-text account of the step: message, assertions with values, notes, output."""
        parts: list[str] = []
        message = self.summary_message()
        if message:
            parts.append(message)
        if self.pod_lines:
            parts.append("\n".join(["Pods:", *(f"  {line}" for line in self.pod_lines)]))
        if self.assertions:
            lines = ["Assertions:"]
            for a in self.assertions:
                lines.append(f"  [{'passed' if a.passed else 'FAILED'}] {a.expression}")
                if a.message:
                    lines.append(f"      {a.message}")
                for name, value in a.values.items():
                    lines.append(f"      {name} = {indent_rest(value, 8)}")
            parts.append("\n".join(lines))
        if self.attempts_text():
            parts.append(self.attempts_text())
        if self.notes:
            parts.append("\n".join(["Notes:", *(f"  - {n}" for n in self.notes)]))
        if self.artifacts:
            parts.append("\n".join(["Artifacts:", *(f"  - {a}" for a in self.artifacts)]))
        if include_output:
            output = self.output
            if output:
                cut = f" (the first {self.output_dropped} characters were cut)" if self.output_dropped else ""
                parts.append(f"Output{cut}:\n{output.rstrip(chr(10))}")
            else:
                parts.append("Output: (none)")
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (output included verbatim)."""
        return {
            "number": self.number,
            "index": self.ref.index,
            "name": self.ref.name,
            "qualified_name": self.qualified_name,
            "path": list(self.ref.path),
            "kind": self.ref.kind,
            "phase": self.ref.phase,
            "description": self.description,
            "status": self.status,
            "started_at": self.started_at,
            "duration": self.duration,
            "attempts": self.attempts,
            "attempt_log": [a.to_dict() for a in self.attempt_log],
            "message": self.message,
            "output": self.output,
            "output_dropped": self.output_dropped,
            "result": jsonable(self.result),
            "assertions": [a.to_dict() for a in self.assertions],
            "notes": list(self.notes),
            "artifacts": list(self.artifacts),
            "background_failure": self.background_failure,
            "attempt_started_at": list(self.attempt_started_at),
            "background_stopped_at": self.background_stopped_at,
            "progress": [{"at": at, "counts": dict(counts)} for at, counts in self.progress],
        }

    def add_progress(self, at: float, counts: dict[str, Any]) -> None:
        """Keep a sample of the step's counters (bounded: see :data:`MAX_PROGRESS`)."""
        numbers = {k: v for k, v in counts.items()
                   if isinstance(v, int) and not isinstance(v, bool)}
        if not isinstance(at, int | float):
            return  # (a value masked as a secret)
        self.progress.append((float(at), numbers))
        if len(self.progress) > MAX_PROGRESS:
            self.progress = [*self.progress[-2::-2][::-1], self.progress[-1]]

    def background_failed(self, event: BackgroundFailed, failure: dict[str, Any]) -> None:
        """The step's background work died after the step passed: the step failed after all
        (``error`` for an environment cause, ``ignored`` under ``continue_on_error``)."""
        self.background_failure = failure
        self.status = "ignored" if event.ignored else ("error" if event.environmental
                                                       else "failed")
        self.message = f"failed in the background at {failure['time']}: {event.cause}"

    # -- event handling -------------------------------------------------------------------

    def _started(self, event: StepStarted) -> None:
        if self.started_at is None:
            self.started_at = event.started_at
        if isinstance(event.started_at, int | float):
            self.attempt_started_at.append(float(event.started_at))
        self.attempts = max(self.attempts, event.attempt)
        if event.description:
            self.description = event.description
        # A retry is judged on its own assertions; the output of earlier attempts is kept.
        self.assertions = []
        if not self.finished:
            self.status = "running"

    def _finished(self, event: StepFinished) -> None:
        self.finished = True
        self.status = event.status
        self.duration = event.duration
        self.attempts = max(self.attempts, event.attempts)
        self.message = event.message
        self.result = dict(event.result)
        for path in event.artifacts:
            if path not in self.artifacts:
                self.artifacts.append(path)
        if event.assertions:
            self.assertions = [AssertionRecord.from_event(a) for a in event.assertions]
        if event.output and not self._chunks:
            self.add_output(event.output)

"""A structured model of a run built from engine events: the one place that understands events.

The JSON, JUnit, markdown and artifacts reporters (and the console summary) render from
:class:`RunRecord`. Feed it every event with :meth:`RunRecord.handle`, call :meth:`RunRecord.close`
when the stream ends (whether or not ``RunFinished`` came), then read it or call
:meth:`RunRecord.to_dict` for a JSON-ready dictionary.

Everything in a record comes from the events; nothing is added (text in events is already masked).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from kdiag.engine.events import (
    AssertionResult,
    Event,
    RunFinished,
    RunStarted,
    StepFinished,
    StepNote,
    StepOutput,
    StepRef,
    StepStarted,
)
from kdiag.errors import EnvironmentProblem
from kdiag.reports.text import write_atomic

REPORT_FORMAT = "kdiag.report/v1"
"""Identifies the layout of :meth:`RunLog.to_dict`; bump on incompatible changes."""

MAX_RECORD_OUTPUT = 4 * 1024 * 1024
"""Characters of output a record keeps per step (the tail); ``--artifacts`` keeps everything."""

RecordStepStatus = Literal["passed", "failed", "skipped", "ignored", "error", "running", "incomplete"]
"""A step's status in a record: a :data:`~kdiag.engine.events.StepStatus`, or ``running`` while
it goes on and ``incomplete`` when the run ended (or was cut off) before the step finished."""

STATUSES: tuple[str, ...] = ("passed", "failed", "skipped", "ignored", "error", "incomplete")
"""Statuses counted in :attr:`RunRecord.totals`, in display order."""

PROBLEM_STATUSES = frozenset({"failed", "error", "ignored", "incomplete"})
"""Statuses whose steps get a failure section in reports (``ignored`` failed too, tolerated)."""


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
    finished: bool = False
    output_dropped: int = 0
    """Characters cut from the start of :attr:`output` to bound memory (see MAX_RECORD_OUTPUT)."""
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
    def failed_assertions(self) -> list[AssertionRecord]:
        """The assertions that did not hold."""
        return [a for a in self.assertions if not a.passed]

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
        if self.assertions:
            lines = ["Assertions:"]
            for a in self.assertions:
                lines.append(f"  [{'passed' if a.passed else 'FAILED'}] {a.expression}")
                if a.message:
                    lines.append(f"      {a.message}")
                for name, value in a.values.items():
                    lines.append(f"      {name} = {_indent_continuation(value, 8)}")
            parts.append("\n".join(lines))
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
            "message": self.message,
            "output": self.output,
            "output_dropped": self.output_dropped,
            "result": jsonable(self.result),
            "assertions": [a.to_dict() for a in self.assertions],
            "notes": list(self.notes),
            "artifacts": list(self.artifacts),
        }

    # -- event handling -------------------------------------------------------------------

    def _started(self, event: StepStarted) -> None:
        if self.started_at is None:
            self.started_at = event.started_at
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
        elif isinstance(event, StepFinished):
            rec._finished(event)
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


def jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold turned into strings (NaN, sets, objects...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _indent_continuation(text: str, width: int) -> str:
    """Indent the second and later lines of ``text`` by ``width`` spaces."""
    return text.replace("\n", "\n" + " " * width)


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


def value_text(value: Any) -> str:
    """A param or result value as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(jsonable(value), ensure_ascii=False)

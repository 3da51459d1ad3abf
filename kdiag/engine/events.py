"""Events the engine emits while a run goes on; every reporter consumes the same stream.

Events are plain frozen dataclasses. Text in them has already been masked (secret params
replaced by ``***``) by the :class:`~kdiag.engine.bus.EventBus`, so reporters never see secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StepStatus = Literal["passed", "failed", "skipped", "ignored", "error"]
"""How a step ended.

``passed``: it ran and every assertion held. ``failed``: it ran and failed or an assertion did not
hold. ``ignored``: failed, but ``continue_on_error`` was set. ``skipped``: its ``when`` was false,
the user skipped it in step mode, or an earlier failure stopped the run. ``error``: the
environment failed under it (exit code 3).
"""

RunStatus = Literal["passed", "failed", "error", "interrupted", "invalid"]


@dataclass(frozen=True)
class StepRef:
    """Identifies a step within a run. ``path`` names the nesting of included runbooks."""

    index: int
    name: str
    kind: str
    path: tuple[str, ...] = ()
    phase: Literal["steps", "finally"] = "steps"
    seq: int = 0
    """1-based order of the step within the whole run (unique, across phases and includes)."""

    @property
    def qualified_name(self) -> str:
        """The step's name prefixed with its parents' names (``parent / child``)."""
        return " / ".join((*self.path, self.name))


TARGET = StepRef(0, "target", "target")
"""Stands for the target session in events about it (its loss, its teardown)."""


@dataclass(frozen=True)
class RunStarted:
    runbook: str
    file: str
    params: dict[str, Any]
    target: str | None
    step_count: int
    started_at: float
    dry_run: bool = False


@dataclass(frozen=True)
class StepStarted:
    step: StepRef
    attempt: int
    started_at: float
    description: str = ""


@dataclass(frozen=True)
class StepOutput:
    """A chunk of a step's output (``stream``: stdout, stderr, log, or a source name)."""

    step: StepRef
    stream: str
    text: str


@dataclass(frozen=True)
class AssertionResult:
    """One assertion of a step: the expression, whether it held, and the values it used."""

    step: StepRef
    expression: str
    passed: bool
    values: dict[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class StepNote:
    """A message attached to a step for the report (a ``note`` step, a skipped pause, ...)."""

    step: StepRef
    message: str


@dataclass(frozen=True)
class AttemptFinished:
    """One attempt of a step ended: each automatic retry (``retries``/``until``) and each
    retry asked for in step mode (``by_user``) is one, numbered on from the step's first."""

    step: StepRef
    attempt: int
    status: StepStatus
    message: str = ""
    duration: float = 0.0
    by_user: bool = False


@dataclass(frozen=True)
class StepFinished:
    step: StepRef
    status: StepStatus
    duration: float
    attempts: int
    message: str = ""
    output: str = ""
    """The step's captured output (all streams, interleaved), kept for failure reports."""
    result: dict[str, Any] = field(default_factory=dict)
    """The registered value, summarised (large values shortened)."""
    artifacts: tuple[str, ...] = ()
    assertions: tuple[AssertionResult, ...] = ()


@dataclass(frozen=True)
class BackgroundFailed:
    """Work a step keeps up (a redirect, a forward, a log follower, a local process), or the
    target itself (``step`` named ``target``), died on its own while the run went on."""

    step: StepRef
    cause: str
    """One line: ``manager gone (container kdiag-... terminated: OOMKilled)``."""
    at: float
    """When it was seen (seconds since the epoch)."""
    environmental: bool
    """The environment is to blame (exit 3); else the work failed (exit 1)."""
    ignored: bool = False
    """The step has ``continue_on_error``: reported, and the run goes on."""

    @property
    def line(self) -> str:
        """``redirect 'api': manager gone (...)`` (``target: pod ns/x deleted``)."""
        if self.step.kind == "target":
            return f"target: {self.cause}"
        return f"{self.step.kind} {self.step.qualified_name!r}: {self.cause}"


@dataclass(frozen=True)
class StepProgress:
    """Counters of a step's work at a time (a redirect's connections), cumulative: each one
    replaces the step's previous counters. Sent at most a few times a second."""

    step: StepRef
    at: float
    """When the counters last changed (seconds since the epoch)."""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BackgroundStopped:
    """A step's background work was stopped: by a ``stop`` step, or as the run ended."""

    step: StepRef
    at: float


@dataclass(frozen=True)
class RunFinished:
    status: RunStatus
    exit_code: int
    duration: float
    counts: dict[str, int]
    message: str = ""


Event = (RunStarted | StepStarted | StepOutput | AssertionResult | StepNote | AttemptFinished
         | StepFinished | StepProgress | BackgroundFailed | BackgroundStopped | RunFinished)

"""What a step type is: a schema fragment for its body and a function that executes it.

Each step type lives in its own module in this package and defines one :class:`StepType`
subclass instance named ``STEP``; :mod:`kdiag.steps` discovers them. The engine handles every
per-step control (``when``, ``register``, ``timeout``, ``retries``/``until``, ``assert``,
``background``, ``continue_on_error``) so a step type only does its own work.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from kdiag.lifeline import Lifeline
    from kdiag.targets.base import TargetSession


class Background(Protocol):
    """Something a step keeps up after it returns (a server, a redirect, a log follower).

    Work that can die on its own also has a ``lifeline`` attribute (a
    :class:`~kdiag.lifeline.Lifeline`) that it fails, with the cause, when it does: the engine
    then ends the current step and fails the run (see :mod:`kdiag.engine.supervision`).
    """

    def stop(self) -> None:
        """Stop it; called once, at the end of the run (after the ``finally`` steps)."""


def lifeline_of(work: Background) -> Lifeline | None:
    """The work's lifeline, if it has one."""
    from kdiag.lifeline import Lifeline

    lifeline = getattr(work, "lifeline", None)
    return lifeline if isinstance(lifeline, Lifeline) else None


@dataclass
class StepOutcome:
    """What a step's execution produced.

    ``result`` becomes the registered value (the engine adds ``ok``, ``duration`` and
    ``attempts``). ``ok`` false fails the step with ``message``.
    """

    ok: bool = True
    result: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    background: Background | None = None
    artifacts: list[str] = field(default_factory=list)


MAX_OUTPUT_SCHEMA = {
    "type": ["integer", "string"],
    "description": "Bytes of each stream kept in memory for register and reports: half from "
                   "the start, half from the end (e.g. 4MiB; default --max-output, 2MiB). "
                   "The whole output is always in the step's artifact files.",
}
"""The ``max_output`` field of steps running commands (see :mod:`kdiag.steps.streams`)."""


class StepFailed(Exception):
    """Raised by a step type to fail the step with a message (no traceback shown)."""


def kubernetes_target(ctx: StepContext) -> dict[str, Any]:
    """The runbook's Kubernetes target as written (``namespace``, ``context``, ``kubeconfig``,
    ``image``, ...; nothing opened), for steps that need a cluster but no pod; {} for none or
    a node target."""
    try:
        target = ctx.evaluate("target")
    except Exception:  # no target: the kubeconfig's context decides
        return {}
    return target if isinstance(target, dict) and target.get("kind") == "kubernetes" else {}


def require_background_or_duration(kind: str, body: dict[str, Any], ctx: StepContext) -> None:
    """Steps that keep something up (a redirect, a forward) need to know for how long."""
    if not ctx.background and "duration" not in body:
        raise StepFailed(f"a {kind} needs background: true (kept up for later steps) "
                         "or a duration")


def keep_up(work: Background, body: dict[str, Any], ctx: StepContext,
            result: dict[str, Any]) -> StepOutcome:
    """Hand ``work`` to the engine when the step runs in the background; otherwise keep it up
    for the body's ``duration`` (or until cancelled, or until it dies: the step then fails
    with the cause), then stop it."""
    if ctx.background:
        return StepOutcome(result=result, background=work)
    import time

    from kdiag.errors import EnvironmentProblem
    from kdiag.language.durations import parse_duration

    lifeline = lifeline_of(work)
    until = time.monotonic() + parse_duration(body["duration"])
    try:
        while (left := until - time.monotonic()) > 0 and not ctx.cancelled.is_set():
            if lifeline is not None and lifeline.wait(min(left, 0.1)) is not None:
                break
            if lifeline is None:
                ctx.cancelled.wait(left)
    finally:
        work.stop()
    loss = lifeline.loss if lifeline is not None else None
    if loss is not None:
        if loss.environmental:
            raise EnvironmentProblem(loss.cause)
        raise StepFailed(loss.cause)
    return StepOutcome(result=result)


class ArtifactFile(Protocol):
    """A file a step streams into (see :meth:`StepContext.open_artifact`)."""

    path: Path

    def write(self, data: bytes) -> None:
        """Append ``data``."""

    def close(self) -> None:
        """Finish the file."""


class StepContext(Protocol):
    """What the engine offers a running step."""

    cancelled: threading.Event
    """Set when the step timed out or the run was interrupted; long work must check it."""
    background: bool
    """The step runs with ``background: true``: start the work, return a Background."""
    max_output: int
    """Bytes of each output stream a step keeps in memory (a head and a tail; ``--max-output``);
    the whole output goes to its artifact files."""

    @property
    def runbook_dir(self) -> Path:
        """The folder of the runbook the step is in."""

    @property
    def interactive(self) -> bool:
        """Whether the run is in step mode (``--step``)."""

    def remaining(self) -> float | None:
        """Seconds left before the step's timeout (None: no timeout)."""

    def output(self, text: str, stream: str = "stdout") -> None:
        """Send a chunk of output to the reporters (it is masked and kept for the report)."""

    def note(self, message: str) -> None:
        """Attach a message to the step in the report."""

    def progress(self, counts: dict[str, int]) -> None:
        """The step's counters now (cumulative; a redirect's connections): reports show
        them over time. Call on every change: the engine sends a few a second."""

    def add_secrets(self, values: list[str]) -> None:
        """Mask these values from now on, in everything the run shows and writes (what the
        step read that is secret, before anything of it can be shown)."""

    def artifact_path(self, name: str) -> Path:
        """A path for a file the step writes into the run's artifacts (the folder exists)."""

    def open_artifact(self, name: str) -> ArtifactFile:
        """A file in the step's artifacts to stream bytes into (secret values masked)."""

    def target(self) -> TargetSession:
        """The target session, opened on first use (raises EnvironmentProblem if it cannot)."""

    def evaluate(self, expression: str) -> Any:
        """Evaluate an expression (as in ``when``) against the current run state."""

    def pause(self, message: str) -> bool:
        """Stop for the user in step mode; returns False when not interactive."""

    def include(self, file: str, params: dict[str, Any]) -> StepOutcome:
        """Run another runbook as a nested part of this run and return its results."""

    def run_children(self) -> bool:
        """Run the step's nested steps (``children_field``); False if one of them failed."""

    def stop_background(self, name: str) -> bool:
        """Stop the background work of the step named ``name`` now; False if none is running."""


class StepType(ABC):
    """A kind of step: the YAML key naming it, its body's schema, and how to execute it."""

    kind: ClassVar[str]
    """The key that selects this step type in a step (``run``, ``http``, ...)."""
    summary: ClassVar[str]
    """One line for ``kdiag steps`` and the README."""
    schema: ClassVar[dict[str, Any]]
    """JSON Schema (Draft 2020-12 subset, see :mod:`kdiag.language.schemacheck`) of the body."""
    example: ClassVar[str] = ""
    """A YAML example of one step of this type."""
    needs_target: ClassVar[bool] = False
    """Whether it talks to the target's manager (the target session is opened for it)."""
    can_background: ClassVar[bool] = False
    """Whether ``background: true`` is meaningful (it returns a Background)."""
    inline: ClassVar[bool] = False
    """Cheap, non-blocking steps run in the engine's thread (no worker thread, no timeout)."""
    expression_fields: ClassVar[frozenset[str]] = frozenset()
    """Body fields that hold expressions evaluated by the step itself, not rendered templates."""
    raw_body: ClassVar[bool] = False
    """The body is passed unrendered (the step renders or evaluates it itself)."""
    children_field: ClassVar[str | None] = None
    """A body field holding a list of steps the step runs itself (``ctx.run_children()``);
    its schema should be ``{"$ref": "#/$defs/steps"}``. Such steps should be ``inline``."""

    @abstractmethod
    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        """Do the step's work with its rendered ``body``."""

    def describe(self, body: Any) -> str:
        """A one-line description of what this step will do, for plans and live status."""
        return ""

    def plan_text(self, body: Any) -> str:
        """What ``kdiag run --dry-run`` shows of the step: :meth:`describe`, unless the step
        has more to show than a line (a script, shown whole)."""
        return self.describe(body)


def command_text(body: Any, whole: bool = False) -> str:
    """A ``run``/``shell`` body's command: its argv joined, or its script (the first line,
    or with ``whole`` every line)."""
    if not isinstance(body, dict):
        return ""
    if "argv" in body:
        return " ".join(str(a) for a in body["argv"]) if isinstance(body["argv"], list) else ""
    script = str(body.get("script") or "").strip()
    return script if whole or not script else script.splitlines()[0]

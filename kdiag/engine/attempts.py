"""One step's attempts: its controls (``timeout``, ``retries``/``until``, ``delay``), each
attempt's execution with the rendered body, then its assertions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kdiag.engine.assertions import evaluate_assertion
from kdiag.engine.context import RunScope, StepRuntime
from kdiag.engine.events import (
    AssertionResult,
    AttemptFinished,
    StepRef,
    StepStarted,
    StepStatus,
)
from kdiag.engine.execution import Halted, execute_guarded, execute_with_timeout
from kdiag.engine.fanout import Fanned
from kdiag.engine.frame import Frame
from kdiag.engine.masking import mask_step_values
from kdiag.errors import EnvironmentProblem
from kdiag.language import schemacheck
from kdiag.language.durations import parse_duration
from kdiag.language.model import StepSpec
from kdiag.language.schemacheck import Schema
from kdiag.language.templating import TemplateError
from kdiag.steps.base import Background, StepOutcome, StepType
from kdiag.waiting import wait_event

DEFAULT_DELAY = 1.0
DEFAULT_UNTIL_RETRIES = 3


@dataclass
class Done:
    """How a step's attempts ended."""

    status: StepStatus
    duration: float
    attempts: int
    message: str
    runtime: StepRuntime | None = None
    assertions: tuple[AssertionResult, ...] = ()
    background: Background | None = None
    """Work the step keeps up (it passed): the runner hands it to the run's backgrounds."""
    halted: bool = False
    """Cut because background work or the target was lost: the run stops, whatever the
    step's ``continue_on_error``."""


@dataclass
class _Tries:
    """One call's attempts: where numbering starts, whether the user asked for it, and when
    the attempt under way started."""

    ref: StepRef
    after: int
    by_user: bool
    since: float


def step_result(outcome: StepOutcome, duration: float, attempts: int) -> dict[str, Any]:
    """The registered result of an attempt: the step's own dict plus the common fields."""
    # The step's own dict, not a copy: a background step (a capture, a redirect) keeps
    # updating it, and later steps see the current values.
    result = outcome.result
    # A step whose own result is a message (note, pause) keeps it when the outcome has none.
    own = result.get("message")
    result.update(ok=outcome.ok, failed=not outcome.ok, skipped=False,
                  message=outcome.message or (own if isinstance(own, str) else ""),
                  duration=round(duration, 4), attempts=attempts)
    if outcome.artifacts:
        result["artifacts"] = list(outcome.artifacts)
    return result


class StepAttempts:
    """Runs steps' attempts for one run."""

    def __init__(self, run: RunScope, schema: Schema, default_timeout: float | None,
                 max_output: int) -> None:
        self.run = run
        self.schema = schema
        self.default_timeout = default_timeout
        self.max_output = max_output

    def __call__(self, frame: Frame, spec: StepSpec, ref: StepRef, step_type: StepType,
                 after: int = 0, by_user: bool = False) -> Done:
        """Run a step's attempts (``retries``/``until``), then its assertions. ``after``: the
        attempts the step already had (a retry in step mode, ``by_user``, numbers on)."""
        tries = _Tries(ref, after, by_user, time.monotonic())
        done = self._attempts(frame, spec, ref, step_type, tries)
        if done.attempts > after:  # (0: the controls failed, no attempt ran)
            self._attempt_over(tries, done.attempts, done.status, done.message)
        return done

    def _attempt_over(self, tries: _Tries, attempt: int, status: StepStatus, message: str,
                      ended: float | None = None) -> None:
        now = time.monotonic()
        self.run.bus.emit(AttemptFinished(tries.ref, attempt, status, message,
                                          round((ended or now) - tries.since, 4),
                                          tries.by_user and attempt == tries.after + 1))
        tries.since = now

    def _attempts(self, frame: Frame, spec: StepSpec, ref: StepRef, step_type: StepType,
                  tries: _Tries) -> Done:
        after = tries.after
        started = time.monotonic()
        try:
            timeout, retries, delay = self._controls(frame, spec)
        except (TemplateError, ValueError, TypeError) as exc:
            return Done("failed", 0.0, after, f"step controls: {exc}")
        attempt = after
        renderer = self.run.renderer
        halted = False
        while True:
            attempt += 1
            self.run.bus.emit(StepStarted(ref, attempt, time.time(), spec.description))
            runtime = StepRuntime(self.run, frame, ref, spec,
                                  None if timeout is None else time.monotonic() + timeout,
                                  background=spec.background, max_output=self.max_output)
            with self.run.supervisor.waking(runtime.cancelled):
                outcome, status, halted = self._attempt(frame, spec, step_type, runtime, timeout)
                result = step_result(outcome, time.monotonic() - started, attempt)
                frame.register(spec, result)
                problem = self._mask_secrets(frame, spec, result)
                if problem:
                    return Done("failed", time.monotonic() - started, attempt, problem, runtime)
                done = status == "passed"
                if status == "passed" and spec.until:
                    try:
                        done = bool(renderer.evaluate(spec.until, frame.scope(result=result)))
                    except TemplateError as exc:
                        return Done("failed", time.monotonic() - started, attempt, str(exc),
                                    runtime)
                    if not done:
                        outcome.message = f"until {spec.until!r} was still false"
                if status == "error" or halted or done or attempt - after > retries:
                    break
                ended = time.monotonic()
                if wait_event(runtime.cancelled, delay):
                    fatal = self.run.supervisor.fatal_now()
                    if fatal is not None:  # lost background work ended the retries
                        status, halted = "error" if fatal.environmental else "failed", True
                        outcome.message = f"stopped: {fatal.line}"
                    break
                self._attempt_over(tries, attempt, "failed", outcome.message, ended)
        duration = time.monotonic() - started
        if status != "passed" or not done:
            return Done("error" if status == "error" else "failed", duration, attempt,
                        outcome.message, runtime, halted=halted)
        assertions = self._assertions(frame, spec, ref, result)
        failed = [a for a in assertions if not a.passed]
        if failed:
            return Done("failed", duration, attempt, f"assertion failed: {failed[0].expression}",
                        runtime, assertions)
        return Done("passed", duration, attempt, outcome.message, runtime, assertions,
                    outcome.background)

    def _mask_secrets(self, frame: Frame, spec: StepSpec, result: dict[str, Any]) -> str | None:
        """A step marked ``secret``: mask what it read from now on (the problem, if any)."""
        if not spec.secret:
            return None
        scope = frame.scope(result=result)
        try:
            mask_step_values(self.run.bus.masker, spec.secret, result,
                             lambda expression: self.run.renderer.evaluate(expression, scope))
        except TemplateError as exc:
            return f"secret: {exc}"
        return None

    def _controls(self, frame: Frame, spec: StepSpec) -> tuple[float | None, int, float]:
        scope = frame.scope()

        def value(raw: Any) -> Any:
            return self.run.renderer.render(raw, scope) if isinstance(raw, str) else raw

        timeout = value(spec.timeout)
        timeout = parse_duration(timeout) if timeout is not None else self.default_timeout
        retries = value(spec.retries)
        if spec.until and not spec.retries:
            retries = DEFAULT_UNTIL_RETRIES
        delay = value(spec.delay)
        return timeout, int(retries), parse_duration(delay) if delay is not None else DEFAULT_DELAY

    def _attempt(self, frame: Frame, spec: StepSpec, step_type: StepType, runtime: StepRuntime,
                 timeout: float | None) -> tuple[StepOutcome, StepStatus, bool]:
        """One execution of the step's own work, with its timeout; and whether it was cut
        because background work or the target was lost."""
        try:
            body = spec.body if step_type.raw_body else self.run.renderer.render(
                spec.body, frame.scope(), step_type.expression_fields)
        except TemplateError as exc:
            return StepOutcome(ok=False, message=str(exc)), "failed", False
        if not step_type.raw_body:
            body = schemacheck.coerce_strings(body, step_type.schema, self.schema)
            problems = schemacheck.validate(body, step_type.schema, self.schema, (spec.kind,))
            if problems:
                where = ".".join(str(p) for p in problems[0].path)
                return StepOutcome(ok=False, message=f"after rendering, {where}: "
                                   f"{problems[0].message}"), "failed", False
        if step_type.needs_target:
            lost = self.run.supervisor.target_loss
            if lost is not None:  # fail at once rather than wait for a manager that is gone
                return StepOutcome(ok=False, message=f"the target is lost: {lost.cause}"), \
                    "error", False
            try:
                fleet = runtime.target().fleet()
                parallel = self._parallel(frame, spec)
            except EnvironmentProblem as exc:
                return StepOutcome(ok=False, message=str(exc)), "error", False
            except (TemplateError, ValueError, TypeError) as exc:
                return StepOutcome(ok=False, message=f"parallel: {exc}"), "failed", False
            if fleet is not None:  # pick: all: the step runs on every pod
                step_type = Fanned(step_type, fleet, parallel)
        outcome: StepOutcome | EnvironmentProblem | Halted
        if step_type.inline:
            outcome = execute_guarded(step_type, body, runtime)
        else:
            outcome = execute_with_timeout(step_type, body, runtime, timeout)
        if isinstance(outcome, Halted):
            return (StepOutcome(ok=False, message=f"stopped: {outcome.line}"),
                    "error" if outcome.environmental else "failed", True)
        if isinstance(outcome, EnvironmentProblem):
            return StepOutcome(ok=False, message=str(outcome)), "error", False
        return outcome, "passed" if outcome.ok else "failed", False

    def _parallel(self, frame: Frame, spec: StepSpec) -> int | None:
        """The step's ``parallel`` (None: the default); ValueError unless a number >= 1."""
        value = spec.parallel
        if isinstance(value, str):
            value = self.run.renderer.render(value, frame.scope())
        if value is None:
            return None
        if int(value) < 1:
            raise ValueError(f"must be 1 or more, not {value}")
        return int(value)

    def _assertions(self, frame: Frame, spec: StepSpec, ref: StepRef,
                    result: dict[str, Any]) -> tuple[AssertionResult, ...]:
        expressions: Any = spec.body if spec.kind == "assert" else spec.asserts
        if isinstance(expressions, str):
            expressions = [expressions]
        scope = frame.scope(result=result)
        results = []
        for expression in expressions:
            outcome = evaluate_assertion(self.run.renderer, ref, expression, scope)
            self.run.bus.emit(outcome)
            results.append(outcome)
        return tuple(results)

"""Executing one attempt of a step type: errors become outcomes, timeouts and lost background
work cut the step short."""

from __future__ import annotations

import os
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from kdiag.engine.abort import Abort
from kdiag.engine.context import StepRuntime
from kdiag.errors import EXIT_ENVIRONMENT, EnvironmentProblem, KdiagError
from kdiag.language.templating import TemplateError
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType
from kdiag.waiting import wait_event

CANCEL_GRACE = 5.0
"""Seconds a step gets to wind down after its timeout or a Ctrl-C before it is abandoned."""
HALT_GRACE = 0.5
"""Seconds a step gets to wind down when lost background work or target ends it (the run
fails anyway; what it still does is abandoned, and ended with the session)."""


@dataclass(frozen=True)
class Halted:
    """The attempt was cut because the run's background work or target was lost."""

    line: str
    environmental: bool


def execute_guarded(step_type: StepType, body: Any, runtime: StepContext
                    ) -> StepOutcome | EnvironmentProblem:
    """Run the step type; a failure is an outcome, an environment problem is returned as is."""
    try:
        return step_type.execute(body, runtime)
    except Abort:  # from steps a step runs (group, include, logs): the run stops
        raise
    except EnvironmentProblem as exc:
        return exc
    except KdiagError as exc:
        if exc.exit_code == EXIT_ENVIRONMENT:  # e.g. the manager became unreachable
            return EnvironmentProblem(str(exc))
        return StepOutcome(ok=False, message=str(exc))
    except (StepFailed, TemplateError) as exc:
        return StepOutcome(ok=False, message=str(exc))
    except Exception as exc:  # a bug in a step type: report it, do not crash the run
        if os.environ.get("KDIAG_DEBUG"):
            traceback.print_exc()
        return StepOutcome(ok=False, message=f"internal error: {type(exc).__name__}: {exc}")


def execute_with_timeout(step_type: StepType, body: Any, runtime: StepRuntime,
                         timeout: float | None) -> StepOutcome | EnvironmentProblem | Halted:
    """Run the step type in a worker thread so that the engine's thread can enforce the
    timeout, take Ctrl-C and end the step when the supervisor reports a loss; each sets
    ``runtime.cancelled`` and gives the work a grace period to stop."""
    box: list[StepOutcome | EnvironmentProblem] = []
    done = threading.Event()

    def work() -> None:
        try:
            box.append(execute_guarded(step_type, body, runtime))
        finally:
            done.set()

    worker = threading.Thread(target=work, name=f"step-{runtime.ref.name}", daemon=True)
    supervisor = runtime.run.supervisor
    with supervisor.waking(done):
        worker.start()
        try:
            wait_event(done, timeout)
        except KeyboardInterrupt:
            runtime.cancelled.set()
            worker.join(CANCEL_GRACE)
            raise
    fatal = supervisor.fatal_now()
    if fatal is not None and not (box and _passed(box[0])):
        runtime.cancelled.set()
        worker.join(HALT_GRACE)
        return Halted(fatal.line, fatal.environmental)
    if not box:
        runtime.cancelled.set()
        worker.join(CANCEL_GRACE)
        result = box[0].result if box and isinstance(box[0], StepOutcome) else {}
        return StepOutcome(ok=False, result=result, message=f"timed out after {timeout:g}s")
    return box[0]


def _passed(outcome: StepOutcome | EnvironmentProblem) -> bool:
    return isinstance(outcome, StepOutcome) and outcome.ok

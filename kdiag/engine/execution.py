"""Executing one attempt of a step type: errors become outcomes, timeouts cancel the work."""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any

from kdiag.engine.context import StepRuntime
from kdiag.errors import EXIT_ENVIRONMENT, EnvironmentProblem, KdiagError
from kdiag.language.templating import TemplateError
from kdiag.steps.base import StepFailed, StepOutcome, StepType

CANCEL_GRACE = 5.0
"""Seconds a step gets to wind down after its timeout or a Ctrl-C before it is abandoned."""


def execute_guarded(step_type: StepType, body: Any, runtime: StepRuntime
                    ) -> StepOutcome | EnvironmentProblem:
    """Run the step type; a failure is an outcome, an environment problem is returned as is."""
    try:
        return step_type.execute(body, runtime)
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
                         timeout: float | None) -> StepOutcome | EnvironmentProblem:
    """Run the step type in a worker thread so that the engine's thread can enforce the
    timeout and take Ctrl-C; either sets ``runtime.cancelled`` and gives the work a grace
    period to stop."""
    box: list[StepOutcome | EnvironmentProblem] = []
    worker = threading.Thread(target=lambda: box.append(execute_guarded(step_type, body, runtime)),
                              name=f"step-{runtime.ref.name}", daemon=True)
    worker.start()
    try:
        worker.join(timeout)
    except KeyboardInterrupt:
        runtime.cancelled.set()
        worker.join(CANCEL_GRACE)
        raise
    if worker.is_alive():
        runtime.cancelled.set()
        worker.join(CANCEL_GRACE)
        result = box[0].result if box and isinstance(box[0], StepOutcome) else {}
        return StepOutcome(ok=False, result=result, message=f"timed out after {timeout:g}s")
    return box[0]

"""``stop``: end a background step's work now (a redirect, a capture, a server) instead of at
the end of the run, e.g. to read a capture file in the next step."""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType


class StopStep(StepType):
    kind = "stop"
    summary = "Stop the background work of an earlier step now (its result stays registered)."
    schema = {"type": "string", "minLength": 1, "description": "The background step's name."}
    example = "stop: packet capture"
    inline = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        name = str(body)
        try:
            stopped = ctx.stop_background(name)
        except Exception as exc:  # the background's own failure to stop
            raise StepFailed(f"stopping {name!r} failed: {exc}") from None
        if not stopped:
            raise StepFailed(f"no background step named {name!r} is running")
        return StepOutcome(result={"stopped": name})

    def describe(self, body: Any) -> str:
        return str(body)


STEP = StopStep()

"""``pause``: stop for the user in ``--step`` mode (skipped, with a note, otherwise)."""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class PauseStep(StepType):
    kind = "pause"
    summary = "Wait for the user to press Enter in --step mode; noted and skipped otherwise."
    schema = {"type": "string", "description": "What the user should look at or do."}
    example = 'pause: "Open http://localhost:9000 and reproduce the bug, then press Enter"'

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        message = str(body)
        if ctx.pause(message):
            return StepOutcome(result={"paused": True, "message": message})
        ctx.note(f"pause skipped (not interactive): {message}")
        return StepOutcome(result={"paused": False, "message": message})

    def describe(self, body: Any) -> str:
        return str(body)


STEP = PauseStep()

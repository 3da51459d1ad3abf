"""``note``: put a message into the report."""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class NoteStep(StepType):
    kind = "note"
    summary = "Put a message (a template) into the report."
    schema = {"type": "string", "description": "The message."}
    example = 'note: "testing build {{ params.version }}"'
    inline = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        message = str(body)
        ctx.note(message)
        return StepOutcome(result={"message": message})

    def describe(self, body: Any) -> str:
        return str(body)


STEP = NoteStep()

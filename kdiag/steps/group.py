"""``group``: run nested steps as one step (one ``when``, ``continue_on_error``, ``assert``)."""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class GroupStep(StepType):
    kind = "group"
    summary = "Run nested steps as one: a shared when, continue_on_error and assertions."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["steps"],
        "properties": {"steps": {"$ref": "#/$defs/steps"}},
    }
    example = ("group:\n  steps:\n    - shell: {script: cat /etc/resolv.conf}\n"
               "    - probe: {dns: api.default.svc}\nwhen: params.check_dns\n"
               "continue_on_error: true")
    inline = True
    children_field = "steps"

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        if ctx.run_children():
            return StepOutcome()
        return StepOutcome(ok=False, message="a nested step failed")

    def describe(self, body: Any) -> str:
        steps = body.get("steps") if isinstance(body, dict) else None
        if not isinstance(steps, list):
            return ""
        return f"{len(steps)} step{'' if len(steps) == 1 else 's'}"


STEP = GroupStep()

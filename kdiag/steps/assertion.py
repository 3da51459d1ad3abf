"""``assert``: check expressions against what earlier steps registered.

Every step can carry ``assert:`` too; a step with only ``assert`` is this step type.
The engine evaluates the expressions (so failures show the values they used).
"""

from __future__ import annotations

from typing import Any

from kdiag.language.schema import EXPRESSION
from kdiag.steps.base import StepContext, StepOutcome, StepType


class AssertStep(StepType):
    kind = "assert"
    summary = "Check that expressions hold; a failure shows the values they used."
    schema = {"anyOf": [EXPRESSION, {"type": "array", "items": EXPRESSION, "minItems": 1}]}
    example = 'assert:\n  - resp.status == 200\n  - "\'ready\' in resp.text"'
    inline = True
    raw_body = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        return StepOutcome()  # the engine evaluates ``body`` as this step's assertions

    def describe(self, body: Any) -> str:
        return body if isinstance(body, str) else " and ".join(body)


STEP = AssertStep()

"""``include``: run another runbook with its own params and get its results back.

Files are found relative to the calling runbook, then on the search path (``--path``,
``KDIAG_PATH``), so teams can keep a shared library of runbooks. The included runbook's
``outputs`` and registered results come back as this step's result.
"""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class IncludeStep(StepType):
    kind = "include"
    summary = "Run another runbook file with parameters; its outputs become this step's result."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "description": "Path relative to this runbook or on the "
                     "search path (--path, KDIAG_PATH)."},
            "params": {"type": "object", "description": "Params for the included runbook."},
        },
    }
    inline = True  # nested steps get their own threads, timeouts and Ctrl-C handling
    example = ("include:\n  file: lib/check-health.yaml\n  params: {port: 8080}\n"
               "register: health")

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        return ctx.include(str(body["file"]), dict(body.get("params") or {}))

    def describe(self, body: Any) -> str:
        return str(body.get("file", "")) if isinstance(body, dict) else ""


STEP = IncludeStep()

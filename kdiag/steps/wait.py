"""``wait``: sleep, or poll an expression until it is true."""

from __future__ import annotations

import time
from typing import Any

from kdiag.language.durations import parse_duration
from kdiag.language.schema import EXPRESSION
from kdiag.steps.base import StepContext, StepFailed, StepOutcome, StepType

_DURATION = {"$ref": "#/$defs/duration"}


class WaitStep(StepType):
    kind = "wait"
    summary = "Sleep for a while, or poll an expression until it is true."
    schema = {
        "anyOf": [
            {"$ref": "#/$defs/duration"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "seconds": {**_DURATION, "description": "Sleep this long."},
                    "until": {**EXPRESSION, "description": "Poll until this is true."},
                    "interval": {**_DURATION, "description": "Between polls (default 1s)."},
                    "timeout": {**_DURATION, "description": "Give up after (default 60s)."},
                },
                "minProperties": 1,
            },
        ]
    }
    example = "wait:\n  until: server.stdout is search('listening')\n  timeout: 10s"
    expression_fields = frozenset({"until"})

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        spec = body if isinstance(body, dict) else {"seconds": body}
        started = time.monotonic()
        if "until" not in spec:
            seconds = parse_duration(spec.get("seconds", 0))
            if ctx.cancelled.wait(seconds):
                raise StepFailed("cancelled")
            return StepOutcome(result={"waited": round(time.monotonic() - started, 3)})
        interval = parse_duration(spec.get("interval", 1))
        timeout = parse_duration(spec.get("timeout", 60))
        polls = 0
        while True:
            polls += 1
            if ctx.evaluate(spec["until"]):
                return StepOutcome(result={"waited": round(time.monotonic() - started, 3),
                                           "polls": polls})
            if time.monotonic() - started + interval > timeout:
                raise StepFailed(f"{spec['until']!r} was still false after {timeout:g}s "
                                 f"({polls} checks)")
            if ctx.cancelled.wait(interval):
                raise StepFailed("cancelled")

    def describe(self, body: Any) -> str:
        if isinstance(body, dict) and "until" in body:
            return f"until {body['until']}"
        seconds = body.get("seconds") if isinstance(body, dict) else body
        return f"{seconds}s" if isinstance(seconds, int | float) else str(seconds)


STEP = WaitStep()

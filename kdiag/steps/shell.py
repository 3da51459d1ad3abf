"""``shell``: run a script or a command inside the target (its namespaces and root).

Works on images without a shell or any tools: the manager runs busybox ``ash`` (whose applets
need nothing on disk) through ``enter``.
"""

from __future__ import annotations

from typing import Any

from kdiag.steps.base import (
    MAX_OUTPUT_SCHEMA,
    StepContext,
    StepOutcome,
    StepType,
    command_text,
)


class ShellStep(StepType):
    kind = "shell"
    summary = "Run a script (busybox ash) or a command inside the target, even with no shell in it."
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "script": {"type": "string", "description": "A script for busybox ash."},
            "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                     "description": "A program of the target (or a busybox applet) and its "
                                    "arguments."},
            "env": {"type": "object", "additionalProperties": {"type": ["string", "number",
                                                                        "boolean"]}},
            "inherit_env": {"type": "boolean", "description": "Start from the target "
                            "process's environment (default true)."},
            "stdin": {"type": "string", "description": "Text sent to the command's input."},
            "workdir": {"type": "string", "description": "Working folder inside the target."},
            "check": {"type": "boolean", "description": "Fail the step on a non-zero exit code "
                      "(default true)."},
            "max_output": MAX_OUTPUT_SCHEMA,
        },
        "oneOf": [{"required": ["script"]}, {"required": ["argv"]}],
    }
    example = ("shell:\n  script: |\n    ls -l /proc/1/fd\n    cat /etc/resolv.conf\n"
               "register: diag")
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        from kdiag.steps.streams import CommandOutput, output_limit

        limit = output_limit(body, ctx)
        manager = ctx.target().manager
        remaining = ctx.remaining()
        output = CommandOutput(ctx, limit)
        try:
            # The stream is read only as fast as the artifact files are written (gRPC's flow
            # control then holds the manager back): nothing is dropped, nothing piles up.
            result = manager.exec(
                argv=[str(a) for a in body["argv"]] if "argv" in body else None,
                script=body.get("script"),
                stdin=str(body["stdin"]).encode() if "stdin" in body else None,
                env={str(k): str(v) for k, v in (body.get("env") or {}).items()},
                inherit_env=body.get("inherit_env", True),
                timeout=max(remaining, 0.1) if remaining is not None else None,
                workdir=body.get("workdir"),
                on_output=output.add,
                capture=False,
            )
        finally:
            output.close()
        registered = {"rc": result.exit_code, **output.fields(), "signal": result.signal,
                      "timed_out": result.timed_out, "duration": round(result.duration, 3)}
        if result.timed_out:
            return StepOutcome(ok=False, result=registered, message="the command timed out")
        if result.exit_code != 0 and body.get("check", True):
            reason = f"signal {result.signal}" if result.signal else f"exit code {result.exit_code}"
            return StepOutcome(ok=False, result=registered, message=reason)
        return StepOutcome(result=registered)

    def describe(self, body: Any) -> str:
        return command_text(body)

    def plan_text(self, body: Any) -> str:
        return command_text(body, whole=True)


STEP = ShellStep()

"""``ps``: the target's processes and the TCP/UDP ports each one listens on."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class PsStep(StepType):
    kind = "ps"
    summary = "List the target's processes (pid, ppid, user, command) and their listening ports."
    schema = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "all": {"type": "boolean", "description": "Every process the manager can see, not "
                    "only the target's (default false)."},
        },
    }
    example = "ps: {}\nregister: procs\nassert: [\"8080 in procs.ports\"]"
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        processes = ctx.target().manager.ps(all_processes=bool((body or {}).get("all", False)))
        rows = []
        for proc in processes:
            listening = ", ".join(f"{sock.protocol}/{sock.address}:{sock.port}"
                                  for sock in proc.listening)
            rows.append(f"{proc.pid:>7} {proc.ppid:>7} {proc.user:<10} {proc.command[:80]}"
                        + (f"  [{listening}]" if listening else ""))
        ctx.output(f"{'PID':>7} {'PPID':>7} {'USER':<10} COMMAND\n" + "\n".join(rows) + "\n")
        records = [{**asdict(proc), "command": proc.command} for proc in processes]
        ports = sorted({sock.port for proc in processes for sock in proc.listening})
        return StepOutcome(result={"processes": records, "ports": ports,
                                   "listening": [{"pid": p.pid, "protocol": s.protocol,
                                                  "address": s.address, "port": s.port}
                                                 for p in processes for s in p.listening]})

    def describe(self, body: Any) -> str:
        return "all processes" if (body or {}).get("all") else "the target's processes"


STEP = PsStep()

"""``net``: the target's interfaces, addresses, routes, neighbours, resolv.conf and hosts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from kdiag.steps.base import StepContext, StepOutcome, StepType


class NetStep(StepType):
    kind = "net"
    summary = "Read the target's network facts (netlink) even when it has no ip or cat."
    schema = {"type": ["object", "null"], "additionalProperties": False, "properties": {}}
    example = "net: {}\nregister: netinfo\nassert: [\"netinfo.addresses | length > 0\"]"
    needs_target = True

    def execute(self, body: Any, ctx: StepContext) -> StepOutcome:
        info = asdict(ctx.target().manager.net())
        lines = [f"{a.get('interface', a.get('index', '?'))}: {a.get('address')}/"
                 f"{a.get('prefixlen', '')}" for a in info["addresses"]]
        lines += [f"route {r.get('destination') or 'default'} via {r.get('gateway') or '-'} "
                  f"dev {r.get('interface', r.get('oif', '?'))}" for r in info["routes"]]
        ctx.output("\n".join(lines) + "\n")
        return StepOutcome(result=info)


STEP = NetStep()

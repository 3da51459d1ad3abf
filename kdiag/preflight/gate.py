"""The check before ``kdiag run`` changes anything: when the run first opens its target,
doctor's checks for the steps the runbook holds run first, and a refusal (a missing verb, a
namespace whose Pod Security level refuses the manager, no ephemeral containers, an
unreachable cluster) fails the opening with doctor's line(s) — exit 3 — before the manager is
injected. The runbook's ``finally`` steps and its report go on as for any environment error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdiag.errors import TargetError
from kdiag.kube.errors import ClusterUnreachable
from kdiag.language.model import Runbook
from kdiag.preflight.checks import listed
from kdiag.preflight.demand import Demand, step_uses_with_includes

Opener = Callable[[dict[str, Any]], Any]


class PreflightRefused(TargetError):
    """A check before the run refused it (exit 3); the message is doctor's line(s)."""


def refusal(demand: Demand) -> TargetError | None:
    """What refuses a run of ``demand`` (None: nothing does)."""
    from kdiag.preflight.examine import examine

    refused = [c for c in examine(demand, full=False) if c.refuses]
    if not refused:
        return None
    first = refused[0]
    if first.name == "cluster":  # worded as when opening the target would have said it
        unreachable = first.detail.startswith("cluster unreachable")
        return (ClusterUnreachable if unreachable else TargetError)(first.detail)
    if len(refused) == 1:
        return PreflightRefused(first.line())
    needed = list(dict.fromkeys(n for c in refused for n in c.needed_by))
    text = "; ".join(c.name + (f": {c.detail}" if c.detail else "") for c in refused)
    if needed:
        text += f" (needed by {listed(needed)})"
    file = f" -f {demand.runbook}" if demand.runbook else ""
    return PreflightRefused(f"{text}; kdiag doctor{file} says what to ask for")


def gated(open_target: Opener, runbook: Runbook, loader: Any) -> Opener:
    """``open_target`` that first checks what the runbook's steps need of the target."""
    steps = step_uses_with_includes(runbook, loader)

    def opener(spec: dict[str, Any]) -> Any:
        problem = refusal(Demand(target=spec, steps=steps, runbook=runbook.file))
        if problem is not None:
            raise problem
        return open_target(spec)

    return opener

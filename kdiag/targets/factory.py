"""Opening the target a runbook names (``target:`` or ``--pid``) as a session."""

from __future__ import annotations

from typing import Any

from kdiag.errors import EnvironmentProblem
from kdiag.targets.base import TargetSession


def open_target(spec: dict[str, Any]) -> TargetSession:
    """Open a session for a rendered ``target:`` mapping (``{"node": {...}}`` or
    ``{"kubernetes": {...}}``); raises EnvironmentProblem when it cannot."""
    kind, options = next(iter(spec.items()))
    if kind == "node":
        from kdiag.targets.node import NodeTarget

        try:
            pid = int(options["pid"])
        except (KeyError, TypeError, ValueError):
            raise EnvironmentProblem(f"target node: pid must be a number, got "
                                     f"{options.get('pid')!r}") from None
        return NodeTarget(pid).open()
    if kind == "kubernetes":
        from kdiag.targets.kubernetes import KubernetesSpec, KubernetesTarget

        return KubernetesTarget(KubernetesSpec.from_options(dict(options or {}))).open()
    raise EnvironmentProblem(f"target {kind!r} is not supported")

"""What a run asks of its environment: its target (rendered) and the steps it holds.

From a runbook: the target with its templates rendered from the params and the environment
(as the engine will render it), and every step, nested ones (``group``, ``logs``) and those of
included runbooks whose file is known before the run included. From the command line: the
target the flags name, and no steps, meaning "everything kdiag may use".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdiag.language.model import Runbook, StepSpec

MODE_FIELDS = ("mode",)
"""Body fields whose value changes what a step needs (``redirect`` with ``mode: expose``)."""


@dataclass(frozen=True)
class StepUse:
    """A step of the run, as the needs table knows it."""

    name: str
    kind: str
    mode: str = ""

    @property
    def key(self) -> str:
        """``kind`` or ``kind:mode``: the keys of :data:`kdiag.preflight.needs.STEPS`."""
        return f"{self.kind}:{self.mode}" if self.mode else self.kind

    def label(self) -> str:
        """``shell 'inside'`` for messages."""
        return f"{self.kind} {self.name!r}"


@dataclass
class Demand:
    """A run's target and steps (``steps`` None: no runbook, everything kdiag may use)."""

    target: dict[str, Any] | None
    steps: list[StepUse] | None = None
    runbook: str = ""

    @property
    def kind(self) -> str:
        """``kubernetes``, ``node`` or '' (no target)."""
        return next(iter(self.target)) if self.target else ""

    @property
    def options(self) -> dict[str, Any]:
        """The target's options (``{namespace, pod, ...}`` or ``{pid}``)."""
        if not self.target:
            return {}
        value = self.target[self.kind]
        return dict(value) if isinstance(value, dict) else {}

    @property
    def way(self) -> str:
        """How kdiag gets into a pod: ``ephemeral`` (default), ``copy`` or ``node``."""
        options = self.options
        if options.get("node") or options.get("via") == "node":
            return "node"
        if options.get("via") == "auto":
            return "auto"
        if options.get("copy") not in (None, False):
            return "copy"
        return str(options.get("way") or "ephemeral")


def step_uses(steps: list[StepSpec]) -> list[StepUse]:
    """Every step, nested ones included, in order."""
    found: list[StepUse] = []
    for step in steps:
        body = step.body if isinstance(step.body, dict) else {}
        mode = next((str(body[f]) for f in MODE_FIELDS if isinstance(body.get(f), str)), "")
        found.append(StepUse(step.name, step.kind, _context_mode(body) or
                             ("" if "{" in mode else mode)))
        found.extend(step_uses(list(step.children)))
    return found


def _context_mode(body: dict[str, Any]) -> str:
    """A local command with the target's context (``run: {from_target: ...}``) reaches the
    manager: mode ``from_target``, or ``names`` when it also forwards cluster Services;
    ``connect``: cluster Services without the target (no manager)."""
    if body.get("connect"):
        return "connect"
    wanted = body.get("from_target")
    if not isinstance(wanted, dict) or not wanted:
        return ""
    return "names" if wanted.get("names") not in (None, False, []) else "from_target"


def from_runbook(runbook: Runbook, params: dict[str, Any], loader: Any = None) -> Demand:
    """The demand of a loaded runbook with its params (``loader``: to follow includes)."""
    return Demand(target=render_target(runbook, params),
                  steps=step_uses_with_includes(runbook, loader), runbook=runbook.file)


def render_target(runbook: Runbook, params: dict[str, Any]) -> dict[str, Any] | None:
    """The target as the engine renders it before the first step (None when it has none, or
    its templates need something only the run has: then the run reports it)."""
    if not runbook.target:
        return None
    from kdiag.language.templating import Renderer, TemplateError

    env = {name: os.environ[name] for name in runbook.env if name in os.environ}
    scope = {"params": params, "env": env, "target": {}, "steps": {},
             "run": {"id": "preflight", "runbook": runbook.name, "file": runbook.file}}
    try:
        rendered = Renderer().render(runbook.target, scope)
    except TemplateError:
        return None
    return rendered if isinstance(rendered, dict) and len(rendered) == 1 else None


def step_uses_with_includes(runbook: Runbook, loader: Any,
                            seen: set[Path] | None = None) -> list[StepUse]:
    """Every step of the runbook, and of the runbooks it includes by a fixed file name."""
    seen = set() if seen is None else seen
    seen.add(Path(runbook.file).resolve())
    uses: list[StepUse] = []
    for use, spec in zip(step_uses(runbook.all_steps()), _flat(runbook.all_steps()),
                         strict=True):
        uses.append(use)
        file = spec.body.get("file") if use.kind == "include" and isinstance(spec.body, dict) \
            else None
        if loader is None or not isinstance(file, str) or "{" in file:
            continue
        path = loader.find(file, runbook.directory)
        try:
            included = loader.load(str(path)) if path is not None else None
        except Exception:  # the run reports a broken include with its place
            included = None
        if included is None:
            continue
        if Path(included.file).resolve() not in seen:
            uses.extend(step_uses_with_includes(included, loader, seen))
    return uses


def _flat(steps: list[StepSpec]) -> list[StepSpec]:
    out: list[StepSpec] = []
    for step in steps:
        out.append(step)
        out.extend(_flat(list(step.children)))
    return out

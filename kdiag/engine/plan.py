"""``kdiag run --dry-run``: what would run, with the values known before running."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from kdiag.language.model import Runbook, StepSpec
from kdiag.language.templating import Renderer, TemplateError
from kdiag.steps import step_types


@dataclass(frozen=True)
class PlannedStep:
    """A step as the plan shows it; ``body`` has templates rendered where they can be."""

    phase: str
    index: int
    name: str
    kind: str
    body: Any
    controls: dict[str, Any]
    summary: str


class _Unknown(jinja2.ChainableUndefined):
    """A value only known at run time: shown in the plan as the template that will produce it."""

    def __init__(self, *args: Any, path: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = path or str(self._undefined_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unknown(path=f"{self._path}.{name}")

    def __getitem__(self, key: Any) -> Any:
        return _Unknown(path=f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        return f"{{{{ {self._path} }}}}"


def _render_known(renderer: Renderer, value: Any, scope: dict[str, Any]) -> Any:
    """Render what can be rendered now; leave templates that need run-time values as text."""
    if isinstance(value, str):
        try:
            rendered = renderer.render_text(value, scope)
        except TemplateError:
            return value
        return str(rendered) if isinstance(rendered, jinja2.Undefined) else rendered
    if isinstance(value, dict):
        return {k: _render_known(renderer, v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_known(renderer, v, scope) for v in value]
    return value


_CONTROL_FIELDS = ("when", "register", "timeout", "retries", "until", "delay",
                   "continue_on_error", "background", "asserts")


def _controls(step: StepSpec) -> dict[str, Any]:
    defaults = {"retries": 0, "continue_on_error": False, "background": False, "asserts": ()}
    return {name: getattr(step, name) for name in _CONTROL_FIELDS
            if getattr(step, name) not in (None, defaults.get(name))}


def plan(runbook: Runbook, params: dict[str, Any], env: dict[str, str]) -> list[PlannedStep]:
    """The steps of ``runbook`` (main, then finally) with known values filled in."""
    renderer = Renderer(undefined=_Unknown)
    scope: dict[str, Any] = {"params": params, "env": env, "run": {"runbook": runbook.name}}
    if runbook.target:
        scope["target"] = _render_known(renderer, runbook.target, scope)
    planned = []
    for step in runbook.all_steps():
        step_type = step_types()[step.kind]
        body = step.body if step_type.raw_body else _render_known(renderer, step.body, scope)
        try:
            summary = step_type.describe(body)
        except (TypeError, KeyError, AttributeError):
            summary = ""
        planned.append(PlannedStep(step.phase, step.index, step.name, step.kind, body,
                                   _controls(step), summary))
    return planned

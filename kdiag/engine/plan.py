"""``kdiag run --dry-run``: what would run, with the values known before running.

:func:`plan` lists the steps (main, nested ones under their step, then finally) with their
bodies rendered where the values are known; :func:`render_plan` writes it as text: a line per
step, its summary and controls indented under it (every line of a multi-line value too), and
the params still to give, which a plan shows as the templates that need them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
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
    children: tuple[PlannedStep, ...] = ()
    """Steps nested in this one (a ``group``'s, a ``logs`` step's)."""


class _Unknown(jinja2.ChainableUndefined):
    """A value only known at run time: shown in the plan as the template that will produce it."""

    def __init__(self, *args: Any, path: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name = self._undefined_name
        self._path = path or (None if name is None else str(name))
        """None: made by a filter or test (``first`` of a run-time list), not a name."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unknown(path=None if self._path is None else f"{self._path}.{name}")

    def __getitem__(self, key: Any) -> Any:
        return _Unknown(path=None if self._path is None else f"{self._path}[{key!r}]")

    def __str__(self) -> str:
        if self._path is None:  # the plan shows the whole template as written instead
            raise jinja2.UndefinedError("a value only known at run time")
        return f"{{{{ {self._path} }}}}"


def _render_known(renderer: Renderer, value: Any, scope: dict[str, Any]) -> Any:
    """Render what can be rendered now; leave templates that need run-time values as text."""
    if isinstance(value, str):
        try:
            rendered = renderer.render_text(value, scope)
            return str(rendered) if isinstance(rendered, jinja2.Undefined) else rendered
        except (TemplateError, jinja2.UndefinedError):
            return value
    if isinstance(value, dict):
        return {k: _render_known(renderer, v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_known(renderer, v, scope) for v in value]
    return value


_CONTROL_FIELDS = {"when": "when", "register": "register", "timeout": "timeout",
                   "retries": "retries", "until": "until", "delay": "delay",
                   "continue_on_error": "continue_on_error", "background": "background",
                   "asserts": "assert", "secret": "secret"}
"""The step's controls a plan shows: attribute of :class:`StepSpec` -> name as written."""


def _controls(step: StepSpec) -> dict[str, Any]:
    defaults = {"retries": 0, "continue_on_error": False, "background": False, "asserts": (),
                "secret": False}
    return {written: getattr(step, name) for name, written in _CONTROL_FIELDS.items()
            if getattr(step, name) not in (None, defaults.get(name))}


def plan(runbook: Runbook, params: dict[str, Any], env: dict[str, str]) -> list[PlannedStep]:
    """The steps of ``runbook`` (main, then finally) with known values filled in."""
    renderer = Renderer(undefined=_Unknown)
    scope: dict[str, Any] = {"params": params, "env": env, "run": {"runbook": runbook.name}}
    if runbook.target:
        scope["target"] = _render_known(renderer, runbook.target, scope)
    return [_planned(step, renderer, scope) for step in runbook.all_steps()]


def _planned(step: StepSpec, renderer: Renderer, scope: dict[str, Any]) -> PlannedStep:
    step_type = step_types()[step.kind]
    body = step.body if step_type.raw_body else _render_known(renderer, step.body, scope)
    try:
        summary = step_type.plan_text(body)
    except (TypeError, KeyError, AttributeError):
        summary = ""
    children = tuple(_planned(child, renderer, scope) for child in step.children)
    return PlannedStep(step.phase, step.index, step.name, step.kind, body, _controls(step),
                       summary, children)


MAX_VALUE_LINES = 20
"""Lines of one multi-line value (a script) a plan shows; it says how many more there are."""


def render_plan(runbook: Runbook, params: dict[str, Any], env: dict[str, str],
                mask: Callable[[str], str] = str, missing: Sequence[str] = ()) -> str:
    """The plan as text: the params (``missing`` ones named with how to give them; what needs
    them shows as templates), the target, then each step with what it does and its controls;
    ``mask`` hides secrets."""
    lines = [f"plan for {runbook.name} ({runbook.file})"]
    if params or missing:
        lines.append("params:")
        for name in [*runbook.params, *(n for n in params if n not in runbook.params)]:
            if name in params:
                lines.append(f"  {name} = {mask(json.dumps(params[name], default=str))}")
            elif name in missing:
                lines.append(f"  {name} = (not given: --set {name}=VALUE)")
    if runbook.target:
        scope = {"params": params, "env": env, "run": {"runbook": runbook.name}}
        for kind, spec in _render_known(Renderer(undefined=_Unknown), runbook.target,
                                        scope).items():
            shown = ", ".join(f"{k}={v}" for k, v in spec.items()) if isinstance(spec, dict) \
                else str(spec)
            lines.append(f"target: {kind} ({mask(shown)})")
    for step in plan(runbook, params, env):
        number = f"{'f' if step.phase == 'finally' else ''}{step.index + 1}"
        lines += _step_lines(step, number, 0, mask)
    return "\n".join(lines) + "\n"


def _step_lines(step: PlannedStep, number: str, depth: int,
                mask: Callable[[str], str]) -> list[str]:
    pad = "    " * depth
    head = f"{pad}{number:>4}. "
    indent = " " * len(head) if depth else " " * 7
    lines = [f"{head}{step.name} [{step.kind}]"]
    if step.summary:
        lines += _value_lines(indent, "", mask(step.summary))
    for name, value in step.controls.items():
        if isinstance(value, list | tuple) and value:
            lines.append(f"{indent}{name}:")
            for item in value:
                lines += _value_lines(indent + "  ", "- ", mask(_plain(item)))
        else:
            lines += _value_lines(indent, f"{name}: ", mask(_plain(value)))
    for position, child in enumerate(step.children, 1):
        lines += _step_lines(child, f"{number}.{position}", depth + 1, mask)
    return lines


def _plain(value: Any) -> str:
    """A control's value as written: strings bare, the rest as JSON (``true``, ``3``)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _value_lines(indent: str, label: str, text: str) -> list[str]:
    """``label`` and ``text``, every line of it under the first (a script keeps its shape)."""
    rows = text.rstrip("\n").split("\n")
    shown = rows[:MAX_VALUE_LINES]
    out = [f"{indent}{label}{shown[0]}"]
    out += [f"{indent}{' ' * len(label)}{row}".rstrip() for row in shown[1:]]
    if len(rows) > len(shown):
        out.append(f"{indent}{' ' * len(label)}... ({len(rows) - len(shown)} more lines)")
    return out

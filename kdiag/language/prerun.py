"""What ``kdiag run`` checks with the values given before any step runs, as one function that
``kdiag validate --set/--values`` shares: the params (types, choices, required ones) and the
``target:`` rendered with them (a template error, or a value of the wrong shape), each problem
at its ``file:line:col``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from kdiag.errors import Problem, RunbookError
from kdiag.language.model import Runbook
from kdiag.language.params import ParamValues, ValuesFile, resolve_params


def target_scope(runbook: Runbook, params: dict[str, Any], environ: Mapping[str, str],
                 run_info: dict[str, Any]) -> dict[str, Any]:
    """What the ``target:`` templates may read: what the first step sees, before any ran."""
    env = {name: environ[name] for name in runbook.env if name in environ}
    return {"params": params, "env": env, "target": {}, "run": run_info, "steps": {}}


def check_target(runbook: Runbook, params: dict[str, Any],
                 environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Render the runbook's ``target:`` with ``params`` and check what comes out."""
    if not runbook.target or runbook.source is None:
        return []
    from kdiag.language.templating import Renderer, TemplateError

    source = runbook.source
    scope = target_scope(runbook, params, os.environ if environ is None else environ,
                         {"id": "validate", "runbook": runbook.name, "file": runbook.file})
    renderer = Renderer()
    rendered: dict[str, Any] = {}
    problems: list[Problem] = []
    for kind, options in runbook.target.items():
        if not isinstance(options, dict):
            rendered[kind] = options
            continue
        rendered[kind] = {}
        for name, value in options.items():
            try:
                rendered[kind][name] = renderer.render(value, scope)
            except TemplateError as exc:
                problems.append(Problem(f"target: {exc}", source.locate(("target", kind, name))))
    for kind, name, message in _target_values(rendered):
        problems.append(Problem(f"target: {message}", source.locate(("target", kind, name))))
    return problems


def _target_values(rendered: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What opening the target would refuse in its rendered values (as the target backends
    read them: a node's ``pid`` as an integer, a pod's ``timeout`` as a duration)."""
    from kdiag.language.durations import parse_duration

    found = []
    node = rendered.get("node")
    if isinstance(node, dict) and "pid" in node:
        try:
            int(node["pid"])
        except (TypeError, ValueError):
            found.append(("node", "pid", f"pid must be a number, got {node['pid']!r} after "
                                         "rendering"))
    pod = rendered.get("kubernetes")
    if isinstance(pod, dict) and pod.get("timeout") is not None:
        try:
            parse_duration(pod["timeout"])
        except (TypeError, ValueError) as exc:
            found.append(("kubernetes", "timeout", f"timeout: {exc}"))
    return found


def resolve_for_run(runbook: Runbook, sets: dict[str, str],
                    values_files: Sequence[ValuesFile], missing_ok: bool = False) -> ParamValues:
    """The params of a run, checked as ``run`` checks them before its first step (the target
    rendered with them included); RunbookError lists every problem. ``missing_ok`` (a dry
    run): required params may be missing (``missing`` names them; the target is then not
    rendered: it may need them)."""
    values = resolve_params(runbook, sets, values_files=values_files, missing_ok=missing_ok)
    if values.missing:
        return values
    problems = check_target(runbook, values.values)
    if problems:
        raise RunbookError(problems)
    return values

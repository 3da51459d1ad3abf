"""Loading a runbook file into a validated :class:`~kdiag.language.model.Runbook`.

Everything that can be known before running is checked here, and every problem is reported
at once with its ``file:line:col``: YAML syntax, unknown fields, wrong types, missing fields,
unknown step types, duplicate step names, template and expression syntax, undefined variables
and params, and included runbooks (found on the search path, without cycles). The step types
come from the :class:`~kdiag.language.catalog.StepCatalog` the loader is given.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdiag.errors import RunbookError
from kdiag.language import limits as limits_
from kdiag.language import schemacheck
from kdiag.language.catalog import StepCatalog
from kdiag.language.model import ParamSpec, Phase, Runbook, StepSpec
from kdiag.language.schema import CONTROLS
from kdiag.language.templatecheck import Checker, Scope, check_step, check_text, strings
from kdiag.language.templateparse import is_template
from kdiag.language.yamlsource import Document, SourceMap, load_file
from kdiag.language.yamlsource import Path as DocPath

_STEP_PHASES: tuple[tuple[str, Phase], ...] = (("steps", "steps"), ("finally", "finally"))


def search_path(extra: Sequence[str] = ()) -> list[Path]:
    """Folders searched for included runbooks: ``--path`` entries, then ``KDIAG_PATH``."""
    env_entries = [p for p in os.environ.get("KDIAG_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in (*extra, *env_entries)]


def resolve_include(name: str, base_dir: Path, paths: Sequence[Path]) -> Path | None:
    """Find an included runbook: relative to the caller first, then on the search path."""
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in (base_dir, *paths):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _top_level_schema(catalog: StepCatalog) -> dict[str, Any]:
    """The runbook schema with step lists checked shallowly (steps are checked one by one)."""
    schema = dict(catalog.schema)
    properties = dict(schema["properties"])
    for key, _phase in _STEP_PHASES:
        properties[key] = {"type": "array", "description": properties[key]["description"]}
    schema["properties"] = properties
    return schema


def _step_kind(step: dict[str, Any], kinds: Sequence[str]) -> tuple[str | None, str]:
    """The step type a step mapping selects, or None with the reason."""
    chosen = [k for k in step if k in kinds and k != "assert"]
    if len(chosen) > 1:
        return None, "a step has exactly one type, this one has " + " and ".join(chosen)
    if chosen:
        return chosen[0], ""
    if "assert" in step:
        return "assert", ""
    unknown = [k for k in step if k not in CONTROLS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(kinds), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return None, f"unknown step type {unknown[0]!r}{hint}; step types: {', '.join(kinds)}"
    return None, f"the step has no type; step types: {', '.join(kinds)}"


def _check_shapes(document: Document, checker: Checker) -> None:
    root = checker.catalog.schema
    data = document.data
    for violation in schemacheck.validate(data, _top_level_schema(checker.catalog), root):
        checker.add(violation.message, violation.path, key=violation.at_key)
    for key, _phase in _STEP_PHASES:
        steps = data.get(key)
        if isinstance(steps, list):
            _check_step_list(steps, (key,), checker)


def _check_step_list(steps: list[Any], path: DocPath, checker: Checker) -> None:
    """Check each step's shape; steps nested in a step (``children_field``) likewise."""
    types = checker.catalog
    root = types.schema
    for index, step in enumerate(steps):
        step_path: DocPath = (*path, index)
        if not isinstance(step, dict):
            checker.add(f"a step must be a mapping, got {schemacheck.describe(step)}", step_path)
            continue
        kind, reason = _step_kind(step, list(types))
        if kind is None:
            bad = next((k for k in step if k not in CONTROLS), None)
            checker.add(reason, (*step_path, bad) if bad else step_path, key=bad is not None)
            continue
        for violation in schemacheck.validate(step, _shallow_step_def(kind, types), root,
                                              step_path):
            checker.add(violation.message, violation.path, key=violation.at_key)
        field_name = types[kind].children_field
        body = step.get(kind)
        if field_name and isinstance(body, dict) and isinstance(body.get(field_name), list):
            _check_step_list(body[field_name], (*step_path, kind, field_name), checker)


def _shallow_step_def(kind: str, catalog: StepCatalog) -> dict[str, Any]:
    """A step's schema with its nested step list (if any) checked as a plain list."""
    definition = catalog.schema["$defs"][f"step_{kind}"]
    field_name = catalog[kind].children_field
    if not field_name:
        return definition
    body = dict(schemacheck.deref(definition["properties"][kind], catalog.schema))
    body["properties"] = {**body["properties"], field_name: {"type": "array"}}
    return {**definition, "properties": {**definition["properties"], kind: body}}


def _build(document: Document, file: str, catalog: StepCatalog) -> Runbook:
    data, source = document.data, document.source
    params = {
        name: ParamSpec(
            name=name,
            type=spec.get("type", "string"),
            default=spec.get("default"),
            has_default="default" in spec,
            description=spec.get("description", ""),
            secret=bool(spec.get("secret", False)),
            choices=tuple(spec.get("choices", ())),
            location=source.locate(("params", name), key=True),
        )
        for name, spec in (data.get("params") or {}).items()
    }
    runbook = Runbook(
        name=data.get("name") or Path(file).stem,
        file=file,
        description=data.get("description", ""),
        params=params,
        env=tuple(data.get("env", ())),
        target=data.get("target"),
        outputs=data.get("outputs") or {},
        source=source,
    )
    for key, phase in _STEP_PHASES:
        steps = _step_specs(data.get(key) or [], phase, (key,), source, catalog)
        if phase == "steps":
            runbook.steps = steps
        else:
            runbook.finally_steps = steps
    return runbook


def _step_specs(steps: list[dict[str, Any]], phase: Phase, path: DocPath, source: SourceMap,
                catalog: StepCatalog) -> list[StepSpec]:
    return [_step_spec(step, index, phase, (*path, index), source, catalog)
            for index, step in enumerate(steps)]


def _step_spec(step: dict[str, Any], index: int, phase: Phase, path: DocPath,
               source: SourceMap, catalog: StepCatalog) -> StepSpec:
    kind, _ = _step_kind(step, list(catalog))
    assert kind is not None  # shapes were checked first
    field_name = catalog[kind].children_field
    nested = step[kind].get(field_name) if field_name and isinstance(step[kind], dict) else None
    children = _step_specs(nested or [], phase, (*path, kind, field_name or ""), source, catalog)
    asserts = step.get("assert", ())
    if kind == "assert":
        asserts = ()
    return StepSpec(
        index=index,
        name=step.get("name") or f"{kind} #{index + 1}" + (" (finally)" if phase == "finally" else ""),
        kind=kind,
        body=step[kind],
        phase=phase,
        doc_path=path,
        location=source.locate(path),
        when=step.get("when"),
        register=step.get("register"),
        timeout=step.get("timeout"),
        retries=step.get("retries", 0),
        until=step.get("until"),
        delay=step.get("delay"),
        continue_on_error=bool(step.get("continue_on_error", False)),
        background=bool(step.get("background", False)),
        parallel=step.get("parallel"),
        asserts=tuple([asserts] if isinstance(asserts, str) else asserts),
        secret=tuple(step["secret"]) if isinstance(step.get("secret"), list)
        else bool(step.get("secret", False)),
        description=step.get("description", ""),
        children=tuple(children),
    )


def _walk(steps: Sequence[StepSpec]) -> Iterator[StepSpec]:
    for step in steps:
        yield step
        yield from _walk(step.children)


def _check_names(checker: Checker, runbook: Runbook) -> None:
    seen: dict[str, StepSpec] = {}
    for step in _walk(runbook.all_steps()):
        if step.name in seen:
            first = seen[step.name].location
            checker.add(f"duplicate step name {step.name!r} (first used at {first})",
                        (*step.doc_path, "name"))
        else:
            seen[step.name] = step


def _check_stops(checker: Checker, runbook: Runbook) -> None:
    """A ``stop`` naming a step (not a template) must name an earlier background step of its
    own step list: the engine looks it up by the same path (top level and ``finally`` share
    one; a group's or a logs step's nested steps have their own)."""
    everywhere = {step.name for step in _walk(runbook.all_steps())}

    def level(lists: Sequence[Sequence[StepSpec]]) -> None:
        earlier: dict[str, StepSpec] = {}
        later = {step.name for steps in lists for step in steps}
        for steps in lists:
            for step in steps:
                if step.kind == "stop" and isinstance(step.body, str) \
                        and not is_template(step.body):
                    problem = _stop_problem(step.body, earlier, later, everywhere)
                    if problem:
                        checker.add(f"stop: {problem}", (*step.doc_path, "stop"))
                earlier[step.name] = step
                if step.children:
                    level([step.children])

    level([runbook.steps, runbook.finally_steps])


def _stop_problem(name: str, earlier: dict[str, StepSpec], level: set[str],
                  everywhere: set[str]) -> str | None:
    target = earlier.get(name)
    if target is not None:
        return None if target.background else (
            f"step {name!r} does not run in the background (no background: true), so it has "
            "nothing to stop")
    if name in level:
        return f"step {name!r} runs after this one"
    if name in everywhere:
        return (f"step {name!r} is in another step list; a stop reaches the background steps "
                "of its own list (the top level, or the same group)")
    close = difflib.get_close_matches(name, sorted(earlier), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"no step named {name!r} before this one{hint}"


def _check_param_defaults(checker: Checker, runbook: Runbook) -> None:
    from kdiag.language.params import _matches, a_type

    for spec in runbook.params.values():
        if spec.has_default and spec.default is not None and not _matches(spec.type, spec.default):
            checker.add(f"the default of param {spec.name!r} is not {a_type(spec.type)}: "
                        f"{schemacheck.describe(spec.default)}", ("params", spec.name, "default"))


@dataclass
class Loader:
    """Loads runbooks (and the runbooks they include) with the step types of ``catalog``,
    caching each file once."""

    catalog: StepCatalog
    paths: list[Path] = field(default_factory=list)
    cache: dict[Path, Runbook] = field(default_factory=dict)
    limits: limits_.Limits = field(default_factory=limits_.current)

    def load(self, file: str, _stack: tuple[Path, ...] = ()) -> Runbook:
        """Load and validate ``file``; raises RunbookError listing every problem."""
        resolved = Path(file).resolve()
        if resolved in self.cache:
            return self.cache[resolved]
        document = load_file(file, self.limits)
        checker = Checker.bounded(document.source, self.catalog, self.limits)
        if not isinstance(document.data, dict):
            checker.add("a runbook must be a mapping with a 'steps' list, got "
                        f"{schemacheck.describe(document.data)}", ())
            raise RunbookError(checker.problems)
        _check_shapes(document, checker)
        if checker.problems:
            raise RunbookError(checker.problems)
        runbook = _build(document, file, self.catalog)
        _check_names(checker, runbook)
        _check_stops(checker, runbook)
        _check_param_defaults(checker, runbook)
        for key, text in strings(runbook.target, ("target",)):  # rendered before any step
            check_text(checker, Scope(frozenset(runbook.params), set()), key, text,
                       expression=False)
        scope = Scope(frozenset(runbook.params), set())
        for step in runbook.steps:
            check_step(checker, scope, step)
        for step in runbook.finally_steps:
            check_step(checker, scope, step)
        for key, text in strings(runbook.outputs, ("outputs",)):
            check_text(checker, scope, key, text, expression=False)
        self._check_includes(checker, runbook, (*_stack, resolved))
        if checker.problems:
            raise RunbookError(checker.problems)
        self.cache[resolved] = runbook
        return runbook

    def find(self, name: str, base_dir: Path) -> Path | None:
        """Where an included runbook named ``name`` is, seen from ``base_dir``."""
        return resolve_include(name, base_dir, self.paths)

    def _check_includes(self, checker: Checker, runbook: Runbook, stack: tuple[Path, ...]) -> None:
        for step in _walk(runbook.all_steps()):
            if step.kind != "include" or not isinstance(step.body, dict):
                continue
            name = step.body.get("file")
            if not isinstance(name, str) or is_template(name):
                continue  # decided at run time
            where = (*step.doc_path, "include", "file")
            found = self.find(name, runbook.directory)
            if found is None:
                places = ", ".join(str(p) for p in (runbook.directory, *self.paths))
                checker.add(f"included runbook {name!r} not found (looked in {places})", where)
                continue
            if found.resolve() in stack:
                chain = " -> ".join(p.name for p in (*stack, found.resolve()))
                checker.add(f"include cycle: {chain}", where)
                continue
            try:
                included = self.load(str(found), stack)
            except RunbookError as exc:
                checker.problems.extend(exc.problems)
                continue
            self._check_include_params(checker, step, included)

    @staticmethod
    def _check_include_params(checker: Checker, step: StepSpec, included: Runbook) -> None:
        given = step.body.get("params") or {}
        if not isinstance(given, dict):
            return
        from kdiag.language.params import literal_problem

        for name, value in given.items():
            where = (*step.doc_path, "include", "params", name)
            if name not in included.params:
                checker.add(f"{included.file} has no param {name!r}", where, key=True)
                continue
            problem = literal_problem(included.params[name], value)
            if problem:
                checker.add(f"{included.file}: {problem}", where)
        for name, spec in included.params.items():
            if not spec.has_default and name not in given:
                checker.add(f"{included.file} needs param {name!r}",
                            (*step.doc_path, "include"))

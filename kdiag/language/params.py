"""Resolving a runbook's params from defaults, ``--values`` files and ``--set`` flags."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from kdiag.errors import Location, Problem, RunbookError, UsageError
from kdiag.language.limits import Limits, clip
from kdiag.language.model import ParamSpec, ParamType, Runbook
from kdiag.language.schemacheck import describe
from kdiag.language.yamlsource import SourceMap, load_file

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class ParamValues:
    """The resolved params and the secret values among them (to mask)."""

    values: dict[str, Any]
    secrets: tuple[str, ...]
    missing: tuple[str, ...] = ()
    """Required params not given (only with ``missing_ok``: a dry run's plan names them)."""


def a_type(kind: str) -> str:
    """``an integer``, ``a string``: a param type with its article, for messages."""
    return f"{'an' if kind[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {kind}"


def parse_set_args(items: list[str]) -> dict[str, str]:
    """Split ``--set name=value`` flags; a later flag for the same name wins."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        result[name.strip()] = value
    return result


def load_values(path: str, limits: Limits | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Read a ``--values`` YAML file: a mapping of param names to values."""
    document = load_file(path, limits)
    if not isinstance(document.data, dict):
        raise RunbookError(Problem("a values file must be a mapping of param names to values",
                                   document.source.locate(())))
    return document.data, document.source


def _matches(kind: ParamType, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return isinstance(value, list) and any(_has_template(v) for v in value)


def literal_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value``, written for param ``spec`` (an include step's param), cannot be given to
    it; None when it fits, or holds a template (known only when rendered)."""
    if _has_template(value):
        return None
    if not _matches(spec.type, value):
        return f"param {spec.name!r}: expected {a_type(spec.type)}, got {describe(value)}"
    problem = _check_choice(spec, value, None, "")
    return problem.message if problem else None


def convert(spec: ParamSpec, text: str) -> Any:
    """Turn a ``--set`` string into the param's type; ValueError says why it cannot."""
    kind = spec.type
    if kind == "string":
        return text
    try:
        if kind == "integer":
            return int(text, 0)
        if kind == "number":
            return float(text)
    except ValueError:
        raise ValueError(f"expected {a_type(kind)}, got {text!r}") from None
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError("expected true or false")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"expected a YAML {kind}") from None
    if not _matches(kind, value):
        raise ValueError(f"expected {a_type(kind)}, got {describe(value)}")
    return value


def _unknown(name: str, known: dict[str, ParamSpec]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(known) or "none"
    return f"unknown param {name!r}{hint}; this runbook's params: {names}"


def _check_choice(spec: ParamSpec, value: Any, where: Location | None, origin: str) -> Problem | None:
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(repr(c) for c in spec.choices)
        return Problem(f"param {spec.name!r}{origin}: {value!r} is not one of {allowed}", where)
    return None


ValuesFile = tuple[dict[str, Any], SourceMap | None]


def resolve_params(
    runbook: Runbook,
    sets: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    values_files: Sequence[ValuesFile] = (),
    missing_ok: bool = False,
) -> ParamValues:
    """Combine defaults, values files, ``values`` and ``--set`` flags (later ones win).

    ``values`` are typed values from code (an ``include`` step's params). Every problem is
    collected and raised together as one RunbookError. ``missing_ok``: a required param not
    given is no problem (it is named in ``missing``).
    """
    problems: list[Problem] = []
    resolved: dict[str, Any] = {}
    given_wrong: set[str] = set()  # given, but not usable: "required" would be misleading
    given = [*values_files, (values or {}, None)]
    for name, value, where in ((n, v, src.locate((n,)) if src else None)
                               for data, src in given for n, v in data.items()):
        spec = runbook.params.get(name)
        if spec is None:
            problems.append(Problem(_unknown(name, runbook.params), where))
        elif not _matches(spec.type, value):
            given_wrong.add(name)
            problems.append(Problem(f"param {name!r}: expected {a_type(spec.type)}, "
                                    f"got {describe(value)}", where))
        else:
            resolved[name] = value
    for name, text in (sets or {}).items():
        spec = runbook.params.get(name)
        if spec is None:
            problems.append(Problem(f"--set {name}: " + _unknown(name, runbook.params)))
            continue
        try:
            resolved[name] = convert(spec, text)
        except ValueError as exc:
            given_wrong.add(name)
            problems.append(Problem(f"--set {name}={text}: {exc}"))
    missing = []
    for name, spec in runbook.params.items():
        if name not in resolved:
            if name in given_wrong:
                continue
            if not spec.has_default:
                missing.append(name)
                if not missing_ok:
                    problems.append(Problem(_required(spec), spec.location))
                continue
            resolved[name] = spec.default
        problem = _check_choice(spec, resolved[name], spec.location, "")
        if problem:
            problems.append(problem)
    if problems:
        raise RunbookError([Problem(clip(p.message), p.location) for p in problems])
    secrets = tuple(str(resolved[n]) for n, s in runbook.params.items()
                    if s.secret and n in resolved and resolved[n] not in (None, ""))
    return ParamValues(resolved, secrets, tuple(missing))


def _required(spec: ParamSpec) -> str:
    """``param 'pid' is required: pass --set pid=VALUE or a --values file — PID of ...``."""
    about = " ".join(spec.description.split()).rstrip(".")
    return (f"param {spec.name!r} is required: pass --set {spec.name}=VALUE or a --values file"
            + (f" \N{EM DASH} {about}" if about else ""))

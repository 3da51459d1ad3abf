"""Checking a runbook's templates and expressions before it runs: syntax, undefined names
and unknown params, each problem reported at its ``file:line:col`` (through :class:`Checker`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kdiag.errors import Location, Problem
from kdiag.language import templating
from kdiag.language.catalog import StepCatalog
from kdiag.language.model import StepSpec
from kdiag.language.yamlsource import Path as DocPath
from kdiag.language.yamlsource import SourceMap

# Names a template can always read, besides registered results.
GLOBAL_NAMES = frozenset({"params", "target", "env", "run", "steps"})
JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace",
                           "true", "false", "none", "True", "False", "None"})
RESERVED = GLOBAL_NAMES | JINJA_GLOBALS | {"result", "outputs"}


@dataclass
class Checker:
    """Collects the problems of one runbook file."""

    source: SourceMap
    catalog: StepCatalog
    problems: list[Problem] = field(default_factory=list)

    def add(self, message: str, path: DocPath, *, key: bool = False) -> None:
        self.problems.append(Problem(message, self.source.locate(path, key=key)))

    def add_at(self, message: str, location: Location) -> None:
        self.problems.append(Problem(message, location))


def strings(value: Any, path: DocPath) -> Iterator[tuple[DocPath, str]]:
    """Every string inside ``value``, with its path in the document."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, index))


@dataclass
class Scope:
    """What names templates may use at a point of the runbook."""

    params: frozenset[str]
    registered: set[str]

    def check(self, names: set[str], extra: frozenset[str] = frozenset()) -> str | None:
        known = GLOBAL_NAMES | JINJA_GLOBALS | self.registered | extra
        for name in sorted(names - known):
            close = difflib.get_close_matches(name, sorted(known - JINJA_GLOBALS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"undefined variable {name!r}{hint}"
        return None


def _param_references(tree: Any) -> set[str]:
    """Names used as ``params.NAME`` or ``params['NAME']`` in a parsed template."""
    import jinja2.nodes

    names: set[str] = set()
    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        base = getattr(node, "node", None)
        if not (isinstance(base, jinja2.nodes.Name) and base.name == "params"):
            continue
        if isinstance(node, jinja2.nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node, jinja2.nodes.Getitem) and isinstance(node.arg, jinja2.nodes.Const) \
                and isinstance(node.arg.value, str):
            names.add(node.arg.value)
    return names


def check_text(checker: Checker, scope: Scope, path: DocPath, text: str, *,
                expression: bool, extra: frozenset[str] = frozenset()) -> None:
    if not expression and not templating.is_template(text):
        return
    analysis = templating.analyse(text, expression=expression)
    if analysis.problem is not None:
        what = "expression" if expression else "template"
        checker.add_at(f"{what} syntax error: {analysis.problem.message}",
                       checker.source.locate_line(path, analysis.problem.line))
        return
    message = scope.check(set(analysis.names), extra)
    if message:
        checker.add(message, path)
        return
    for name in sorted(_param_references(analysis.tree) - scope.params):
        close = difflib.get_close_matches(name, sorted(scope.params), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        checker.add(f"unknown param {name!r}{hint}", path)


def check_step(checker: Checker, scope: Scope, step: StepSpec) -> None:
    step_type = checker.catalog[step.kind]
    path = step.doc_path
    own = frozenset({"result", *([step.register] if step.register else [])})
    if isinstance(step.when, str):
        check_text(checker, scope, (*path, "when"), step.when, expression=True)
    for key in ("timeout", "retries", "delay"):
        value = getattr(step, key)
        if isinstance(value, str):
            check_text(checker, scope, (*path, key), value, expression=False)
    if step.until:
        check_text(checker, scope, (*path, "until"), step.until, expression=True, extra=own)
    assert_key = step.kind if step.kind == "assert" else "assert"
    expressions = step.body if step.kind == "assert" else step.asserts
    if isinstance(expressions, str):
        expressions = [expressions]
    for index, expression in enumerate(expressions):
        item_path = (*path, assert_key) if isinstance(step.body, str) and step.kind == "assert" \
            else (*path, assert_key, index)
        check_text(checker, scope, item_path, expression, expression=True, extra=own)
    if step.kind != "assert":
        body_path = (*path, step.kind)
        for sub_path, text in strings(step.body, body_path):
            field_name = sub_path[len(body_path)] if len(sub_path) > len(body_path) else None
            if field_name is not None and field_name == step_type.children_field:
                continue  # nested steps are checked as steps below
            is_expression = field_name in step_type.expression_fields
            check_text(checker, scope, sub_path, text, expression=is_expression)
    for child in step.children:
        check_step(checker, scope, child)
    if step.background and not step_type.can_background:
        checker.add(f"a {step.kind!r} step cannot run in the background", (*path, "background"),
                    key=True)
    if step.register:
        if step.register in RESERVED:
            checker.add(f"{step.register!r} is a reserved name; register under another name",
                        (*path, "register"))
        scope.registered.add(step.register)
